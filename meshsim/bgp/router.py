"""One node's BGP daemon, sans I/O: the speaker, one session per configured peer, and the wire in between.

Owns `Router`: it maps TCP events to the `Session` of the peer they belong to (meshsim.bgp.fsm), feeds
what the sessions receive to the `Speaker` (meshsim.bgp.speaker), and turns the speaker's exports into
UPDATE messages, packed as BIRD packs them (all prefixes sharing attributes in as few UPDATEs as fit,
RFC 4271 §4.3) and encoded once for every peer that negotiated the same parameters (a route reflector
sends the same bytes to all its clients). ADD-PATH (RFC 7911, BIRD `add paths on`, `add_paths`): received
path ids go to the speaker with each path, and a session that negotiated ADD-PATH send gets every path the
speaker exports to it, each with its path id. After a session's initial advertisement comes End-of-RIB
(RFC 4724 §2). It also runs this node's own graceful-restart recovery (`bird -R`, RFC 4724 §4.1): while
recovering, our OPENs carry the Restart State bit and nothing is exported until every peer has sent
End-of-RIB (or came up without graceful restart, or restarts itself), or `graceful restart wait` ran out.

Timers: `deadline` is the earliest `now` at which a `Tick` has work; the adapter arms one timer for it.
Pure and synchronous: no sockets, no asyncio, no clock; randomness from the seed it is given.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from itertools import repeat
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import TypeAlias

from meshsim.bgp import codec
from meshsim.bgp import fsm
from meshsim.bgp.fsm import Session, SessionConfig
from meshsim.bgp.messages import EndOfRib, Notification, RouteRefresh, Update
from meshsim.bgp.rib import BestChanged, PeerInfo
from meshsim.bgp.speaker import (Announce, Dropped, EndOfRibReceived, FlushStale, Originate, PeerDown, PeerUp,
                                 RefreshRequested, RouteReceived, RouteWithdrawn, Speaker, SpeakerConfig, Withdraw)
from meshsim.bgp.timers import BIRD_GRACEFUL_RESTART_WAIT, SessionTimers
from meshsim.bgp.types import PathAttrs

# -- configuration ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerSpec:
    """A configured peer: who it is (`info`), where its BGP listens, and its session settings."""

    info: PeerInfo
    address: IPv4Address
    """Where the peer's BGP really listens (its 127.x address on one machine, else its node address)."""
    port: int
    passive: bool
    timers: SessionTimers


# -- events ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Incoming:
    """A TCP connection from `address` was accepted on our BGP port."""

    conn: int
    address: IPv4Address


@dataclass(frozen=True)
class StartAll:
    """Start BGP: every session begins (the node starts, or `POST /start`)."""


@dataclass(frozen=True)
class StopAll:
    """Stop BGP gracefully: Cease to every peer (RFC 4486 subcode: 2 shutdown); BGP takes no new session.
    `peers`: only these get their Cease now (an adapter pacing the Ceases as BIRD does sends the others with
    later events); None: all of them. `final`: the node goes away with its BGP (BIRD shutting down): the
    sessions close and the RIB is left as it stands, as Calico's `persist` kernel protocol leaves the node's
    routes; withdrawing every learned route first would only delay the Ceases, and nothing reads this
    router again."""

    subcode: int = 2
    peers: tuple[str, ...] | None = None
    final: bool = False


@dataclass(frozen=True)
class ResetPeer:
    """`birdc restart NAME`: drop one session with Cease / Administrative Reset; it comes back."""

    peer: str


Event: TypeAlias = (Incoming | fsm.TcpConnected | fsm.TcpFailed | fsm.TcpData | fsm.TcpClosed | fsm.Tick | StartAll
                    | StopAll | ResetPeer | Originate)


# -- actions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenTcp:
    """Connect `conn` to `address`:`port` from our own address (report TcpConnected / TcpFailed)."""

    conn: int
    peer: str
    address: IPv4Address
    port: int


@dataclass(frozen=True)
class SessionUp:
    peer: str
    hold_time: int
    graceful_restart: bool


@dataclass(frozen=True)
class SessionDown:
    peer: str
    reason: str
    graceful: bool


@dataclass(frozen=True)
class RecoveryDone:
    """Our own restart recovery ended: the kernel may drop routes it kept from before (BIRD krt prune)."""

    reason: str


Action: TypeAlias = OpenTcp | fsm.Send | fsm.Close | SessionUp | SessionDown | BestChanged | RecoveryDone


@dataclass
class _Peer:
    spec: PeerSpec
    session: Session
    pending: dict[tuple[IPv4Network, int], PathAttrs | None] = field(default_factory=dict)
    """(prefix, path id) -> attributes to announce, or None to withdraw; the id is 0 without ADD-PATH send."""
    eor_due: bool = False
    recovered: bool = False  # this peer no longer holds our recovery back
    scheduled: float | None = None  # the deadline the heap holds for this peer


