"""One BGP session as BIRD runs it: the RFC 4271 state machine over up to two TCP connections.

Owns `Session`, its `SessionConfig`, the events it takes (`Start`, `Stop`, `Reset`, `TcpConnected`,
`TcpFailed`, `TcpAccepted`, `TcpData`, `TcpClosed`, `Tick`) and the actions it returns (`Connect`,
`Send`, `Close`, `Established`, `Down`, `Received`, `StaleFlush`). Pure and synchronous: no sockets, no
clock (`now` comes with every call), randomness from the `random.Random` it is given. The asyncio
adapter (meshsim/engines/native/transport.py) performs the actions and reports TCP events back.

Longer than ~400 lines on purpose: the state machine is one class (see `Session`) whose states share
the two connections' bookkeeping; the events, actions and timers it needs sit beside it.

Theory of operation (BIRD proto/bgp/bgp.c, whose structure this follows):
- A session is a *protocol* (state down | start | up, `proto_state`) holding an *outgoing* and an
  *incoming* connection, each with the RFC 4271 §8 states Idle, Connect, Active, OpenSent, OpenConfirm,
  Established (`bgp_conn.state`). `Start` begins after the current error wait (`bgp_start`,
  `startup_delay`); `bgp_startup` arms the outgoing connection: Active, and after `connect delay time`
  Connect (`bgp_active`, `bgp_connect`). A `passive` session never connects; it takes incoming ones.
- An incoming connection is taken only once the protocol is started and no other incoming one exists
  (`bgp_incoming_connection`); it gets our OPEN at once. A connection that is up gets OPEN, then waits
  for the peer's OPEN under the `startup hold time`.
- Collisions (RFC 4271 §6.8, `bgp_rx_open`): an OPEN on one connection stops outgoing attempts on the
  other; if the other is in OpenConfirm, the connection initiated by the side with the higher BGP
  identifier (then higher AS, RFC 6286) is kept and the other gets Cease / Connection collision
  resolution (6/7); a connection colliding with an Established one is closed the same way.
- Errors: a NOTIFICATION we send (`bgp_error`) or receive (`bgp_rx_notification`) with a code other
  than Cease, and a hold timer expiry, grow the error wait (`bgp_update_startup_delay`: MIN, then
  doubling up to MAX, forgotten after `error forget time`); the protocol goes down and starts again
  after that wait. A lost TCP connection does not grow it.
- Graceful restart (RFC 4724, `bgp_handle_graceful_restart`): when both sides advertised the capability
  and the Established connection is lost *without* a NOTIFICATION (TCP reset or close, or the peer
  reconnecting while we still think it is up), the peer's routes are kept as stale (`Down(graceful=True)`)
  and the protocol stays started; they are flushed (`StaleFlush`) when the peer's advertised restart
  time runs out, or when it comes back without forwarding state for IPv4 unicast (F bit), and the
  router flushes the ones not re-announced when the peer's End-of-RIB arrives. A hold timer expiry or a
  NOTIFICATION flushes at once (BIRD without long-lived graceful restart).
Every timer is jittered as BIRD does (`bgp_start_timer`, RFC 4271 §10) except the restart timer.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Callable, TypeAlias

from meshsim.bgp import codec
from meshsim.bgp.messages import (ADD_PATH_BOTH, IPV4_UNICAST, Capabilities, EndOfRib, GracefulRestart, Keepalive,
                                  Message, Negotiated, Notification, Open, RouteRefresh, Update, check_open,
                                  negotiate)
from meshsim.bgp.timers import SessionTimers, jittered

# BIRD proto/bgp/packets.c `bgp_msg_table`: the text `show protocols` prints for a NOTIFICATION.
NOTIFICATION_TEXT: dict[tuple[int, int], str] = {
    (1, 0): "Invalid message header", (1, 1): "Connection not synchronized", (1, 2): "Bad message length",
    (1, 3): "Bad message type", (2, 0): "Invalid OPEN message", (2, 1): "Unsupported version number",
    (2, 2): "Bad peer AS", (2, 3): "Bad BGP identifier", (2, 4): "Unsupported optional parameter",
    (2, 5): "Authentication failure", (2, 6): "Unacceptable hold time", (2, 7): "Required capability missing",
    (3, 0): "Invalid UPDATE message", (3, 1): "Malformed attribute list", (3, 2): "Unrecognized well-known attribute",
    (3, 3): "Missing mandatory attribute", (3, 4): "Invalid attribute flags", (3, 5): "Invalid attribute length",
    (3, 6): "Invalid ORIGIN attribute", (3, 8): "Invalid NEXT_HOP attribute", (3, 9): "Optional attribute error",
    (3, 10): "Invalid network field", (3, 11): "Malformed AS_PATH", (4, 0): "Hold timer expired",
    (5, 0): "Finite state machine error", (5, 1): "Unexpected message in OpenSent state",
    (5, 2): "Unexpected message in OpenConfirm state", (5, 3): "Unexpected message in Established state",
    (6, 0): "Cease", (6, 1): "Maximum number of prefixes reached", (6, 2): "Administrative shutdown",
    (6, 3): "Peer de-configured", (6, 4): "Administrative reset", (6, 5): "Connection rejected",
    (6, 6): "Other configuration change", (6, 7): "Connection collision resolution", (6, 8): "Out of Resources",
    (7, 0): "Invalid ROUTE-REFRESH message", (7, 1): "Invalid ROUTE-REFRESH message length",
}


def notification_text(code: int, subcode: int) -> str:
    """BIRD `bgp_error_dsc()`: the table entry, else the code's generic entry, else the numbers."""
    return NOTIFICATION_TEXT.get((code, subcode)) or NOTIFICATION_TEXT.get((code, 0)) or f"Error {code}/{subcode}"


