"""A very small HTTP/1.1 JSON server and client on asyncio streams (stdlib only).

Owns the node's status endpoint transport: `serve(host, port, handler)` where
`handler(method, path, query, body) -> (status, payload)`; payload is JSON-encoded unless it is
`str` (sent as text/plain). `request(host, port, method, path, body, timeout)` is the matching client.
One request per connection (Connection: close) keeps both sides simple and curl-friendly.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

Handler = Callable[[str, str, dict[str, str], Any], Awaitable[tuple[int, Any]]]
MAX_BODY = 16 << 20
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
           500: "Internal Server Error", 503: "Service Unavailable"}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            raise HttpError(400, "body too large")
        raw = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
        body = json.loads(raw) if raw else None
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            status, payload = await handler(method.upper(), parts.path, query, body)
        except HttpError as exc:
            status, payload = exc.status, {"error": exc.message}
        if isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = (json.dumps(payload, default=str) + "\n").encode(), "application/json"
        writer.write(f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError,
            ValueError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def serve(host: str, port: int, handler: Handler) -> asyncio.base_events.Server:
    return await asyncio.start_server(lambda r, w: _handle(r, w, handler), host, port, reuse_address=True)


async def request(host: str, port: int, method: str = "GET", path: str = "/", body: Any = None,
                  timeout: float = 10.0) -> tuple[int, Any]:
    """One HTTP request; returns (status, decoded JSON or text). Raises OSError/TimeoutError."""

    async def go() -> tuple[int, Any]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            data = b"" if body is None else json.dumps(body).encode()
            writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        head, _, payload = raw.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        if not status_line.startswith("HTTP/"):
            raise ConnectionError(f"bad HTTP response from {host}:{port}")
        status = int(status_line.split(" ")[1])
        if b"application/json" in head:
            return status, json.loads(payload) if payload else None
        return status, payload.decode()

    return await asyncio.wait_for(go(), timeout)


async def wait_for_version(changed: asyncio.Condition, version: Callable[[], int], after: int, timeout: float) -> None:
    """Long poll: return once `version()` > `after`, or after `timeout` seconds (at most 30)."""
    timeout = min(timeout, 30.0)
    if version() > after or timeout <= 0:
        return
    try:
        async with changed:
            await asyncio.wait_for(changed.wait_for(lambda: version() > after), timeout)
    except asyncio.TimeoutError:
        pass
