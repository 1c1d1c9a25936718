"""One Calico node running real BIRD 2 instead of the meshsim speaker (`meshsim birdnode --config FILE`).

Owns `BirdNodeAgent`: renders the node's bird.cfg / bird_aggr.cfg / bird_ipam.cfg as confd does
(meshsim.engines.bird.confd, BIRD 2 dialect), starts and supervises `bird -d -c bird.cfg -s <ctl socket>` inside the node's
network namespace (`ip netns exec`; BIRD will not resolve next hops in 127/8, so a BIRD node always has a
namespace of its own), plays Felix's part for the node's pods (an `ifb` device per pod named like Calico's veth,
carrying `POD dev caliXXXX scope link`, which BIRD's kernel protocol learns and, for a borrowed address, exports as
a /32 exactly as in Calico), and serves the same HTTP JSON API as meshsim.agent.node, built from what BIRD and the
kernel say:

  GET  /status    sessions from `birdc show protocols` (the boxed `calicoctl node status` text in "text")
  GET  /routes    the namespace's kernel table (`ip -n NS route`): the routes BIRD programmed, line for line
  GET  /rib       `show route all` (Loc-RIB, per-protocol Adj-RIB-In) and `show route export P`
  GET  /counters  route updates/withdrawals per protocol (`show protocols all`), flaps, CPU and RSS
  GET  /state     all of the above; `?after=V&timeout=S` waits for version > V
  POST /local     new IPAM state: pods (kernel routes) and blocks (bird_aggr.cfg), then `birdc configure`
  POST /config    new peers, pools or cluster ID: re-render, `birdc configure`
  POST /stop      `disable` every BGP protocol (BIRD sends Cease; peers withdraw); /start enables them
  POST /teardown  {"peer": NAME}: `restart NAME`
  POST /shutdown  `birdc down` and exit

Changes are event-driven: BIRD's `-d` log lines ("State changed to up") trigger a protocol refresh and
`ip -n NS monitor route` triggers a table refresh, stamped with the time the kernel reported the change.
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
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

from meshsim.engines.bird import confd as bird
from meshsim.errors import RunError
from meshsim.agent.base import VersionedState, serve_until_signalled
from meshsim.agent.http import HttpError, serve
from meshsim.logs import configure, get_logger
from meshsim.agent.node import hms, proc_usage
from meshsim.agent.config import LocalState, NodeConfig, PeerConfig
from meshsim.report.calicoctl import StatusRow, node_status
from meshsim.routes.routetable import parse_ip_route

_SOCKET_PATH_MAX = 100
_STATE_RE = re.compile(r"^bird: (?P<proto>\S+): State changed to (?P<state>\w+)")
_IP_DST_RE = re.compile(r"^(?:(?:blackhole|unreachable|prohibit|unicast|local|broadcast|throw)\s+)?(?P<dst>\S+)")
TOTAL_KEYS = ("updates_sent", "updates_received", "withdrawals_sent", "withdrawals_received", "flaps")


def since_timestamp(since: str, now: float | None = None) -> float | None:
    """BIRD 2's `Since` column ("09:39:45.606" today, "2024-05-01" older, or ISO long) as a Unix time."""
    now = time.time() if now is None else now
    try:
        if re.fullmatch(r"\d\d:\d\d:\d\d(\.\d+)?", since):
            hms, _, frac = since.partition(".")
            day = time.localtime(now)
            h, m, s = (int(x) for x in hms.split(":"))
            ts = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, h, m, s, 0, 0, -1)) + float("0." + (frac or "0"))
            if ts > now + 60:  # logged just before midnight, read just after
                ts -= 86400
            return ts
        if re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", since):
            main, _, frac = since.partition(".")
            return time.mktime(time.strptime(main, "%Y-%m-%d %H:%M:%S")) + float("0." + (frac or "0"))
        if re.fullmatch(r"\d{4}-\d\d-\d\d", since):
            return time.mktime(time.strptime(since, "%Y-%m-%d"))
    except (ValueError, OverflowError):
        return None
    return None



def bird_binary() -> str | None:
    return shutil.which("bird") or (("/usr/sbin/bird") if os.path.exists("/usr/sbin/bird") else None)


