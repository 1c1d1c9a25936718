"""ExaBGP adapter: one `exabgp server` process per node, driven over a unix-socket relay.

Owns: rendering ExaBGP's config (`render_config`), spawning and supervising ExaBGP
(`ExaBGP`), turning its JSON API output into events (`SessionState`, `RouteUpdate`,
`EndOfRib`, `ExaBGPExited`, `ExaBGPStarted`) and meshsim's route operations into API
commands. This is the only module of meshsim that runs ExaBGP (it never imports it:
ExaBGP runs as a child process).

Design (option b of the ExaBGP reference): the node's asyncio program spawns
`exabgp server <workdir>/exabgp.conf` in its own session, with every setting in the
environment (EXABGP_ENVFILE points at an empty <workdir>/exabgp.env). ExaBGP's only
`process` is `exabgp_relay.py`, a stdlib-only program run as `python -S -E
exabgp_relay.py <socket>`; it connects back to the unix socket this adapter listens
on and copies bytes both ways. ExaBGP starts API children in their own process
group, so the relay is identified by SO_PEERCRED on its connection and killed
separately (it also exits by itself on EOF of ExaBGP's pipe). ExaBGP's own log (level
WARNING) goes to <workdir>/exabgp.log; its tail is attached to `exabgp_exited` /
`exabgp_start_failed` and to the RunError of a failed start.

Commands: ExaBGP acks every command line with a plain `done` / `error` line (even with
`encoder json`). Route commands (announce/withdraw) run in ExaBGP's asynchronous
queue, in order; teardown and reload are acked as soon as they are read. So route
commands are pipelined (up to `window` unacked) and the others are barriers, sent
only when nothing is unacked: the ack -> command pairing stays exact, which is how a
failed command is logged (`exabgp_command_error`, with the command). Waiting for a
free slot has a deadline (`ack_timeout`); past it ExaBGP is taken as wedged, killed,
and restarted by the supervisor. Commands issued while ExaBGP is restarting are
dropped (`exabgp_command_dropped`): no session is up then, and the owner re-announces
on every session `up` (ExaBGP replays no API route after a restart or a reload,
reference pitfall 7). `flush()` waits (bounded) until everything sent is acked.

Events are delivered by calling `on_event(event)` synchronously from the reader task
(an exception in it is logged, never propagated). When ExaBGP exits unexpectedly, is
stopped or killed, or a neighbor is removed, `SessionState(peer, "down", reason)` is
synthesized for each session last seen `connected`/`up`, so the owner's view stays
consistent; late events of removed neighbors are dropped.

Measured with exabgp 5.0.15 (2 cores, root, 127.x addresses, idle machine):
- Startup: spawn -> relay connected 0.14-0.23 s (ExaBGP CPU 0.11-0.17 s); two nodes
  reach `up` 0.4-0.5 s after spawn. RSS: ExaBGP 29.4 MiB, relay 8.8 MiB (`-S -E` and
  `_socket` instead of `socket`, which costs 1.1 MiB more). Idle, with
  `reactor.speed=10`: 0.2-0.3 % CPU per ExaBGP.
- hold-time: ExaBGP accepts 0 or 3..65535 per neighbor, so 3..8 work; 1-2 fail the
  config parse ("holdtime must be zero or at least 3 seconds"), so render_config
  rejects them. Negotiated hold = min(both OPENs); keepalive = int(hold / 3) s, not
  configurable on its own (seen: hold 3 -> 1 s, hold 8 -> 2 s).
- `tcp.bind=<our 127.x>` + `local-address`: several ExaBGP processes, each bound to a
  different 127.x address on the same port, run side by side on 179 (as root), 1790
  and 17950; outgoing connections leave from `local-address`.
- SIGTERM alone does NOT send a NOTIFICATION: ExaBGP's shutdown only closes the
  sockets (Peer.shutdown -> _stop -> Protocol.close), the peer sees `down` "closing
  connection". So stop() first sends `neighbor A , neighbor B teardown 2` to the
  established sessions and waits (<= 2 s) for their `down`; the peer then reports
  "notification received (6,2)" (Cease / Administrative Shutdown). Then SIGTERM:
  ExaBGP exits 0; stop() as a whole takes ~0.25 s. A SIGKILL or a crash
  sends nothing ("closing connection"); a stopped (SIGSTOP) ExaBGP makes stop() take
  ~3 s (teardown ack deadline 2 s + stop_timeout) and then SIGKILL.
- A reload removes a neighbor without a NOTIFICATION ("stop, message [removed]"), so
  reconfigure() first tears removed, established sessions down with Cease/3 (Peer
  De-configured, as BIRD does when a protocol disappears). An active peer may reconnect
  in the few ms before the reload; it is then closed again without notification.
- An unknown peer's connection is refused with Cease (6,3); a `neighbor X ...`
  command for an unknown X is acked `error`.
- ExaBGP 5 neighbors default to `passive true` (and `adj-rib-out false`), so `passive`
  is always written; `reload` also prints a plain "reload in progress" line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import signal
import socket
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from meshsim.bgp.types import Origin, PathAttrs
from meshsim.errors import RunError

RELAY_SCRIPT = Path(__file__).with_name("exabgp_relay.py")
DEFAULT_BGP_PORT = 179
_MIN_HOLD = 3  # ExaBGP: hold-time must be 0 or >= 3
_MAX_HOLD = 0xFFFF
_DESCRIPTION_RE = re.compile(r"^[A-Za-z0-9_.:/-]*$")
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux
_LINE_LIMIT = 16 * 1024 * 1024
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ExaNeighbor:
    """One BGP session as ExaBGP sees it."""

    peer_address: IPv4Address  # the 127.x address of the peer's session endpoint
    local_address: IPv4Address  # our 127.x bind address
    peer_as: int
    local_as: int
    router_id: IPv4Address  # our BGP identifier = our declared address, not 127.x
    passive: bool
    connect_port: int  # peer's listen port
    hold_time: int  # seconds; ExaBGP sends keepalives every int(negotiated hold / 3) s
    description: str = ""  # Calico protocol name, e.g. Mesh_192_168_0_82


def _check_token(what: str, value: str) -> None:
    # ExaBGP's tokeniser splits on whitespace and treats , ; { } [ ] as syntax (pitfall 4)
    if not value or any(c in value for c in " \t\r\n,;{}[]\"'"):
        raise ValueError(f"{what} must be one token without spaces or , ; {{ }} [ ] quotes: {value!r}")


def render_config(
    neighbors: Sequence[ExaNeighbor],
    relay_cmd: str,
    *,
    default_port: int = DEFAULT_BGP_PORT,
) -> str:
    """ExaBGP config text for `neighbors`, with one API process running `relay_cmd`.

    `default_port` is the port ExaBGP connects to when a neighbor has no `connect`
    (it is `exabgp_tcp_port`); `connect <port>` is written when a neighbor differs.
    Pure; raises ValueError for values ExaBGP would reject or misparse.
    """
    if "\n" in relay_cmd or ";" in relay_cmd or "," in relay_cmd or "{" in relay_cmd or "}" in relay_cmd:
        raise ValueError(f"relay command must be one line without , ; {{ }}: {relay_cmd!r}")
    seen: set[IPv4Address] = set()
    out = [
        "# generated by meshsim.engines.exabgp; rewritten on every (re)configuration",
        "process speaker {",
        f"    run {relay_cmd};",
        "    encoder json;",
        "}",
    ]
    for n in neighbors:
        if n.peer_address in seen:
            raise ValueError(f"duplicate neighbor {n.peer_address}")
        seen.add(n.peer_address)
        if not (n.hold_time == 0 or _MIN_HOLD <= n.hold_time <= _MAX_HOLD):
            raise ValueError(f"hold-time of neighbor {n.peer_address} must be 0 or 3..65535, got {n.hold_time}")
        if not (1 <= n.connect_port <= 65535):
            raise ValueError(f"connect port of neighbor {n.peer_address} must be 1..65535, got {n.connect_port}")
        for what, asn in (("peer-as", n.peer_as), ("local-as", n.local_as)):
            if not (1 <= asn <= 0xFFFFFFFF):
                raise ValueError(f"{what} of neighbor {n.peer_address} must be 1..4294967295, got {asn}")
        if not _DESCRIPTION_RE.match(n.description):
            raise ValueError(f"description of neighbor {n.peer_address} has characters ExaBGP cannot take: {n.description!r}")
        out.append("")
        out.append(f"neighbor {n.peer_address} {{")
        if n.description:
            out.append(f"    description {n.description};")
        out.append(f"    router-id {n.router_id};")
        out.append(f"    local-address {n.local_address};")
        out.append(f"    local-as {n.local_as};")
        out.append(f"    peer-as {n.peer_as};")
        out.append(f"    hold-time {n.hold_time};")
        out.append(f"    passive {'true' if n.passive else 'false'};")
        if n.connect_port != default_port:
            out.append(f"    connect {n.connect_port};")
        out.append("    family {")
        out.append("        ipv4 unicast;")
        out.append("    }")
        out.append("    api {")
        out.append("        processes [ speaker ];")
        out.append("        neighbor-changes;")
        out.append("        receive {")
        out.append("            parsed;")
        out.append("            update;")
        out.append("        }")
        out.append("    }")
        out.append("}")
    return "\n".join(out) + "\n"


def _selector(peers: IPv4Address | Sequence[IPv4Address]) -> str:
    """`neighbor A` or `neighbor A , neighbor B` (one command for several neighbors)."""
    if isinstance(peers, IPv4Address):
        peers = [peers]
    return " , ".join(f"neighbor {p}" for p in peers)


def announce_command(peer_address: IPv4Address | Sequence[IPv4Address], prefix: IPv4Network,
                     attrs: PathAttrs) -> str:
    """The API command announcing `prefix` with `attrs` to one neighbor, or to several at once."""
    parts = [
        f"{_selector(peer_address)} announce route {prefix} next-hop {attrs.next_hop}",
        f"origin {Origin(attrs.origin).exabgp} local-preference {attrs.local_pref}",
    ]
    if attrs.med is not None:
        parts.append(f"med {attrs.med}")
    if attrs.as_path:
        parts.append("as-path [ " + " ".join(str(a) for a in attrs.as_path) + " ]")
    if attrs.originator_id is not None:
        parts.append(f"originator-id {attrs.originator_id}")
    if attrs.cluster_list:
        parts.append("cluster-list [ " + " ".join(str(c) for c in attrs.cluster_list) + " ]")
    if attrs.communities:
        for c in attrs.communities:
            _check_token("community", c)
        parts.append("community [ " + " ".join(attrs.communities) + " ]")
    return " ".join(parts)


def withdraw_command(peer_address: IPv4Address | Sequence[IPv4Address], prefix: IPv4Network) -> str:
    return f"{_selector(peer_address)} withdraw route {prefix}"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class SessionState:
    peer_address: IPv4Address
    state: str  # "connected" | "up" | "down"
    reason: str | None = None


@dataclass(frozen=True)
class RouteUpdate:
    peer_address: IPv4Address
    announced: tuple[tuple[IPv4Network, PathAttrs], ...]
    withdrawn: tuple[IPv4Network, ...]


@dataclass(frozen=True)
class EndOfRib:
    peer_address: IPv4Address


@dataclass(frozen=True)
class ExaBGPExited:
    """ExaBGP died when not asked to; the adapter restarts it."""

    returncode: int | None
    restarts: int  # restarts done before this exit


@dataclass(frozen=True)
class ExaBGPStarted:
    pid: int
    restarts: int  # 0 for the first start


_ORIGINS = {"igp": Origin.IGP, "egp": Origin.EGP, "incomplete": Origin.INCOMPLETE}


def _as_path(value: Any) -> tuple[int, ...]:
    # 5.x: {"0": {"element": "as-sequence", "value": [64512]}}; 4.x: [64512]
    if isinstance(value, list):
        out: list[int] = []
        for v in value:
            out.extend(v if isinstance(v, list) else [v])
        return tuple(int(a) for a in out)
    if isinstance(value, dict):
        out = []
        for key in sorted(value, key=lambda k: int(k)):
            out.extend(int(a) for a in value[key].get("value", ()))
        return tuple(out)
    return ()


def _communities(attr: dict[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    for key in ("community", "large-community"):
        for c in attr.get(key, ()):
            out.append(":".join(str(x) for x in c) if isinstance(c, list) else str(c))
    return tuple(out)


def _nlri(entry: Any) -> IPv4Network:
    return IPv4Network(entry["nlri"] if isinstance(entry, dict) else entry)


def parse_update(peer: IPv4Address, update: dict[str, Any]) -> RouteUpdate:
    """Turn the `message.update` object of an ExaBGP JSON line into a RouteUpdate."""
    attr = update.get("attribute", {})
    base = dict(
        local_pref=int(attr.get("local-preference", 100)),
        as_path=_as_path(attr.get("as-path")),
        origin=_ORIGINS.get(attr.get("origin", "igp"), Origin.INCOMPLETE),
        med=int(attr["med"]) if "med" in attr else None,
        originator_id=IPv4Address(attr["originator-id"]) if "originator-id" in attr else None,
        cluster_list=tuple(IPv4Address(c) for c in attr.get("cluster-list", ())),
        communities=_communities(attr),
    )
    announced: list[tuple[IPv4Network, PathAttrs]] = []
    for next_hop, entries in update.get("announce", {}).get("ipv4 unicast", {}).items():
        attrs = PathAttrs(next_hop=IPv4Address(next_hop), **base)
        announced.extend((_nlri(e), attrs) for e in entries)
    withdrawn = tuple(_nlri(e) for e in update.get("withdraw", {}).get("ipv4 unicast", ()))
    return RouteUpdate(peer_address=peer, announced=tuple(announced), withdrawn=withdrawn)


# --------------------------------------------------------------------------- /proc


def _proc_stat(pid: int | None) -> tuple[float, int] | None:
    """(cpu seconds, rss bytes) of a live process, None if it is gone."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode()
        with open(f"/proc/{pid}/statm", "rb") as f:
            statm = f.read().split()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on
    if fields[0] == "Z":
        return None
    cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)
    return cpu, int(statm[1]) * _PAGE


