"""Abuse limits (unrestricted resource consumption): one answer and one metric for all.

A request over a limit is a 429 problem with ``Retry-After`` (whole seconds), counted in
``glia_rate_limited_total{limit}``.
"""

from __future__ import annotations

import math

from prometheus_client import Counter

from glia_common.web.problems import ProblemError

RATE_LIMITED = Counter(
    "glia_rate_limited_total",
    "Requests refused with 429 by an abuse limit, by limit.",
    ["limit"],
)


def rate_limited(limit: str, retry_after_s: float, detail: str) -> ProblemError:
    RATE_LIMITED.labels(limit).inc()
    return ProblemError(
        429,
        detail,
        code="rate_limited",
        headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))},
    )