class BirdControl:
    """BIRD's control socket, spoken directly (what birdc does): one connection per command."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def command(self, cmd: str, timeout: float = 10.0) -> tuple[str, int | None]:
        async def go() -> tuple[str, int | None]:
            reader, writer = await asyncio.open_unix_connection(self.path, limit=1 << 24)
            try:
                await reader.readline()  # "0001 BIRD 2.0.12 ready."
                writer.write(cmd.encode() + b"\n")
                await writer.drain()
                lines = []
                while True:
                    raw = await reader.readline()
                    if not raw:
                        break
                    line = raw.decode(errors="replace").rstrip("\n")
                    lines.append(line)
                    if len(line) >= 5 and line[:4].isdigit() and line[4] == " ":
                        break
                return bird.split_reply(lines)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        return await asyncio.wait_for(go(), timeout)

    async def text(self, cmd: str, timeout: float = 10.0) -> str:
        out, code = await self.command(cmd, timeout)
        if code is not None and code >= 8000:
            raise RunError(f"birdc {cmd!r}: {out.strip()}")
        return out


def _dst_of(line: str) -> str | None:
    if not line.strip() or line[0].isspace():
        return None
    m = _IP_DST_RE.match(line)
    if not m:
        return None
    dst = m.group("dst")
    if dst == "default":
        return "0.0.0.0/0"
    return dst if "/" in dst else f"{dst}/32"


class BirdNodeAgent(VersionedState):
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.log = get_logger(node=config.name, engine="bird")
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
        self.workloads: dict[str, str] = {}  # programmed pod ip -> device
        self._init_versioned()
        self.shutdown = asyncio.Event()
        self.bgp_running = False
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False
        self._admin_down = False
        # sessions
        self.rows: dict[str, bird.ProtocolRow] = {}
        self.details: dict[str, bird.ProtocolDetail] = {}
        self.flaps: dict[str, int] = {p.name: 0 for p in config.peers}
        self._last_state: dict[str, str] = {}
        self._status_key: Any = None
        # kernel table
        self.table_text = ""
        self.lines: dict[str, str] = {}  # dst -> line
        self.changed_at: dict[str, float] = {}
        self.removed_at: dict[str, float] = {}
        self.last_change: float | None = None
        self.changes = 0
        self.routelog: deque = deque(maxlen=50_000)
        self._table_event: float | None = None
        self._dirty_table = asyncio.Event()
        self._dirty_proto = asyncio.Event()
        self._counters_key: Any = None
        self._stat_last: dict[tuple[str, str, str], int] = {}
        self._stat_base: dict[tuple[str, str, str], int] = {}
        self._tasks: list[asyncio.Task] = []
        self._ip = shutil.which("ip") or "ip"

    # -- rendering ------------------------------------------------------------------------------------
    def bird_input(self) -> bird.BirdInput:
        return bird.bird_input_from_config(replace(self.config, local=self.local))

    def write_config(self) -> None:
        for name, text in bird.render(self.bird_input(), "bird2").items():
            tmp = self.confdir / (name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.confdir / name)

    # -- the kernel (Felix's part: pods) ----------------------------------------------------------------
    async def _run(self, *argv: str, stdin: str | None = None, timeout: float = 15.0) -> tuple[int, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
            return proc.returncode or 0, out.decode(errors="replace")
        except (OSError, asyncio.TimeoutError) as exc:
            return 1, str(exc)

    async def program_workloads(self) -> None:
        """Felix's workload routes: `POD dev caliXXXX scope link` (proto boot), on an ifb device per pod (this kernel
        has no dummy module; a veth per pod would do as well). BIRD's kernel protocol learns them."""
        want = {ip: iface for ip, iface in self.local.workloads}
        have = self.workloads
        cmds: list[str] = []
        for ip, dev in sorted(have.items()):
            if want.get(ip) != dev:
                cmds.append(f"route del {ip}/32 dev {dev}")
        for dev in sorted(set(have.values()) - set(want.values())):
            cmds.append(f"link del {dev}")
        new_devs = set(want.values()) - set(have.values())
        for dev in sorted(new_devs):
            cmds += [f"link add {dev} type ifb", f"link set {dev} up"]
        for ip, dev in sorted(want.items()):
            if have.get(ip) != dev:
                cmds.append(f"route replace {ip}/32 dev {dev} scope link")
        self.workloads = dict(want)
        if cmds:
            rc, out = await self._run(self._ip, "-n", self.netns, "-force", "-batch", "-", stdin="\n".join(cmds) + "\n")
            if rc:
                self.log.warning("workload_routes_failed", error=" | ".join(out.strip().splitlines()[:3]))

    # -- BIRD lifecycle ------------------------------------------------------------------------------------
    def _bird_argv(self) -> list[str]:
        exe = bird_binary()
        if exe is None:
            raise RunError("BIRD is not installed (apt-get install bird2)", node=self.config.name)
        argv = [self._ip, "netns", "exec", self.netns, exe, "-d", "-c", str(self.confdir / "bird.cfg"),
                "-s", str(self.ctl_path)]
        if os.environ.get("MESHSIM_BIRD_RECOVERY") == "1":
            argv.insert(5, "-R")  # Calico's flag: graceful-restart recovery at start
        return argv

    async def start_bgp(self) -> None:
        if self.bgp_running:
            return
        if self.proc is not None and self.proc.returncode is None:
            await self._enable_all(True)
            self.bgp_running = True
            await self._bump()
            return
        self.write_config()
        with contextlib.suppress(FileNotFoundError):
            self.ctl_path.unlink()
        logf = self.workdir / "bird.log"
        self.proc = await asyncio.create_subprocess_exec(
            *self._bird_argv(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, cwd=str(self.confdir), start_new_session=True)
        (self.workdir / "exabgp.pid").write_text(str(self.proc.pid))  # the fabric kills this group on crash/kill
        self.bgp_running = True
        self._tasks.append(asyncio.create_task(self._read_log(self.proc, logf), name="bird-log"))
        deadline = time.monotonic() + 15
        while True:
            try:
                await self.ctl.command("show status", timeout=2)
                break
            except (OSError, asyncio.TimeoutError, ConnectionError):
                if self.proc.returncode is not None or time.monotonic() > deadline:
                    raise RunError(f"BIRD did not start (exit {self.proc.returncode}); see {logf}",
                                   node=self.config.name) from None
                await asyncio.sleep(0.05)
        self.log.info("bird_started", pid=self.proc.pid, netns=self.netns)
        self._dirty_proto.set()
        self._dirty_table.set()
        await self._bump()

    async def _read_log(self, proc: asyncio.subprocess.Process, path: Path) -> None:
        assert proc.stdout is not None
        with open(path, "ab") as f:
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    break
                f.write(raw)
                f.flush()
                line = raw.decode(errors="replace").rstrip()
                m = _STATE_RE.match(line)
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
                elif "Reconfigured" in line or "Netlink" in line:
                    self._dirty_proto.set()
        rc = await proc.wait()
        if not self._stopping and self.bgp_running and proc is self.proc:
            self.restarts += 1
            self.log.warning("bird_died", returncode=rc, restarts=self.restarts)
            self.bgp_running = False
            self.proc = None
            await self._bump()
            if self.restarts <= 5 and not self.shutdown.is_set():
                await asyncio.sleep(min(0.5 * self.restarts, 5))
                try:
                    await self.start_bgp()
                except RunError as exc:
                    self.log.error("bird_restart_failed", error=str(exc))

    async def _enable_all(self, on: bool) -> None:
        self._admin_down = not on
        for p in self.config.peers:
            with contextlib.suppress(Exception):
                await self.ctl.command(f"{'enable' if on else 'disable'} {p.name}")
        self._dirty_proto.set()

    async def stop_bgp(self) -> None:
        if not self.bgp_running:
            return
        await self._enable_all(False)
        self.bgp_running = False
        await self._bump()

    async def stop_bird(self) -> None:
        self._stopping = True
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self.ctl.command("down", timeout=3)
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                try:
                    await asyncio.wait_for(proc.wait(), 3)
                    break
                except asyncio.TimeoutError:
                    continue
        self.bgp_running = False

    async def configure(self) -> None:
        self.write_config()
        if self.proc is not None and self.proc.returncode is None:
            out, code = await self.ctl.command("configure", timeout=15)
            if code is not None and code >= 8000:
                self.log.error("bird_configure_failed", reply=out.strip())
                raise HttpError(500, f"birdc configure: {out.strip()}")
        self._dirty_proto.set()

    # -- observing --------------------------------------------------------------------------------------
    async def _monitor_routes(self) -> None:
        while not self.shutdown.is_set():
            proc = await asyncio.create_subprocess_exec(
                self._ip, "-n", self.netns, "monitor", "route", stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            assert proc.stdout is not None
            try:
                self._dirty_table.set()
                while True:
                    raw = await proc.stdout.readline()
                    if not raw:
                        break
                    if self._table_event is None:
                        self._table_event = time.time()
                    self._dirty_table.set()
            finally:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            await asyncio.sleep(0.5)

    async def refresh_table(self) -> bool:
        stamp = self._table_event or time.time()
        self._table_event = None
        rc, text = await self._run(self._ip, "-n", self.netns, "route", "show")
        if rc != 0:
            return False
        new: dict[str, str] = {}
        for line in text.splitlines():
            dst = _dst_of(line)
            if dst is not None:
                new[dst] = line  # (an ECMP route's `nexthop` lines stay in table_text only)
        changed = False
        for dst, line in self.lines.items():
            if dst not in new:
                self.removed_at[dst] = stamp
                self.routelog.append((stamp, "del", dst, line.rstrip()))
                changed = True
        for dst, line in new.items():
            old = self.lines.get(dst)
            if old != line:
                self.changed_at[dst] = stamp
                self.routelog.append((stamp, "chg" if old is not None else "add", dst, line.rstrip()))
                changed = True
        if changed or text != self.table_text:
            self.changes += sum(1 for d in self.lines if d not in new) + sum(
                1 for d, line in new.items() if self.lines.get(d) != line)
            self.lines = new
            self.table_text = text
            self.last_change = stamp
            return True
        return False

    async def refresh_protocols(self) -> bool:
        if self.proc is None or self.proc.returncode is not None:
            rows: dict[str, bird.ProtocolRow] = {}
            details: dict[str, bird.ProtocolDetail] = {}
        else:
            try:
                text = await self.ctl.text("show protocols all", timeout=5)
            except (OSError, asyncio.TimeoutError, ConnectionError, RunError):
                return False
            details = bird.parse_protocols_all(text)
            rows = {name: d.row for name, d in details.items()}
        self.rows, self.details = rows, details
        key = [(s["name"], s["state"], s["info"], s["established_at"]) for s in self._sessions()]
        ckey = self.counters()["totals"]
        changed = key != self._status_key or ckey != self._counters_key
        self._status_key, self._counters_key = key, ckey
        return changed

    async def _refresher(self) -> None:
        """Coalesce events: at most one table and one protocol refresh per 20 ms, and a full one every second."""
        while True:
            waiters = [asyncio.create_task(self._dirty_table.wait()), asyncio.create_task(self._dirty_proto.wait())]
            try:
                await asyncio.wait(waiters, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            await asyncio.sleep(0.02)
            periodic = not self._dirty_table.is_set() and not self._dirty_proto.is_set()
            table = self._dirty_table.is_set() or periodic
            self._dirty_table.clear()
            self._dirty_proto.clear()
            changed = False
            try:
                if table:
                    changed |= await self.refresh_table()
                changed |= await self.refresh_protocols()
            except Exception:  # a bug must not stop observation
                self.log.exception("refresh_failed")
            if changed:
                await self._bump()

    # -- main loop ----------------------------------------------------------------------------------------
    async def run(self) -> None:
        host = self.config.http_address or self.config.session_address
        server = await serve(host, self.config.http_port, self.handle_http)
        self.log.info("birdnode_started", http=f"{host}:{self.config.http_port}", netns=self.netns,
                      peers=len(self.config.peers))
        self._tasks += [asyncio.create_task(self._monitor_routes(), name="monitor"),
                        asyncio.create_task(self._refresher(), name="refresher")]
        try:
            await self.program_workloads()
            await self.start_bgp()
            await self.shutdown.wait()
        finally:
            await self.stop_bird()
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            server.close()
            await server.wait_closed()
            if self._sock_dir:
                shutil.rmtree(self._sock_dir, ignore_errors=True)
            self.log.info("birdnode_stopped")

    # -- views (the same JSON shapes as meshsim.agent.node) ---------------------------------------------------------
    def _sessions(self) -> list[dict[str, Any]]:
        out = []
        for p in self.config.peers:
            row = self.rows.get(p.name)
            state = row.state if row else ("down" if not self.bgp_running else "start")
            info = row.info if row else ""
            since_ts = since_timestamp(row.since) if row else None
            out.append({"name": p.name, "peer": p.address, "peer_node": p.peer_node, "type": p.type, "state": state,
                        "since": hms(since_ts), "since_ts": since_ts, "info": info,
                        "established_at": since_ts if state == "up" else None, "flaps": self.flaps.get(p.name, 0),
                        "passive": p.passive, "rr_client": p.rr_client})
        return out

    def status(self) -> dict[str, Any]:
        sessions = self._sessions()
        rows = [StatusRow(s["peer"], s["type"], s["state"], s["since"], s["info"]) for s in sessions]
        return {"name": self.config.name, "address": self.config.address, "bgp_running": self.bgp_running,
                "run_id": getattr(self.config, "run_id", ""), "pid": os.getpid(),
                "implementation": "bird", "control_socket": str(self.ctl_path), "sessions": sessions,
                "text": node_status(rows, running=self.proc is not None and self.proc.returncode is None)}

    def routes(self) -> dict[str, Any]:
        try:
            route_n = parse_ip_route(self.table_text).render_route_n()
        except ValueError:
            route_n = ""
        return {"version": self.version, "last_change": self.last_change, "changes": self.changes,
                "routes": [{"dst": dst, "line": line, "changed_at": self.changed_at.get(dst)}
                           for dst, line in self.lines.items()],
                "removed_at": dict(self.removed_at), "ip": self.table_text, "route_n": route_n,
                "source": f"ip -n {self.netns} route"}

    def usage(self) -> dict[str, Any]:
        cpu, rss = proc_usage(os.getpid())
        pid = self.proc.pid if self.proc is not None and self.proc.returncode is None else None
        bcpu, brss = proc_usage(pid) if pid else (0.0, 0)
        return {"node": {"pid": os.getpid(), "cpu_seconds": round(cpu, 3), "rss_bytes": rss},
                # "exabgp" names the BGP engine process, whichever it is (here BIRD), so reports add it up alike
                "exabgp": {"pid": pid, "cpu_seconds": round(bcpu, 3), "rss_bytes": brss, "restarts": self.restarts,
                           "engine": "bird"}}

    def counters(self) -> dict[str, Any]:
        per_peer = {}
        totals = {k: 0 for k in TOTAL_KEYS}
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

            entry = {"updates_sent": get("export updates", "accepted"),
                     "updates_received": get("import updates", "received"),
                     "withdrawals_sent": get("export withdraws", "accepted"),
                     "withdrawals_received": get("import withdraws", "received"), "flaps": self.flaps.get(p.name, 0)}
            per_peer[p.name] = entry
            for k in totals:
                totals[k] += entry[k]
        return {"peers": per_peer, "totals": totals, "usage": self.usage(),
                "note": "BIRD counts routes per channel (Route change stats), not UPDATE messages"}

    def state(self) -> dict[str, Any]:
        return {"version": self.version, "name": self.config.name, "time": time.time(), "status": self.status(),
                "routes": self.routes(), "counters": self.counters()}

    async def rib(self) -> dict[str, Any]:
        text = await self.ctl.text("show route all", timeout=10)
        routes = bird.parse_routes(text)
        loc: dict[str, Any] = {}
        adj_in: dict[str, dict[str, Any]] = {p.name: {} for p in self.config.peers}
        for r in routes:
            attrs = bird.bgp_attrs(r)
            if r.protocol in adj_in:
                adj_in[r.protocol][str(r.prefix)] = attrs
            if r.primary:
                loc[str(r.prefix)] = {"from": r.protocol if r.protocol in adj_in else "local",
                                      "reason": "best", "kind": r.kind, **attrs}
        adj_out: dict[str, dict[str, Any]] = {}
        for p in self.config.peers:
            if self.rows.get(p.name) and self.rows[p.name].state == "up":
                exported = bird.parse_routes(await self.ctl.text(f"show route export {p.name} all", timeout=10))
                adj_out[p.name] = {str(r.prefix): bird.bgp_attrs(r) for r in exported}
            else:
                adj_out[p.name] = {}
        return {"adj_rib_in": adj_in, "loc_rib": loc, "adj_rib_out": adj_out}

    async def apply_local(self, local: LocalState) -> None:
        self.local = local
        self.config = replace(self.config, local=local)
        await self.program_workloads()
        await self.configure()

    async def reconfigure(self, body: dict[str, Any]) -> None:
        peers = tuple(PeerConfig(**p) for p in body["peers"])
        self.config = replace(self.config, peers=peers, pools=tuple(body.get("pools", self.config.pools)),
                              cluster_id=body.get("cluster_id", self.config.cluster_id))
        for p in peers:
            self.flaps.setdefault(p.name, 0)
        await self.configure()
        self.log.info("node_reconfigured", peers=len(peers), cluster_id=self.config.cluster_id)
        await self._bump()

    async def handle_http(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        match method, path:
            case "GET", "/status":
                return 200, self.status()
            case "GET", "/routes":
                fmt = query.get("format")
                if fmt in ("ip", "kernel"):
                    return 200, self.table_text
                if fmt == "route":
                    return 200, self.routes()["route_n"]
                return 200, self.routes()
            case "GET", "/routelog":
                since = float(query.get("since", "0"))
                return 200, {"entries": [list(e) for e in self.routelog if e[0] >= since]}
            case "GET", "/rib":
                return 200, await self.rib()
            case "GET", "/counters":
                return 200, self.counters()
            case "GET", "/config":
                return 200, {name: (self.confdir / name).read_text() for name in bird.FILES
                             if (self.confdir / name).exists()}
            case "GET", "/state":
                await self.wait_newer(int(query.get("after", "-1")), float(query.get("timeout", "0")))
                return 200, self.state()
            case "POST", "/local":
                if not isinstance(body, dict):
                    raise HttpError(400, "expected a JSON object with blocks, affine, workloads, originate")
                await self.apply_local(LocalState.from_json(body))
                await self._bump()
                return 200, {"ok": True, "version": self.version}
            case "POST", "/config":
                if not isinstance(body, dict) or "peers" not in body:
                    raise HttpError(400, "expected a JSON object with peers, pools, cluster_id")
                await self.reconfigure(body)
                return 200, {"ok": True, "version": self.version}
            case "POST", "/stop":
                await self.stop_bgp()
                return 200, {"ok": True}
            case "POST", "/start":
                await self.start_bgp()
                return 200, {"ok": True}
            case "POST", "/teardown":
                name = (body or {}).get("peer")
                peer = next((p for p in self.config.peers if p.name == name or p.peer_node == name), None)
                if peer is None:
                    raise HttpError(404, f"no peer {name!r}")
                await self.ctl.text(f"restart {peer.name}")
                return 200, {"ok": True}
            case "POST", "/shutdown":
                self.shutdown.set()
                return 200, {"ok": True}
            case "GET", "/":
                return 200, {"endpoints": ["/status", "/routes", "/rib", "/counters", "/state", "/routelog", "/config",
                                           "POST /local", "POST /config", "POST /stop", "POST /start",
                                           "POST /teardown", "POST /shutdown"]}
        raise HttpError(404, f"no endpoint {method} {path}")


async def _amain(config: NodeConfig) -> int:
    return await serve_until_signalled(BirdNodeAgent(config))


def main(args: Any) -> int:
    config = NodeConfig.load(args.config)
    if getattr(args, "netns", None):
        config = replace(config, bgp_netns=args.netns)
    configure(config.log_level, json=True)
    return asyncio.run(_amain(config))
