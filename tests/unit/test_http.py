"""The node API transport (meshsim/agent/http.py): every malformed or unauthorised request gets a 4xx JSON reply,
the per-run token guards every POST, limits hold against slow and greedy clients, and the client reports
garbage clearly. Servers bind 127.0.0.1 on ephemeral ports and run on their own event loop in a thread, so the
tests talk to them with plain blocking sockets (each with a timeout: a hang fails the test)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Iterator

import h11
import pytest
import uvloop
import structlog
from hypothesis import HealthCheck, given, settings, strategies as st

from meshsim.agent.http import MAX_BODY, HttpError, _read_reply, new_token, request, serve

TOKEN = "s3cret-token"
HOST = "127.0.0.1"


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get(b"content-type") == b"application/json", self.headers
        return json.loads(self.body)


@dataclass
class ServerThread:
    """A `serve` listener on 127.0.0.1 with its own loop (asyncio's or uvloop) in a thread. Its handler echoes the request (or does what
    the path asks: /boom raises, /sleep/S waits S seconds, /missing raises HttpError 404) and records each call."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    loop_kind: str = "asyncio"  # or "uvloop", which the worker processes run on
    calls: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    loop_errors: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    async def handler(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        self.calls.append((method, path, query, body))
        if path == "/boom":
            raise RuntimeError("handler bug")
        if path == "/boom-in-json":
            json.loads("{not json")
        if path == "/missing":
            raise HttpError(404, "no such thing")
        if path.startswith("/sleep/"):
            await asyncio.sleep(float(path.rsplit("/", 1)[1]))
        if path == "/text":
            return 200, "plain text\n"
        return 200, {"method": method, "path": path, "query": query, "body": body}

    def __enter__(self) -> "ServerThread":
        self.loop = uvloop.new_event_loop() if self.loop_kind == "uvloop" else asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, context: self.loop_errors.append(context))
        started = threading.Event()

        async def start() -> None:
            kwargs = {"token": TOKEN, **self.kwargs}
            self.server = await serve(HOST, 0, self.handler, **kwargs)
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        assert started.is_set()
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        assert not self.loop_errors, self.loop_errors


