"""The fault schedule: a pure function of the seed and the plan, so a seed replays it.

Every kind of fault the run promises appears at least once (at a random time, on a
random target); more are drawn at random on top, so faults overlap. Faults that touch
everyone on the machine (a PostgreSQL restart, RabbitMQ ``stop_app``) only exist in the
full run; the quick run (CI) stages its outages through the fault proxies.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

SERVICES = ("chat-0", "chat-1", "extractor-0", "extractor-1", "cards-0")
# Every service holds a broker connection (card query too, for its readiness).
AMQP_CLIENTS = SERVICES
ALL = "*"

LLM_ERRORS = ("http_401", "http_403", "http_429", "http_500")
LLM_BAD_CONTENT = ("non_json_content", "schema_invalid")
# One of each group is in every schedule: errors, hangs, garbage, slow streams.
LLM_REQUIRED = (
    LLM_ERRORS,
    ("hang",),
    ("hang_mid_stream",),
    ("reset",),
    ("garbage",),
    LLM_BAD_CONTENT,
    ("slow",),
)
LLM_MODES = (*LLM_ERRORS, "hang", "hang_mid_stream", "reset", "garbage", *LLM_BAD_CONTENT, "slow")
LLM_TARGETS = ("chat", "extraction", "all")

LOCAL_KINDS = ("kill", "pause", "pg_cut", "pg_stall", "mq_cut", "mq_stall", "llm")
GLOBAL_KINDS = ("mq_stop", "pg_restart")
# Relative odds of the extra faults drawn on top of the required ones.
EXTRA_WEIGHTS = {
    "kill": 4,
    "pause": 1,
    "pg_cut": 2,
    "pg_stall": 2,
    "mq_cut": 2,
    "mq_stall": 1,
    "llm": 5,
    "mq_stop": 1,
}
# At most this many of a kind in one run (a pause is long; the global ones hurt others).
MAX_OF = {"pause": 3, "mq_stop": 2, "pg_restart": 1}


@dataclass(frozen=True)
class Plan:
    """What a schedule is drawn for."""

    quick: bool
    start_s: float  # no fault before (the load warms up)
    end_s: float  # every fault is healed by then
    mean_gap_s: float  # mean time between extra faults
    pause_s: tuple[float, float]  # past the turn heartbeat, AMQP heartbeat and lock timeouts

    @classmethod
    def for_run(cls, quick: bool, duration_s: float, pause_s: tuple[float, float]) -> Plan:
        return cls(
            quick=quick,
            start_s=4.0,
            end_s=duration_s - 4.0,
            mean_gap_s=3.0 if quick else 3.5,
            pause_s=pause_s,
        )


@dataclass(frozen=True, order=True)
class Fault:
    at_s: float
    kind: str
    target: str  # a service, ALL, or for llm: chat | extraction | all
    duration_s: float  # until healed (kill: until restarted)
    mode: str = ""  # llm only
    chunk_delay_s: float = field(default=0.0, compare=False)

    def describe(self) -> str:
        what = {
            "kill": f"kill -9 {self.target}, restart after {self.duration_s:.1f} s",
            "pause": f"SIGSTOP {self.target} for {self.duration_s:.1f} s",
            "pg_cut": f"cut PostgreSQL links of {self._who()} for {self.duration_s:.1f} s",
            "pg_stall": f"stall PostgreSQL links of {self._who()} for {self.duration_s:.1f} s",
            "mq_cut": f"cut RabbitMQ links of {self._who()} for {self.duration_s:.1f} s",
            "mq_stall": f"stall RabbitMQ links of {self._who()} for {self.duration_s:.1f} s",
            "mq_stop": f"rabbitmqctl stop_app for {self.duration_s:.1f} s",
            "pg_restart": "restart PostgreSQL",
            "llm": f"LLM {self.target} {self.mode} for {self.duration_s:.1f} s",
        }[self.kind]
        return f"t={self.at_s:6.1f}s  {what}"

    def _who(self) -> str:
        return "every service" if self.target == ALL else self.target

    def to_json(self) -> dict[str, object]:
        return {
            "at_s": self.at_s,
            "kind": self.kind,
            "target": self.target,
            "duration_s": self.duration_s,
            "mode": self.mode,
            "chunk_delay_s": self.chunk_delay_s,
        }


def _draw(rng: random.Random, kind: str, at_s: float, plan: Plan, mode: str = "") -> Fault:
    u = rng.uniform
    if kind == "kill":
        return Fault(at_s, kind, rng.choice(SERVICES), round(u(0.5, 4.0), 1))
    if kind == "pause":
        return Fault(at_s, kind, rng.choice(SERVICES), round(u(*plan.pause_s), 1))
    if kind in ("pg_cut", "pg_stall"):
        target = ALL if rng.random() < 0.35 else rng.choice(SERVICES)
        return Fault(at_s, kind, target, round(u(1.0, 6.0 if kind == "pg_cut" else 8.0), 1))
    if kind in ("mq_cut", "mq_stall"):
        target = ALL if rng.random() < 0.35 else rng.choice(AMQP_CLIENTS)
        return Fault(at_s, kind, target, round(u(2.0, 10.0), 1))
    if kind == "mq_stop":
        return Fault(at_s, kind, ALL, round(u(4.0, 12.0), 1))
    if kind == "pg_restart":
        return Fault(at_s, kind, ALL, 0.0)
    if kind == "llm":
        mode = mode or rng.choice(LLM_MODES)
        # A slow stream is a chat matter; everything else may hit either kind of call.
        target = "chat" if mode == "slow" else rng.choice(LLM_TARGETS)
        chunk_delay = round(u(0.1, 0.4), 2) if mode == "slow" else 0.0
        return Fault(at_s, kind, target, round(u(2.0, 8.0), 1), mode, chunk_delay)
    raise ValueError(f"unknown fault kind {kind!r}")


def make_schedule(seed: int, plan: Plan) -> list[Fault]:
    rng = random.Random(seed)
    kinds = list(LOCAL_KINDS) + ([] if plan.quick else list(GLOBAL_KINDS))
    span = plan.end_s - plan.start_s
    required: list[Fault] = []
    for kind in kinds:
        if kind == "llm":
            for group in LLM_REQUIRED:
                at = plan.start_s + rng.uniform(0, span)
                required.append(_draw(rng, kind, at, plan, rng.choice(group)))
        else:
            required.append(_draw(rng, kind, plan.start_s + rng.uniform(0, span), plan))
    extras: list[Fault] = []
    at = plan.start_s
    names = [k for k in EXTRA_WEIGHTS if k in kinds]
    weights = [EXTRA_WEIGHTS[k] for k in names]
    while True:
        at += rng.expovariate(1.0 / plan.mean_gap_s)
        if at >= plan.end_s:
            break
        extras.append(_draw(rng, rng.choices(names, weights)[0], at, plan))
    fit = _Fitter(plan)
    for f in sorted(required):
        fit.place(f)
    for f in sorted(extras):
        fit.place(f)
    return sorted(fit.out)


class _Fitter:
    """Keeps each fault inside the window, the capped kinds under their cap, LLM faults
    on one target apart (the fake has one mode per target) and the global ones apart."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.out: list[Fault] = []
        self.busy: dict[str, list[tuple[float, float]]] = {"chat": [], "extraction": [], "g": []}

    def place(self, f: Fault) -> bool:
        if sum(1 for o in self.out if o.kind == f.kind) >= MAX_OF.get(f.kind, 10**6):
            return False
        lanes: tuple[str, ...] = ()
        length = f.duration_s
        if f.kind == "llm":
            lanes = ("chat", "extraction") if f.target == "all" else (f.target,)
        elif f.kind in GLOBAL_KINDS:
            lanes = ("g",)
            length = max(f.duration_s, 8.0) + 2.0  # a restart takes seconds of its own
        at = self._slot(f.at_s, length, lanes)
        if at is None:
            return False
        for lane in lanes:
            self.busy[lane].append((at, at + length))
        self.out.append(
            Fault(round(at, 1), f.kind, f.target, f.duration_s, f.mode, f.chunk_delay_s)
        )
        return True

    def _slot(self, at: float, length: float, lanes: tuple[str, ...]) -> float | None:
        """The first start at or after ``at`` (else from the window's start) where the
        fault fits in the window and in none of its lanes' busy intervals."""
        last = self.plan.end_s - length
        taken = sorted(iv for lane in lanes for iv in self.busy[lane])
        for begin in (min(at, last), self.plan.start_s):
            t = begin
            for lo, hi in taken:
                if t + length <= lo:
                    break
                if t < hi:
                    t = hi + 0.1
            if self.plan.start_s <= t <= last:
                return t
        return None
