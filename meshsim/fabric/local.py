"""Nodes on this machine: worker processes hosting many nodes each, every node on its own 127.x address.

Owns `WorkerFabric`, the embedded default of `meshsim run`. It spreads the nodes over worker processes
(`meshsim worker`, meshsim/agent/worker.py), by default as many as there are CPUs, more when the nodes'
sockets would not fit one process's open-file limit; `--process-per-node` gives every node its own.
The runner talks to each worker over its stdin/stdout: starting, stopping and killing nodes, and
receiving their state summaries (no polling). A worker that dies is reported with the nodes it held.
`close()` stops every worker (gracefully, then by force), also on failure and Ctrl-C; `kill_all_now()` is
the synchronous last resort for a `finally`; `remove_files()` removes the temp dir once the report has
taken the logs from it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import shutil
import sys
import tempfile
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from meshsim.agent.config import LocalState, NodeConfig, node_configs
from meshsim.agent import API_PORT
from meshsim.errors import RunError
from meshsim.fabric.base import FabricBase, SnapshotSink
from meshsim.host import procs
from meshsim.host.procstats import proc_usage
from meshsim.logs import get_logger
from meshsim.model.cluster import Cluster

DEFAULT_HTTP_PORT = API_PORT
FDS_PER_NODE = 4  # listening BGP socket, HTTP listener, log file, a connection in flight
# Descriptors per peer: at a cold start both ends dial (BIRD's peers are active on both sides), so until collision
# resolution (RFC 4271 §6.8) keeps one, a session holds two sockets at each end. Budgeting one made a 200-node
# mesh's three workers pass the open-file limit in that burst, and every retry burst failed again.
FDS_PER_PEER = 2
WORKER_FD_BUDGET = 0.75  # of the open-file limit


def default_bgp_port() -> int:
    return 179 if os.geteuid() == 0 else 17900


def open_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return hard if hard != resource.RLIM_INFINITY else max(soft, 65536)


def plan_workers(configs: dict[str, NodeConfig], workers: int | None = None, per_node: bool = False,
                 cpus: int | None = None, fd_limit: int | None = None) -> list[list[str]]:
    """Which nodes each worker hosts. Every session end is a socket, and both ends live on this machine:
    a node needs two descriptors per peer at a cold start (FDS_PER_PEER) plus a few of its own. Default: one
    worker per CPU, more if the descriptors of the busiest worker would pass 3/4 of the open-file limit; nodes
    are spread by load (peer count), heaviest first, onto the least loaded worker."""
    names = list(configs)
    if per_node:
        return [[n] for n in names]
    load = {n: FDS_PER_PEER * len(c.peers) + FDS_PER_NODE for n, c in configs.items()}
    budget = int((fd_limit or open_file_limit()) * WORKER_FD_BUDGET)
    count = workers or max(min(cpus or os.cpu_count() or 1, len(names)), math.ceil(sum(load.values()) / budget))
    count = max(1, min(count, len(names)))
    bins: list[list[str]] = [[] for _ in range(count)]
    weights = [0] * count
    for n in sorted(names, key=lambda n: (-load[n], n)):
        i = min(range(count), key=lambda k: (weights[k], k))
        bins[i].append(n)
        weights[i] += load[n]
    if workers is None and max(weights) > budget:
        raise RunError(f"the busiest worker would need {max(weights)} open files (limit {budget}); "
                       f"pass --workers {math.ceil(sum(load.values()) / budget) + 1}")
    return [b for b in bins if b]


@dataclass
class WorkerProc:
    index: int
    nodes: list[str]
    proc: asyncio.subprocess.Process | None = None
    reader: asyncio.Task | None = None
    waiting: dict[tuple[str, str | None], deque[asyncio.Future]] = field(default_factory=dict)
    ready: asyncio.Future | None = None
    stderr_path: Path | None = None
    exit_reported: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class WorkerFabric(FabricBase):
    """Processes on this machine (see the module docstring). `mode` is "local".

    Over 250 lines because it is the whole life of the worker processes: spawning them with the nodes spread
    over them, the pipe protocol (commands out, state pushes in), a worker's death reported with its nodes, the
    per-node faults (freeze, SIGKILL-like reset, stop, start) and the synchronous last-resort kill.
    """

    mode = "local"

    def __init__(self, cluster: Cluster, *, bgp_port: int | None = None, http_port: int = DEFAULT_HTTP_PORT,
                 workdir: Path | None = None, log_level: str = "info", workers: int | None = None,
                 process_per_node: bool = False, token: str | None = None) -> None:
        super().__init__(cluster, token=token)
        self.bgp_port = bgp_port or default_bgp_port()
        self.http_port = http_port
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="meshsim-run-"))
        self.log = get_logger(component="fabric")
        self.log_level = log_level
        self.requested_workers = workers
        self.process_per_node = process_per_node
        self.state: dict[str, str] = {}  # node -> running | stopped | frozen | killed | dead
        self.workers: list[WorkerProc] = []
        self.worker_of: dict[str, WorkerProc] = {}
        self.sink: SnapshotSink | None = None
        self.closed = False
        self._killers: dict[str, asyncio.Task] = {}

    def _configs(self) -> dict[str, NodeConfig]:
        """Every node's config from the model (a subclass may place nodes elsewhere, e.g. fabric/netns.py)."""
        return node_configs(self.cluster, bgp_port=self.bgp_port, http_port=self.http_port, workdir=self.workdir,
                            log_level=self.log_level)

    def attach(self, sink: SnapshotSink) -> None:
        self.sink = sink

    def running(self) -> list[str]:
        return [n for n, s in self.state.items() if s == "running"]

    # -- workers --------------------------------------------------------------------------------------
    def _worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "meshsim", "worker"]

    async def start(self) -> None:
        """Start the worker processes (nodes come with start_node)."""
        if self.workers:
            return
        plan = plan_workers(self.configs(), self.requested_workers, self.process_per_node)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for i, nodes in enumerate(plan):
            w = WorkerProc(i, nodes)
            self.workers.append(w)
            for n in nodes:
                self.worker_of[n] = w
        await asyncio.gather(*(self._spawn(w) for w in self.workers))
        self.log.info("workers_started", workers=len(self.workers), nodes=len(self.worker_of),
                      pids=[w.pid for w in self.workers])

    async def _spawn(self, w: WorkerProc) -> None:
        w.stderr_path = self.workdir / f"worker{w.index}.log"
        with open(w.stderr_path, "ab") as err:
            w.proc = await procs.spawn(self._worker_argv(), stdin=asyncio.subprocess.PIPE,
                                       stdout=asyncio.subprocess.PIPE, stderr=err)
        loop = asyncio.get_running_loop()
        w.ready = loop.create_future()
        w.reader = asyncio.create_task(self._read(w), name=f"worker{w.index}")
        await self._wait(w.ready, w, "start")
        await self._call(w, "init", None, token=self.token, log_level=self.log_level)

    async def _wait(self, fut: asyncio.Future, w: WorkerProc, what: str) -> Any:
        """Wait for a worker's answer: no deadline (a busy machine makes it slow, not wrong), but a worker
        that dies meanwhile fails the wait at once."""
        return await fut

    async def _call(self, w: WorkerProc, op: str, node: str | None, **fields: Any) -> dict[str, Any]:
        if not w.alive or w.proc is None or w.proc.stdin is None:
            raise RunError(f"worker {w.index} (pid {w.pid}) is not running; it held {', '.join(w.nodes)}", node=node)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        w.waiting.setdefault((op, node), deque()).append(fut)
        w.proc.stdin.write((json.dumps({"op": op, "node": node, **fields}) + "\n").encode())
        await w.proc.stdin.drain()
        reply = await self._wait(fut, w, op)
        if not reply.get("ok"):
            raise RunError(f"{op}: {reply.get('error')}", node=node)
        return reply

    async def _read(self, w: WorkerProc) -> None:
        assert w.proc is not None and w.proc.stdout is not None
        stream = w.proc.stdout
        while True:
            line = await stream.readline()
            if not line:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                self.log.warning("worker_output_unparsed", worker=w.index, line=line[:200])
                continue
            kind = msg.get("type")
            if kind == "state":
                if self.sink is not None:
                    for name, summary in msg["nodes"].items():
                        if self.state.get(name) == "running":
                            self.sink.record(name, summary)
            elif kind == "reply":
                q = w.waiting.get((msg.get("op"), msg.get("node")))
                if q:
                    fut = q.popleft()
                    if not fut.done():
                        fut.set_result(msg)
            elif kind == "ready":
                if w.ready is not None and not w.ready.done():
                    w.ready.set_result(msg)
        rc = await w.proc.wait()
        self._worker_died(w, rc)

    def _worker_died(self, w: WorkerProc, rc: int | None) -> None:
        why = f"worker {w.index} (pid {w.pid}) exited with code {rc}"
        tail = self._tail_file(w.stderr_path, 3) if w.stderr_path else ""
        if tail:
            why += f": {tail}"
        for fut in [f for q in w.waiting.values() for f in q] + ([w.ready] if w.ready else []):
            if not fut.done():
                fut.set_exception(RunError(why))
        w.waiting.clear()
        if self.closed:
            return
        held = [n for n in w.nodes if self.state.get(n) in ("running", "frozen")]
        if held and not w.exit_reported:
            w.exit_reported = True
            self.log.error("worker_died", worker=w.index, pid=w.pid, returncode=rc, nodes=held)
        for n in held:
            self.state[n] = "dead"
            if self.sink is not None:
                self.sink.died(n, f"{why}; it held {len(w.nodes)} nodes ({', '.join(w.nodes[:10])}"
                                  f"{', ...' if len(w.nodes) > 10 else ''})")

    # -- nodes -------------------------------------------------------------------------------------------
    def _worker(self, name: str) -> WorkerProc:
        w = self.worker_of.get(name)
        if w is None:  # a node added at run time goes to the least loaded worker
            if not self.workers:
                raise RunError("the fabric is not started", node=name)
            w = min(self.workers, key=lambda x: len(x.nodes))
            w.nodes.append(name)
            self.worker_of[name] = w
        return w

    async def start_node(self, name: str, *, restart: bool = False, hold_bgp: bool = False) -> None:
        if not self.workers:
            await self.start()
        killer = self._killers.pop(name, None)
        if killer is not None:
            killer.cancel()
        if self.state.get(name) == "running":
            return
        cfgs = self.configs()
        cfgs[name] = replace(cfgs[name], local=LocalState.of(self.cluster, name))
        w = self._worker(name)
        await self._call(w, "start", name, config=json.loads(cfgs[name].to_json()), hold_bgp=hold_bgp,
                         restart=restart)
        self.state[name] = "running"
        self.log.info("node_started", node=name, worker=w.index, pid=w.pid)

    async def release(self, names: list[str]) -> None:
        """Start BGP on nodes started with `hold_bgp` (one message per worker, all at once)."""
        by_worker: dict[int, list[str]] = {}
        for n in names:
            if self.state.get(n) == "running":
                by_worker.setdefault(self._worker(n).index, []).append(n)
        await asyncio.gather(*(self._call(self.workers[i], "release", None, nodes=ns) for i, ns in by_worker.items()))

    def was_killed(self, name: str) -> bool:
        return self.state.get(name) == "killed"

    async def stop_node(self, name: str) -> None:
        """Graceful: Cease to every peer, then the node is gone from its worker."""
        if self.state.get(name) not in ("running", "frozen"):
            return
        self.state[name] = "stopped"
        await self._call(self._worker(name), "stop", name)

    async def kill_node(self, name: str, mode: str = "crash", hold_time: float | None = None) -> None:
        """`crash`: the node freezes (peers notice by hold timer) and is finished off once the hold time has
        passed; `sigkill`: its connections are reset at once (graceful restart applies on its peers)."""
        if self.state.get(name) != "running":
            return
        w = self._worker(name)
        if mode == "sigkill":
            self.state[name] = "killed"
            await self._call(w, "kill", name, mode="sigkill")
            return
        self.state[name] = "frozen"
        await self._call(w, "kill", name, mode="crash")
        wait = (hold_time if hold_time is not None else self.cluster.scenario.spec.timers.hold_time) * 1.5 + 2

        async def finish() -> None:
            await asyncio.sleep(wait)
            if self.state.get(name) == "frozen":
                self.state[name] = "killed"
                await self._call(w, "kill", name, mode="sigkill")

        self._killers[name] = asyncio.create_task(finish(), name=f"finish-{name}")

    # -- files ------------------------------------------------------------------------------------------------
    def node_log(self, name: str) -> Path:
        return Path(self.configs()[name].workdir) / "node.log"

    @staticmethod
    def _tail_file(path: Path | None, lines: int) -> str:
        if path is None or not path.exists():
            return ""
        text = path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def tail(self, name: str, lines: int = 5) -> str:
        return self._tail_file(self.node_log(name), lines) or "(empty log)"

    def collect_logs(self, dest: Path) -> None:
        from meshsim.model.names import file_stem

        dest.mkdir(parents=True, exist_ok=True)
        for name in self.configs():
            src = self.node_log(name)
            if src.exists():
                shutil.copy(src, dest / f"{file_stem(name)}.log")
        for w in self.workers:
            if w.stderr_path is not None and w.stderr_path.exists() and w.stderr_path.stat().st_size:
                shutil.copy(w.stderr_path, dest / f"worker{w.index}.log")

    def describe(self) -> dict[str, Any]:
        out = []
        for w in self.workers:
            cpu, rss = proc_usage(w.pid) if w.alive else (0.0, 0)
            out.append({"index": w.index, "pid": w.pid, "nodes": list(w.nodes), "alive": w.alive,
                        "cpu_seconds": round(cpu, 3), "rss_bytes": rss})
        return {"mode": self.mode, "workers": out,
                "measured": "per-node CPU: thread time of each node's callbacks in its worker; per-node memory: its "
                            "worker's RSS divided by the nodes the worker hosts; worker RSS and CPU from /proc"}

    # -- the end ------------------------------------------------------------------------------------------------
    def kill_all_now(self) -> None:
        """Last resort, synchronous (safe in a finally even while being cancelled)."""
        for task in self._killers.values():
            task.cancel()
        for w in self.workers:
            procs.kill_group_now(w.pid)

    def remove_files(self) -> None:
        """Remove the temp dir (node configs and logs): after the report has taken what it needs."""
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def close(self) -> None:
        """Stop every worker (gracefully: Cease to every peer, then by force) and remove the temp dir."""
        if self.closed:
            return
        self.closed = True
        try:
            for task in self._killers.values():
                task.cancel()
            await asyncio.gather(*(self._shutdown(w) for w in self.workers), return_exceptions=True)
        finally:
            self.kill_all_now()

    async def _shutdown(self, w: WorkerProc) -> None:
        # Bounded on purpose (the end of a run, not its start): past these a worker is killed, which its peers
        # see as they would a crash.
        if w.alive and w.proc is not None and w.proc.stdin is not None:
            try:
                w.proc.stdin.write(b'{"op": "shutdown"}\n')
                await asyncio.wait_for(w.proc.stdin.drain(), 2)
                w.proc.stdin.close()
                await asyncio.wait_for(w.proc.wait(), 10)
            except (OSError, asyncio.TimeoutError, ConnectionError):
                pass
        await procs.stop(w.proc, grace=3)
        if w.reader is not None:
            w.reader.cancel()
            await asyncio.gather(w.reader, return_exceptions=True)
