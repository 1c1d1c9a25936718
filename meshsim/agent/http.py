"""The node's control API transport: a small HTTP/1.1 JSON server and client on asyncio streams, with h11
(sans-IO HTTP/1.1, RFC 9110/9112) doing all parsing and framing. Over 400 lines mostly for the docstrings that
give each request rule its reason.

Owns `serve(host, port, handler, token=...)`, `request(host, port, method, path, body, token=...)`,
`HttpError`, `wait_for_version` (the long poll) and `new_token()`. It does not own routing (the node agents'
`handle_http`) nor where the per-run token lives (the runner writes it to a file only the run's user can read).

The handler is `await handler(method, path, query, body) -> (status, payload)`: `body` is the request's JSON
object or None; `payload` is sent as JSON, or as text/plain when it is a `str`. `raise HttpError(status, msg)`
for a 4xx; any other exception becomes a 500 `{"error": ...}` and one `http_handler_failed` log event.

Why each request rule (all answered with a JSON `{"error": ...}` and `Connection: close`, never a dropped
connection or a traceback), in the order they are checked:

- Parse errors (request line, headers, Content-Length) -> h11's 400, a head over 16 KiB -> 431.
- Methods other than GET and POST -> 405. This also fails a browser's CORS preflight (OPTIONS).
- `Host` must name this server (the bound address, the names given to `serve`, `localhost` on a loopback
  bind, any IP literal on a wildcard bind), else 421: a DNS-rebinding page reaches 127.x under its own
  host name, and the check makes every such request fail even for GETs.
- A POST carrying `Origin` -> 403: browsers send Origin on every POST, meshsim's clients and curl never do,
  so no web page can drive a node, whatever it guesses.
- Every POST must carry `Authorization: Bearer <token>` (the per-run secret, compared in constant time),
  else 401; a server started with `token=None` accepts no POST at all. GETs need no token, so
  `curl http://127.x:9179/status` keeps working (so a handler must change nothing on a GET).
- `Transfer-Encoding` -> 411 (bodies are sent with Content-Length, so a body's size is known before it is
  read and request smuggling through framing ambiguity has nothing to work with).
- A declared body over `max_body` -> 413 before a byte of it is read.
- A POST, or any request with a body, must say `Content-Type: application/json`, else 415: that is not a
  CORS "simple request" type, so a browser cannot send it cross-site without a preflight (which fails).
- The head and body must arrive within `deadline` seconds of the connection (10 s), else 408 (slowloris).
- The body must be JSON (no NaN/Infinity) and an object, else 400. Only then is the handler called.
- Past `max_connections` open connections (256) a new one gets 503 at once, before it is read.

`MAX_BODY` (256 KiB): the largest legitimate bodies are POST /config, measured with meshsim's own model
(`node_configs` + `nodeapi.config_body`): 103,804 bytes for a route reflector of a 2 RR + 498 node cluster,
106,295 bytes for a node of a 500-node full mesh (~210 bytes a peer); POST /local is ~200 bytes. 256 KiB is
2.4x the largest, ~1,200 peers; pass `max_body` for bigger clusters.

One request per connection (the reply says `Connection: close`), which keeps both sides simple. A handler may
await as long as it likes (the `/state` long poll waits up to 30 s); the deadline covers reading only.
Server, client and long poll stay in one module (~450 lines) so that both ends of the wire read side by side.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
import secrets
from contextlib import suppress
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Iterable, NoReturn
from urllib.parse import parse_qsl, urlsplit

import h11
import structlog

JsonObject = dict[str, Any]
Handler = Callable[[str, str, dict[str, str], JsonObject | None], Awaitable[tuple[int, Any]]]

MAX_BODY = 256 << 10  # see the module docstring for the measurement behind it
MAX_HEAD = 16 << 10  # request line + headers
MAX_REPLY = 64 << 20  # the client's cap on a reply body
DEADLINE = 10.0  # seconds to receive a request's head and body; also to send a reply
MAX_CONNECTIONS = 256  # per server
LINGER = 1.0  # after an early reply, seconds spent discarding what the client still sends
CHUNK = 64 << 10
METHODS = (b"GET", b"POST")
_MESSAGE_LIMIT = 300  # characters of an error message echoed back
_LIBRARY = (os.path.dirname(os.path.dirname(json.__file__)), os.path.dirname(os.path.dirname(h11.__file__)))
_LOG = structlog.get_logger(component="http")  # lazy: follows a later meshsim.logs.configure()


class HttpError(Exception):
    """An HTTP error reply: `raise HttpError(404, "no peer 'x'")` answers 404 `{"error": "no peer 'x'"}`."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"HttpError status must be 4xx or 5xx, got {status}")
        super().__init__(message)
        self.status = status
        self.message = message[:_MESSAGE_LIMIT]
        self.headers = headers