class Router:
    """The BGP of one node. Feed it `handle(event, now)` and perform the actions it returns, in order.

    A big class on purpose: it is the one place where sessions, speaker and wire meet (BIRD's
    proto/bgp: bgp.c + packets.c around nest/rt-table.c). It holds no socket and reads no clock.
    """

    def __init__(self, speaker_config: SpeakerConfig, peers: Iterable[PeerSpec], *, seed: int = 0,
                 restarting: bool = False, restart_wait: float = BIRD_GRACEFUL_RESTART_WAIT, now: float = 0.0,
                 add_paths: bool = True) -> None:
        self._rng = random.Random(seed)
        self._next_conn = 0
        self._add_paths = add_paths
        self.speaker = Speaker(speaker_config)
        self.peers: dict[str, _Peer] = {}
        self._by_address: dict[IPv4Address, str] = {}
        self._by_conn: dict[int, str] = {}
        self._heap: list[tuple[float, str]] = []
        self._dirty: set[str] = set()  # peers with something pending (UPDATEs or End-of-RIB)
        self.running = False
        self.final = False  # stopped for good (StopAll final): sessions that go down leave the RIB alone
        self.recovering = restarting
        self.recovery_deadline: float | None = now + restart_wait if restarting else None
        self.recovery_reason = ""
        self.messages_rejected = 0
        self._set_peers(list(peers), now, [])

    # -- identifiers ------------------------------------------------------------------------------------

    def new_conn_id(self) -> int:
        self._next_conn += 1
        return self._next_conn

    def peer_of_conn(self, conn: int) -> str | None:
        return self._by_conn.get(conn)

    # -- configuration ------------------------------------------------------------------------------------

    def _session_config(self, spec: PeerSpec) -> SessionConfig:
        c = self.speaker.config
        return SessionConfig(name=spec.info.name, local_as=c.local_as, peer_as=spec.info.asn, router_id=c.router_id,
                             passive=spec.passive, timers=spec.timers, add_paths=self._add_paths)

    def _set_peers(self, specs: list[PeerSpec], now: float, out: list[Action]) -> None:
        wanted = {s.info.name: s for s in specs}
        for name in sorted(set(self.peers) - set(wanted)):
            # BIRD: a protocol removed by reconfiguration sends Cease / Peer De-configured (6/3).
            self._session(name, fsm.Stop(subcode=3), now, out)
            peer = self.peers.pop(name)
            for cid in peer.session.conn_ids():
                self._by_conn.pop(cid, None)
        for name, spec in wanted.items():
            peer = self.peers.get(name)
            if peer is None or peer.spec.address != spec.address or peer.spec.port != spec.port \
                    or peer.spec.passive != spec.passive or peer.spec.timers != spec.timers \
                    or peer.spec.info.asn != spec.info.asn:
                if peer is not None:  # a changed `protocol bgp` block restarts that protocol
                    self._session(name, fsm.Stop(subcode=6), now, out)
                    for cid in peer.session.conn_ids():
                        self._by_conn.pop(cid, None)
                session = Session(self._session_config(spec), random.Random(self._rng.random()), self.new_conn_id)
                session.set_restarting(self.recovering)
                self.peers[name] = _Peer(spec, session)
                if self.running:
                    self._session(name, fsm.Start(), now, out)
            else:
                peer.spec = spec
        self._by_address = {p.spec.address: n for n, p in self.peers.items()}
        self._speaker(self.speaker.set_peers([p.spec.info for p in self.peers.values()]), now, out)

    def set_peers(self, specs: Iterable[PeerSpec], now: float) -> list[Action]:
        """Apply re-rendered peerings (confd after a resource change); untouched sessions keep running."""
        out: list[Action] = []
        self._set_peers(list(specs), now, out)
        self._flush(now, out)
        return out

    def set_speaker_config(self, config: SpeakerConfig, now: float) -> list[Action]:
        out: list[Action] = []
        self._speaker(self.speaker.set_config(config), now, out)
        self._flush(now, out)
        return out

    # -- the one entry point ------------------------------------------------------------------------------

    def handle(self, event: Event, now: float, *, flush: bool = True) -> list[Action]:
        """Handle one event. `flush=False` leaves the resulting UPDATEs pending until `flush(now)`, so
        an adapter can pack the exports of a burst of events into few messages (BIRD's bucket queues)."""
        out: list[Action] = []
        match event:
            case Incoming(conn=cid, address=address):
                name = self._by_address.get(address)
                if name is None or not self.running:
                    # RFC 4486: Cease / Connection Rejected to a connection we take from no configured peer.
                    self.messages_rejected += 1
                    out += [fsm.Send(cid, codec.encode(Notification(6, 5), None)), fsm.Close(cid)]
                else:
                    self._by_conn[cid] = name
                    self._session(name, fsm.TcpAccepted(cid), now, out)
            case fsm.TcpConnected(conn=cid) | fsm.TcpFailed(conn=cid) | fsm.TcpData(conn=cid) | fsm.TcpClosed(conn=cid):
                name = self._by_conn.get(cid)
                if name is None:
                    if isinstance(event, (fsm.TcpConnected, fsm.TcpData)):
                        out.append(fsm.Close(cid))
                else:
                    self._session(name, event, now, out)
            case fsm.Tick():
                self._tick(now, out, event)
            case StartAll():
                self.running = True
                for name in sorted(self.peers):
                    self._session(name, fsm.Start(), now, out)
                if self.recovering and all(p.recovered for p in self.peers.values()):
                    self._end_recovery("no BGP peer to wait for", now, out)
            case StopAll(subcode=sub, peers=which, final=final):
                self.running = False
                self.final = self.final or final
                for name in sorted(self.peers) if which is None else [n for n in which if n in self.peers]:
                    self._session(name, fsm.Stop(subcode=sub), now, out)
            case ResetPeer(peer=name):
                if name in self.peers:
                    self._session(name, fsm.Reset(), now, out)
            case Originate():
                self._speaker(self.speaker.handle(event, now), now, out)
            case _:
                raise TypeError(f"not a router event: {event!r}")
        if flush:
            self._flush(now, out)
        return out

    def flush(self, now: float) -> list[Action]:
        """Send every peer what is pending for it (see `handle(..., flush=False)`)."""
        out: list[Action] = []
        self._flush(now, out)
        return out

    @property
    def has_pending(self) -> bool:
        return bool(self._dirty)

    # -- timers -------------------------------------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        times = [self.recovery_deadline] if self.recovery_deadline is not None else []
        if self._heap:
            times.append(self._heap[0][0])
        return min(times) if times else None

    def _schedule(self, name: str) -> None:
        """Keep one heap entry per peer at or before its session's deadline (a later deadline is found
        when the earlier entry fires: no push per KEEPALIVE)."""
        peer = self.peers.get(name)
        if peer is None:
            return
        d = peer.session.deadline
        if d is not None and (peer.scheduled is None or d < peer.scheduled):
            peer.scheduled = d
            heapq.heappush(self._heap, (d, name))

    def _tick(self, now: float, out: list[Action], tick: fsm.Tick) -> None:
        if self.recovery_deadline is not None and now >= self.recovery_deadline:
            self._end_recovery("graceful restart wait ran out", now, out)
        while self._heap and self._heap[0][0] <= now:
            when, name = heapq.heappop(self._heap)
            peer = self.peers.get(name)
            if peer is None or peer.scheduled != when:
                continue  # stale entry
            peer.scheduled = None
            self._session(name, tick, now, out)

    # -- sessions -----------------------------------------------------------------------------------------------

    def _session(self, name: str, event: fsm.Event, now: float, out: list[Action]) -> None:
        peer = self.peers[name]
        for action in peer.session.handle(event, now):
            match action:
                case fsm.Connect(conn=cid):
                    self._by_conn[cid] = name
                    out.append(OpenTcp(cid, name, peer.spec.address, peer.spec.port))
                case fsm.Send():
                    out.append(action)
                case fsm.Close(conn=cid):
                    self._by_conn.pop(cid, None)
                    out.append(action)
                case fsm.Established(negotiated=neg, peer_open=peer_open):
                    peer.pending.clear()
                    peer.eor_due = True
                    self._dirty.add(name)
                    gr = peer_open.capabilities.graceful_restart
                    out.append(SessionUp(name, neg.hold_time, gr is not None))
                    # BIRD: exports to a graceful-restart peer wait for the end of our recovery; a peer without
                    # graceful restart, or restarting itself, is not waited for (its lock goes at once).
                    up = PeerUp(name, defer=self.recovering and gr is not None, add_path_send=neg.add_path_send)
                    self._speaker(self.speaker.handle(up, now), now, out)
                    if self.recovering and (gr is None or gr.restart_state):
                        self._peer_recovered(name, now, out)
                case fsm.Down(reason=reason, graceful=graceful):
                    peer.pending.clear()
                    peer.eor_due = False
                    out.append(SessionDown(name, reason, graceful))
                    if self.final:
                        continue
                    self._speaker(self.speaker.handle(PeerDown(name, reason, graceful), now), now, out)
                    if self.recovering and not graceful:
                        self._peer_recovered(name, now, out)  # BIRD: a protocol that went down holds no lock
                case fsm.Received(message=msg):
                    self._received(name, msg, now, out)
                case fsm.StaleFlush():
                    self._speaker(self.speaker.handle(FlushStale(name), now), now, out)
        self._schedule(name)

    def _received(self, name: str, msg: Update | EndOfRib | RouteRefresh, now: float, out: list[Action]) -> None:
        match msg:
            case Update(withdrawn=withdrawn, attrs=attrs, nlri=nlri, nlri_path_ids=nlri_ids,
                        withdrawn_path_ids=withdrawn_ids):
                # With ADD-PATH receive every NLRI carries its path id (RFC 7911 §3), else the ids are empty: 0.
                for prefix, path_id in zip(withdrawn, withdrawn_ids or repeat(0)):
                    self._speaker(self.speaker.handle(RouteWithdrawn(name, prefix, path_id), now), now, out)
                if attrs is not None:
                    for prefix, path_id in dict.fromkeys(zip(nlri, nlri_ids or repeat(0))):
                        self._speaker(self.speaker.handle(RouteReceived(name, prefix, attrs, path_id), now), now, out)
            case EndOfRib():
                self._speaker(self.speaker.handle(EndOfRibReceived(name), now), now, out)
                if self.recovering:
                    self._peer_recovered(name, now, out)
            case RouteRefresh():
                self.peers[name].eor_due = True
                self._dirty.add(name)
                self._speaker(self.speaker.handle(RefreshRequested(name), now), now, out)

    # -- our own restart (bird -R) ------------------------------------------------------------------------------

    def _peer_recovered(self, name: str, now: float, out: list[Action]) -> None:
        self.peers[name].recovered = True
        if all(p.recovered for p in self.peers.values()):
            self._end_recovery("End-of-RIB from every peer", now, out)

    def _end_recovery(self, reason: str, now: float, out: list[Action]) -> None:
        if not self.recovering:
            return
        self.recovering = False
        self.recovery_deadline = None
        self.recovery_reason = reason
        for peer in self.peers.values():
            peer.session.set_restarting(False)
        out.append(RecoveryDone(reason))
        self._speaker(self.speaker.release_exports(), now, out)

    # -- speaker outputs -> UPDATEs -----------------------------------------------------------------------------

    def _speaker(self, outputs: list, now: float, out: list[Action]) -> None:
        for o in outputs:
            match o:
                case Announce(peer=name, prefix=prefix, attrs=attrs, path_id=path_id):
                    self.peers[name].pending[(prefix, path_id)] = attrs
                    self._dirty.add(name)
                case Withdraw(peer=name, prefix=prefix, path_id=path_id):
                    self.peers[name].pending[(prefix, path_id)] = None
                    self._dirty.add(name)
                case BestChanged():
                    out.append(o)
                case Dropped():
                    pass

    def _flush(self, now: float, out: list[Action]) -> None:
        """Send every peer its pending changes: withdrawals packed, then each attribute set's prefixes packed,
        each with its path id (ADD-PATH: one prefix may go as several paths); End-of-RIB after the first
        advertisement of a session (unless exports are held back). Peers of one session shape that get the
        same changes share the encoded bytes."""
        cache: dict[tuple, list[bytes]] = {}
        dirty, self._dirty = self._dirty, set()
        for name in sorted(dirty):
            peer = self.peers.get(name)
            if peer is None:
                continue
            neg = peer.session.negotiated
            if neg is None or (not peer.pending and not peer.eor_due):
                continue
            held = self.speaker.deferred(name)
            if held and not peer.pending:
                self._dirty.add(name)  # End-of-RIB only once we advertise (RFC 4724 §4.1)
                continue
            withdraw = tuple(key for key, a in peer.pending.items() if a is None)
            groups: dict[PathAttrs, list[tuple[IPv4Network, int]]] = {}
            for key, attrs in peer.pending.items():
                if attrs is not None:
                    groups.setdefault(attrs, []).append(key)
            peer.pending = {}
            key = (codec.session_key(neg), withdraw, tuple((a, tuple(ps)) for a, ps in groups.items()))
            msgs = cache.get(key)
            if msgs is None:
                msgs = cache[key] = codec.encode_updates(groups, withdraw, neg) if (withdraw or groups) else []
            if peer.eor_due and not held:
                msgs = [*msgs, codec.encode(EndOfRib(), neg)]
                peer.eor_due = False
            for action in peer.session.send_updates(msgs, now):
                out.append(action)
            self._schedule(name)

    # -- views ---------------------------------------------------------------------------------------------------

    def session(self, name: str) -> Session:
        return self.peers[name].session