class ProtoState(enum.Enum):
    """BIRD's protocol state, the STATE column of `birdc show protocols` and `calicoctl node status`."""

    DOWN = "down"
    START = "start"
    UP = "up"


class ConnState(enum.IntEnum):
    """RFC 4271 §8.2.2 states of one connection, ordered as BIRD orders `bgp_state_names`."""

    IDLE = 0
    CONNECT = 1
    ACTIVE = 2
    OPENSENT = 3
    OPENCONFIRM = 4
    ESTABLISHED = 5
    CLOSE = 6

    @property
    def text(self) -> str:
        return ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established", "Close")[self]


class ErrorClass(enum.Enum):
    """BIRD `bgp_err_classes`: the prefix of the last error in the INFO column."""

    NONE = ""
    MISC = "Error: "
    SOCKET = "Socket: "
    RECEIVED = "Received: "
    SENT = "BGP Error: "


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionConfig:
    """One `protocol bgp` block as confd renders it, reduced to what the state machine needs."""

    name: str
    """Calico protocol name: Mesh_192_168_0_82, Node_..., Global_..."""
    local_as: int
    peer_as: int
    router_id: IPv4Address
    passive: bool = False
    timers: SessionTimers = field(default_factory=SessionTimers)
    add_paths: bool = True
    """Calico's `add paths on` (RFC 7911, send and receive)."""

    def capabilities(self, restarting: bool) -> Capabilities:
        gr = None
        if self.timers.graceful_restart:
            # RFC 4724 §3: R bit while we recover from a restart (bird -R); F bit: BIRD keeps the
            # forwarding state (its kernel routes persist) for the families it restarts with.
            gr = GracefulRestart(restart_state=restarting, restart_time=self.timers.restart_time,
                                 families=((*IPV4_UNICAST, restarting),))
        add_path = ((*IPV4_UNICAST, ADD_PATH_BOTH),) if self.add_paths else ()
        return Capabilities(asn4=self.local_as, route_refresh=True, graceful_restart=gr, add_path=add_path)


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Enable the protocol (configured, `birdc enable`, node start)."""


@dataclass(frozen=True)
class Stop:
    """Disable the protocol (`birdc disable`, node stop): Cease to the peer, routes flushed."""

    subcode: int = 2  # RFC 4486: 2 Administrative Shutdown, 3 Peer De-configured


@dataclass(frozen=True)
class Reset:
    """`birdc restart NAME`: Cease / Administrative Reset (6/4), then start again."""


@dataclass(frozen=True)
class TcpConnected:
    conn: int


@dataclass(frozen=True)
class TcpFailed:
    conn: int
    error: str


@dataclass(frozen=True)
class TcpAccepted:
    conn: int


@dataclass(frozen=True)
class TcpData:
    conn: int
    data: bytes


@dataclass(frozen=True)
class TcpClosed:
    conn: int
    error: str = ""  # "" = the peer closed; otherwise strerror ("Connection reset by peer")


@dataclass(frozen=True)
class Tick:
    """Time passed: run whatever timers are due at `now`. `rx_ready(conn)`: whether bytes wait unread on a
    connection (the adapter's view of its socket; BIRD's sk_rx_ready()), asked before a hold timer kills it."""

    rx_ready: Callable[[int], bool] | None = None


Event: TypeAlias = Start | Stop | Reset | TcpConnected | TcpFailed | TcpAccepted | TcpData | TcpClosed | Tick


# -- actions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connect:
    """Open a TCP connection to the peer; report it back as `TcpConnected` or `TcpFailed`."""

    conn: int


@dataclass(frozen=True)
class Send:
    conn: int
    data: bytes


@dataclass(frozen=True)
class Close:
    """Close the connection once what was sent on it is written."""

    conn: int


@dataclass(frozen=True)
class Established:
    negotiated: Negotiated
    peer_open: Open


@dataclass(frozen=True)
class Down:
    """The session left Established. `graceful`: the peer's routes stay as stale (RFC 4724)."""

    reason: str
    graceful: bool


