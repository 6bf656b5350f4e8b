"""Drive a fake LLM over HTTP, e.g. one started as a subprocess with ``glia-fake-llm``."""

from __future__ import annotations

import time
from typing import Any, cast

import httpx

from glia_fakes.llm.faults import Kind, TargetName, check_config


class FakeLLMControl:
    """Drive a FakeLLM over HTTP, e.g. one started as a subprocess with ``glia-fake-llm``.

    ``base_url`` may be the server root or its ``/v1`` URL. Plain methods are
    synchronous; the ``a``-prefixed ones are their async twins (use those when the
    server runs in the same event loop, or the blocking call would deadlock it).
    """

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        root = base_url.rstrip("/")
        self.root = root.removesuffix("/v1")
        self.timeout = timeout

    @staticmethod
    def _config_body(target: TargetName, fields: dict[str, Any]) -> dict[str, Any]:
        body = {"target": target, **fields}
        check_config(body)
        return body

    @staticmethod
    def _query(kind: Kind | None) -> dict[str, str]:
        return {} if kind is None else {"kind": kind}

    def configure(self, target: TargetName = "all", **fields: Any) -> dict[str, Any]:
        """Same fields as :meth:`FakeLLM.configure`; returns the resulting config."""
        with httpx.Client(base_url=self.root, timeout=self.timeout) as client:
            r = client.post("/_fake/config", json=self._config_body(target, fields))
            r.raise_for_status()
            return cast(dict[str, Any], r.json())

    def reset(self) -> None:
        with httpx.Client(base_url=self.root, timeout=self.timeout) as client:
            client.post("/_fake/reset").raise_for_status()

    def requests(self, kind: Kind | None = None) -> list[dict[str, Any]]:
        with httpx.Client(base_url=self.root, timeout=self.timeout) as client:
            r = client.get("/_fake/requests", params=self._query(kind))
            r.raise_for_status()
            return cast(list[dict[str, Any]], r.json())

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll ``/_fake/health`` until the subprocess answers (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with httpx.Client(base_url=self.root, timeout=1.0) as client:
                    if client.get("/_fake/health").status_code == 200:
                        return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake LLM at {self.root} not ready after {timeout}s")
            time.sleep(0.05)

    async def aconfigure(self, target: TargetName = "all", **fields: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.root, timeout=self.timeout) as client:
            r = await client.post("/_fake/config", json=self._config_body(target, fields))
            r.raise_for_status()
            return cast(dict[str, Any], r.json())

    async def areset(self) -> None:
        async with httpx.AsyncClient(base_url=self.root, timeout=self.timeout) as client:
            (await client.post("/_fake/reset")).raise_for_status()

    async def arequests(self, kind: Kind | None = None) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.root, timeout=self.timeout) as client:
            r = await client.get("/_fake/requests", params=self._query(kind))
            r.raise_for_status()
            return cast(list[dict[str, Any]], r.json())
