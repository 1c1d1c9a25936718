"""Node processes on this machine: start, stop, kill, restart, drive and observe them.

Owns `LocalFabric`: one `meshsim node` process per Node, each in its own session (process group),
its BGP and HTTP bound to its own 127.x address; the runner is the datastore that pushes each node
its IPAM state. `close()` removes every process and temp dir it created, also on failure and
Ctrl-C (it is idempotent and never hangs: every wait has a deadline, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from meshsim.errors import RunError
from meshsim.logs import get_logger
from meshsim.fabric.nodeapi import NodeApi
from meshsim.model.cluster import Cluster
from meshsim.agent.config import LocalState, NodeConfig, node_configs

DEFAULT_HTTP_PORT = 9179


def default_bgp_port() -> int:
    return 179 if os.geteuid() == 0 else 17900


@dataclass
class NodeProc:
    name: str
    config: NodeConfig
    proc: asyncio.subprocess.Process | None = None
    log_path: Path | None = None
    frozen: bool = False
    starts: int = 0
    exited: int | None = None  # return code once it ended unexpectedly
    killer: asyncio.Task | None = None
    pids_seen: set[int] = field(default_factory=set)


class LocalFabric(NodeApi):
    def __init__(self, cluster: Cluster, *, bgp_port: int | None = None, http_port: int = DEFAULT_HTTP_PORT,
                 workdir: Path | None = None, log_level: str = "info") -> None:
        self.cluster = cluster
        self.bgp_port = bgp_port or default_bgp_port()
        self.http_port = http_port
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="meshsim-run-"))
        self.log = get_logger(component="fabric")
        self.log_level = log_level
        self.run_id = uuid.uuid4().hex[:12]  # nodes of another run answering on our addresses are refused
        configs = self._configs()
        self.nodes: dict[str, NodeProc] = {name: NodeProc(name, self._stamp(cfg)) for name, cfg in configs.items()}
        self.closed = False

    def _configs(self) -> dict[str, NodeConfig]:
        """Every node's config from the model (a subclass may place nodes elsewhere, e.g. runner/netns.py)."""
        return node_configs(self.cluster, bgp_port=self.bgp_port, http_port=self.http_port, workdir=self.workdir,
                            log_level=self.log_level)

    def _node_command(self, name: str, cfg_path: Path) -> list[str]:
        """The command that runs one node process (a subclass may run another implementation, e.g. BIRD)."""
        return [sys.executable, "-m", "meshsim", "node", "--config", str(cfg_path)]

    # -- addresses ------------------------------------------------------------------------------
    def http_address(self, name: str) -> tuple[str, int]:
        cfg = self.nodes[name].config
        return cfg.http_address or cfg.session_address, self.http_port

    def running(self) -> list[str]:
        """Nodes whose process is up and not frozen (what expected tables are computed for)."""
        return [n for n, p in self.nodes.items() if p.proc is not None and p.proc.returncode is None and not p.frozen]

    # -- lifecycle ------------------------------------------------------------------------------
    async def start_node(self, name: str) -> None:
        node = self.nodes[name]
        if node.killer is not None and not node.killer.done():
            node.killer.cancel()
        if node.frozen:  # a crashed (frozen) node is finished off before it starts again
            self._kill_groups(node)
            if node.proc is not None:
                await node.proc.wait()
            node.frozen = False
        if node.proc is not None and node.proc.returncode is None:
            return
        node.config = replace(node.config, local=LocalState.of(self.cluster, name))
        nodedir = Path(node.config.workdir)
        nodedir.mkdir(parents=True, exist_ok=True)
        cfg_path = nodedir / "node.json"
        node.config.save(cfg_path)
        node.log_path = nodedir / "node.log"
        logf = open(node.log_path, "ab")
        try:
            node.proc = await asyncio.create_subprocess_exec(
                *self._node_command(name, cfg_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True)
        finally:
            logf.close()
        node.pids_seen.add(node.proc.pid)
        node.frozen = False
        node.exited = None
        node.starts += 1
        self.log.info("node_process_started", node=name, pid=node.proc.pid)

    async def wait_ready(self, names: list[str], timeout: float = 60.0) -> None:
        """Until every node answers on HTTP; a node that exits meanwhile is a RunError."""
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending:
            for name in list(pending):
                node = self.nodes[name]
                if node.proc is None or node.proc.returncode is not None:
                    raise RunError(f"exited during start-up with code {node.proc.returncode if node.proc else '?'};"
                                   f" log: {self.tail(name)}", node=name)
                try:
                    status = await self.get(name, "/status", timeout=2)
                except (OSError, asyncio.TimeoutError, ConnectionError):
                    continue
                if status.get("run_id") != self.run_id:
                    host, port = self.http_address(name)
                    raise RunError(f"{host}:{port} is answered by another meshsim run's node (pid "
                                   f"{status.get('pid')}); stop that run first (e.g. kill {status.get('pid')})",
                                   node=name)
                pending.discard(name)
            if pending:
                if time.monotonic() > deadline:
                    raise RunError(f"nodes not answering after {timeout:.0f}s: {', '.join(sorted(pending))}")
                await asyncio.sleep(0.1)

    async def stop_node(self, name: str, timeout: float = 10.0) -> None:
        """Graceful: ExaBGP sends a Cease NOTIFICATION on every session, then the process exits."""
        node = self.nodes[name]
        if node.proc is None or node.proc.returncode is not None:
            return
        try:
            await self.post(name, "/shutdown", timeout=3)
        except (OSError, asyncio.TimeoutError, ConnectionError):
            pass
        try:
            await asyncio.wait_for(node.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.log.warning("node_stop_timeout", node=name)
            self._kill_groups(node)
            await node.proc.wait()

    async def kill_node(self, name: str, mode: str = "crash", hold_time: float | None = None) -> None:
        """`crash`: the host dies silently (SIGSTOP of the node and its ExaBGP, so no FIN and no keepalive:
        peers notice by hold timer), then SIGKILL once the hold time has passed. `sigkill`: SIGKILL now
        (the kernel closes the TCP sessions and peers notice at once)."""
        node = self.nodes[name]
        if node.proc is None or node.proc.returncode is not None:
            return
        if mode == "sigkill":
            self._kill_groups(node)
            await node.proc.wait()
            return
        self._signal_groups(node, signal.SIGSTOP)
        node.frozen = True
        wait = (hold_time if hold_time is not None else self.cluster.scenario.spec.timers.hold_time) * 1.5 + 2

        async def later() -> None:
            await asyncio.sleep(wait)
            self._kill_groups(node)
            if node.proc is not None:
                await node.proc.wait()

        node.killer = asyncio.create_task(later())

    def _exabgp_pid(self, node: NodeProc) -> int | None:
        try:
            text = (Path(node.config.workdir) / "exabgp.pid").read_text().strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None

    def _groups(self, node: NodeProc) -> list[int]:
        groups = []
        if node.proc is not None and node.proc.returncode is None:
            groups.append(node.proc.pid)
        epid = self._exabgp_pid(node)
        if epid:
            try:
                groups.append(os.getpgid(epid))
            except ProcessLookupError:
                pass
        return groups

    def _signal_groups(self, node: NodeProc, sig: int) -> None:
        for pgid in self._groups(node):
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _kill_groups(self, node: NodeProc) -> None:
        self._signal_groups(node, signal.SIGKILL)

    def kill_all_now(self) -> None:
        """Last resort, synchronous (safe in a finally even while being cancelled): SIGKILL every node and
        ExaBGP process group we started, and remove our temp dir."""
        for node in self.nodes.values():
            if node.killer is not None:
                node.killer.cancel()
            self._kill_groups(node)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def close(self) -> None:
        """Stop every node (gracefully, then by force) and remove the temp dir. Idempotent; if the graceful
        part is interrupted (a second Ctrl-C), everything is still SIGKILLed."""
        if self.closed:
            return
        self.closed = True
        try:
            await self._close()
        finally:
            self.kill_all_now()

    async def _close(self) -> None:
        for node in self.nodes.values():
            if node.killer is not None:
                node.killer.cancel()
        alive = [n for n, p in self.nodes.items() if p.proc is not None and p.proc.returncode is None]
        frozen = [n for n in alive if self.nodes[n].frozen]
        for n in frozen:
            self._kill_groups(self.nodes[n])
        graceful = [n for n in alive if n not in frozen]
        await asyncio.gather(*(self._quiet_shutdown(n) for n in graceful), return_exceptions=True)
        for node in self.nodes.values():
            self._kill_groups(node)  # whatever is left, ExaBGP included
            if node.proc is not None:
                try:
                    await asyncio.wait_for(node.proc.wait(), 5)
                except asyncio.TimeoutError:
                    pass
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def _quiet_shutdown(self, name: str) -> None:
        try:
            await self.post(name, "/shutdown", timeout=2)
        except (OSError, asyncio.TimeoutError, ConnectionError):
            pass
        node = self.nodes[name]
        if node.proc is not None:
            try:
                await asyncio.wait_for(node.proc.wait(), 8)
            except asyncio.TimeoutError:
                pass

    # -- talking to nodes ---------------------------------------------------------------------------
    def _stamp(self, cfg: NodeConfig) -> NodeConfig:
        return replace(cfg, run_id=self.run_id)

    def _new_node(self, name: str, cfg: NodeConfig) -> NodeProc:
        return NodeProc(name, cfg)

    def tail(self, name: str, lines: int = 5) -> str:
        node = self.nodes[name]
        if node.log_path is None or not node.log_path.exists():
            return "(no log)"
        text = node.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(empty log)"

    def collect_logs(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for node in self.nodes.values():
            if node.log_path is not None and node.log_path.exists():
                shutil.copy(node.log_path, dest / f"{node.name}.log")
