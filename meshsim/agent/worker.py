"""A worker process: many nodes in one OS process, each with its own address, sockets, timers and faults.

Owns `Worker` and `main()` (`meshsim worker`). The runner talks to a worker over its stdin and stdout
(JSON lines; nobody else can reach that channel, and the worker ends when its runner does: stdin EOF,
and PR_SET_PDEATHSIG). Every node it hosts is a `NodeAgent` over an engine (meshsim's own, or BIRD),
with its HTTP endpoint on its own address, its own log file, and its faults kept to itself:

  runner -> worker   {"op": "init", "token": T, "log_level": L}
                     {"op": "start", "node": N, "config": {...}, "hold_bgp": false, "restart": false}
                     {"op": "release", "nodes": [N, ...]}      start BGP on nodes started with hold_bgp
                     {"op": "stop", "node": N}                 graceful: Cease to every peer, node gone
                     {"op": "kill", "node": N, "mode": "crash"|"sigkill"}
                     {"op": "shutdown"}
  worker -> runner   {"type": "ready", "pid": P}
                     {"type": "reply", "op": ..., "node": N, "ok": true|false, "error": "..."}
                     {"type": "state", "nodes": {N: summary, ...}}   coalesced, at most every 20 ms

Faults: `crash` freezes the node (no reads, writes, timers or HTTP; its TCP connections stay open, so
its peers notice by hold timer); `sigkill` resets its connections (RST, no NOTIFICATION: graceful restart
applies) and keeps its kernel routes for its next start (BIRD's `persist`), which starts as calico-node
starts BIRD (`-R`). A crashed node finished off later loses its routes (the host rebooted).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import gc
import json
import os
import signal
import sys
import time
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from meshsim.agent.agent import NodeAgent
from meshsim.agent.config import NodeConfig
from meshsim.agent.netctx import NetContext
from meshsim.errors import MeshsimError
from meshsim.host.procstats import proc_usage
from meshsim.logs import configure, file_logger, get_logger
from meshsim.routes.routetable import Route

PUSH_INTERVAL = 0.02  # the shortest pause between two state pushes to the runner
PUSH_SHARE = 0.05  # pushes take at most this share of a worker's time (pushing also costs the runner as much)
PR_SET_PDEATHSIG = 1
GC_THRESHOLDS = (2_000, 20, 100)  # gc.set_threshold() for worker and node processes, see run_loop()


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG: the kernel kills us when the runner dies, whatever happens to our stdin."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def bind_error(exc: OSError, where: str) -> str:
    """A bind that failed, as a user reads it: an address in use is another run's (or program's) node."""
    if exc.errno == errno.EADDRINUSE:
        return (f"address already in use ({where}): another meshsim run, or another program, holds this node's "
                "address; stop it first")
    return f"{exc.strerror or exc} ({where})"


class Worker:
    """The nodes of one process and the channel to the runner."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.WriteTransport) -> None:
        self.reader = reader
        self.writer = writer
        self.token: str | None = None
        self.log_level = "info"
        self.log = get_logger(component="worker", pid=os.getpid())
        self.nodes: dict[str, NodeAgent] = {}
        self.frozen: dict[str, NodeAgent] = {}
        self.kept: dict[str, dict[IPv4Network, Route]] = {}
        self.dirty: set[str] = set()
        self.wake = asyncio.Event()
        self.done = asyncio.Event()
        self._usage: tuple[float, tuple[float, int]] = (0.0, (0.0, 0))

    # -- the channel ------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write((json.dumps(message, separators=(",", ":")) + "\n").encode())

    def reply(self, op: str, node: str | None, ok: bool = True, error: str | None = None, **extra: Any) -> None:
        self.send({"type": "reply", "op": op, "node": node, "ok": ok, "error": error, **extra})

    async def serve(self) -> None:
        self.send({"type": "ready", "pid": os.getpid()})
        pusher = asyncio.create_task(self._push(), name="push")
        try:
            while not self.done.is_set():
                line = await self.reader.readline()
                if not line:
                    self.log.info("worker_runner_gone")
                    break
                msg: dict[str, Any] = {}
                try:
                    msg = json.loads(line)
                    await self.command(msg)
                except MeshsimError as exc:
                    self.reply(str(msg.get("op")), msg.get("node"), ok=False, error=str(exc))
                except (ValueError, KeyError, TypeError, OSError) as exc:
                    # answered under the op's own name: the runner waits for that answer, without a deadline
                    self.log.error("worker_command_failed", error=repr(exc), line=line[:200])
                    self.reply(str(msg.get("op", "?")), msg.get("node"), ok=False, error=repr(exc))
        finally:
            await self.shutdown()
            pusher.cancel()
            await asyncio.gather(pusher, return_exceptions=True)

    async def command(self, msg: dict[str, Any]) -> None:
        op, name = msg.get("op"), msg.get("node")
        match op:
            case "init":
                self.token = msg.get("token")
                self.log_level = msg.get("log_level") or "info"
                self.reply(op, None)
            case "start":
                config = NodeConfig.from_json(json.dumps(msg["config"]))
                try:
                    await self.start(config, hold_bgp=bool(msg.get("hold_bgp")), restart=bool(msg.get("restart")))
                except OSError as exc:
                    where = (f"{config.http_address or config.session_address} HTTP port {config.http_port} or "
                             f"{config.session_address} BGP port {config.bgp_port}")
                    self.reply(op, name, ok=False, error=bind_error(exc, where))
                    return
                self.reply(op, name, pid=os.getpid())
            case "release":  # every node at once: a cold start is timed from this instant
                names = [n for n in msg.get("nodes", []) if n in self.nodes]
                results = await asyncio.gather(*(self.nodes[n].engine.start() for n in names), return_exceptions=True)
                failed = []
                for n, res in zip(names, results):
                    if isinstance(res, OSError):
                        cfg = self.nodes[n].config
                        failed.append(f"node {n}: {bind_error(res, f'{cfg.session_address} BGP port {cfg.bgp_port}')}")
                    elif isinstance(res, BaseException):
                        raise res
                self.reply(op, None, ok=not failed, error="; ".join(failed[:3]) or None)
            case "stop":
                await self.stop(name)
                self.reply(op, name)
            case "kill":
                await self.kill(name, msg.get("mode", "crash"))
                self.reply(op, name)
            case "shutdown":
                self.done.set()
                self.reply(op, None)
            case _:
                self.reply(str(op), name, ok=False, error=f"unknown op {op!r}")

    # -- nodes ---------------------------------------------------------------------------------------
    def _share(self, busy: float) -> tuple[float, int]:
        """A node's share of this process: CPU seconds in proportion to the time its callbacks ran (all
        nodes' busy times add up to the worker's CPU spent on BGP), memory an equal part of the RSS. The
        process figures are read at most once a second."""
        t, (cpu, rss) = self._usage
        now = time.monotonic()
        if now - t > 1.0:
            cpu, rss = proc_usage(os.getpid())
            self._usage = (now, (cpu, rss))
        total = sum(getattr(a.engine, "busy", 0.0) for a in (*self.nodes.values(), *self.frozen.values()))
        nodes = max(1, len(self.nodes) + len(self.frozen))
        return (cpu * busy / total if total > 0 else cpu / nodes), rss // nodes

    async def start(self, config: NodeConfig, *, hold_bgp: bool, restart: bool) -> None:
        name = config.name
        if name in self.nodes:
            return
        old = self.frozen.pop(name, None)
        if old is not None:  # a crashed node starts again: the host rebooted, nothing is kept
            await self._finish(old)
            self.kept.pop(name, None)
        Path(config.workdir).mkdir(parents=True, exist_ok=True)
        log = file_logger(str(Path(config.workdir) / "node.log"), self.log_level, node=name)
        kept = self.kept.pop(name, None) if restart else None
        agent: NodeAgent

        def changed() -> None:
            agent.touch()

        engine = self._engine(config, log, changed, kept)
        agent = NodeAgent(config, engine, log=log, token=self.token)
        agent.watch(self._mark)
        try:
            await agent.start(hold_bgp=hold_bgp)
        except BaseException:
            await agent.close()  # what it did bind (its HTTP listener) goes with it
            raise
        self.nodes[name] = agent
        self._mark(name)

    def _engine(self, config: NodeConfig, log: Any, changed: Any, kept: Any) -> Any:
        dataplane = None
        if config.dataplane == "kernel":
            from meshsim.agent.dataplane import KernelDataplane

            dataplane = KernelDataplane(log, netns=config.netns, host_interface=config.interface)
        if config.implementation == "bird":
            from meshsim.engines.bird.engine import BirdEngine

            return BirdEngine(config, log=log, on_change=changed)
        from meshsim.engines.native.engine import NativeEngine

        return NativeEngine(config, net=NetContext(config.bgp_netns), log=log, on_change=changed, kept_routes=kept,
                            share=self._share, dataplane=dataplane)

    async def stop(self, name: str) -> None:
        agent = self.nodes.pop(name, None) or self.frozen.pop(name, None)
        if agent is None:
            return
        await agent.close(paced=True)
        self.kept.pop(name, None)
        self._gone(name)

    async def kill(self, name: str, mode: str) -> None:
        agent = self.nodes.pop(name, None)
        if agent is None:
            agent = self.frozen.pop(name, None)
            if agent is not None:  # finishing off a crashed node: the host is gone, and its routes
                await self._finish(agent)
                self.kept.pop(name, None)
            return
        await agent.close_http()
        if mode == "crash":
            agent.engine.freeze()
            agent.log.info("node_crashed")
            self.frozen[name] = agent
        else:
            agent.engine.kill()
            agent.log.info("node_killed")
            routes = getattr(agent.engine, "felix", None)
            if routes is not None:
                self.kept[name] = routes.routes
            await self._finish(agent, kill=True)
        self._gone(name)

    async def _finish(self, agent: NodeAgent, kill: bool = True) -> None:
        if kill:
            agent.engine.kill()
        try:
            await agent.engine.close()
        except Exception as exc:  # a dead node's cleanup must not take the worker down
            agent.log.warning("node_close_failed", error=repr(exc))

    async def shutdown(self) -> None:
        for name in list(self.frozen):
            await self._finish(self.frozen.pop(name))
        await asyncio.gather(*(a.close() for a in self.nodes.values()), return_exceptions=True)
        self.nodes.clear()

    # -- state pushes -----------------------------------------------------------------------------------
    def _mark(self, name: str) -> None:
        self.dirty.add(name)
        self.wake.set()

    def _gone(self, name: str) -> None:
        self.dirty.discard(name)
        self.send({"type": "gone", "node": name})

    async def _push(self) -> None:
        """Send the runner the summaries of the nodes that changed. In a large cold start every node changes
        all the time and a push is the JSON of every session of 50 nodes (here and again in the runner), so
        the pause after a push grows with its cost, to PUSH_SHARE of the worker's time. Figures do not move
        with it: a summary carries the node's own timestamps; only the runner's view is a little later."""
        pause = PUSH_INTERVAL
        while True:
            await self.wake.wait()
            await asyncio.sleep(pause)
            self.wake.clear()
            t0 = time.perf_counter()
            names, self.dirty = self.dirty, set()
            nodes = {n: self.nodes[n].summary() for n in sorted(names) if n in self.nodes}
            if nodes:
                self.send({"type": "state", "nodes": nodes})
            pause = max(PUSH_INTERVAL, (time.perf_counter() - t0) / PUSH_SHARE)


