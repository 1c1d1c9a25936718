"""Talking to node processes over their HTTP JSON API, for every kind of fabric (local, netns, compose)."""

from __future__ import annotations

from typing import Any

from ..errors import RunError
from ..httpjson import request


class NodeApi:
    """Mixin: `get`/`post` a node's endpoint; the fabric provides `http_address(name) -> (host, port)`."""

    def http_address(self, name: str) -> tuple[str, int]:  # pragma: no cover - provided by the fabric
        raise NotImplementedError

    async def get(self, name: str, path: str, timeout: float = 10.0) -> Any:
        host, port = self.http_address(name)
        status, payload = await request(host, port, "GET", path, timeout=timeout)
        if status != 200:
            raise RunError(f"GET {path} answered {status}: {payload}", node=name)
        return payload

    async def post(self, name: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        host, port = self.http_address(name)
        status, payload = await request(host, port, "POST", path, body, timeout=timeout)
        if status != 200:
            raise RunError(f"POST {path} answered {status}: {payload}", node=name)
        return payload