@pytest.fixture(params=["asyncio", "uvloop"])
def srv(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    with ServerThread(kwargs={"deadline": 1.0}, loop_kind=request.param) as s:
        yield s


def send(port: int, data: bytes, *, eof: bool = True, timeout: float = 5.0, method: bytes = b"GET") -> Reply | None:
    """Send raw bytes, read until the server closes; the parsed reply, or None for a close without a byte.
    Fails (h11 raises) if what comes back is not one well-formed HTTP/1.1 response."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        try:
            s.sendall(data)
            if eof:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed; its reply is still ours to read
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    return parse_reply(raw, method)


def parse_reply(raw: bytes, method: bytes = b"GET") -> Reply | None:
    if not raw:
        return None
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", HOST)]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    conn.receive_data(b"")
    status, headers, body = 0, {}, b""
    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
        if isinstance(event, h11.Response):
            status, headers = event.status_code, dict(event.headers)
        elif isinstance(event, h11.Data):
            body += event.data
        assert event is not h11.NEED_DATA, raw
    return Reply(status, headers, body)


def head(method: str = "GET", path: str = "/status", *, host: str = HOST, token: str | None = None,
         ctype: str | None = None, body: bytes = b"", extra: str = "", length: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if ctype is not None:
        lines.append(f"Content-Type: {ctype}")
    if length is not None or body or method == "POST":
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode() + body


def post(path: str = "/config", body: Any = None, **kw: Any) -> bytes:
    kw.setdefault("token", TOKEN)
    kw.setdefault("ctype", "application/json")
    return head("POST", path, body=b"" if body is None else json.dumps(body).encode(), **kw)


def assert_error(reply: Reply | None, status: int) -> str:
    assert reply is not None, "connection closed without a reply"
    assert reply.status == status, (reply.status, reply.body)
    payload = reply.json()
    assert set(payload) == {"error"} and payload["error"], payload
    return str(payload["error"])


# -- the per-run secret and the browser guards -------------------------------------------------------------

def test_get_needs_no_token(srv: ServerThread) -> None:
    reply = send(srv.port, head("GET", "/status?after=3&timeout=0"))
    assert reply is not None and reply.status == 200
    assert reply.json() == {"method": "GET", "path": "/status", "query": {"after": "3", "timeout": "0"}, "body": None}


def test_post_with_the_token_reaches_the_handler(srv: ServerThread) -> None:
    reply = send(srv.port, post("/config", {"peers": []}))
    assert reply is not None and reply.status == 200
    assert srv.calls == [("POST", "/config", {}, {"peers": []})]


def test_post_without_a_body_reaches_the_handler_with_none(srv: ServerThread) -> None:
    reply = send(srv.port, post("/stop"))
    assert reply is not None and reply.status == 200
    assert srv.calls == [("POST", "/stop", {}, None)]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x",
                                           "Bearer", f"bearer {TOKEN[:-1]}"])
def test_post_without_the_right_token_is_401(srv: ServerThread, authorization: str | None) -> None:
    extra = f"Authorization: {authorization}\r\n" if authorization else ""
    reply = send(srv.port, post("/shutdown", {}, token=None, extra=extra))
    assert "token" in assert_error(reply, 401)
    assert reply is not None and reply.headers[b"www-authenticate"].startswith(b"Bearer")
    assert srv.calls == []


def test_two_authorization_headers_are_401(srv: ServerThread) -> None:
    reply = send(srv.port, post("/shutdown", {}, extra=f"Authorization: Bearer {TOKEN}\r\n"))
    assert_error(reply, 401)
    assert srv.calls == []


def test_a_server_without_a_token_accepts_no_post() -> None:
    with ServerThread(kwargs={"token": None}) as s:
        assert "without a token" in assert_error(send(s.port, post("/stop", token="anything")), 401)
        assert send(s.port, head("GET")).status == 200  # type: ignore[union-attr]
        assert [c[0] for c in s.calls] == ["GET"]


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                   "application/jsonx"])
def test_post_without_json_content_type_is_415(srv: ServerThread, ctype: str | None) -> None:
    reply = send(srv.port, head("POST", "/stop", token=TOKEN, ctype=ctype, body=b"{}"))
    assert_error(reply, 415)
    assert srv.calls == []


def test_json_content_type_with_charset_is_accepted(srv: ServerThread) -> None:
    reply = send(srv.port, post("/local", {"blocks": []}, ctype="Application/JSON; charset=utf-8"))
    assert reply is not None and reply.status == 200


def test_post_with_origin_is_403_even_with_the_token(srv: ServerThread) -> None:
    reply = send(srv.port, post("/shutdown", {}, extra="Origin: http://evil.example\r\n"))
    assert "Origin" in assert_error(reply, 403)
    assert srv.calls == []


@pytest.mark.parametrize("host", ["evil.example", "evil.example:9179", "127.0.0.2", "attacker.127.0.0.1.nip.io"])
def test_a_host_that_is_not_this_server_is_421(srv: ServerThread, host: str) -> None:
    assert_error(send(srv.port, head("GET", host=host)), 421)
    assert_error(send(srv.port, post(host=host)), 421)
    assert srv.calls == []


@pytest.mark.parametrize("host", [HOST, f"{HOST}:1234", "localhost", "LOCALHOST:80"])
def test_the_bound_address_and_localhost_are_accepted_hosts(srv: ServerThread, host: str) -> None:
    assert send(srv.port, head("GET", host=host)).status == 200  # type: ignore[union-attr]


def test_names_given_to_serve_are_accepted_hosts() -> None:
    with ServerThread(kwargs={"names": ["node1", "192.168.0.82"]}) as s:
        for host in ("node1", "Node1.:9179", "192.168.0.82:9179"):
            assert send(s.port, head("GET", host=host)).status == 200  # type: ignore[union-attr]
        assert_error(send(s.port, head("GET", host="node2")), 421)


def test_missing_or_duplicate_host_is_400(srv: ServerThread) -> None:
    assert_error(send(srv.port, b"GET /status HTTP/1.0\r\n\r\n"), 400)
    assert_error(send(srv.port, b"GET /status HTTP/1.1\r\n\r\n"), 400)
    assert_error(send(srv.port, head("GET", extra="Host: 127.0.0.1\r\n")), 400)


def test_a_request_from_another_local_user_without_the_token_fails(srv: ServerThread) -> None:
    """The token is the whole mechanism (file permissions keep it from other users): a process of another uid
    that does everything else right is refused, and the handler never runs."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another uid")
    assert post_as_user(65534, srv.port, "/shutdown") == 401
    assert post_as_user(65534, srv.port, "/shutdown", token="guessed") == 401
    assert srv.calls == []
    assert post_as_user(65534, srv.port, "/shutdown", token=TOKEN) == 200  # the token, not the uid, decides
    assert [c[:2] for c in srv.calls] == [("POST", "/shutdown")]