def new_token() -> str:
    """A fresh per-run secret (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


# -- server ------------------------------------------------------------------------------------------------

class _Exchange:
    """One connection seen through h11: events in, replies out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.method = b""  # once the head is in; a reply to HEAD carries no body

    async def next_event(self) -> Any:
        """The next h11 event, reading from the socket as needed; raises h11.RemoteProtocolError."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.reader.read(CHUNK))

    def can_reply(self) -> bool:
        return self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)

    def peer(self) -> str:
        name = self.writer.get_extra_info("peername")
        return f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name)

    async def reply(self, status: int, data: bytes, content_type: str,
                    extra: tuple[tuple[str, str], ...] = ()) -> None:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(data))), ("Connection", "close"),
                   ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"), *extra]
        out = self.conn.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
        out += self.conn.send(h11.Data(data=data)) if data and self.method != b"HEAD" else b""
        out += self.conn.send(h11.EndOfMessage())
        self.writer.write(out)
        await self.writer.drain()

    async def reply_error(self, status: int, message: str, extra: tuple[tuple[str, str], ...] = ()) -> None:
        await self.reply(status, _json({"error": message[:_MESSAGE_LIMIT]}), "application/json", extra)

    async def close(self) -> None:
        """Half-close, discard what the client still sends until it closes too (at most LINGER seconds), then
        close: a socket closed with unread data answers with a reset, which can destroy the reply in flight
        (an early 413 or 401 while the client is still sending its body)."""
        writer = self.writer
        try:
            if writer.can_write_eof():
                writer.write_eof()
                async with asyncio.timeout(LINGER):
                    while await self.reader.read(CHUNK):
                        pass
            writer.close()
            async with asyncio.timeout(DEADLINE):
                await writer.wait_closed()
        except (TimeoutError, OSError):
            self.abort()

    def abort(self) -> None:
        self.writer.transport.abort()


class _Server:
    """The per-listener policy (token, host names, limits) and its connection count (one per node listener,
    hundreds per worker process: slots keep it small)."""

    __slots__ = ("handler", "token", "hosts", "any_ip", "max_body", "max_connections", "deadline", "log", "active")

    def __init__(self, host: str, handler: Handler, token: str | None, names: Iterable[str], max_body: int,
                 max_connections: int, deadline: float, log: structlog.types.FilteringBoundLogger) -> None:
        if token is not None and (not token.isascii() or not token.isprintable() or not token.strip()
                                  or " " in token):
            raise ValueError("an API token must be non-empty printable ASCII without spaces")
        self.handler = handler
        self.token = None if token is None else token.encode("ascii")
        bound = _ip(host)
        loopback = ("localhost",) if bound is not None and bound.is_loopback else ()
        self.hosts = frozenset((_host_name(host), *loopback, *(_host_name(n) for n in names)))
        self.any_ip = host in ("", "0.0.0.0", "::") or (bound is not None and bound.is_unspecified)
        self.max_body = max_body
        self.max_connections = max_connections
        self.deadline = deadline
        self.log = log
        self.active = 0

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ex = _Exchange(reader, writer)
        try:
            if self.active >= self.max_connections:
                self.log.debug("http_request_rejected", status=503, reason="too many connections", peer=ex.peer())
                async with asyncio.timeout(DEADLINE):
                    await ex.reply_error(503, f"busy: {self.active} connections open")
            else:
                self.active += 1
                try:
                    await self.exchange(ex)
                finally:
                    self.active -= 1
            await ex.close()
        except (TimeoutError, OSError):  # the client went away or does not read its reply
            ex.abort()
        except asyncio.CancelledError:  # the server is shutting down; 3.11's start_server would log a
            ex.abort()                  # cancelled connection task as an unhandled exception
        except Exception as exc:  # a bug here must not become asyncio's traceback in the node log
            self.log.error("http_connection_failed", error=_describe(exc), where=_where(exc), peer=ex.peer())
            ex.abort()

    async def exchange(self, ex: _Exchange) -> None:
        try:
            async with asyncio.timeout(self.deadline):
                read = await self.read_request(ex)
        except HttpError as exc:
            status, message, extra = exc.status, exc.message, exc.headers
        except h11.RemoteProtocolError as exc:
            hint = exc.error_status_hint
            status = hint if 400 <= hint < 500 else 400  # h11 says 501 for an unknown transfer coding
            message, extra = f"malformed request: {exc}", ()
        except TimeoutError:
            status, message, extra = 408, f"request not received within {self.deadline:g}s", ()
        else:
            if read is not None:
                await self.answer(ex, *read)
            return
        self.log.debug("http_request_rejected", status=status, reason=message, peer=ex.peer())
        if ex.can_reply():
            async with asyncio.timeout(DEADLINE):
                await ex.reply_error(status, message, extra)

    async def read_request(self, ex: _Exchange) -> tuple[h11.Request, JsonObject | None] | None:
        """The request and its JSON body, or None if the client left without sending one."""
        event = await ex.next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        assert isinstance(event, h11.Request), event
        request, ex.method = event, event.method
        length = self.check(request)
        if ex.conn.they_are_waiting_for_100_continue:
            ex.writer.write(ex.conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = bytearray()
        while not isinstance(event := await ex.next_event(), h11.EndOfMessage):
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > length:  # cannot happen under Content-Length framing; kept as the cap's guard
                    raise HttpError(413, f"body longer than its Content-Length {length}")
        return request, _decode(bytes(body))

    def check(self, request: h11.Request) -> int:
        """Everything decided by the head, cheapest and most revealing last; returns the body length."""
        size = len(request.method) + len(request.target) + 12 + sum(len(n) + len(v) + 4 for n, v in request.headers)
        if size > MAX_HEAD:  # h11 caps only a head still incomplete; one read can bring a whole larger one
            raise HttpError(431, f"request head of {size} bytes is over {MAX_HEAD}")
        headers: dict[bytes, list[bytes]] = {}
        for name, value in request.headers:
            headers.setdefault(name, []).append(value)
        if request.method not in METHODS:
            raise HttpError(405, f"method {request.method.decode('ascii', 'replace')} not allowed",
                            (("Allow", "GET, POST"),))
        hosts = headers.get(b"host", [])
        if len(hosts) != 1:
            raise HttpError(400, "a request needs exactly one Host header")
        if not self.host_ok(hosts[0].decode("latin-1")):
            raise HttpError(421, "Host does not name this server")
        post = request.method == b"POST"
        if post and b"origin" in headers:
            raise HttpError(403, "requests from web pages (with Origin) may not POST")
        if post and not self.token_ok(headers.get(b"authorization", [])):
            raise HttpError(401, "POST needs Authorization: Bearer <the run's API token>"
                            if self.token is not None else "this server accepts no POST (started without a token)",
                            (("WWW-Authenticate", 'Bearer realm="meshsim"'),))
        if b"transfer-encoding" in headers:
            raise HttpError(411, "send the body with Content-Length (no Transfer-Encoding)")
        length = int(headers.get(b"content-length", [b"0"])[0])
        if length > self.max_body:
            raise HttpError(413, f"body of {length} bytes is over this server's limit of {self.max_body}")
        if post or length:
            media = headers.get(b"content-type", [b""])[0].split(b";")[0].strip().lower()
            if media != b"application/json":
                raise HttpError(415, "the body must be Content-Type: application/json")
        return length

    def host_ok(self, value: str) -> bool:
        name = _host_name(value)
        return name in self.hosts or (self.any_ip and _ip(name) is not None)

    def token_ok(self, values: list[bytes]) -> bool:
        if self.token is None or len(values) != 1:
            return False
        scheme, _, credentials = values[0].strip().partition(b" ")
        ok = hmac.compare_digest(credentials.strip(), self.token)
        return ok and scheme.lower() == b"bearer"

    async def answer(self, ex: _Exchange, request: h11.Request, body: JsonObject | None) -> None:
        method, target = request.method.decode("ascii"), request.target.decode("ascii")
        extra: tuple[tuple[str, str], ...] = ()
        try:
            path, query = _split_target(target)
            status, payload = await self.handler(method, path, query, body)
            if not isinstance(status, int) or not 200 <= status <= 599:
                raise TypeError(f"handler returned status {status!r}")
            if isinstance(payload, str):
                data, ctype = payload.encode(), "text/plain; charset=utf-8"
            else:
                data, ctype = _json(payload), "application/json"
        except HttpError as exc:
            status, data, ctype, extra = exc.status, _json({"error": exc.message}), "application/json", exc.headers
        except Exception as exc:
            self.log.error("http_handler_failed", method=method, path=target[:200], error=_describe(exc),
                           where=_where(exc), peer=ex.peer())
            status, data, ctype = 500, _json({"error": f"internal error: {_describe(exc)}"}), "application/json"
        async with asyncio.timeout(DEADLINE):
            await ex.reply(status, data, ctype, extra)


async def serve(host: str, port: int, handler: Handler, *, token: str | None, names: Iterable[str] = (),
                max_body: int = MAX_BODY, max_connections: int = MAX_CONNECTIONS, deadline: float = DEADLINE,
                log: structlog.types.FilteringBoundLogger | None = None) -> asyncio.Server:
    """Listen on host:port and answer each request with `handler` (see the module docstring for the rules).
    `token`: the per-run secret every POST must carry (None: no POST is accepted). `names`: more values the
    Host header may carry (the node's name, its declared address). `log`: where `http_handler_failed` goes."""
    server = _Server(host, handler, token, names, max_body, max_connections, deadline,
                     log if log is not None else _LOG)
    return await asyncio.start_server(server.connection, host, port, reuse_address=True)


# -- client ------------------------------------------------------------------------------------------------

async def request(host: str, port: int, method: str = "GET", path: str = "/", body: Any = None, *,
                  token: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    """One request; returns (status, the reply's JSON, or its text unless it says application/json).
    Raises OSError when the server cannot be reached, TimeoutError after `timeout` seconds, ConnectionError
    for a reply that is not HTTP or not the JSON it claims, ValueError for a path h11 will not send."""
    where = f"{host}:{port}"

    conn = h11.Connection(h11.CLIENT)
    data = b"" if body is None else json.dumps(body).encode()
    headers = [("Host", f"[{host}]:{port}" if ":" in host else where), ("Connection", "close"),
               ("Content-Length", str(len(data))), ("Accept", "application/json")]
    if method != "GET" or data:
        headers.append(("Content-Type", "application/json"))
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    try:
        out = conn.send(h11.Request(method=method, target=path, headers=headers))
    except h11.LocalProtocolError as exc:
        raise ValueError(f"cannot send {method} {path!r}: {exc}") from None
    out += (conn.send(h11.Data(data=data)) if data else b"") + conn.send(h11.EndOfMessage())

    async def exchange() -> tuple[int, Any]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(out)
            with suppress(ConnectionError):  # a server may answer (413, 401) and close before reading it all
                await writer.drain()
            return await _read_reply(conn, reader, where)
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()

    return await asyncio.wait_for(exchange(), timeout)


async def _read_reply(conn: h11.Connection, reader: asyncio.StreamReader, where: str) -> tuple[int, Any]:
    status, ctype, data = 0, b"", bytearray()
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(CHUNK))
            elif isinstance(event, h11.Response):
                status = event.status_code
                ctype = dict(event.headers).get(b"content-type", b"")
            elif isinstance(event, h11.Data):
                data += event.data
                if len(data) > MAX_REPLY:
                    raise ConnectionError(f"reply from {where} is over {MAX_REPLY} bytes")
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError(f"{where} closed the connection without a reply")
    except h11.RemoteProtocolError as exc:
        raise ConnectionError(f"bad HTTP reply from {where}: {exc}") from None
    if ctype.split(b";")[0].strip().lower() != b"application/json":
        return status, data.decode("utf-8", "replace")
    try:
        return status, json.loads(data) if data else None
    except (ValueError, RecursionError) as exc:
        raise ConnectionError(f"reply from {where} says JSON but is not: {exc}") from None


# -- long poll ---------------------------------------------------------------------------------------------

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


# -- helpers -----------------------------------------------------------------------------------------------

def _json(payload: Any) -> bytes:
    return (json.dumps(payload, default=str) + "\n").encode()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _decode(raw: bytes) -> JsonObject | None:
    """A request body: empty -> None, else it must be a JSON object."""
    if not raw:
        return None
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # RecursionError: [[[[...]]]] nested past the stack
        raise HttpError(400, f"body is not JSON: {_describe(exc)}") from None
    if not isinstance(value, dict):
        raise HttpError(400, f"body must be a JSON object, got {type(value).__name__}")
    return value


def _split_target(target: str) -> tuple[str, dict[str, str]]:
    try:
        parts = urlsplit(target)
    except ValueError as exc:
        raise HttpError(400, f"bad request target: {exc}") from None
    return parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))


def _host_name(value: str) -> str:
    """'127.0.0.5:9179' -> '127.0.0.5', '[::1]:80' -> '::1', 'Node1.' -> 'node1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_MESSAGE_LIMIT]


def _where(exc: BaseException) -> str:
    """`file:line in function` of the innermost frame outside Python's own library (the handler's line, not
    json's): enough to find a bug, without a traceback in the log."""
    found = "?"
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if found == "?" or not code.co_filename.startswith(_LIBRARY):
            found = f"{code.co_filename}:{tb.tb_lineno} in {code.co_name}"
        tb = tb.tb_next
    return found
