"""Log lines are JSON on stderr; libraries' chatter below WARNING stays out."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from glia_common.settings import ServiceSettings
from glia_common.telemetry import configure_logging, get_logger


def test_the_http_clients_request_lines_stay_out_but_their_warnings_do_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = ServiceSettings(_env_file=None, log_format="json", log_level="INFO")  # type: ignore[call-arg]
    configure_logging(settings, "glia-test")
    logging.getLogger("httpx2").info('HTTP Request: POST http://llm/v1/chat/completions "200 OK"')
    logging.getLogger("httpx2").warning("connection pool is full")
    get_logger("glia.test").info("turn.finished")
    lines: list[dict[str, Any]] = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    events = [line["event"] for line in lines]
    assert "turn.finished" in events
    assert "connection pool is full" in events
    assert not any("HTTP Request" in event for event in events)
    assert all(line["service"] == "glia-test" for line in lines)