def post_as_user(uid: int, port: int, path: str, token: str | None = None) -> int:
    """POST {} to 127.0.0.1:port as another local user (stdlib only in the child: it cannot read this tree's
    venv); returns the status the server answered."""
    code = ("import http.client, sys\n"
            "c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=10)\n"
            "h = {'Content-Type': 'application/json'}\n"
            "if len(sys.argv) > 3: h['Authorization'] = 'Bearer ' + sys.argv[3]\n"
            "c.request('POST', sys.argv[2], body=b'{}', headers=h)\n"
            "print(c.getresponse().status)\n")
    argv = ["/usr/bin/python3", "-c", code, str(port), path] + ([token] if token else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd="/", env={"PATH": "/usr/bin:/bin"},
                         user=uid, group=uid, extra_groups=[])
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


# -- malformed requests ------------------------------------------------------------------------------------

MALFORMED = {
    "garbage request line": (b"HELLO\r\n\r\n", 400),
    "request line without version": (b"GET /status\r\nHost: 127.0.0.1\r\n\r\n", 400),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 405),
    "header without colon": (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nNoColonHere\r\n\r\n", 400),
    "space in header name": (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: x\r\n\r\n", 400),
    "control byte in header": (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\x00b\r\n\r\n", 400),
    "non-numeric Content-Length": (post(length="abc"), 400),
    "negative Content-Length": (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n", 400),
    "conflicting Content-Lengths": (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n"
                                    b"Content-Length: 2\r\n\r\nab", 400),
    "chunked body": (head("POST", "/config", token=TOKEN, ctype="application/json",
                          extra="Transfer-Encoding: chunked\r\n") + b"2\r\n{}\r\n0\r\n\r\n", 411),
    "gzip transfer coding": (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    "body shorter than Content-Length": (post(body={}, length="10"), 400),
    "invalid JSON": (head("POST", "/config", token=TOKEN, ctype="application/json", body=b"{peers:"), 400),
    "invalid UTF-8": (head("POST", "/local", token=TOKEN, ctype="application/json", body=b'{"a": "\xff"}'), 400),
    "JSON array": (post("/local", ["10.0.0.0/26"]), 400),
    "JSON string": (post("/local", "x"), 400),
    "JSON null": (head("POST", "/local", token=TOKEN, ctype="application/json", body=b"null"), 400),
    "NaN": (head("POST", "/local", token=TOKEN, ctype="application/json", body=b'{"a": NaN}'), 400),
    "nesting past the stack": (head("POST", "/local", token=TOKEN, ctype="application/json",
                                    body=b"[" * 100_000 + b"]" * 100_000), 400),
    "5000-digit integer": (head("POST", "/local", token=TOKEN, ctype="application/json",
                                body=b'{"a": ' + b"9" * 5000 + b"}"), 400),
    "GET with a text body": (head("GET", "/status", ctype="text/plain", body=b"hello"), 415),
    "PUT": (head("PUT", "/config", token=TOKEN, ctype="application/json", body=b"{}"), 405),
    "DELETE": (head("DELETE", "/config"), 405),
    "OPTIONS preflight": (head("OPTIONS", "/shutdown", extra="Origin: http://evil.example\r\n"
                                                             "Access-Control-Request-Method: POST\r\n"), 405),
    "CONNECT": (b"CONNECT 127.0.0.1:179 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405),
    "head over 16 KiB": (head("GET", extra="X-Fill: " + "a" * (20 << 10) + "\r\n"), 431),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_every_malformed_request_gets_a_4xx_json_reply(srv: ServerThread, case: str) -> None:
    data, status = MALFORMED[case]
    with structlog.testing.capture_logs() as logs:
        assert_error(send(srv.port, data), status)
    assert srv.calls == []
    assert not [e for e in logs if e["log_level"] in ("error", "critical")], logs


def test_head_is_405_without_a_body(srv: ServerThread) -> None:
    reply = send(srv.port, head("HEAD", "/status"), method=b"HEAD")
    assert reply is not None and reply.status == 405 and reply.body == b""


def test_405_names_the_allowed_methods(srv: ServerThread) -> None:
    reply = send(srv.port, head("DELETE", "/config"))
    assert reply is not None and reply.headers[b"allow"] == b"GET, POST"


def test_handler_http_error_becomes_its_status(srv: ServerThread) -> None:
    assert assert_error(send(srv.port, head("GET", "/missing")), 404) == "no such thing"


def test_http_error_is_only_for_error_statuses() -> None:
    with pytest.raises(ValueError):
        HttpError(200, "fine")


def test_handler_exception_is_500_json_and_one_log_event(srv: ServerThread) -> None:
    with structlog.testing.capture_logs() as logs:
        message = assert_error(send(srv.port, head("GET", "/boom")), 500)
    assert "handler bug" in message
    failures = [e for e in logs if e["event"] == "http_handler_failed"]
    assert len(failures) == 1 and failures[0]["log_level"] == "error", logs
    assert failures[0]["path"] == "/boom" and "RuntimeError" in failures[0]["error"]
    assert "test_http.py" in failures[0]["where"]


def test_a_handler_failing_inside_the_stdlib_is_located_in_the_handler(srv: ServerThread) -> None:
    with structlog.testing.capture_logs() as logs:
        assert "JSONDecodeError" in assert_error(send(srv.port, head("GET", "/boom-in-json")), 500)
    (failure,) = [e for e in logs if e["event"] == "http_handler_failed"]
    assert "test_http.py" in failure["where"] and "in handler" in failure["where"], failure


def test_text_payload_is_text_plain(srv: ServerThread) -> None:
    reply = send(srv.port, head("GET", "/text"))
    assert reply is not None and reply.body == b"plain text\n"
    assert reply.headers[b"content-type"].startswith(b"text/plain")


def test_expect_100_continue_is_honoured(srv: ServerThread) -> None:
    body = json.dumps({"peers": []}).encode()
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        s.sendall(head("POST", "/config", token=TOKEN, ctype="application/json", body=body,
                       extra="Expect: 100-continue\r\n")[: -len(body)])
        assert s.recv(1024).startswith(b"HTTP/1.1 100 ")
        s.sendall(body)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    reply = parse_reply(raw)
    assert reply is not None and reply.status == 200 and reply.json()["body"] == {"peers": []}


# -- limits ------------------------------------------------------------------------------------------------

def test_body_over_the_cap_is_413_before_it_is_sent() -> None:
    """The server answers on the head alone: the client sends none of the body and gets 413 long before the
    30 s read deadline (a server waiting for the body would answer 408 then)."""
    with ServerThread(kwargs={"deadline": 30.0}) as s:
        started = time.monotonic()
        reply = send(s.port, post(length=str(MAX_BODY + 1)), eof=False, timeout=60)
        assert "limit" in assert_error(reply, 413)
        assert time.monotonic() - started < 10
        assert s.calls == []


def test_body_at_the_cap_is_accepted(srv: ServerThread) -> None:
    filler = "x" * (MAX_BODY - len('{"fill": ""}'))
    reply = send(srv.port, post("/config", {"fill": filler}))
    assert reply is not None and reply.status == 200


def test_max_body_is_per_server() -> None:
    with ServerThread(kwargs={"max_body": 10}) as s:
        assert_error(send(s.port, post("/config", {"peers": [1, 2, 3]})), 413)
        assert send(s.port, post("/config", {"a": 1})).status == 200  # type: ignore[union-attr]


def test_max_body_covers_the_largest_legitimate_config() -> None:
    """The measured largest POST /config (a 500-node full mesh, ~106 kB) fits with room to spare."""
    assert MAX_BODY >= 2 * 106_295


def test_twenty_greedy_uploads_do_not_grow_the_server() -> None:
    """20 clients each announcing and streaming 15 MiB all get 413 and the process allocates < 8 MiB for
    them (the 16 MiB-buffering server grew by ~300 MB)."""
    chunk = b"x" * (64 << 10)

    def upload() -> Reply | None:
        with socket.create_connection((HOST, s.port), timeout=10) as sock:
            sock.sendall(post(length=str(15 << 20)))
            try:
                for _ in range(15 << 4):
                    sock.sendall(chunk)
            except OSError:
                pass
            raw = b""
            try:
                while part := sock.recv(65536):
                    raw += part
            except ConnectionResetError:
                pass
        return parse_reply(raw)

    with ServerThread() as s:
        tracemalloc.start()
        try:
            results: list[Reply | None] = []
            threads = [threading.Thread(target=lambda: results.append(upload())) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert [r.status if r else None for r in results] == [413] * 20
    assert peak < 8 << 20, peak


def test_slow_head_gets_408_after_the_deadline(srv: ServerThread) -> None:
    started = time.monotonic()
    reply = send(srv.port, b"GET /status HTTP/1.1\r\nHost: 12", eof=False)
    elapsed = time.monotonic() - started
    assert_error(reply, 408)
    assert 0.9 < elapsed < 8, elapsed


def test_slow_body_gets_408_after_the_deadline(srv: ServerThread) -> None:
    data = post("/config", {"peers": []})
    reply = send(srv.port, data[:-5], eof=False)
    assert_error(reply, 408)
    assert srv.calls == []


def test_a_silent_connection_gets_408(srv: ServerThread) -> None:
    assert_error(send(srv.port, b"", eof=False), 408)


def test_a_connection_closed_without_a_request_is_closed_quietly(srv: ServerThread) -> None:
    with structlog.testing.capture_logs() as logs:
        assert send(srv.port, b"") is None
    assert logs == []


def test_the_handler_may_take_longer_than_the_read_deadline(srv: ServerThread) -> None:
    """The long poll (/state?after=V&timeout=S) waits in the handler; the deadline covers reading only."""
    reply = send(srv.port, head("GET", "/sleep/1.5"), timeout=10)
    assert reply is not None and reply.status == 200


def test_two_hundred_concurrent_gets_are_all_served(srv: ServerThread) -> None:
    """Each handler waits 0.5 s, so all 200 connections are open at once."""
    results: list[int] = []

    def get() -> None:
        reply = send(srv.port, head("GET", "/sleep/0.5"), timeout=20)
        results.append(reply.status if reply else 0)

    threads = [threading.Thread(target=get) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * 200


def test_connections_past_the_cap_get_503() -> None:
    def eventually(status: int) -> None:
        deadline, seen = time.monotonic() + 10, None
        while time.monotonic() < deadline:
            reply = send(s.port, head("GET"))
            seen = reply.status if reply else None
            if seen == status:
                return
            time.sleep(0.05)
        raise AssertionError(f"never answered {status}, last {seen}")

    with ServerThread(kwargs={"max_connections": 3, "deadline": 30.0}) as s:
        idle = [socket.create_connection((HOST, s.port), timeout=5) for _ in range(3)]
        try:
            eventually(503)
            reply = send(s.port, head("GET"))
            assert "busy" in assert_error(reply, 503)
        finally:
            for sock in idle:
                sock.close()
        eventually(200)


# -- the client --------------------------------------------------------------------------------------------

async def test_client_round_trip_with_token() -> None:
    with ServerThread() as s:
        assert await request(HOST, s.port, "GET", "/status?x=1") == (
            200, {"method": "GET", "path": "/status", "query": {"x": "1"}, "body": None})
        assert (await request(HOST, s.port, "POST", "/config", {"peers": []}))[0] == 401
        status, payload = await request(HOST, s.port, "POST", "/config", {"peers": []}, token=TOKEN)
        assert status == 200 and payload["body"] == {"peers": []}
        assert await request(HOST, s.port, "GET", "/text") == (200, "plain text\n")
        status, payload = await request(HOST, s.port, "POST", "/config", {"fill": "x" * MAX_BODY}, token=TOKEN)
        assert status == 413 and "limit" in payload["error"]


async def _fake_server(reply: bytes) -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, HOST, 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("reply", [b"garbage\r\n\r\n", b"", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                                   b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{x:",
                                   b"SSH-2.0-OpenSSH_9.6\r\n"])
async def test_client_raises_connection_error_on_garbage(reply: bytes) -> None:
    server, port = await _fake_server(reply)
    async with server:
        with pytest.raises(ConnectionError):
            await request(HOST, port, "GET", "/status", timeout=5)


async def test_client_times_out_on_a_silent_server() -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    server = await asyncio.start_server(silent, HOST, 0)
    async with server:
        with pytest.raises(TimeoutError):
            await request(HOST, server.sockets[0].getsockname()[1], timeout=0.3)
        done.set()
        await asyncio.sleep(0.05)


async def test_client_raises_oserror_when_nothing_listens() -> None:
    sock = socket.socket()
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(OSError):
        await request(HOST, port, timeout=5)


async def test_client_refuses_a_path_it_cannot_send() -> None:
    with pytest.raises(ValueError):
        await request(HOST, 1, "GET", "/a b", timeout=5)


def test_new_token_is_fresh_and_header_safe() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 40 and a.isascii() and " " not in a


@pytest.mark.parametrize("token", ["", "has space", "tab\there", "ünicode"])
async def test_serve_refuses_a_token_that_cannot_travel_in_a_header(token: str) -> None:
    async def handler(*_: Any) -> tuple[int, Any]:
        return 200, {}

    with pytest.raises(ValueError):
        await serve(HOST, 0, handler, token=token)


# -- generated garbage -------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def shared(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    with ServerThread(kwargs={"deadline": 2.0}, loop_kind=request.param) as s:
        yield s


GARBAGE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])


def assert_well_formed(reply: Reply | None, method: str = "GET") -> None:
    """A reply is a 2xx from the handler or a 4xx JSON error (no body for HEAD); or the server closed cleanly."""
    if reply is None:
        return
    assert 200 <= reply.status < 300 or 400 <= reply.status < 500, reply
    if method == "HEAD":
        assert reply.body == b""
    elif reply.status >= 400:
        assert_error(reply, reply.status)


@GARBAGE
@given(data=st.binary(max_size=2048))
def test_random_bytes_get_a_4xx_or_a_clean_close(shared: ServerThread, data: bytes) -> None:
    with structlog.testing.capture_logs() as logs:
        assert_well_formed(send(shared.port, data, timeout=10))
    assert not [e for e in logs if e["log_level"] == "error"], logs


HEADER_NAMES = st.sampled_from(["Host", "Authorization", "Content-Type", "Content-Length", "Origin",
                                "Transfer-Encoding", "Expect", "Connection", "X-Other", "host", "CONTENT-LENGTH"])
HEADER_VALUES = st.one_of(
    st.sampled_from([HOST, "evil.example", f"Bearer {TOKEN}", "Bearer nope", "application/json", "text/plain",
                     "0", "2", "999999999", "chunked", "100-continue", "close", "http://evil.example", ""]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30))


@GARBAGE
@given(method=st.sampled_from(["GET", "POST", "PUT", "HEAD", "G E T", "POST "]),
       headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8),
       body=st.one_of(st.binary(max_size=64), st.just(b"{}")))
def test_random_header_sets_never_reach_the_handler_unauthenticated(shared: ServerThread, method: str,
                                                                    headers: list[tuple[str, str]],
                                                                    body: bytes) -> None:
    path = f"/ex/{new_token()}"
    data = (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode() + body
    with structlog.testing.capture_logs() as logs:
        reply = send(shared.port, data, timeout=10, method=method.encode() if method == "HEAD" else b"GET")
    assert_well_formed(reply, method)
    assert not [e for e in logs if e["log_level"] == "error"], logs
    called = [c for c in shared.calls if c[1] == path]
    authorization = [v for k, v in headers if k.lower() == "authorization"]
    if any(c[0] == "POST" for c in called):
        assert authorization == [f"Bearer {TOKEN}"], (headers, called)
        assert not any(k.lower() == "origin" for k, _ in headers)
    if called:
        assert reply is not None and reply.status == 200


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                                 max_size=5),
                    max_leaves=20)


@GARBAGE
@given(value=JSON)
def test_random_json_bodies_reach_the_handler_only_as_objects(shared: ServerThread, value: Any) -> None:
    path = f"/ex/{new_token()}"
    body = json.dumps(value).encode()
    reply = send(shared.port, head("POST", path, token=TOKEN, ctype="application/json", body=body), timeout=10)
    assert reply is not None
    called = [c for c in shared.calls if c[1] == path]
    if isinstance(value, dict):
        assert reply.status == 200 and reply.json()["body"] == value
        assert called == [("POST", path, {}, value)]
    else:
        assert "JSON object" in assert_error(reply, 400)
        assert called == []



@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.binary(max_size=512),
                     st.builds(lambda status, headers, body: f"HTTP/1.1 {status} X\r\n{headers}\r\n".encode() + body,
                               st.integers(0, 999).map(str) | st.text(max_size=4),
                               st.lists(st.sampled_from(["Content-Type: application/json\r\n",
                                                         "Content-Length: 2\r\n", "Content-Length: 99\r\n",
                                                         "Transfer-Encoding: chunked\r\n", "Connection: close\r\n",
                                                         "Bad Header\r\n"]), max_size=4).map("".join),
                               st.sampled_from([b"", b"{}", b'{"a": 1}', b"[1, 2]", b"{x", b"\xff\xfe", b"2\r\n{}\r\n0\r\n\r\n"]))))
def test_the_client_turns_any_reply_into_a_result_or_a_connection_error(raw: bytes) -> None:
    async def read() -> tuple[int, Any]:
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", HOST)]))
        conn.send(h11.EndOfMessage())
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await asyncio.wait_for(_read_reply(conn, reader, "test"), 5)

    try:
        status, payload = asyncio.run(read())
    except ConnectionError:
        return
    assert isinstance(status, int) and 100 <= status <= 999
    assert payload is None or isinstance(payload, (str, dict, list, int, float, bool))
