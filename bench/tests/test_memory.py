"""The memory figures: /proc's status read in MiB, each service next to its baseline."""

from __future__ import annotations

from bench.memory import figures, parse_status
from bench.report import evaluate, table
from bench.stats import figure

STATUS = """Name:\tpython
VmPeak:\t  400000 kB
VmHWM:\t  153600 kB
VmRSS:\t  102400 kB
Threads:\t4
"""


def test_status_is_read_in_mib() -> None:
    assert parse_status(STATUS) == {"rss_mb": 100.0, "hwm_mb": 150.0}
    # Zombies and kernel threads have no VmRSS line.
    assert parse_status("Name:\tkworker\nState:\tI (idle)\n") is None


def test_memory_figures_pair_each_service_with_its_baseline() -> None:
    details = {
        "idle": {"glia-chat-api": {"rss_mb": 90.0, "hwm_mb": 90.0}, "relay": {"rss_mb": 60.0}},
        "windows": {
            "chat closed glia": {"glia-chat-api": {"rss_max_mb": 120.0, "hwm_mb": 125.0}},
            "chat closed relay": {"relay": {"rss_max_mb": 80.0, "hwm_mb": 80.0}},
            "cards closed glia 200": {"glia-card-query": {"rss_max_mb": 100.0, "hwm_mb": 100}},
            "cards closed glia 304": {"glia-card-query": {"rss_max_mb": 104.0, "hwm_mb": 106}},
        },
    }
    got = figures(details)
    assert got["chat_api_idle_mb"] == figure(90.0, 60.0, "MB")
    assert got["chat_api_load_mb"] == figure(120.0, 80.0, "MB")
    assert got["chat_api_peak_mb"] == figure(125.0, 80.0, "MB")
    # The maximum over both card windows; no baseline window ran.
    assert got["card_query_load_mb"] == figure(104.0, None, "MB")
    assert got["card_query_peak_mb"]["value"] == 106
    # The extractor's part did not run: no figure rather than an empty one.
    assert not any(k.startswith("extractor") for k in got)


def test_table_reads_memory_down() -> None:
    res = {"memory": {"chat_api_load_mb": figure(120, 80, "MB")}}
    text = table(res, evaluate(res))
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if "|" in line}
    assert rows["memory.chat_api_load_mb"].rstrip(" |").endswith("lower")