@dataclass(frozen=True)
class Received:
    """An UPDATE, End-of-RIB or ROUTE-REFRESH from the Established peer."""

    message: Update | EndOfRib | RouteRefresh


@dataclass(frozen=True)
class StaleFlush:
    """Drop every route of this peer still marked stale (RFC 4724 §4.2)."""

    reason: str


Action: TypeAlias = Connect | Send | Close | Established | Down | Received | StaleFlush


@dataclass
class Counters:
    """BGP messages on this session, by type (what a packet capture would count)."""

    messages_in: dict[str, int] = field(default_factory=dict)
    messages_out: dict[str, int] = field(default_factory=dict)

    def count(self, table: dict[str, int], kind: str, n: int = 1) -> None:
        table[kind] = table.get(kind, 0) + n


_KIND = {Open: "open", Update: "update", EndOfRib: "update", Keepalive: "keepalive", Notification: "notification",
         RouteRefresh: "route_refresh"}


@dataclass
class Conn:
    """One TCP connection of the session (BIRD `struct bgp_conn`)."""

    id: int = 0
    outbound: bool = True
    state: ConnState = ConnState.IDLE
    buffer: bytearray = field(default_factory=bytearray)
    connect_at: float | None = None
    hold_at: float | None = None
    keepalive_at: float | None = None
    hold_time: float = 0.0
    keepalive_time: float = 0.0
    local_open: Open | None = None
    peer_open: Open | None = None
    negotiated: Negotiated | None = None

    def reset(self) -> None:
        self.id, self.state = 0, ConnState.IDLE
        self.buffer = bytearray()
        self.connect_at = self.hold_at = self.keepalive_at = None
        self.local_open = self.peer_open = self.negotiated = None


