"""The moment timeline: what it samples, and how it reads a slow request's span back."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from bench.cards import tails_table
from bench.moments import MomentTimeline, explain, log_size, server_durations
from bench.run import parse_args


def timeline_of(rows: list[tuple[float, tuple[int, ...], int]]) -> MomentTimeline:
    """A timeline of one watched server with the given (time, row, probe_ns) samples
    (every CPU idle throughout)."""
    tl = MomentTimeline({"server": [1]})
    cpus = len(tl.columns) - 6
    for t, row, probe in rows:
        tl.times.append(t)
        tl.rows.append(row + (int(t * 1_000_000),) * cpus)
        tl.probes.append(probe)
    return tl


# Columns: server ran, server waited, cpu / io / memory pressure, stolen (all in us).
STEADY = [
    (0.00, (0, 0, 0, 0, 0, 0), 40_000),
    (0.02, (10_000, 1_000, 1_000, 0, 0, 0), 40_000),
    (0.04, (20_000, 2_000, 2_000, 0, 0, 0), 40_000),
    # A slow moment: the server ran the whole 20 ms, waited 15 ms more, fixed work 2x.
    (0.06, (40_000, 17_000, 20_000, 500, 0, 0), 80_000),
    (0.08, (50_000, 18_000, 21_000, 500, 0, 0), 40_000),
]


def test_a_span_reads_each_columns_growth_from_the_samples_around_it() -> None:
    tl = timeline_of(STEADY)
    moment = tl.between(0.045, 0.055)
    assert moment["server ran"] == 20.0
    assert moment["server waited for a CPU"] == 15.0
    assert moment["cpu pressure"] == 18.0
    assert moment["io pressure"] == 0.5
    assert moment["sampled_ms"] == 20.0
    assert moment["cpu0 idle"] == 20.0
    assert moment["slowdown"] == 1.5  # median of 40 and 80 us against 40 us


def test_the_servers_cpu_per_request_is_read_over_the_requests_that_ended_then() -> None:
    tl = timeline_of(STEADY)
    ends = [0.01, 0.03, 0.05, 0.07]  # one request ended in each 20 ms
    assert tl.server_cpu_per_request_ms(ends) == 12.5  # 50 ms over 4 requests
    assert tl.server_cpu_per_request_ms(ends, 0.045, 0.055) == 20.0  # 20 ms, one request
    assert tl.server_cpu_per_request_ms([], 0.045, 0.055) is None


def test_the_slowest_half_second_is_found_and_placed() -> None:
    samples = [(i * 0.02, (0, 0, 0, 0, 0, 0), 40_000) for i in range(100)]
    for i in range(50, 80):  # 1.0 s to 1.6 s: twice as slow
        samples[i] = (samples[i][0], samples[i][1], 80_000)
    speed = timeline_of(samples).slowest_speed()
    assert speed["slowdown"] == 2.0
    assert 0.75 <= speed["at_s"] <= 1.1  # a half second in which most samples were slow
    assert speed["usual_us"] == 40.0


def test_who_ran_names_the_busiest_processes_between_two_scans() -> None:
    tl = timeline_of(STEADY)
    tl.scan_times = [0.0, 0.1]
    tl.scans = [{1: 100, 2: 50, 3: 7}, {1: 110, 2: 52, 3: 7}]
    tl.names = {1: "glia-card-query", 2: "postgres", 3: "idle"}
    ran = tl.who_ran(0.02, 0.05)
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    assert ran == {
        "glia-card-query (1)": round(10 * tick_ms, 1),
        "postgres (2)": round(2 * tick_ms, 1),
        "scanned_ms": 100,
    }


def test_explain_gives_each_slow_request_its_server_part_and_span() -> None:
    tl = timeline_of(STEADY)
    out = explain(
        tl,
        0.0,
        [(0.045, 0.055, 0.010, "r1"), (0.021, 0.025, 0.004, "gone")],
        [0.01, 0.03, 0.05, 0.07],
        {"r1": 9.5},
    )
    first, second = out["slowest"]
    assert (first["at_s"], first["ms"], first["server_ms"]) == (0.021, 4.0, None)
    assert (second["at_s"], second["ms"], second["server_ms"]) == (0.045, 10.0, 9.5)
    assert second["server_cpu_per_request_ms"] == 20.0
    assert out["usual_server_cpu_per_request_ms"] == 12.5
    assert out["generator_worst_gap_ms"] == 20.0


def test_the_servers_durations_are_read_from_its_log_after_an_offset(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    before = {"event": "http.request", "request_id": "old", "duration_ms": 1.0}
    log.write_text(json.dumps(before) + "\n")
    offset = log_size(log)
    with log.open("a") as f:
        f.write(json.dumps({"event": "http.request", "request_id": "a", "duration_ms": 7.5}))
        f.write('\nnot json but "http.request"\n')
        f.write(json.dumps({"event": "loop.stalled", "stalled_ms": 60}) + "\n")
    assert server_durations(log, offset) == {"a": 7.5}
    assert log_size(tmp_path / "missing.log") == 0


def test_a_live_timeline_samples_this_process() -> None:
    async def window() -> MomentTimeline:
        watched = {"generator": [os.getpid()], "gone": [2**22 + 1]}  # above pid_max
        async with MomentTimeline(watched, interval_s=0.01) as tl:
            sum(i * i for i in range(200_000))  # run, so that there is something to count
            await asyncio.sleep(0.05)
        return tl

    tl = asyncio.run(window())
    assert len(tl.rows) >= 3
    assert len(tl.rows[0]) == len(tl.columns) == 8 + (os.cpu_count() or 1)
    assert all(row[2:4] == (0, 0) for row in tl.rows)  # a thread that is not there: nothing
    assert tl.rows[-1][0] > tl.rows[0][0]  # this thread ran meanwhile
    assert all(p > 0 for p in tl.probes)
    assert tl.scans and os.getpid() in tl.scans[0]


def test_tails_are_one_mode_of_their_own_and_print_each_windows_p99() -> None:

    assert parse_args(["--tails", "3"]).tails == 3
    for wrong in (
        ["--tails", "0"],
        ["--tails", "2", "--scale-out"],
        ["--tails", "2", "--soak", "60"],
    ):
        with pytest.raises(SystemExit):
            parse_args(wrong)
    text = tails_table(
        {
            "glia_max_rps": 2400.0,
            "summary": {
                "glia at 0.5 of the maximum": {
                    "p99_ms": [9.8, 43.2],
                    "windows_under_20_ms": 1,
                    "windows": 2,
                }
            },
        }
    )
    assert "glia at 0.5 of the maximum" in text
    assert "1 of 2 under 20 ms: 9.8, 43.2" in text
