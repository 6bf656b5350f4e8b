"""The scale-out's core accounting and how its figures read in the table."""

from __future__ import annotations

from bench.report import evaluate, table
from bench.scaleout import usage
from bench.stats import figure


def test_machine_bound_from_ninety_percent_of_the_cores() -> None:
    cores = {"glia-chat-api": 0.9, "glia-chat-api-2": 0.85, "relay": 0.5, "machine (all)": 1.8}
    assert usage(cores, "glia-chat-api", 2) == {
        "service_cores": 1.75,
        "machine_cores": 1.8,
        "cpus": 2,
        "machine_bound": True,
    }
    assert usage({"machine (all)": 1.79}, "glia-chat-api", 2)["machine_bound"] is False


def test_table_reads_throughput_up_and_cores_as_neither() -> None:
    res = {
        "scale_out": {
            "turns_per_s": figure(130, 120, "turns/s"),
            "chat_machine_cores": figure(1.9, 1.6, "cores"),
        },
    }
    text = table(res, evaluate(res))
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if "|" in line}
    assert rows["scale_out.turns_per_s"].rstrip(" |").endswith("higher")
    assert rows["scale_out.chat_machine_cores"].rstrip(" |").endswith("-")
    assert "target" not in text  # no target applies to a scale-out run
