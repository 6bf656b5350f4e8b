"""The soak's arithmetic: memory growth after the warm-up, its slope and verdict, and
latencies per minute."""

from __future__ import annotations

import pytest
from bench.memory import growth, slope_per_min
from bench.soak import per_minute, warmup_for


def test_slope_is_least_squares_in_mb_per_minute() -> None:
    line = [(t, 100 + 0.5 * t) for t in range(0, 120, 10)]  # 0.5 MB/s
    assert slope_per_min(line) == pytest.approx(30.0)
    assert slope_per_min([(0, 5.0), (10, 5.0), (20, 5.0)]) == pytest.approx(0.0)
    assert slope_per_min([(0, 5.0)]) is None
    assert slope_per_min([(10, 5.0), (10, 7.0)]) is None  # no spread in time


def test_growth_counts_from_the_warm_up() -> None:
    # Start-up growth (60 -> 100 MB in the first minute) is not counted.
    samples = [(0.0, 60.0), (30.0, 90.0), (60.0, 100.0), (120.0, 101.0), (180.0, 102.0)]
    g = growth(samples, warmup_s=60)
    assert g["samples"] == 3
    assert (g["first_mb"], g["last_mb"], g["max_mb"]) == (100.0, 102.0, 102.0)
    assert g["growth_mb"] == 2.0
    assert g["growth_pct"] == 2.0
    assert g["slope_mb_per_min"] == pytest.approx(1.0)
    assert g["grew"] is False


def test_growth_above_ten_percent_with_a_rising_slope_is_flagged() -> None:
    leak = [(float(t), 100.0 + (t - 60) / 10) for t in range(60, 600, 10)]  # 100 -> 153 MB
    g = growth(leak, warmup_s=60)
    assert g["growth_pct"] == pytest.approx(53.0)
    assert g["grew"] is True


def test_growth_needs_both_the_percentage_and_the_slope() -> None:
    # An early jump, shrinking since: +15% last vs first, but a falling trend.
    falling = [(0.0, 100.0), (10.0, 200.0), (20.0, 190.0), (30.0, 170.0), (40.0, 150.0)]
    falling += [(50.0, 130.0), (60.0, 115.0)]
    g = growth(falling, warmup_s=0)
    assert g["growth_pct"] == 15.0
    assert g["slope_mb_per_min"] < 0
    assert g["grew"] is False
    # Rising all along, but by 10% exactly: not more than 10%.
    assert growth([(0.0, 100.0), (10.0, 105.0), (20.0, 110.0)], warmup_s=0)["grew"] is False
    # Flat but for a rounding crumb: no negative zero in the report.
    flat = growth([(0.0, 50.0), (10.0, 49.99999)], warmup_s=0)
    assert str(flat["slope_mb_per_min"]) == "0.0"


def test_a_soak_shorter_than_its_warm_up_keeps_its_last_sample() -> None:
    assert growth([(0.0, 50.0), (10.0, 55.0)], warmup_s=60)["first_mb"] == 55.0
    assert growth([], warmup_s=60) == {"samples": 0}


def test_warm_up_is_a_minute_or_a_tenth_of_a_short_soak() -> None:
    assert warmup_for(600) == 60
    assert warmup_for(90) == 9


def test_latencies_are_bucketed_per_minute() -> None:
    pairs: list[tuple[float, float | None]] = [(1.0, 0.002), (59.9, 0.004), (60.0, 0.010)]
    pairs += [(61.0, None), (130.0, 0.001)]
    got = per_minute(pairs)
    assert [b["minute"] for b in got] == [0, 1, 2]
    assert got[0] == {"minute": 0, "n": 2, "errors": 0, "p50": 2.0, "p99": 4.0, "max": 4.0}
    assert (got[1]["n"], got[1]["errors"], got[1]["p50"]) == (1, 1, 10.0)
