"""meshsim's own BGP engine: the sans-IO router over real TCP, and the Felix agent for the node's table.

Owns `NativeEngine` (an `Engine`, see meshsim/engines/base.py): it builds the node's `Router`
(meshsim.bgp.router) from its confd-style config, drives it from its `BgpTransport` and one timer, and
programs what the router decides into the node's `FelixAgent` (and, with `--dataplane kernel`, the
kernel). Work is batched per event-loop turn: the UPDATEs that a burst of received messages causes
are packed and sent once, and the table is programmed once. Many nodes share a process, so the worker's
CPU time is shared out among its nodes by the time each node's callbacks ran.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from meshsim.agent.config import LocalState, NodeConfig, PeerConfig
from meshsim.agent.netctx import NetContext
from meshsim.bgp import fsm
from meshsim.bgp.rib import BestChanged
from meshsim.bgp.router import (OpenTcp, PeerSpec, RecoveryDone, ResetPeer, Router, SessionDown, SessionUp, StartAll,
                                StopAll)
from meshsim.bgp.speaker import Originate, SpeakerConfig
from meshsim.bgp.timers import BIRD_GRACEFUL_RESTART_TIME, SessionTimers, bird_reload_time, bird_shutdown_offsets
from meshsim.bgp.types import PathAttrs
from meshsim.engines.base import EngineUsage, PeerCounts, SessionView
from meshsim.engines.native.transport import BgpTransport
from meshsim.host.procstats import proc_usage
from meshsim.routes.felix import FelixAgent, HostView
from meshsim.routes.history import RouteHistory
from meshsim.routes.routetable import Route

TIMER_GRID = 0.05
"""Seconds. Once all of a node's sessions are Established, its timer fires at the next multiple of this on the
event loop's clock (never early), so the timers of a worker's nodes that fall into one slot are handled in one
wakeup: an idle mesh's keepalives otherwise wake the worker once per session end (measured: idle CPU of 2 RR + 48
at 3 s keepalives -48 %; mesh 100 0.60 -> 0.31 cores). Not before: connect timers firing together make both ends
of many sessions dial at once, and the collisions that follow made a 2 RR + 48 cold start 1.5 s slower. BIRD 1.6,
which Calico's BIRD derives from, keeps its timers in whole seconds; 50 ms moves nothing that matters in a
steady state (keepalive 3 s jittered by up to 750 ms, hold 9 s)."""


def speaker_config(config: NodeConfig, local: LocalState) -> SpeakerConfig:
    return config.speaker_config(local)  # what confd renders into the node's BIRD filters


def peer_specs(config: NodeConfig) -> list[PeerSpec]:
    keepalive = float(config.keepalive_time) if config.keepalive_time else None
    filters = config.filter_table()
    out = []
    for p in config.peers:
        restart = p.restart_time if p.restart_time is not None else BIRD_GRACEFUL_RESTART_TIME
        timers = SessionTimers(hold_time=float(config.hold_time), keepalive_time=keepalive, restart_time=int(restart))
        out.append(PeerSpec(p.peer_info(filters), IPv4Address(p.session_address), p.port, p.passive, timers))
    return out


def host_view(config: NodeConfig) -> HostView:
    return HostView(name=config.name, address=IPv4Address(config.address), subnet=IPv4Network(config.subnet),
                    interface=config.interface, gateway=IPv4Address(config.gateway))


def _attrs_json(a: PathAttrs) -> dict[str, Any]:
    return {"next_hop": str(a.next_hop), "local_pref": a.local_pref, "as_path": list(a.as_path),
            "origin": a.origin.name.lower(), "med": a.med,
            "originator_id": str(a.originator_id) if a.originator_id else None,
            "cluster_list": [str(c) for c in a.cluster_list], "communities": list(a.communities)}


class NativeEngine:
    """One node's BGP in this process. Create it, `await start()`, feed it the datastore's changes.

    Over 250 lines because it is the one adapter between the pure Router and the world: it performs the
    Router's actions (TCP, timers, the Felix table, logs), maps the datastore's changes and the faults onto it,
    and keeps the per-node views (sessions, counters, CPU share) the agent serves.
    """

    kind = "meshsim"

    def __init__(self, config: NodeConfig, *, net: NetContext, log: Any, on_change: Callable[[], None],
                 kept_routes: dict[IPv4Network, Route] | None = None,
                 share: Callable[[float], tuple[float, int]] | None = None, dataplane: Any = None) -> None:
        """`share(busy)`: this node's (CPU seconds, memory bytes) given the seconds its callbacks ran (the
        worker divides its own CPU and RSS among its nodes); None: the whole process is this node's."""
        self.config = config
        self.local = config.local
        self.log = log
        self.on_change = on_change
        self.share = share
        self.dataplane = dataplane
        self.history = RouteHistory()
        now = time.time()
        recovering = bool(config.recovery)
        self.router = Router(speaker_config(config, self.local), peer_specs(config), seed=int(IPv4Address(config.address)),
                             restarting=recovering, restart_wait=config.restart_wait, now=now)
        self.felix = FelixAgent(host_view(config), config.ip_pools(), history=self.history, kept=kept_routes,
                                recovering=recovering, now=now)
        self.transport: BgpTransport | None = None
        self.frozen = False
        self.busy = 0.0  # seconds this node's callbacks ran (perf_counter: cheap, unlike a CPU clock)
        self._tick_event = fsm.Tick()
        self.flaps: dict[str, int] = {p.name: 0 for p in config.peers}
        self._stopping = False
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._flush_scheduled = False
        self._felix_scheduled = False
        self._up: set[str] = set()  # peers whose session is Established (TIMER_GRID applies when all are)
        self._reload: asyncio.TimerHandle | None = None  # BIRD reloading a re-rendered config (see _apply_local)
        self._reload_bgp: tuple[SpeakerConfig, frozenset[IPv4Network]] | None = None
        self._loop = asyncio.get_running_loop()
        # with a kernel dataplane, the table's deltas queue from the start (the node's own blocks and pods are
        # set before BGP starts, e.g. --hold-bgp); start() begins programming them, in order
        self._dataplane_queue: asyncio.Queue | None = asyncio.Queue() if dataplane is not None else None
        self._dataplane_task: asyncio.Task | None = None
        self._apply_local(self.local, now)

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.router.running

    def _passwords(self) -> dict[IPv4Address, str]:
        return {IPv4Address(p.session_address): p.password for p in self.config.peers if p.password}

    async def start(self) -> None:
        if self.router.running or self.frozen:
            return
        if self.transport is None:
            self.transport = BgpTransport(address=IPv4Address(self.config.session_address), port=self.config.bgp_port,
                                          net=NetContext(self.config.bgp_netns), feed=self.feed,
                                          new_conn_id=self.router.new_conn_id, passwords=self._passwords(), log=self.log)
            self.transport.listen()
        if self.dataplane is not None and self._dataplane_task is None:
            if self._dataplane_queue is None:
                self._dataplane_queue = asyncio.Queue()
            self._dataplane_task = asyncio.create_task(self._dataplane_loop(), name=f"dataplane-{self.config.name}")
        self._stopping = False
        self.feed(StartAll())
        self.log.info("bgp_started", peers=len(self.config.peers), recovery=self.router.recovering)

    async def prepare(self) -> None:
        """A held start: the node is up and its BGP waits for `start()`. Its graceful-restart recovery began
        with the node, as calico-node's `bird -R` begins it (BIRD's own held start cannot: see BirdEngine)."""

    async def stop(self, paced: bool = True, final: bool = False) -> None:
        """Cease to every peer (BIRD `disable`), then stop listening. `paced`: the Ceases leave as BIRD sends
        them, one protocol after the other (`bird_shutdown_offsets`); a run's final teardown does not wait.
        `final`: the node goes away (BIRD shutting down, see `StopAll.final`)."""
        if not self.router.running:
            return
        self._stopping = True
        names = sorted(self.router.peers)
        offsets = bird_shutdown_offsets(len(names)) if paced else [0.0] * len(names)
        t0 = self._loop.time()
        i = 0
        while i < len(names):
            # every Cease due by now goes in one batch (the loop's timers have a millisecond's grain)
            due = self._loop.time() - t0
            j = i + 1
            while j < len(names) and offsets[j] <= due:
                j += 1
            self.feed(StopAll(peers=tuple(names[i:j]), final=final))
            self._flush()
            i = j
            if i < len(names):
                await asyncio.sleep(max(0.0, t0 + offsets[i] - self._loop.time()))
        if not names:
            self.feed(StopAll(final=final))
        if self.transport is not None:
            self.transport.close_all()
            self.transport = None
        self.log.info("bgp_stopped")

    async def close(self, clear_kernel: bool = True, paced: bool = False) -> None:
        """The node goes away: BIRD's shutdown (Cease to every peer; `paced` as a node stopped in a run sends
        them, a run's teardown does not wait), then its kernel routes cleared (`clear_kernel`) and its tasks."""
        await self.stop(paced=paced, final=True)
        self._cancel_timer()
        if self._reload is not None:
            self._reload.cancel()
            self._reload = None
        if self.transport is not None:
            self.transport.close_all()
            self.transport = None
        if self._dataplane_task is not None:
            if clear_kernel and self.dataplane is not None:
                await self.dataplane.clear(list(self.felix.routes.values()))
            self._dataplane_task.cancel()
            await asyncio.gather(self._dataplane_task, return_exceptions=True)
            self._dataplane_task = None

    def freeze(self) -> None:
        self.frozen = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.freeze()

    def kill(self) -> None:
        self.frozen = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.reset()
            self.transport = None
        if self._dataplane_task is not None:
            self._dataplane_task.cancel()  # the kernel keeps what was programmed (BIRD `persist`)

    # -- the event path ------------------------------------------------------------------------------------
    def feed(self, event: object) -> None:
        """A TCP event (from the transport), a timer, or an operator command: through the router."""
        if self.frozen:
            return
        t0 = time.perf_counter()
        now = time.time()
        self._perform(self.router.handle(event, now, flush=False), now)  # type: ignore[arg-type]
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        self._arm(now)
        self.busy += time.perf_counter() - t0

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.frozen:
            return
        t0 = time.perf_counter()
        now = time.time()
        self._perform(self.router.flush(now), now)
        self._arm(now)
        self.busy += time.perf_counter() - t0

    def _perform(self, actions: list, now: float) -> None:
        t = self.transport
        for a in actions:
            match a:
                case fsm.Send(conn=cid, data=data):
                    if t is not None:
                        t.send(cid, data)
                case fsm.Close(conn=cid):
                    if t is not None:
                        t.close(cid)
                case OpenTcp(conn=cid, address=address, port=port):
                    if t is not None:
                        t.open(cid, address, port)
                    else:
                        self._loop.call_soon(self.feed, fsm.TcpFailed(cid, "BGP is stopped"))
                case BestChanged(prefix=prefix, new=new):
                    nh = None if new is None or new.source is None else new.attrs.next_hop
                    self.felix.set_learned(prefix, nh)
                    self._schedule_felix()
                case SessionUp(peer=peer, hold_time=hold, graceful_restart=gr):
                    self._up.add(peer)
                    self.log.info("session_established", peer=peer, hold_time=hold, graceful_restart=gr)
                    self.on_change()
                case SessionDown(peer=peer, reason=reason, graceful=graceful):
                    self._up.discard(peer)
                    if not self._stopping:
                        self.flaps[peer] = self.flaps.get(peer, 0) + 1
                    self.log.info("session_lost", peer=peer, reason=reason, graceful_restart=graceful)
                    self.on_change()
                case RecoveryDone(reason=reason):
                    self.log.info("graceful_restart_recovery_done", reason=reason)
                    if self.felix.recovering:
                        self.felix.end_recovery()
                        self._schedule_felix()

    # -- timers ----------------------------------------------------------------------------------------------
    def _arm(self, now: float) -> None:
        deadline = self.router.deadline
        if deadline == self._armed:
            return
        self._cancel_timer()
        if deadline is not None:
            self._armed = deadline
            when = self._loop.time() + max(0.0, deadline - now)
            if deadline > now and len(self._up) == len(self.router.peers):
                # steady state: on the worker's grid, so its nodes' timers that fall in one slot fire in one wakeup
                when = math.ceil(when / TIMER_GRID) * TIMER_GRID
            self._timer = self._loop.call_at(when, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._armed = None

    def _on_timer(self) -> None:
        self._timer = None
        self._armed = None
        if self.transport is not None and self._tick_event.rx_ready is None:
            self._tick_event = fsm.Tick(rx_ready=self.transport.rx_ready)
        self.feed(self._tick_event)

    # -- the table ---------------------------------------------------------------------------------------------
    def _schedule_felix(self) -> None:
        if not self._felix_scheduled:
            self._felix_scheduled = True
            self._loop.call_soon(self._apply_felix)

    def _apply_felix(self) -> None:
        self._felix_scheduled = False
        t0 = time.perf_counter()
        delta = self.felix.apply(time.time())
        if delta:
            if self._dataplane_queue is not None:
                self._dataplane_queue.put_nowait(delta)
            self.on_change()
        self.busy += time.perf_counter() - t0

    async def _dataplane_loop(self) -> None:
        """Program the kernel with what Felix decided, in order; deltas queued meanwhile go in one batch."""
        assert self._dataplane_queue is not None
        while True:
            deltas = [await self._dataplane_queue.get()]
            while not self._dataplane_queue.empty():
                deltas.append(self._dataplane_queue.get_nowait())
            for delta in deltas:
                await self.dataplane.apply(delta)

    # -- the datastore -------------------------------------------------------------------------------------------
    def _apply_local(self, local: LocalState, now: float) -> None:
        """IPAM's state for this node. Felix programs workloads at once; the BGP side (the blocks BIRD
        originates, the filters) changes only once BIRD has reloaded the config confd re-rendered for it, which
        takes `bird_reload_time(peers)` (BGP not started yet: nothing to wait for)."""
        self.local = local
        bgp = self._bgp_side(local)
        if self.router.running and bgp != (self.router.speaker.config, self.router.speaker.originated()):
            self._reload_bgp = bgp  # a change that comes while BIRD reloads goes in with that reload
            if self._reload is None:
                self._reload = self._loop.call_later(bird_reload_time(len(self.config.peers)), self._reloaded)
        else:
            self._apply_bgp(bgp, now)
        self.felix.set_local([IPv4Network(b) for b in local.blocks],
                             {IPv4Address(ip): iface for ip, iface in local.workloads})
        services = local.felix_routes()
        self.felix.set_services(services["static_routes"], services["reject"])
        self._schedule_felix()

    def _bgp_side(self, local: LocalState) -> tuple[SpeakerConfig, frozenset[IPv4Network]]:
        """What BIRD gets from confd for this IPAM state: its filters and the prefixes it originates."""
        return speaker_config(self.config, local), frozenset(IPv4Network(p) for p in local.originate)

    def _apply_bgp(self, bgp: tuple[SpeakerConfig, frozenset[IPv4Network]], now: float) -> None:
        config, originated = bgp
        self._perform(self.router.set_speaker_config(config, now), now)
        self._perform(self.router.handle(Originate(originated), now), now)

    def _reloaded(self) -> None:
        self._reload = None
        bgp, self._reload_bgp = self._reload_bgp, None
        if self.frozen or bgp is None:
            return
        t0 = time.perf_counter()
        now = time.time()
        self._apply_bgp(bgp, now)
        self._arm(now)
        self.busy += time.perf_counter() - t0
        self.log.info("config_reloaded", originated=len(bgp[1]),
                      seconds=round(bird_reload_time(len(self.config.peers)), 4))

    async def set_local(self, local: LocalState) -> None:
        if self.frozen:
            return
        t0 = time.perf_counter()
        self._apply_local(local, time.time())
        self._arm(time.time())
        self.busy += time.perf_counter() - t0

    async def reconfigure(self, config: NodeConfig) -> None:
        old = self.config
        self.config = config
        now = time.time()
        self._perform(self.router.set_peers(peer_specs(config), now), now)
        self._perform(self.router.set_speaker_config(speaker_config(config, self.local), now), now)
        self.felix.set_pools(config.ip_pools())
        self._schedule_felix()
        for p in config.peers:
            self.flaps.setdefault(p.name, 0)
        if self.transport is not None and self._passwords() != {IPv4Address(p.session_address): p.password
                                                               for p in old.peers if p.password}:
            self.transport.passwords = self._passwords()
        self._arm(now)
        self.log.info("node_reconfigured", peers=len(config.peers), cluster_id=config.cluster_id)

    async def teardown(self, peer: str) -> None:
        self.feed(ResetPeer(peer))

    # -- views ----------------------------------------------------------------------------------------------------
    def table_text(self) -> str:
        """The node's table as `ip route` prints it."""
        return self.felix.table.render_ip()

    async def kernel_table(self) -> str:
        if self.dataplane is None:
            from meshsim.agent.http import HttpError

            raise HttpError(409, "this node runs with the simulated dataplane (--dataplane sim)")
        return await self.dataplane.kernel_table()

    def _peer_configs(self) -> dict[str, PeerConfig]:
        return {p.name: p for p in self.config.peers}

    async def refresh(self) -> None:
        """Always current: the speaker is in this process."""

    def sessions(self) -> list[SessionView]:
        out = []
        speaker = self.router.speaker
        for p in self.config.peers:
            peer = self.router.peers.get(p.name)
            if peer is None:
                continue
            s = peer.session
            est = s.since if s.state is fsm.ProtoState.UP else None
            out.append(SessionView(name=p.name, peer=p.address, peer_node=p.peer_node, type=p.type,
                                   state=s.state.value, info=s.info, since_ts=s.since or None, established_at=est,
                                   flaps=self.flaps.get(p.name, 0), passive=p.passive, rr_client=p.rr_client,
                                   stale_routes=len(speaker.stale(p.name))))
        return out

    def brief(self) -> tuple[dict[str, list], dict[str, Any]]:
        """Sessions as {name: [state, established_at, stale routes, flaps]} and the counter totals: what a
        runner follows, computed without building the full views (it runs on every change)."""
        sessions: dict[str, list] = {}
        totals = dict.fromkeys(("updates_sent", "updates_received", "withdrawals_sent", "withdrawals_received"), 0)
        sent: dict[str, int] = {}
        received: dict[str, int] = {}
        flaps = 0
        for name, peer in self.router.peers.items():
            s = peer.session
            f = self.flaps.get(name, 0)
            flaps += f
            stale = self.router.speaker.stale_count(name)
            sessions[name] = [s.state.value, s.since if s.state is fsm.ProtoState.UP else None, stale, f]
            c = self.router.speaker.peer_counters(name)
            totals["updates_sent"] += c.updates_sent
            totals["updates_received"] += c.updates_received
            totals["withdrawals_sent"] += c.withdrawals_sent
            totals["withdrawals_received"] += c.withdrawals_received
            for kind, n in s.counters.messages_out.items():
                sent[kind] = sent.get(kind, 0) + n
            for kind, n in s.counters.messages_in.items():
                received[kind] = received.get(kind, 0) + n
        return sessions, {**totals, "flaps": flaps, "messages_sent": sent, "messages_received": received}

    def counters(self) -> dict[str, PeerCounts]:
        out = {}
        routes = self.router.speaker.counters()
        for name, peer in self.router.peers.items():
            c = routes.get(name)
            m = peer.session.counters
            out[name] = PeerCounts(updates_sent=c.updates_sent if c else 0,
                                   updates_received=c.updates_received if c else 0,
                                   withdrawals_sent=c.withdrawals_sent if c else 0,
                                   withdrawals_received=c.withdrawals_received if c else 0,
                                   flaps=self.flaps.get(name, 0), messages_sent=dict(m.messages_out),
                                   messages_received=dict(m.messages_in))
        return out

    async def rib(self) -> dict[str, Any]:
        """The RIBs as BIRD's `show route all` has them: every path per prefix (ADD-PATH), the best marked.
        `adj_rib_in` / `adj_rib_out` keep one entry per prefix (the lowest path id) for simple readers;
        `*_paths` list every path with its id."""
        sp = self.router.speaker
        names = [p.name for p in self.config.peers if p.name in self.router.peers]
        rib_in: dict[str, dict[str, Any]] = {}
        rib_in_paths: dict[str, list[dict[str, Any]]] = {}
        for n in names:
            stale = sp.stale_paths(n)
            entries = [{"prefix": str(p), "path_id": pid, **_attrs_json(path.attrs), "stale": (p, pid) in stale}
                       for (p, pid), path in sp.adj_rib_in_paths(n).items()]
            rib_in_paths[n] = entries
            rib_in[n] = {}
            for e in entries:
                rib_in[n].setdefault(e["prefix"], {k: v for k, v in e.items() if k not in ("prefix", "path_id")})
        rib_out_paths = {n: [{"prefix": str(p), "path_id": pid, **_attrs_json(a)}
                             for (p, pid), a in sp.adj_rib_out_paths(n).items()] for n in names}
        rib_out: dict[str, dict[str, Any]] = {}
        for n, entries in rib_out_paths.items():
            rib_out[n] = {}
            for e in entries:
                rib_out[n].setdefault(e["prefix"], {k: v for k, v in e.items() if k not in ("prefix", "path_id")})
        loc = {}
        for p, (path, reason) in sp.loc_rib().items():
            loc[str(p)] = {"from": path.source.name if path.source else "local", "reason": reason.name,
                           "path_id": sp.path_id(path), **_attrs_json(path.attrs),
                           "paths": len(sp.candidates(p))}
        return {"adj_rib_in": rib_in, "adj_rib_in_paths": rib_in_paths, "loc_rib": loc,
                "adj_rib_out": rib_out, "adj_rib_out_paths": rib_out_paths, "recovering": self.router.recovering}

    def usage(self) -> EngineUsage:
        if self.share is not None:
            cpu, rss = self.share(self.busy)
            method = ("CPU: the worker's CPU seconds shared out by the time each node's callbacks ran; memory: the "
                      "worker's RSS divided by the nodes it hosts")
        else:
            cpu, rss = proc_usage(os.getpid())
            method = "the node's own process, from /proc"
        return EngineUsage(engine="meshsim", pid=os.getpid(), cpu_seconds=round(cpu, 4), rss_bytes=rss, method=method)
