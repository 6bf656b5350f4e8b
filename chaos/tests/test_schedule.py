"""The fault schedule: a pure function of the seed, covering every kind of fault."""

from __future__ import annotations

import itertools

import pytest
from chaos.schedule import GLOBAL_KINDS, LLM_REQUIRED, LOCAL_KINDS, Plan, make_schedule

QUICK = Plan.for_run(True, 75.0, (18.0, 30.0))
FULL = Plan.for_run(False, 150.0, (18.0, 38.0))


def test_a_seed_replays_its_schedule_and_another_seed_differs() -> None:
    assert make_schedule(4711, QUICK) == make_schedule(4711, QUICK)
    assert make_schedule(4711, QUICK) != make_schedule(4712, QUICK)


@pytest.mark.parametrize("seed", range(40))
def test_every_kind_of_fault_is_in_every_schedule(seed: int) -> None:
    quick, full = make_schedule(seed, QUICK), make_schedule(seed, FULL)
    assert {f.kind for f in quick} == set(LOCAL_KINDS)
    assert {f.kind for f in full} == set(LOCAL_KINDS) | set(GLOBAL_KINDS)
    for schedule in (quick, full):
        modes = {f.mode for f in schedule if f.kind == "llm"}
        assert all(modes & set(group) for group in LLM_REQUIRED)


@pytest.mark.parametrize("seed", range(40))
def test_faults_fit_the_window_and_do_not_fight(seed: int) -> None:
    for plan, schedule in ((QUICK, make_schedule(seed, QUICK)), (FULL, make_schedule(seed, FULL))):
        assert schedule == sorted(schedule)
        for f in schedule:
            assert plan.start_s <= f.at_s and f.at_s + f.duration_s <= plan.end_s + 0.1
            if f.kind == "pause":
                assert plan.pause_s[0] <= f.duration_s <= plan.pause_s[1]
        # One LLM mode per target at a time: the fake has one mode per target.
        for target in ("chat", "extraction"):
            spans = sorted(
                (f.at_s, f.at_s + f.duration_s)
                for f in schedule
                if f.kind == "llm" and f.target in (target, "all")
            )
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
        # The faults that hit everyone on the machine: capped, and one at a time.
        global_ = sorted(
            (f.at_s, f.at_s + f.duration_s) for f in schedule if f.kind in GLOBAL_KINDS
        )
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(global_))
        assert sum(f.kind == "pg_restart" for f in schedule) <= 1
        assert sum(f.kind == "mq_stop" for f in schedule) <= 2


def test_quick_schedules_touch_nothing_outside_the_run() -> None:
    for seed in range(100):
        assert not {f.kind for f in make_schedule(seed, QUICK)} & set(GLOBAL_KINDS)


def test_faults_overlap() -> None:
    schedule = make_schedule(1, QUICK)
    overlapping = sum(1 for a, b in itertools.pairwise(schedule) if b.at_s < a.at_s + a.duration_s)
    assert overlapping >= 3
