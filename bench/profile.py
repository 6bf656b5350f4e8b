"""Optional py-spy profiles of the Glia process during a measured window (``--profile``).

py-spy is not a dependency of the workspace: install it apart, e.g.
``pip install --target /tmp/pyspy py-spy`` and pass ``--py-spy /tmp/pyspy/bin/py-spy``
(found on PATH or there by default). It samples at 100 Hz without pausing the target
(``--nonblocking``); still, figures of a profiled run are not the reference figures.

The collapsed stacks are summarized as: self time by package (where the CPU went),
inclusive time by package (how much ran under a library's frames, e.g. SQLAlchemy or
OpenTelemetry), the top frames by self time and the top frames by inclusive time.
Self time of a coroutine frame that awaits C code (asyncpg's protocol, uvloop) includes
that C code: py-spy samples Python frames only. SQLAlchemy's greenlets start new stacks,
so inclusive time of frames above ``greenlet_spawn`` is undercounted. Helper threads
blocked on a lock (``Condition.wait``) look busy to py-spy: those samples are excluded
(and counted). The main thread idle in the event loop shows as ``Runner.run``: compare
closed-loop (saturated) profiles, where it is small.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
from collections import Counter
from pathlib import Path
from typing import Any

from bench.cpu import TICK, _proc_ticks

DEFAULT_PATHS = ("/tmp/pyspy/bin/py-spy",)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def find_py_spy(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    found = shutil.which("py-spy")
    if found:
        return found
    return next((p for p in DEFAULT_PATHS if Path(p).exists()), None)


def _package(file: str) -> str:
    """py-spy names files relative to their sys.path entry: ``asyncpg/connection.py``
    -> ``asyncpg``; a single-file module (``threading.py``) -> ``threading``."""
    if file.startswith("<"):
        # e.g. "<sqlalchemy generated warned() wrapper for ...>"
        words = file.strip("<>").split()
        return words[0] if words else file
    path = file.replace("\\", "/")
    if "/" in path:
        if path.startswith("/"):
            path = path.rsplit("/", 1)[-1]
        else:
            return path.split("/", 1)[0]
    return path.removesuffix(".py")


# py-spy drops the root of namespace packages ("opentelemetry/trace/x.py" -> "trace/x.py").
GROUPS: dict[str, str] = {
    "asyncpg": "asyncpg (driver, incl. its C protocol)",
    "sqlalchemy": "SQLAlchemy",
    "greenlet": "SQLAlchemy",
    "trace": "OpenTelemetry",
    "sdk": "OpenTelemetry",
    "asgi": "OpenTelemetry",
    "context": "OpenTelemetry",
    "propagate": "OpenTelemetry",
    "_decorator": "OpenTelemetry",
    "_semconv": "OpenTelemetry",
    "util": "OpenTelemetry",
    "instrumentation": "OpenTelemetry",
    "semconv": "OpenTelemetry",
    "prometheus_client": "metrics (prometheus_client)",
    "structlog": "logging",
    "logging": "logging",
    "fastapi": "FastAPI",
    "starlette": "Starlette/anyio",
    "anyio": "Starlette/anyio",
    "uvicorn": "uvicorn",
    "httptools": "uvicorn",
    "h11": "uvicorn",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
    "jwt": "JWT (PyJWT)",
    "openai": "openai SDK (+httpx)",
    "httpx": "openai SDK (+httpx)",
    "httpx2": "openai SDK (+httpx)",
    "httpcore": "openai SDK (+httpx)",
    "httpcore2": "openai SDK (+httpx)",
    "faststream": "FastStream",
    "fast_depends": "FastStream",
    "aio_pika": "aio-pika/aiormq",
    "aiormq": "aio-pika/aiormq",
    "pamqp": "aio-pika/aiormq",
    "asyncio": "event loop (asyncio/uvloop)",
    "runners": "event loop (asyncio/uvloop)",
    "threading": "threading",
    "queue": "threading",
}


# Leaves that are helper threads blocked on a lock (py-spy cannot tell they are idle).
IDLE_LEAVES = (
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "Thread._wait_for_tstate_lock (threading.py",
)


def _group(package: str) -> str:
    if package.startswith("glia_"):
        return f"Glia code ({package})"
    return GROUPS.get(package, "other")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    return f"{m['func']} ({m['file']})" if m else frame


def summarize(raw: Path, top: int = 20) -> dict[str, Any]:
    self_frames: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    packages_inclusive: Counter[str] = Counter()
    total = 0
    idle = 0
    try:
        lines = raw.read_text().splitlines()
    except OSError:
        return {"samples": 0, "error": "no profile written"}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        leaf = frames[-1]
        if leaf.startswith(IDLE_LEAVES):
            idle += n
            continue
        total += n
        self_frames[_short(leaf)] += n
        m = _FRAME.match(leaf)
        package = _package(m["file"]) if m else leaf
        packages[package] += n
        groups[_group(package)] += n
        for f in {_short(f) for f in frames}:
            inclusive[f] += n
        matched = (_FRAME.match(f) for f in frames)
        for pkg in {_package(m["file"]) for m in matched if m}:
            packages_inclusive[pkg] += n

    def pct(c: Counter[str], n: int = top) -> list[list[Any]]:
        return [[k, round(100.0 * v / total, 1)] for k, v in c.most_common(n)] if total else []

    return {
        "samples": total,
        "idle_thread_samples_excluded": idle,
        "self_by_group_pct": pct(groups, 40),
        "self_by_package_pct": pct(packages),
        "inclusive_by_package_pct": pct(packages_inclusive, 30),
        "self_top_pct": pct(self_frames),
        "inclusive_top_pct": pct(inclusive),
    }


def _cpu_seconds(pid: int) -> float:
    return (_proc_ticks(pid) or 0) / TICK


class Profiler:
    def __init__(self, py_spy: str | None, out_dir: Path) -> None:
        self.py_spy = py_spy
        self.out_dir = out_dir
        self.last_cpu_s = 0.0  # CPU used by the last py-spy run (not "other work")

    @contextlib.asynccontextmanager
    async def record(self, label: str, pid: int | None, sink: dict[str, Any]) -> Any:
        if self.py_spy is None or pid is None:
            yield
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / (re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") + ".txt")
        proc = await asyncio.create_subprocess_exec(
            self.py_spy,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
            "--function",
            "--rate",
            "100",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            self.last_cpu_s = _cpu_seconds(proc.pid)
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            sink[label] = {"file": str(out), **summarize(out)}
