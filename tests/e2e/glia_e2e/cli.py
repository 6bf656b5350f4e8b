"""Run the ``glia`` command-line client as a user would: the installed console script,
configured only by its environment."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glia_e2e.processes import BIN, base_env


@dataclass
class Cli:
    chat_url: str
    cards_url: str
    config_dir: Path
    token: str | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = base_env(
            {
                "GLIA_CHAT_URL": self.chat_url,
                "GLIA_CARDS_URL": self.cards_url,
                "GLIA_CONFIG_DIR": str(self.config_dir),
                "COLUMNS": "200",
            }
        )
        env.pop("GLIA_LOG_FORMAT", None)
        if self.token is not None:
            env["GLIA_TOKEN"] = self.token
        return {**env, **extra}

    def run(
        self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "glia"), *args],
            input=input,
            capture_output=True,
            text=True,
            env={**self.env(), **(env or {})},
            timeout=120,
        )

    def json(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        """The client running in the background, its stdout read line by line."""
        return await asyncio.create_subprocess_exec(
            str(BIN / "glia"),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(),
        )


async def read_json_line(process: asyncio.subprocess.Process, timeout_s: float = 60) -> Any:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout_s)
    if not line:
        stderr = await process.stderr.read() if process.stderr else b""
        raise AssertionError(f"glia ended early: {stderr.decode(errors='replace')}")
    return json.loads(line)
