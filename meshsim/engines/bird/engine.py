"""Real BIRD 2 as a node's BGP engine (`implementation: bird`, in `--isolation netns`).

Owns `BirdEngine` (an `Engine`, see meshsim/engines/base.py): it renders the node's bird.cfg,
bird_aggr.cfg and bird_ipam.cfg as confd does (meshsim/engines/bird/confd.py, BIRD 2 dialect), starts and
supervises `bird -d -c bird.cfg -s <ctl>` inside the node's network namespace (with `-R`, as calico-node
starts it, when the node config says so), plays Felix's part for the node's pods (an `ifb` device per pod
named like Calico's veth, carrying `POD dev caliXXXX scope link`, which BIRD's kernel protocol learns and,
for a borrowed address, exports as a /32 exactly as in Calico), and reads back what BIRD and the kernel
say: sessions from `show protocols all`, routes from `ip -n NS route` into a `RouteHistory`.
Changes are event-driven: BIRD's `-d` log lines ("State changed to up") trigger a protocol refresh and
`ip -n NS monitor route` triggers a table refresh, stamped with the time the kernel reported the change.
BIRD's control socket path is `<workdir>/bird.ctl` (README: point `birdc -s` at it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from meshsim.agent.config import LocalState, NodeConfig
from meshsim.engines.base import EngineUsage, PeerCounts, SessionView
from meshsim.engines.bird import confd as bird
from meshsim.engines.bird.control import BirdControl, _dst_of, bird_binary, since_timestamp
from meshsim.errors import RunError
from meshsim.host import procs
from meshsim.host.iproute import IP, aip
from meshsim.host.procstats import proc_usage
from meshsim.routes.history import RouteHistory

_SOCKET_PATH_MAX = 100
_STATE_RE = re.compile(r"^bird: (?P<proto>\S+): State changed to (?P<state>\w+)")
_MONITOR_RE = re.compile(r"^\[(?P<ts>[0-9T:.-]+)\] (?P<route>\S.*)$")
START_DEADLINE = 60.0  # BIRD answering its socket: generous, it is a bug past this, not a busy machine


class BirdEngine:
    """One node's real BIRD (see the module docstring).

    Over 250 lines because it is every side of one daemon: config rendering, spawn and supervision, the held
    start, the control socket, the faults (freeze, kill, stop), and reading back sessions, counters and the
    kernel table; each part is small and uses the others' state.
    """

    kind = "bird"

    def __init__(self, config: NodeConfig, *, log: Any, on_change: Callable[[], None]) -> None:
        self.config = config
        self.log = log.bind(engine="bird")
        self.on_change = on_change
        self.netns = config.bgp_netns or config.netns
        if not self.netns:
            raise RunError("a BIRD node needs a network namespace of its own (meshsim run --isolation netns): "
                           "BIRD marks next hops in 127/8 unreachable", node=config.name)
        self.workdir = Path(config.workdir)
        self.confdir = self.workdir / "bird"
        self.confdir.mkdir(parents=True, exist_ok=True)
        ctl = self.workdir / "bird.ctl"
        self._sock_dir: str | None = None
        if len(str(ctl)) > _SOCKET_PATH_MAX:
            self._sock_dir = tempfile.mkdtemp(prefix="meshsim-bird-")
            ctl = Path(self._sock_dir) / "bird.ctl"
        self.ctl_path = ctl
        self.ctl = BirdControl(str(ctl))
        self.local = config.local
        self.history = RouteHistory()
        self.table_raw = ""
        self.workloads: dict[str, str] = {}  # programmed pod ip -> device
        self._tunnel: str | None = None  # the address put on tunl0
        self.proc: asyncio.subprocess.Process | None = None
        self.bgp_running = False
        self.restarts = 0
        self.frozen = False
        self._stopping = False
        self._admin_down = False
        self.rows: dict[str, bird.ProtocolRow] = {}
        self.details: dict[str, bird.ProtocolDetail] = {}
        self.flaps: dict[str, int] = {p.name: 0 for p in config.peers}
        self._last_state: dict[str, str] = {}
        self._dirty_proto = asyncio.Event()
        self._reread = False  # the route monitor lost events: re-read the table at the next refresh
        self._stat_last: dict[tuple[str, str, str], int] = {}
        self._stat_base: dict[tuple[str, str, str], int] = {}
        self._tasks: list[asyncio.Task] = []
        self._status_key: Any = None

    @property
    def running(self) -> bool:
        return self.bgp_running

    # -- rendering ---------------------------------------------------------------------------------
    def write_config(self, bgp_disabled: bool = False) -> None:
        """confd's three files. `bgp_disabled`: the BGP template says `disabled;` (the daemon runs, its BGP
        protocols wait for `birdc enable`: how a cold start is held until every node is up)."""
        inp = bird.bird_input_from_config(replace(self.config, local=self.local))
        for name, text in bird.render(inp, "bird2").items():
            if bgp_disabled and name == "bird.cfg":
                text = text.replace("template bgp bgp_template {", "template bgp bgp_template {\n  disabled;", 1)
            tmp = self.confdir / (name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.confdir / name)

    # -- the kernel (Felix's part: pods) ------------------------------------------------------------------
    async def program_workloads(self) -> None:
        """Felix's workload routes: `POD dev caliXXXX scope link` (proto boot), on an ifb device per pod (this
        kernel has no dummy module). BIRD's kernel protocol learns them."""
        want = {ip: iface for ip, iface in self.local.workloads}
        have = self.workloads
        cmds: list[str] = []
        for ip, dev in sorted(have.items()):
            if want.get(ip) != dev:
                cmds.append(f"route del {ip}/32 dev {dev}")
        for dev in sorted(set(have.values()) - set(want.values())):
            cmds.append(f"link del {dev}")
        for dev in sorted(set(want.values()) - set(have.values())):
            cmds += [f"link add {dev} type ifb", f"link set {dev} up"]
        for ip, dev in sorted(want.items()):
            if have.get(ip) != dev:
                cmds.append(f"route replace {ip}/32 dev {dev} scope link")
        self.workloads = dict(want)
        if self.local.tunnel != self._tunnel:
            # calico-node puts the IPIP tunnel address on tunl0; BIRD's `protocol direct` sees it, and exports it
            # when it lies in no block of the node (clusters moved from another IPAM keep such addresses)
            if self._tunnel:
                cmds.append(f"addr del {self._tunnel}/32 dev tunl0")
            if self.local.tunnel:
                cmds.append(f"addr replace {self.local.tunnel}/32 dev tunl0")
            self._tunnel = self.local.tunnel
        if cmds:
            rc, out = await aip("-force", "-batch", "-", ns=self.netns, stdin="\n".join(cmds) + "\n")
            if rc:
                self.log.warning("workload_routes_failed", error=" | ".join(out.strip().splitlines()[:3]))

    # -- the daemon -------------------------------------------------------------------------------------------
    def _argv(self) -> list[str]:
        exe = bird_binary()
        if exe is None:
            raise RunError("BIRD is not installed (apt-get install bird2)", node=self.config.name)
        argv = [IP, "netns", "exec", self.netns, exe, "-d", "-c", str(self.confdir / "bird.cfg"), "-s",
                str(self.ctl_path)]
        if self.config.recovery:
            argv.insert(5, "-R")  # calico-node: graceful-restart recovery at every start
        return argv

    async def prepare(self) -> None:
        """The daemon up, its BGP protocols disabled until `start()` (a held cold start). BIRD puts only the
        protocols it starts with into graceful-restart recovery (nest/proto.c `proto_start`: `if
        (graceful_restart_state == GRS_INIT) p->gr_recovery = 1`), so after a held start its recovery is
        already over: unlike a meshsim node, it does not hold routes back for a peer that never comes up."""
        await self._spawn(bgp_disabled=True)

    async def start(self) -> None:
        if self.bgp_running or self.frozen:
            return
        if self.proc is not None and self.proc.returncode is None:
            await self._enable_all(True)
            self.write_config()  # the file as confd renders it again (the daemon keeps what `enable` did)
            self.bgp_running = True
            self.on_change()
            return
        await self._spawn(bgp_disabled=False)

    async def _spawn(self, bgp_disabled: bool) -> None:
        self._stopping = False  # (an engine closed and started again observes again)
        if not self._tasks:
            self._tasks += [asyncio.create_task(self._monitor_routes(), name="bird-monitor"),
                            asyncio.create_task(self._refresher(), name="bird-refresher")]
            await self.program_workloads()
        self.write_config(bgp_disabled)
        with contextlib.suppress(FileNotFoundError):
            self.ctl_path.unlink()
        self.proc = await procs.spawn(self._argv(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                      cwd=str(self.confdir))
        self.bgp_running = not bgp_disabled
        self._admin_down = bgp_disabled
        self._tasks.append(asyncio.create_task(self._read_log(self.proc, self.workdir / "bird.log"), name="bird-log"))
        deadline = time.monotonic() + START_DEADLINE
        while True:
            try:
                await self.ctl.command("show status", timeout=5)
                break
            except (OSError, asyncio.TimeoutError, ConnectionError):
                if self.proc.returncode is not None or time.monotonic() > deadline:
                    raise RunError(f"BIRD did not start (exit {self.proc.returncode}); see "
                                   f"{self.workdir / 'bird.log'}", node=self.config.name) from None
                await asyncio.sleep(0.05)
        self.log.info("bird_started", pid=self.proc.pid, netns=self.netns, recovery=self.config.recovery)
        self._dirty_proto.set()
        self.on_change()

    async def _read_log(self, proc: asyncio.subprocess.Process, path: Path) -> None:
        assert proc.stdout is not None
        with open(path, "ab") as f:
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    break
                f.write(raw)
                f.flush()
                m = _STATE_RE.match(raw.decode(errors="replace").rstrip())
                if m:
                    name, state = m.group("proto"), m.group("state")
                    prev = self._last_state.get(name)
                    self._last_state[name] = state
                    if prev == "up" and state != "up" and name in self.flaps and not self._admin_down:
                        self.flaps[name] += 1
                        self.log.info("session_lost", peer=name, state=state)
                    elif state == "up" and name in self.flaps:
                        self.log.info("session_established", peer=name)
                    self._dirty_proto.set()
                elif b"Reconfigured" in raw or b"Netlink" in raw:
                    self._dirty_proto.set()
        rc = await proc.wait()
        if not self._stopping and not self.frozen and self.bgp_running and proc is self.proc:
            self.restarts += 1
            self.log.warning("bird_died", returncode=rc, restarts=self.restarts)
            self.bgp_running = False
            self.proc = None
            self.on_change()

    async def _enable_all(self, on: bool) -> None:
        """`birdc enable|disable` every BGP protocol: one command per kind of Calico protocol name, as a pattern
        (`"Mesh_*"`); a failure is an error, never silently 'ok' (BIRD's Cease depends on it)."""
        self._admin_down = not on
        verb = "enable" if on else "disable"
        for kind in sorted({p.name.split("_", 1)[0] for p in self.config.peers}):
            out, code = await self.ctl.command(f'{verb} "{kind}_*"')
            if code is not None and code >= 8000:
                raise RunError(f"birdc {verb} \"{kind}_*\": {out.strip()}", node=self.config.name)
        self._dirty_proto.set()

    async def stop(self) -> None:
        """`disable` every BGP protocol: BIRD sends Cease to each peer. Failing to is an error, not 'ok'."""
        if not self.bgp_running:
            return
        await self._enable_all(False)
        self.bgp_running = False
        self.on_change()

    async def close(self, paced: bool = False) -> None:
        """`birdc down`: BIRD sends its Ceases at its own pace, `paced` or not."""
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None and not self.frozen:
            with contextlib.suppress(Exception):
                await self.ctl.command("down", timeout=3)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
        await procs.stop(proc, grace=3)
        self.bgp_running = False
        # Python 3.11's asyncio.wait_for can swallow a cancellation that arrives as its inner wait completes
        # (gh-86296, fixed in 3.12): a refresher that lost its cancel ran on and this close never returned, which
        # left a worker's `stop` unanswered (seen with 100 BIRD nodes). Ask again, and never wait unbounded.
        pending = set(self._tasks)
        for _ in range(3):
            for t in pending:
                t.cancel()
            _, pending = await asyncio.wait(pending, timeout=2.0)
            if not pending:
                break
        if pending:
            self.log.warning("bird_tasks_left_running", tasks=sorted(t.get_name() for t in pending))
        self._tasks = []
        if self._sock_dir:
            shutil.rmtree(self._sock_dir, ignore_errors=True)

    def freeze(self) -> None:
        """Host crash: SIGSTOP BIRD (its sessions stay open, silent; peers notice by hold timer)."""
        self.frozen = True
        if self.proc is not None:
            procs.signal_group(self.proc.pid, signal.SIGSTOP)

    def kill(self) -> None:
        """SIGKILL BIRD: the kernel closes its sessions without a NOTIFICATION."""
        self.frozen = True
        if self.proc is not None:
            procs.kill_group_now(self.proc.pid)

    async def configure(self) -> None:
        self.write_config()
        if self.proc is not None and self.proc.returncode is None:
            out, code = await self.ctl.command("configure", timeout=30)
            if code is not None and code >= 8000:
                self.log.error("bird_configure_failed", reply=out.strip())
                raise RunError(f"birdc configure: {out.strip()}", node=self.config.name)
        self._dirty_proto.set()

    async def set_local(self, local: LocalState) -> None:
        """An IPAM change, in Calico's order: a block is claimed (its affinity written, so confd renders it into
        bird_aggr.cfg and runs `birdc configure`) before any pod gets an address in it, and released only after
        its pods are gone. So a new block reaches BIRD before its pods' routes: the other way round BIRD's kernel
        protocol (`learn`) picks up each pod route first and `calico_export_to_bgp_peers` exports it as a /32
        (no `calico_aggr()` line covers it yet), to be withdrawn again at the configure, and the block itself
        waits for every pod's device. A shrinking set of blocks goes the other way: pods first, then the config."""
        before = set(self.local.blocks) | set(self.local.affine)
        grows = bool((set(local.blocks) | set(local.affine)) - before)
        self.local = local
        self.config = replace(self.config, local=local)
        if grows:
            await self.configure()
            await self.program_workloads()
        else:
            await self.program_workloads()
            await self.configure()

    async def reconfigure(self, config: NodeConfig) -> None:
        self.config = replace(config, local=self.local)
        for p in config.peers:
            self.flaps.setdefault(p.name, 0)
        await self.configure()
        self.log.info("node_reconfigured", peers=len(config.peers), cluster_id=config.cluster_id)

    async def teardown(self, peer: str) -> None:
        await self.ctl.text(f"restart {peer}")

    # -- observing ---------------------------------------------------------------------------------------------
    async def _monitor_routes(self) -> None:
        """Follow the namespace's main table with `ip -ts monitor route`: every change goes into the history at
        the time the kernel reported it (iproute2's own timestamp, so a busy event loop here does not delay the
        figure); a full re-read (`refresh_table`) now and then keeps it honest."""
        while not self._stopping:  # close() also cancels; this ends the loop if a cancel is lost
            proc = await procs.spawn([IP, "-ts", "-n", self.netns, "monitor", "route"], stdout=asyncio.subprocess.PIPE,
                                     stderr=asyncio.subprocess.PIPE)
            assert proc.stdout is not None and proc.stderr is not None
            lost = asyncio.create_task(self._monitor_errors(proc.stderr), name="bird-monitor-errors")
            try:
                await self.refresh_table()
                self.on_change()
                while True:
                    raw = await proc.stdout.readline()
                    if not raw:
                        break
                    if self._monitor_line(raw.decode(errors="replace").rstrip("\n")):
                        self.on_change()
            finally:
                lost.cancel()
                await procs.stop(proc, grace=1)
            await asyncio.sleep(0.5)

    async def _monitor_errors(self, stderr: asyncio.StreamReader) -> None:
        """`ip monitor` says "netlink receive error No buffer space available (105)" when the kernel dropped
        events it could not queue (a busy machine, a burst of routes): re-read the table at once rather than
        at the next periodic re-read."""
        while raw := await stderr.readline():
            self.log.info("route_monitor_lost_events", error=raw.decode(errors="replace").strip())
            self._reread = True
            self._dirty_proto.set()

    def _monitor_line(self, line: str) -> bool:
        """One `ip -ts monitor route` line: `[ISO time] [Deleted ]ROUTE` as `ip route` prints ROUTE."""
        m = _MONITOR_RE.match(line)
        if m is None or " table " in line or line[m.end():].startswith((" ", "\t")):
            return False  # another table (local, ...), or an ECMP continuation line
        route = m.group("route")
        deleted = route.startswith("Deleted ")
        if deleted:
            route = route[len("Deleted "):]
        dst = _dst_of(route)
        if dst is None:
            return False
        try:
            stamp = datetime.fromisoformat(m.group("ts")).timestamp()
        except ValueError:
            stamp = time.time()
        if deleted and self.history.lines.get(dst) != route:
            return False  # a replaced route's old version: the new one is already in
        return self.history.apply({dst: None if deleted else route}, stamp) > 0

    async def refresh_table(self) -> bool:
        # `ip monitor route` lines applied while this read is in flight are newer than its snapshot: keep them
        # (a snapshot taken mid-convergence would otherwise remove routes until the next re-read, 5 s later)
        read_since = time.time()
        rc, text = await aip("route", "show", ns=self.netns)
        if rc != 0:
            return False
        lines: dict[str, str] = {}
        for line in text.splitlines():
            dst = _dst_of(line)
            if dst is not None:
                lines[dst] = line  # (an ECMP route's `nexthop` lines stay in table_raw only)
        self.table_raw = text
        return self.history.replace_all(lines, time.time(), read_since=read_since) > 0

    async def refresh_protocols(self) -> bool:
        if self.proc is None or self.proc.returncode is not None or self.frozen:
            details: dict[str, bird.ProtocolDetail] = {}
        else:
            try:
                text = await self.ctl.text("show protocols all", timeout=10)
            except (OSError, asyncio.TimeoutError, ConnectionError, RunError):
                return False
            details = bird.parse_protocols_all(text)
        self.details = details
        self.rows = {name: d.row for name, d in details.items()}
        key = [(s.name, s.state, s.info, s.established_at) for s in self.sessions()]
        key.append(tuple(sorted((k, v.updates_received, v.updates_sent) for k, v in self.counters().items())))
        changed = key != self._status_key
        self._status_key = key
        return changed

    async def _refresher(self) -> None:
        """Sessions after BIRD logged a state change (at most one `show protocols all` per 50 ms), and everything
        again every few seconds (counters, a table re-read); kept cheap: a hundred BIRD nodes share a worker."""
        periodic = 0.0
        while not self._stopping:  # close() also cancels; this ends the loop if a cancel is lost
            try:
                await asyncio.wait_for(self._dirty_proto.wait(), timeout=5.0)
            except asyncio.TimeoutError:
                pass
            await asyncio.sleep(0.05)
            self._dirty_proto.clear()
            changed = False
            try:
                if self._reread or time.monotonic() - periodic >= 5.0:
                    self._reread = False
                    periodic = time.monotonic()
                    changed |= await self.refresh_table()
                changed |= await self.refresh_protocols()
            except Exception as exc:  # a bug must not stop observation; said once per occurrence
                self.log.error("refresh_failed", error=repr(exc))
            if changed:
                self.on_change()

    # -- views ---------------------------------------------------------------------------------------------------
    def rendered_config(self) -> dict[str, str]:
        return {name: (self.confdir / name).read_text() for name in bird.FILES if (self.confdir / name).exists()}

    def extra_status(self) -> dict[str, Any]:
        """BIRD's control socket (`birdc -s PATH`) and its namespace, for people who want to ask BIRD directly."""
        return {"control_socket": str(self.ctl_path), "netns": self.netns}

    def table_text(self) -> str:
        """The table as the history holds it (`ip route` order comes from a fresh read: GET /routes?format=kernel)."""
        from meshsim.routes.routetable import parse_ip_route

        text = "".join(line + "\n" for line in self.history.lines.values())
        try:
            return parse_ip_route(text).render_ip()
        except ValueError:
            return text

    async def kernel_table(self) -> str:
        await self.refresh_table()
        return self.table_raw

    async def refresh(self) -> None:
        """Sessions and counters as BIRD says them now (the refresher reads them only on a logged change)."""
        if await self.refresh_protocols():
            self.on_change()

    def sessions(self) -> list[SessionView]:
        out = []
        for p in self.config.peers:
            row = self.rows.get(p.name)
            state = row.state if row else ("down" if not self.bgp_running else "start")
            since_ts = since_timestamp(row.since) if row else None
            out.append(SessionView(name=p.name, peer=p.address, peer_node=p.peer_node, type=p.type, state=state,
                                   info=row.info if row else "", since_ts=since_ts,
                                   established_at=since_ts if state == "up" else None, flaps=self.flaps.get(p.name, 0),
                                   passive=p.passive, rr_client=p.rr_client))
        return out

    def brief(self) -> tuple[dict[str, list], dict[str, Any]]:
        """Sessions and counter totals in the shape a runner follows (see NativeEngine.brief)."""
        sessions = {s.name: [s.state, s.established_at, s.stale_routes, s.flaps] for s in self.sessions()}
        counts = self.counters().values()
        totals: dict[str, Any] = {k: sum(getattr(c, k) for c in counts) for k in
                                  ("updates_sent", "updates_received", "withdrawals_sent", "withdrawals_received",
                                   "flaps")}
        totals["messages_sent"], totals["messages_received"] = {}, {}
        return sessions, totals

    def counters(self) -> dict[str, PeerCounts]:
        out = {}
        for p in self.config.peers:
            d = self.details.get(p.name)
            st = d.stats if d else {}

            def get(row: str, col: str) -> int:
                # BIRD restarts a protocol's route stats from zero when the session restarts: keep them monotonic
                raw = int((st.get(row) or {}).get(col) or 0)
                key = (p.name, row, col)
                last, base = self._stat_last.get(key, 0), self._stat_base.get(key, 0)
                if raw < last:
                    base += last
                    self._stat_base[key] = base
                self._stat_last[key] = raw
                return base + raw

            out[p.name] = PeerCounts(updates_sent=get("export updates", "accepted"),
                                     updates_received=get("import updates", "received"),
                                     withdrawals_sent=get("export withdraws", "accepted"),
                                     withdrawals_received=get("import withdraws", "received"),
                                     flaps=self.flaps.get(p.name, 0))
        return out

    async def rib(self) -> dict[str, Any]:
        routes = bird.parse_routes(await self.ctl.text("show route all", timeout=15))
        loc: dict[str, Any] = {}
        adj_in: dict[str, dict[str, Any]] = {p.name: {} for p in self.config.peers}
        for r in routes:
            attrs = bird.bgp_attrs(r)
            if r.protocol in adj_in:
                adj_in[r.protocol][str(r.prefix)] = attrs
            if r.primary:
                loc[str(r.prefix)] = {"from": r.protocol if r.protocol in adj_in else "local", "reason": "best",
                                      "kind": r.kind, **attrs}
        adj_out: dict[str, dict[str, Any]] = {}
        for p in self.config.peers:
            if self.rows.get(p.name) and self.rows[p.name].state == "up":
                exported = bird.parse_routes(await self.ctl.text(f"show route export {p.name} all", timeout=15))
                adj_out[p.name] = {str(r.prefix): bird.bgp_attrs(r) for r in exported}
            else:
                adj_out[p.name] = {}
        return {"adj_rib_in": adj_in, "loc_rib": loc, "adj_rib_out": adj_out,
                "note": "BIRD counts routes per channel (Route change stats), not UPDATE messages"}

    def usage(self) -> EngineUsage:
        pid = self.proc.pid if self.proc is not None and self.proc.returncode is None else None
        cpu, rss = proc_usage(pid)
        return EngineUsage(engine="bird", pid=pid, cpu_seconds=round(cpu, 3), rss_bytes=rss,
                           method="the BIRD daemon's own CPU and RSS from /proc (the agent around it apart)",
                           restarts=self.restarts)