class Session:
    """The state machine of one configured BGP peer. `handle(event, now)` returns actions in order;
    `deadline` is the next `now` at which a `Tick` has something to do (None: nothing pending).

    The big class owns the protocol state, the two connections, the error wait and the graceful-restart
    state of the peer, and the message counters; every rule sits next to its BIRD function and RFC.
    """

    def __init__(self, config: SessionConfig, rng: random.Random, new_conn_id: Callable[[], int]) -> None:
        self.config = config
        self._rng = rng
        self._new_id = new_conn_id
        self.state = ProtoState.DOWN
        self.started = False  # BSS_CONNECT reached: connections are taken and made
        self.out = Conn(outbound=True)
        self.inc = Conn(outbound=False)
        self.established: Conn | None = None
        self.since = 0.0
        self.error_class = ErrorClass.NONE
        self.error_text = ""
        self.startup_delay = 0.0
        self.startup_at: float | None = None
        self.last_error_at: float | None = None
        self.restarting = False  # we recover from our own restart (bird -R): R bit in our OPEN
        self.gr_ready = False  # both sides advertised graceful restart on the current session
        self.stale = False  # the peer's routes are stale, waiting for it to come back
        self.stale_until: float | None = None
        self.peer_restart_time: int | None = None
        self.counters = Counters()
        self.established_count = 0
        self._opens: dict[bool, tuple[Open, bytes]] = {}  # our OPEN and its bytes, by Restart State bit

    # -- views ------------------------------------------------------------------------------------

    @property
    def conn_state(self) -> ConnState:
        return max(self.inc.state, self.out.state)

    @property
    def info(self) -> str:
        """BIRD `bgp_get_status()`: the connection state and the last error (calicoctl's INFO column)."""
        err = (self.error_class.value + self.error_text) if self.error_class is not ErrorClass.NONE else ""
        if self.state is ProtoState.DOWN:
            return err
        state = self.conn_state
        text = "Passive" if state is ConnState.IDLE and self.started and self.config.passive else state.text
        return f"{text} {err}".strip() if state is not ConnState.ESTABLISHED else text

    @property
    def negotiated(self) -> Negotiated | None:
        return self.established.negotiated if self.established is not None else None

    def conn(self, conn_id: int) -> Conn | None:
        if conn_id and self.out.id == conn_id:
            return self.out
        if conn_id and self.inc.id == conn_id:
            return self.inc
        return None

    def conn_ids(self) -> list[int]:
        return [c.id for c in (self.out, self.inc) if c.id]

    @property
    def deadline(self) -> float | None:
        best: float | None = None
        for t in (self.startup_at, self.stale_until, self.out.connect_at, self.out.hold_at, self.out.keepalive_at,
                  self.inc.connect_at, self.inc.hold_at, self.inc.keepalive_at):
            if t is not None and (best is None or t < best):
                best = t
        return best

    # -- the one entry point ------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        out: list[Action] = []
        match event:
            case Start():
                self._start(now, out)
            case Stop(subcode=sub):
                self._admin_stop(now, sub, out)
            case Reset():
                self._admin_stop(now, 4, out)
                self._start(now, out)
            case TcpConnected(conn=cid):
                c = self.conn(cid)
                if c is self.out and c.state is ConnState.CONNECT:
                    self._send_open(c, now, out)  # bgp_connected
                elif c is None:
                    out.append(Close(cid))
            case TcpFailed(conn=cid, error=err):
                c = self.conn(cid)
                if c is not None:
                    self._sock_err(c, err, now, out)
            case TcpAccepted(conn=cid):
                self._incoming(cid, now, out)
            case TcpData(conn=cid, data=data):
                c = self.conn(cid)
                if c is None:
                    out.append(Close(cid))
                else:
                    self._data(c, data, now, out)
            case TcpClosed(conn=cid, error=err):
                c = self.conn(cid)
                if c is not None:
                    self._sock_err(c, err, now, out)
            case Tick(rx_ready=rx_ready):
                self._tick(now, out, rx_ready)
            case _:
                raise TypeError(f"not a session event: {event!r}")
        return out

    def send_updates(self, messages: list[bytes], now: float) -> list[Action]:
        """UPDATEs (already encoded for this session's negotiated parameters) to the Established peer."""
        c = self.established
        if c is None or not messages:
            return []
        self.counters.count(self.counters.messages_out, "update", len(messages))
        self._sent(c, now)
        return [Send(c.id, b"".join(messages))]

    def set_restarting(self, restarting: bool) -> None:
        """Whether our OPENs carry the Restart State bit (BIRD started with -R and still recovering)."""
        self.restarting = restarting

    # -- protocol start and stop ----------------------------------------------------------------------

    def _start(self, now: float, out: list[Action]) -> None:
        if self.state is not ProtoState.DOWN:
            return
        self.state = ProtoState.START
        self.since = now
        if self.startup_delay > 0:  # bgp_start_locked: BSS_DELAY, then bgp_startup
            self.startup_at = now + jittered(self.startup_delay, self._rng)
        else:
            self._startup(now)

    def _startup(self, now: float) -> None:
        """bgp_startup(): BSS_CONNECT; an active session arms its outgoing connection."""
        self.startup_at = None
        self.started = True
        if not self.config.passive:
            self._active(now)

    def _active(self, now: float) -> None:
        """bgp_active(): the outgoing connection waits `connect delay time` (at least 1 s), then connects."""
        self.out.reset()
        self.out.state = ConnState.ACTIVE
        self.out.connect_at = now + jittered(max(1.0, self.config.timers.connect_delay), self._rng)

    def _connect(self, now: float, out: list[Action]) -> None:
        """bgp_connect(): a new outgoing connection, retried after `connect retry time` if unanswered."""
        c = self.out
        c.reset()
        c.id = self._new_id()
        c.state = ConnState.CONNECT
        c.connect_at = now + jittered(self.config.timers.connect_retry, self._rng)
        out.append(Connect(c.id))

    def _admin_stop(self, now: float, subcode: int, out: list[Action]) -> None:
        """bgp_stop() from `birdc disable`/shutdown: Cease to every connection that has sent OPEN."""
        if self.state is ProtoState.DOWN:
            return
        was_up = self.established is not None
        for c in (self.out, self.inc):
            if c.state >= ConnState.OPENSENT and c.state is not ConnState.CLOSE:
                self._notify(c, 6, subcode, b"", now, out)
            elif c.id:
                out.append(Close(c.id))
            c.reset()
        self._store_error(ErrorClass.NONE, "")
        self.established = None
        self.state = ProtoState.DOWN
        self.started = False
        self.startup_at = None
        self.startup_delay = 0.0  # bgp_shutdown: an administrative stop or restart forgets the error wait
        self.since = now
        if was_up:
            out.append(Down(notification_text(6, subcode), graceful=False))
        if self.stale:
            self._flush_stale("protocol stopped", out)

    def _protocol_down(self, now: float, out: list[Action]) -> None:
        """bgp_stop() + bgp_down() after an error: both connections are gone; the protocol starts again
        after the error wait (nest restarts a protocol that went down without being disabled)."""
        for c in (self.out, self.inc):
            if c.id:
                out.append(Close(c.id))
            c.reset()
        self.established = None
        self.state = ProtoState.DOWN
        self.started = False
        self._start(now, out)

    def _update_startup_delay(self, now: float) -> None:
        """bgp_update_startup_delay(): MIN after a long quiet time, else double up to MAX."""
        t = self.config.timers
        if self.last_error_at is not None and now - self.last_error_at >= t.error_forget:
            self.startup_delay = 0.0
        self.last_error_at = now
        self.startup_delay = t.error_wait_min if not self.startup_delay else min(2 * self.startup_delay,
                                                                                 t.error_wait_max)

    def _store_error(self, cls: ErrorClass, text: str) -> None:
        self.error_class, self.error_text = cls, text

    # -- timers -----------------------------------------------------------------------------------------

    def _tick(self, now: float, out: list[Action], rx_ready: Callable[[int], bool] | None = None) -> None:
        if self.startup_at is not None and now >= self.startup_at:
            self._startup(now)
        if self.stale_until is not None and now >= self.stale_until:
            self._flush_stale(f"graceful restart time ({self.peer_restart_time} s) passed", out)  # bgp_graceful_restart_timeout
        for c in (self.out, self.inc):
            if c.connect_at is not None and now >= c.connect_at:
                if c.state is ConnState.ACTIVE:
                    self._connect(now, out)
                elif c.state is ConnState.CONNECT:  # bgp_connect_timeout(): close, try again at once
                    out.append(Close(c.id))
                    if self.state is ProtoState.START:
                        self._connect(now, out)
                    else:
                        c.reset()
            if c.hold_at is not None and now >= c.hold_at and c.state >= ConnState.OPENSENT:
                if rx_ready is not None and rx_ready(c.id):
                    # bgp_hold_timeout(): "if there is something in input queue, we are probably congested
                    # and perhaps just not processed BGP packets in time" -> 10 s more, not an error.
                    c.hold_at = now + 10.0
                    continue
                self._error(c, 4, 0, b"", now, out)  # bgp_hold_timeout() -> bgp_error(conn, 4, 0)
                continue
            if c.keepalive_at is not None and now >= c.keepalive_at and c.state >= ConnState.OPENCONFIRM:
                self._send(c, Keepalive(), now, out)

    def _sent(self, c: Conn, now: float) -> None:
        """RFC 4271 §4.4 / BIRD bgp_fire_tx(): the keepalive timer restarts whenever we send."""
        if c.keepalive_time > 0 and c.state >= ConnState.OPENCONFIRM:
            c.keepalive_at = now + jittered(c.keepalive_time, self._rng)

    # -- connections ------------------------------------------------------------------------------------

    def _incoming(self, cid: int, now: float, out: list[Action]) -> None:
        """bgp_incoming_connection()."""
        accept = self.state in (ProtoState.START, ProtoState.UP) and self.started and not self.inc.id
        est = self.established
        if est is not None and self.gr_ready:
            # The peer connects again while we think its session is up: it restarted (RFC 4724 §4.2).
            self._store_error(ErrorClass.MISC, "Neighbor graceful restart detected")
            self._graceful_down(est, "peer reconnected", now, out)
            accept = True
            if self.inc.id and self.inc.state > ConnState.ACTIVE:
                out.append(Close(self.inc.id))
                self.inc.reset()
        if not accept:
            out.append(Close(cid))
            return
        c = self.inc
        c.reset()
        c.id = cid
        self._send_open(c, now, out)

    def _send_open(self, c: Conn, now: float, out: list[Action]) -> None:
        """bgp_send_open(): OPEN, then the peer's OPEN is awaited under the startup hold time."""
        t = self.config.timers
        cached = self._opens.get(self.restarting)
        if cached is None:  # the config is fixed for a session's life: built and encoded once per R bit
            msg = Open(asn=self.config.local_as, hold_time=int(t.hold_time), router_id=self.config.router_id,
                       capabilities=self.config.capabilities(self.restarting))
            cached = self._opens[self.restarting] = (msg, codec.encode(msg, None))
        c.local_open = cached[0]
        c.state = ConnState.OPENSENT
        c.connect_at = None
        c.hold_at = now + jittered(t.startup_hold, self._rng)
        self._send(c, cached[0], now, out, cached[1])

    def _sock_err(self, c: Conn, error: str, now: float, out: list[Action]) -> None:
        """bgp_sock_err(): the TCP connection failed or was closed by the peer."""
        if c.state is ConnState.IDLE:
            return
        self._store_error(ErrorClass.SOCKET, error or "Connection closed")
        was_established = c is self.established
        if was_established and self.gr_ready:
            self._graceful_down(c, error or "Connection closed", now, out)
        out.append(Close(c.id))
        c.reset()
        if was_established and self.established is c:
            self._leave_established(error or "Connection closed", now, out)
        else:
            self._decision(now)

    def _decision(self, now: float) -> None:
        """bgp_decision(): re-arm the outgoing connection when nothing else is going on."""
        if (self.state is ProtoState.START and self.started and self.out.state is ConnState.IDLE
                and self.inc.state is not ConnState.OPENCONFIRM and not self.config.passive):
            self._active(now)

    def _leave_established(self, reason: str, now: float, out: list[Action]) -> None:
        """bgp_conn_leave_established_state(): without graceful restart the protocol stops (routes go)
        and starts again after the error wait."""
        self.established = None
        out.append(Down(reason, graceful=False))
        self._protocol_down(now, out)

    def _graceful_down(self, c: Conn, reason: str, now: float, out: list[Action]) -> None:
        """bgp_handle_graceful_restart(): keep the peer's routes as stale for its advertised restart
        time; the protocol goes back to start (not down), so nothing is flushed."""
        gr = c.peer_open.capabilities.graceful_restart if c.peer_open else None
        self.peer_restart_time = gr.restart_time if gr else 0
        self.stale = True
        self.stale_until = now + float(self.peer_restart_time)  # tm_start(p->gr_timer, remote gr_time)
        self.established = None
        self.state = ProtoState.START
        self.since = now
        out.append(Down(reason, graceful=True))
        if c.id:
            out.append(Close(c.id))
        c.reset()
        self._decision(now)

    def _flush_stale(self, reason: str, out: list[Action]) -> None:
        self.stale = False
        self.stale_until = None
        out.append(StaleFlush(reason))

    # -- messages ---------------------------------------------------------------------------------------

    def _send(self, c: Conn, msg: Message, now: float, out: list[Action], data: bytes | None = None) -> None:
        """Send `msg` (`data`: its bytes when already encoded)."""
        self.counters.count(self.counters.messages_out, _KIND[type(msg)])
        out.append(Send(c.id, codec.encode(msg, c.negotiated) if data is None else data))
        self._sent(c, now)

    def _notify(self, c: Conn, code: int, subcode: int, data: bytes, now: float, out: list[Action]) -> None:
        self._send(c, Notification(code, subcode, data), now, out)
        out.append(Close(c.id))

    def _error(self, c: Conn, code: int, subcode: int, data: bytes, now: float, out: list[Action]) -> None:
        """bgp_error(): NOTIFICATION, close the connection; a non-Cease error stops the protocol and
        grows the error wait. Routes are flushed (no graceful restart after an error we detect)."""
        self._store_error(ErrorClass.SENT, notification_text(code, subcode))
        was_established = c is self.established
        self._notify(c, code, subcode, data, now, out)
        c.reset()
        if code != 6:
            self._update_startup_delay(now)
            if was_established:
                self.established = None
                out.append(Down(notification_text(code, subcode), graceful=False))
            self._protocol_down(now, out)
        elif was_established:
            self._leave_established(notification_text(code, subcode), now, out)
        else:
            self._decision(now)

    def _data(self, c: Conn, data: bytes, now: float, out: list[Action]) -> None:
        if data == codec.KEEPALIVE_BYTES and not c.buffer and c.state is ConnState.ESTABLISHED:
            # the common case of an idle session, without framing and decoding
            self.counters.count(self.counters.messages_in, "keepalive")
            self._hold(c, now)
            return
        c.buffer += data
        try:
            raws, used = codec.frame(c.buffer)
        except codec.CodecError as exc:
            self._error(c, exc.code, exc.subcode, exc.data, now, out)
            return
        del c.buffer[:used]
        for raw in raws:
            if c.state in (ConnState.IDLE, ConnState.CLOSE):
                return  # closed by an earlier message of this batch
            try:
                msg = codec.decode(raw, c.negotiated)
            except codec.CodecError as exc:
                self._error(c, exc.code, exc.subcode, exc.data, now, out)
                return
            self.counters.count(self.counters.messages_in, _KIND[type(msg)])
            self._message(c, msg, now, out)

    def _fsm_error(self, c: Conn, now: float, out: list[Action]) -> None:
        # RFC 6608: 5/1 OpenSent, 5/2 OpenConfirm, 5/3 Established.
        sub = {ConnState.OPENSENT: 1, ConnState.OPENCONFIRM: 2, ConnState.ESTABLISHED: 3}.get(c.state, 0)
        self._error(c, 5, sub, b"", now, out)

    def _message(self, c: Conn, msg: Message, now: float, out: list[Action]) -> None:
        match msg:
            case Notification(code=code, subcode=sub):
                self._rx_notification(c, code, sub, now, out)
            case Open():
                if c.state is not ConnState.OPENSENT:
                    self._fsm_error(c, now, out)
                else:
                    self._rx_open(c, msg, now, out)
            case Keepalive():
                if c.state is ConnState.OPENCONFIRM:
                    self._hold(c, now)
                    self._enter_established(c, now, out)
                elif c.state is ConnState.ESTABLISHED:
                    self._hold(c, now)
                else:
                    self._fsm_error(c, now, out)
            case Update() | EndOfRib() | RouteRefresh():
                if c.state is not ConnState.ESTABLISHED:
                    self._fsm_error(c, now, out)
                    return
                self._hold(c, now)
                out.append(Received(msg))

    def _hold(self, c: Conn, now: float) -> None:
        """RFC 4271 §6.5: the hold timer restarts on every KEEPALIVE or UPDATE."""
        if c.hold_time > 0:
            c.hold_at = now + jittered(c.hold_time, self._rng)

    def _rx_notification(self, c: Conn, code: int, sub: int, now: float, out: list[Action]) -> None:
        """bgp_rx_notification(): the connection closes; anything but Cease grows the error wait."""
        self._store_error(ErrorClass.RECEIVED, notification_text(code, sub))
        was_established = c is self.established
        out.append(Close(c.id))
        c.reset()
        if was_established:
            self.established = None
            out.append(Down(notification_text(code, sub), graceful=False))
            if code != 6:
                self._update_startup_delay(now)
            self._protocol_down(now, out)
        elif code != 6:
            self._update_startup_delay(now)
            self._protocol_down(now, out)
        else:
            self._decision(now)

    def _rx_open(self, c: Conn, peer: Open, now: float, out: list[Action]) -> None:
        """bgp_rx_open(): check the OPEN, resolve a collision, agree on timers, go to OpenConfirm."""
        bad = check_open(self.config.peer_as, peer, self.config.router_id, self.config.local_as)
        if bad is not None:
            self._error(c, bad.code, bad.subcode, bad.data, now, out)
            return
        other = self.inc if c is self.out else self.out
        if other.state in (ConnState.CONNECT, ConnState.ACTIVE):
            if other.id:
                out.append(Close(other.id))
            other.reset()  # stop outgoing attempts
        elif other.state in (ConnState.OPENCONFIRM, ConnState.ESTABLISHED):
            # RFC 4271 §6.8 with RFC 6286: the side with the higher BGP identifier (then AS) dominates;
            # keep the connection the dominant side initiated.
            neighbor_dominant = (int(self.config.router_id), self.config.local_as) < (int(peer.router_id), peer.my_as)
            new_from_neighbor = c is self.inc
            if other.state is ConnState.OPENCONFIRM and neighbor_dominant == new_from_neighbor:
                self._error(other, 6, 7, b"", now, out)  # give up the other connection
            else:
                self._error(c, 6, 7, b"", now, out)  # give up this one
                return
        assert c.local_open is not None
        c.peer_open = peer
        c.negotiated = negotiate(c.local_open, peer)
        hold = float(c.negotiated.hold_time)
        c.hold_time = hold
        t = self.config.timers
        if hold <= 0:
            c.keepalive_time = 0.0
        elif t.keepalive_time:
            # BIRD 2 bgp_rx_open(): a configured keepalive scales with the negotiated hold, at least 1 s.
            c.keepalive_time = max(1.0, t.keepalive_time * hold / t.hold_time) if t.hold_time else t.keepalive_time
        else:
            c.keepalive_time = hold / 3  # RFC 4271 §10: a third of the hold time
        c.state = ConnState.OPENCONFIRM
        self._send(c, Keepalive(), now, out)
        c.hold_at = now + jittered(hold, self._rng) if hold > 0 else None
        if c.keepalive_time <= 0:
            c.keepalive_at = None

    def _enter_established(self, c: Conn, now: float, out: list[Action]) -> None:
        """bgp_conn_enter_established()."""
        assert c.negotiated is not None and c.peer_open is not None
        other = self.inc if c is self.out else self.out
        if other.state in (ConnState.CONNECT, ConnState.ACTIVE):
            if other.id:
                out.append(Close(other.id))
            other.reset()
        c.state = ConnState.ESTABLISHED
        self.established = c
        self.established_count += 1
        self.state = ProtoState.UP
        self.since = now
        self._store_error(ErrorClass.NONE, "")
        peer_gr = c.peer_open.capabilities.graceful_restart
        self.gr_ready = self.config.timers.graceful_restart and peer_gr is not None
        out.append(Established(c.negotiated, c.peer_open))
        if self.stale:
            # RFC 4724 §4.2: stale routes survive the new session only if the peer kept its forwarding
            # state for IPv4 unicast; otherwise they go now. With it, End-of-RIB ends the restart.
            kept = peer_gr is not None and any((a, s) == IPV4_UNICAST and f for a, s, f in peer_gr.families)
            if not kept:
                self._flush_stale("peer came back without forwarding state (RFC 4724 §4.2)", out)
            else:
                self.stale_until = None  # the peer's End-of-RIB now decides
                self.stale = False