async def _amain() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    writer, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    worker = Worker(reader, writer)  # type: ignore[arg-type]
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.done.set)
    serving = asyncio.create_task(worker.serve())
    done_wait = asyncio.create_task(worker.done.wait())
    await asyncio.wait({serving, done_wait}, return_when=asyncio.FIRST_COMPLETED)
    if not serving.done():
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await worker.shutdown()
    done_wait.cancel()
    writer.close()
    return 0


def run_loop(coro: Any) -> int:
    """asyncio on uvloop when it is installed (2.4x faster for thousands of sessions, exabgp.md), with the
    cyclic garbage collector tuned for a process that holds many long-lived objects (RIBs, sessions) and
    allocates short-lived ones per message, which are freed by reference counting anyway: the default
    thresholds (700, 10, 10) walk the whole heap often; these cut a 100-node mesh's cold-start CPU by ~8 %
    (benchmarks/bird_vs_meshsim.py). The youngest generation stays small: a collection of it stops every node
    of the worker for a time in proportion to its size (50,000 objects took 11-42 ms, which showed up inside
    a new block's 40 ms; 2,000 take under 3 ms), while its total cost follows the allocations, not the size."""
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        if os.environ.get("MESHSIM_UVLOOP", "1") == "0":
            raise ImportError
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(args: Any = None) -> int:
    import faulthandler

    faulthandler.enable()  # a crash in C (the event loop, the kernel) leaves its Python stack in the worker log
    die_with_parent()
    configure(getattr(args, "log_level", None) or "warning", json=True)
    profile = os.environ.get("MESHSIM_PROFILE_DIR")  # developers: a cProfile dump per worker
    if not profile:
        return run_loop(_amain())
    import cProfile

    prof = cProfile.Profile()
    try:
        return prof.runcall(run_loop, _amain())
    finally:
        prof.dump_stats(os.path.join(profile, f"worker-{os.getpid()}.prof"))
