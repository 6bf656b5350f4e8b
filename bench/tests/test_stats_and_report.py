"""The benchmark's arithmetic: percentiles, figures and the target verdicts it prints."""

from __future__ import annotations

from typing import Any

import pytest
from bench.report import evaluate, table
from bench.stats import figure, percentile, slowest, summary_ms


def test_percentiles_are_nearest_rank() -> None:
    samples = list(range(1, 101))  # 1..100
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    # One slow sample in a hundred is the p99's business only past the 99th rank.
    assert percentile([1.0] * 99 + [500.0], 99) == 1.0
    assert percentile([1.0] * 98 + [500.0, 500.0], 99) == 500.0


def test_summary_is_in_milliseconds() -> None:
    summary = summary_ms([0.001, 0.002, 0.003, 0.250])
    assert summary == {"n": 4, "p50": 2.0, "p90": 250.0, "p99": 250.0, "max": 250.0}
    assert summary_ms([])["p50"] is None


def test_slowest_keeps_the_worst_in_time_order() -> None:
    pairs = [(0.1, 0.002), (0.2, 0.300), (0.3, 0.001), (0.4, 0.100)]
    assert slowest(pairs, n=2) == [[0.2, 300.0], [0.4, 100.0]]


def test_figure_ratio_is_value_over_baseline() -> None:
    assert figure(50.0, 200.0, "req/s") == {
        "value": 50.0,
        "baseline": 200.0,
        "ratio": 0.25,
        "unit": "req/s",
    }
    assert figure(5.0, 0.0, "ms")["ratio"] is None
    assert figure(None, 3.0, "ms")["ratio"] is None


def results(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "chat": {
            "turns_per_s": figure(75, 100, "turns/s"),
            "start_p50_ms": figure(9, 4, "ms"),
            "start_p99_ms": figure(19, 10, "ms"),
            "first_token_added_p50_ms": figure(2, 0.5, "ms"),
        },
        "extraction": {
            "runs_per_s": figure(720, 900, "runs/s"),
            "steady_lag_p50_ms": figure(3, 2, "ms"),
            "steady_lag_p99_ms": figure(9, 6, "ms"),
        },
        "cards": {
            "rps_200": figure(750, 1000, "req/s"),
            "rps_304": figure(749, 1000, "req/s"),
            "fastapi_floor_rps_200": figure(800, 1000, "req/s"),
            "p99_200_ms": figure(19.9, 3, "ms"),
            "p99_304_ms": figure(20.0, 3, "ms"),
        },
        "decoupling": {"turn_p50_ms": figure(11, 10, "ms")},
    }
    for key, value in overrides.items():
        section, name = key.split("__")
        base[section][name] = value
    return base


def verdicts(res: dict[str, Any]) -> dict[str, str]:
    return {t["target"]: t["status"] for t in evaluate(res)}


def test_targets_pass_and_miss_at_their_edges() -> None:
    got = verdicts(results())
    assert got["chat throughput"] == "PASS"  # 0.75
    assert got["chat start p99"] == "PASS"  # 19 < 20
    assert got["extraction vs loop"] == "PASS"  # 0.8 of the loop
    assert got["extraction lag p99"] == "PASS"  # 9 < 20
    assert got["cards throughput (200)"] == "PASS"  # 0.75
    assert got["cards throughput (304)"] == "MISS"  # 0.749
    assert got["cards p99 (200)"] == "PASS"  # 19.9 < 20
    assert got["cards p99 (304)"] == "MISS"  # 20.0 is not < 20
    assert got["decoupling"] == "PASS"  # 1.1 is inside 0.9..1.1


@pytest.mark.parametrize(
    ("override", "target"),
    [
        ({"chat__turns_per_s": figure(74, 100, "turns/s")}, "chat throughput"),
        ({"chat__start_p99_ms": figure(20, 10, "ms")}, "chat start p99"),
        ({"extraction__runs_per_s": figure(399, 500, "runs/s")}, "extraction vs loop"),
        ({"extraction__steady_lag_p99_ms": figure(20, 6, "ms")}, "extraction lag p99"),
        ({"decoupling__turn_p50_ms": figure(8, 10, "ms")}, "decoupling"),
        ({"decoupling__turn_p50_ms": figure(12, 10, "ms")}, "decoupling"),
    ],
)
def test_each_rule_can_fail(override: dict[str, Any], target: str) -> None:
    assert verdicts(results(**override))[target] == "MISS"


def test_a_part_not_run_is_not_applicable() -> None:
    res = results()
    del res["decoupling"]
    assert verdicts(res)["decoupling"] == "n/a"


def test_table_reads_throughput_up_and_latency_down() -> None:
    res = results()
    text = table(res, evaluate(res))
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if "|" in line}
    assert rows["cards.fastapi_floor_rps_200"].rstrip(" |").endswith("higher")
    assert rows["cards.p99_200_ms"].rstrip(" |").endswith("lower")
    assert "MISS" in rows["cards throughput (304)"]


def test_rounds_of_a_closed_loop_merge_into_one() -> None:
    from bench.load import ClosedResult

    merged = ClosedResult.merged(
        [
            ClosedResult(100, 1, 2.0, ["a"], {"500": 1}),
            ClosedResult(300, 2, 2.0, ["b", "c"], {"500": 1, "timeout": 1}),
        ]
    )
    assert merged.rate == 100.0  # 400 requests over 4 s, not the mean of 50 and 150 rates
    assert (merged.completed, merged.errors, merged.samples) == (400, 3, ["a", "b", "c"])
    assert merged.error_kinds == {"500": 2, "timeout": 1}