def _is_our_relay(pid: int, sock_path: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"exabgp_relay.py") for a in argv) and sock_path.encode() in argv


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "root" if os.getuid() == 0 else str(os.getuid())


# --------------------------------------------------------------------------- adapter


class _Conn:
    """One relay connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pid: int | None) -> None:
        self.reader = reader
        self.writer = writer
        self.pid = pid
        self.task: asyncio.Task[None] | None = None


class ExaBGP:
    """Runs and supervises one ExaBGP process for a node. See the module docstring."""

    def __init__(
        self,
        *,
        name: str,
        bind_address: IPv4Address,
        listen_port: int,
        neighbors: Sequence[ExaNeighbor],
        workdir: Path,
        on_event: Callable[[object], None],
        log: Any,
        restart_backoff: tuple[float, float] = (0.2, 5.0),
        start_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        ack_timeout: float = 30.0,
        window: int = 64,
        argv_prefix: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.argv_prefix = tuple(argv_prefix)  # e.g. ("ip", "netns", "exec", NS): run ExaBGP in a network namespace
        self.bind_address = IPv4Address(bind_address)
        self.listen_port = listen_port
        self._neighbors = tuple(neighbors)
        self.workdir = Path(workdir)
        self._on_event = on_event
        self._log = log
        self._backoff = restart_backoff
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._ack_timeout = ack_timeout
        self._window = max(1, window)

        self.config_path = self.workdir / "exabgp.conf"
        self.log_path = self.workdir / "exabgp.log"
        self.env_path = self.workdir / "exabgp.env"
        self._sock_dir: str | None = None  # a short temp dir when workdir is too deep for sun_path
        self.socket_path = self.workdir / "exabgp.sock"

        self._state = "new"  # new | running | stopping | stopped
        self._proc: asyncio.subprocess.Process | None = None
        self._pgid: int | None = None
        self._server: asyncio.AbstractServer | None = None
        self._conn: _Conn | None = None
        self._relays: set[int] = set()  # relay pids seen for the current ExaBGP process
        self._connected = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._stopping: asyncio.Future[None] | None = None  # set while a stop()/kill() runs
        self._send_lock = asyncio.Lock()
        self._acks = asyncio.Condition()
        self._pending: deque[str] = deque()
        self._sessions: dict[IPv4Address, str] = {}
        self._downs: dict[IPv4Address, int] = {}  # `down` events seen per peer
        self._started_at = 0.0
        self._spawn_restarts = 0
        self._start_reported = True
        self._log_offset = 0  # where the current ExaBGP's output starts in exabgp.log

        self.restarts = 0
        self.commands_sent = 0
        self.commands_dropped = 0
        self.acks_done = 0
        self.acks_error = 0
        self.events = 0
        self.startup_seconds: float | None = None  # spawn -> relay connected, last start

    # ----------------------------------------------------------------- properties

    @property
    def pid(self) -> int | None:
        p = self._proc
        return p.pid if p is not None and p.returncode is None else None

    @property
    def relay_pid(self) -> int | None:
        return self._conn.pid if self._conn is not None else None

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def neighbors(self) -> tuple[ExaNeighbor, ...]:
        return self._neighbors

    def cpu_seconds(self) -> float:
        """CPU (user + system) of the live ExaBGP and relay processes."""
        return sum(s[0] for s in (_proc_stat(self.pid), _proc_stat(self.relay_pid)) if s)

    def rss_bytes(self) -> int:
        """Resident set size of the live ExaBGP and relay processes."""
        return sum(s[1] for s in (_proc_stat(self.pid), _proc_stat(self.relay_pid)) if s)

    def process_stats(self) -> dict[str, dict[str, float | int]]:
        out: dict[str, dict[str, float | int]] = {}
        for role, pid in (("exabgp", self.pid), ("relay", self.relay_pid)):
            s = _proc_stat(pid)
            if s and pid:
                out[role] = {"pid": pid, "cpu_seconds": s[0], "rss_bytes": s[1]}
        return out

    def counters(self) -> dict[str, int]:
        return {
            "commands_sent": self.commands_sent,
            "commands_dropped": self.commands_dropped,
            "acks_done": self.acks_done,
            "acks_error": self.acks_error,
            "pending": len(self._pending),
            "events": self.events,
            "restarts": self.restarts,
        }

    # ----------------------------------------------------------------- lifecycle

    def _relay_cmd(self) -> str:
        return f"{sys.executable} -S -E {RELAY_SCRIPT} {self.socket_path}"

    def _exabgp_argv(self) -> list[str]:
        exe = Path(sys.executable).with_name("exabgp")
        if exe.exists():
            return [*self.argv_prefix, str(exe), "server", str(self.config_path)]
        return [*self.argv_prefix, sys.executable, "-m", "exabgp", "server", str(self.config_path)]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.lower().startswith("exabgp")}
        env.update(
            exabgp_tcp_bind=str(self.bind_address),
            exabgp_tcp_port=str(self.listen_port),
            # pitfall 1: else ExaBGP (as root) drops to `nobody` before spawning the relay
            exabgp_daemon_user=_user_name(),
            exabgp_daemon_daemonize="false",
            exabgp_daemon_pid="",
            exabgp_api_cli="false",
            exabgp_api_ack="true",
            exabgp_api_encoder="json",
            exabgp_api_respawn="true",
            exabgp_log_level="WARNING",
            exabgp_log_destination="stdout",
            exabgp_log_statistics="false",
            exabgp_reactor_speed=os.environ.get("MESHSIM_EXABGP_REACTOR_SPEED", "10"),
            EXABGP_ENVFILE=str(self.env_path),  # empty: all settings come from this environment
            PYTHONUNBUFFERED="1",
        )
        return env

    def _write_config(self) -> None:
        text = render_config(self._neighbors, self._relay_cmd(), default_port=self.listen_port)
        if not self.env_path.exists():
            self.env_path.write_text("")  # an existing file silences ExaBGP's "environment file missing" advice
        tmp = self.config_path.with_suffix(".conf.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    async def start(self) -> None:
        """Write the config, listen on the socket, spawn ExaBGP, wait for the relay."""
        if self._state in ("running", "stopping"):
            raise RunError(f"ExaBGP adapter already {self._state}", node=self.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket_path)) > _SOCKET_PATH_MAX:
            self._sock_dir = tempfile.mkdtemp(prefix="meshsim-exa-")
            self.socket_path = Path(self._sock_dir) / "exabgp.sock"
        for what, p in (("relay script", RELAY_SCRIPT), ("socket path", self.socket_path), ("python", sys.executable)):
            if any(c in str(p) for c in " \t,;{}"):
                raise RunError(f"{what} {str(p)!r} has a space or , ; {{ }}, which ExaBGP's run line cannot carry", node=self.name)
        try:
            self._write_config()
        except ValueError as exc:
            raise RunError(f"ExaBGP config: {exc}", node=self.name) from None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(self._on_relay, path=str(self.socket_path), limit=_LINE_LIMIT)
        self._state = "running"
        try:
            await self._spawn(restarts=self.restarts)
        except BaseException:
            await self._shutdown(graceful=False, reason="start failed")
            raise
        self._watcher = asyncio.create_task(self._watch(), name=f"exabgp-watch-{self.name}")

    async def _spawn(self, *, restarts: int) -> None:
        """Spawn ExaBGP and wait until its relay connects; RunError on timeout or early exit."""
        self._connected.clear()
        with open(self.log_path, "ab") as logf:
            logf.write(f"--- meshsim: starting exabgp at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            logf.flush()
            self._log_offset = logf.tell()
            t0 = time.monotonic()
            creating = asyncio.ensure_future(
                asyncio.create_subprocess_exec(
                    *self._exabgp_argv(),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=logf,
                    stderr=asyncio.subprocess.STDOUT,
                    env=self._env(),
                    cwd=str(self.workdir),
                    start_new_session=True,
                )
            )
            try:
                try:
                    proc = await asyncio.shield(creating)
                except asyncio.CancelledError:
                    # cancelled by stop(): let the fork finish so the process is known and killed
                    proc = await creating
                    self._proc, self._pgid = proc, proc.pid
                    raise
            except OSError as exc:
                raise RunError(f"cannot start ExaBGP: {exc}", node=self.name) from None
        self._proc = proc
        self._pgid = proc.pid  # start_new_session: its own session and group
        self._started_at = t0
        self._spawn_restarts = restarts
        self._start_reported = False  # ExaBGPStarted goes out when its relay connects
        connected = asyncio.ensure_future(self._connected.wait())
        exited = asyncio.ensure_future(proc.wait())
        try:
            await asyncio.wait({connected, exited}, timeout=self._start_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
            exited.cancel()
        if not self._connected.is_set():
            rc = proc.returncode
            await self._kill_processes()
            tail = self._log_tail()
            why = f"exited with code {rc}" if rc is not None else f"relay did not connect within {self._start_timeout:.0f} s"
            self._log.error("exabgp_start_failed", pid=proc.pid, returncode=rc, why=why, log_tail=tail)
            raise RunError(f"ExaBGP {why}; {self.log_path} says: {tail or '(nothing)'}", node=self.name)

    async def _watch(self) -> None:
        """Restart ExaBGP with backoff whenever it exits while we are running."""
        delay = self._backoff[0]
        while self._state == "running":
            proc = self._proc
            assert proc is not None
            rc = await proc.wait()
            if self._state != "running" or proc is not self._proc:
                return
            lived = time.monotonic() - self._started_at
            self._log.warning(
                "exabgp_exited", pid=proc.pid, returncode=rc, restarts=self.restarts,
                lived_seconds=round(lived, 3), log_tail=self._log_tail(),
            )
            await self._kill_processes()  # the relay, and anything left in the group
            await self._drop_connection("exabgp exited")
            self._on_event_safe(ExaBGPExited(returncode=rc, restarts=self.restarts))
            self._sessions_down(f"exabgp exited (returncode {rc})")
            if lived > 30.0:
                delay = self._backoff[0]
            while self._state == "running":
                await asyncio.sleep(delay)
                if self._state != "running":
                    return
                delay = min(delay * 2, self._backoff[1])
                try:
                    self._write_config()
                    await self._spawn(restarts=self.restarts + 1)
                except RunError as exc:
                    self._log.warning("exabgp_restart_failed", error=str(exc), next_delay=delay)
                    continue
                if self._state != "running":
                    return
                break

    async def stop(self) -> None:
        """Graceful stop, bounded (~3 s + stop_timeout at worst); idempotent; start() may follow.

        Cease/2 (`teardown 2`) to every established session, SIGTERM, wait `stop_timeout`,
        then SIGKILL ExaBGP's group and the relay; close and remove the socket.
        """
        await self._shutdown(graceful=True, reason="stopped")

    async def kill(self) -> None:
        """SIGKILL ExaBGP and its relay, without restart (crash simulation). start() may follow."""
        await self._shutdown(graceful=False, reason="killed")

    async def _shutdown(self, *, graceful: bool, reason: str) -> None:
        if self._state == "stopping" and self._stopping is not None:
            await asyncio.shield(self._stopping)  # a concurrent stop()/kill(): wait for the first
            return
        if self._state in ("new", "stopped", "stopping"):
            return
        self._state = "stopping"
        self._stopping = asyncio.get_running_loop().create_future()
        try:
            await self._do_shutdown(graceful=graceful, reason=reason)
        finally:
            self._state = "stopped"
            self._stopping.set_result(None)
            self._stopping = None

    async def _do_shutdown(self, *, graceful: bool, reason: str) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError, Exception):
                await asyncio.wait_for(watcher, 2.0)
        proc = self._proc
        rc = None
        if proc is not None and proc.returncode is None and graceful:
            await self._cease()
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(asyncio.TimeoutError):
                rc = await asyncio.wait_for(proc.wait(), self._stop_timeout)
            if rc is None:
                self._log.warning("exabgp_stop_timeout", pid=proc.pid, timeout=self._stop_timeout)
        await self._kill_processes()
        if proc is not None:
            self._log.info("exabgp_stopped", pid=proc.pid, returncode=proc.returncode, how=reason)
        await self._drop_connection(reason)
        self._sessions_down(f"exabgp {reason}")
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        with contextlib.suppress(OSError):
            self.socket_path.unlink()
        if self._sock_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._sock_dir)
            self._sock_dir = None
            self.socket_path = self.workdir / "exabgp.sock"

    async def _cease(self, peers: Sequence[IPv4Address] | None = None, code: int = 2, timeout: float = 2.0) -> None:
        """Tear down established sessions (all when `peers` is None) with Cease/<code>; wait (bounded) for the downs.

        ExaBGP 5.0.15 closes its sessions on SIGTERM *without* a NOTIFICATION (its shutdown
        only closes the sockets), so a graceful stop sends `teardown` first: the peers then
        see "notification received (6,2)" (Cease, Administrative Shutdown).
        """
        up = [p for p, st in self._sessions.items() if st == "up" and (peers is None or p in peers)]
        if not up or self._conn is None:
            return
        deadline = time.monotonic() + timeout
        downs = {p: self._downs.get(p, 0) for p in up}
        selector = " , ".join(f"neighbor {p}" for p in up)
        with contextlib.suppress(RunError, asyncio.TimeoutError):
            await asyncio.wait_for(self._send(f"{selector} teardown {code}", barrier=True, stopping=True), timeout)
        # wait for the `down` event itself: an active peer reconnects within milliseconds
        while time.monotonic() < deadline and any(self._downs.get(p, 0) == n for p, n in downs.items()):
            await asyncio.sleep(0.01)
        missing = sum(self._downs.get(p, 0) == n for p, n in downs.items())
        self._log.debug("exabgp_cease_sent", peers=len(up), code=code, no_down_seen=missing)

    async def _kill_processes(self) -> None:
        """SIGKILL ExaBGP's group and the relay; reap ExaBGP. Bounded in time."""
        proc, pgid = self._proc, self._pgid
        if self._conn is not None and self._conn.pid:
            self._relays.add(self._conn.pid)
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for relay in sorted(self._relays):
            # the relay runs in its own process group (ExaBGP calls setpgrp for its children)
            if _is_our_relay(relay, str(self.socket_path)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(relay, signal.SIGKILL)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 5.0)
            if proc.returncode is None:
                self._log.error("exabgp_unkillable", pid=proc.pid)
                return
        self._pgid = None
        self._relays = {r for r in self._relays if _is_our_relay(r, str(self.socket_path))}

    # ----------------------------------------------------------------- relay I/O

    async def _on_relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pid: int | None = None
        sock = writer.get_extra_info("socket")
        with contextlib.suppress(OSError, AttributeError):
            pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if self._state != "running":
            writer.close()
            return
        conn = _Conn(reader, writer, pid)
        if pid:
            self._relays.add(pid)
        old, self._conn = self._conn, conn
        if old is not None:
            self._log.info("exabgp_relay_replaced", old_pid=old.pid, pid=pid)
            self._close_conn(old)
            await self._clear_pending("relay replaced")
        self._log.debug("exabgp_relay_connected", relay_pid=pid)
        proc = self._proc
        if not self._start_reported and proc is not None:
            # before the reader runs, so that ExaBGPStarted precedes this process's events
            self._start_reported = True
            self.restarts = self._spawn_restarts
            self.startup_seconds = time.monotonic() - self._started_at
            self._log.info(
                "exabgp_started",
                pid=proc.pid,
                relay_pid=pid,
                restarts=self._spawn_restarts,
                startup_seconds=round(self.startup_seconds, 3),
                neighbors=len(self._neighbors),
                bind=f"{self.bind_address}:{self.listen_port}",
            )
            self._on_event_safe(ExaBGPStarted(pid=proc.pid, restarts=self._spawn_restarts))
        conn.task = asyncio.create_task(self._read(conn), name=f"exabgp-read-{self.name}")
        self._connected.set()

    def _close_conn(self, conn: _Conn) -> None:
        if conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()
        with contextlib.suppress(Exception):
            conn.writer.close()

    async def _drop_connection(self, reason: str) -> None:
        conn, self._conn = self._conn, None
        self._connected.clear()
        if conn is not None:
            self._close_conn(conn)
        await self._clear_pending(reason)  # and wake senders waiting for acks

    async def _clear_pending(self, reason: str) -> None:
        async with self._acks:
            if self._pending:
                self._log.info("exabgp_commands_unacked", count=len(self._pending), reason=reason)
                self._pending.clear()
            self._acks.notify_all()

    async def _read(self, conn: _Conn) -> None:
        try:
            while True:
                try:
                    raw = await conn.reader.readline()
                except (ValueError, asyncio.LimitOverrunError) as exc:
                    self._log.error("exabgp_output_too_long", error=str(exc))
                    break
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    await self._handle_line(line)
        except (ConnectionError, OSError) as exc:
            self._log.debug("exabgp_relay_read_error", error=str(exc))
        if self._conn is conn:
            self._log.info("exabgp_relay_disconnected", relay_pid=conn.pid, exabgp_pid=self.pid)
            self._conn = None
            self._connected.clear()
            with contextlib.suppress(Exception):
                conn.writer.close()
            await self._clear_pending("relay disconnected")

    async def _handle_line(self, line: str) -> None:
        if line in ("done", "error"):
            async with self._acks:
                cmd = self._pending.popleft() if self._pending else None
                if line == "done":
                    self.acks_done += 1
                else:
                    self.acks_error += 1
                    self._log.warning("exabgp_command_error", command=cmd)
                if cmd is None:
                    self._log.debug("exabgp_ack_unmatched", ack=line)
                self._acks.notify_all()
            return
        if not line.startswith("{"):
            if line.endswith(" in progress"):  # "reload in progress" precedes the ack of `reload`
                self._log.debug("exabgp_output_text", line=line)
            else:
                self._log.info("exabgp_output_unparsed", line=line[:500])
            return
        try:
            msg = json.loads(line)
            event = self._event(msg)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._log.warning("exabgp_output_unparsed", line=line[:500], error=repr(exc))
            return
        if event is not None:
            self.events += 1
            self._on_event_safe(event)

    def _configured(self, peer: IPv4Address, kind: str) -> bool:
        if any(n.peer_address == peer for n in self._neighbors):
            return True
        # a late event of a neighbor reconfigure() removed (and already reported down)
        self._log.debug("exabgp_event_unconfigured_peer", peer=str(peer), type=kind)
        return False

    def _event(self, msg: dict[str, Any]) -> object | None:
        kind = msg.get("type")
        if kind == "state":
            nb = msg["neighbor"]
            peer = IPv4Address(nb["address"]["peer"])
            if not self._configured(peer, kind):
                return None
            state = nb["state"]
            reason = nb.get("reason") or None
            previous = self._sessions.get(peer)
            if state == "down":
                self._downs[peer] = self._downs.get(peer, 0) + 1
            self._sessions[peer] = state
            # a peer that cannot be reached flaps connected -> down every retry: keep that at debug
            log = self._log.info if state == "up" or previous == "up" else self._log.debug
            log("exabgp_session_state", peer=str(peer), state=state, reason=reason)
            return SessionState(peer_address=peer, state=state, reason=reason)
        if kind == "update":
            nb = msg["neighbor"]
            peer = IPv4Address(nb["address"]["peer"])
            if not self._configured(peer, kind):
                return None
            message = nb["message"]
            if "eor" in message:
                eor = message["eor"]
                if (eor.get("afi"), eor.get("safi")) != ("ipv4", "unicast"):
                    return None
                self._log.debug("exabgp_end_of_rib", peer=str(peer))
                return EndOfRib(peer_address=peer)
            if "update" in message:
                return parse_update(peer, message["update"])
            return None
        if kind == "notification" and msg.get("notification") == "shutdown":
            self._log.debug("exabgp_shutdown_notice", pid=self.pid)
            return None
        self._log.debug("exabgp_message_ignored", type=kind)
        return None

    def _on_event_safe(self, event: object) -> None:
        try:
            self._on_event(event)
        except Exception as exc:  # the owner's bug must not kill the reader or the supervisor
            self._log.exception("exabgp_event_handler_failed", event=repr(event), error=repr(exc))

    def _sessions_down(self, reason: str) -> None:
        for peer, state in list(self._sessions.items()):
            if state in ("connected", "up"):
                self._sessions[peer] = "down"
                self._log.info("exabgp_session_state", peer=str(peer), state="down", reason=reason, synthesized=True)
                self._on_event_safe(SessionState(peer_address=peer, state="down", reason=reason))

    def _log_tail(self, n: int = 600) -> str:
        """The last `n` characters ExaBGP wrote since its last start, as one line."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(self._log_offset, f.tell() - 4 * n))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [" ".join(ln.split()) for ln in text.splitlines()]
        lines = [ln for ln in lines if ln and ln.split()[1:]]  # drop bare "configuration" prefixes
        return " | ".join(lines)[-n:]

    # ----------------------------------------------------------------- commands

    async def _send(self, command: str, *, barrier: bool = False, stopping: bool = False) -> None:
        if self._state != "running" and not (stopping and self._state == "stopping"):
            raise RunError(f"ExaBGP adapter is {self._state}; cannot send {command!r}", node=self.name)
        async with self._send_lock:
            conn = self._conn
            if conn is None:
                self.commands_dropped += 1
                self._log.info("exabgp_command_dropped", command=command, reason="exabgp not connected")
                return
            limit = 0 if barrier else self._window - 1
            async with self._acks:
                try:
                    await asyncio.wait_for(
                        self._acks.wait_for(lambda: len(self._pending) <= limit or self._conn is not conn),
                        self._ack_timeout,
                    )
                except asyncio.TimeoutError:
                    wedged = True
                else:
                    wedged = False
            if wedged and self._conn is conn:
                self.commands_dropped += 1
                self._log.error(
                    "exabgp_ack_timeout", command=command, pending=len(self._pending), timeout=self._ack_timeout, pid=self.pid,
                )
                await self._kill_processes()  # the supervisor restarts it
                return
            if self._conn is not conn:
                self.commands_dropped += 1
                self._log.info("exabgp_command_dropped", command=command, reason="relay went away")
                return
            self._pending.append(command)
            try:
                conn.writer.write(command.encode("ascii") + b"\n")
                await asyncio.wait_for(conn.writer.drain(), self._ack_timeout)
            except (ConnectionError, OSError, asyncio.TimeoutError) as exc:
                self.commands_dropped += 1
                self._log.warning("exabgp_command_write_failed", command=command, error=repr(exc))
                return
            self.commands_sent += 1
            self._log.debug("exabgp_command", command=command)

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every command sent was acked (or the relay went away). False on timeout."""
        async with self._acks:
            try:
                await asyncio.wait_for(self._acks.wait_for(lambda: not self._pending), timeout)
            except asyncio.TimeoutError:
                return False
        return True

    async def announce(self, peer_address: IPv4Address | Sequence[IPv4Address], prefix: IPv4Network,
                       attrs: PathAttrs) -> None:
        await self._send(announce_command(peer_address, prefix, attrs))

    async def withdraw(self, peer_address: IPv4Address | Sequence[IPv4Address], prefix: IPv4Network) -> None:
        await self._send(withdraw_command(peer_address, prefix))

    async def teardown(self, peer_address: IPv4Address, code: int = 2) -> None:
        """Send a NOTIFICATION Cease/<code> and close the session; ExaBGP reconnects by itself.

        Acts only on a session ExaBGP holds Established; otherwise it is a no-op that
        ExaBGP still acks `done`.
        """
        await self._send(f"neighbor {peer_address} teardown {int(code)}", barrier=True)

    async def reconfigure(self, neighbors: Sequence[ExaNeighbor]) -> None:
        """Rewrite the config and `reload`: adds/removes neighbors without flapping the others."""
        neighbors = tuple(neighbors)
        try:
            render_config(neighbors, self._relay_cmd(), default_port=self.listen_port)  # validate first
        except ValueError as exc:
            raise RunError(f"ExaBGP config: {exc}", node=self.name) from None
        known = {n.peer_address for n in neighbors}
        removed = [n.peer_address for n in self._neighbors if n.peer_address not in known]
        if self._state != "running":
            self._neighbors = neighbors
            return
        # ExaBGP drops a removed neighbor's session without a NOTIFICATION; BIRD sends
        # Cease/Peer De-configured (6,3) when a protocol goes away, so send that first.
        await self._cease(removed, code=3)
        self._neighbors = neighbors
        self._write_config()
        self._log.info("exabgp_reconfigure", neighbors=len(neighbors), removed=[str(p) for p in removed])
        await self._send("reload", barrier=True)
        for peer in removed:
            if self._sessions.pop(peer, None) in ("connected", "up"):
                self._log.info("exabgp_session_state", peer=str(peer), state="down", reason="neighbor removed", synthesized=True)
                self._on_event_safe(SessionState(peer_address=peer, state="down", reason="neighbor removed"))
