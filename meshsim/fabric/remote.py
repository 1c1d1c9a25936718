"""The compose controller's fabric: nodes that run elsewhere (one container per node).

Owns `RemoteFabric`, the `Fabric` (meshsim/fabric/base.py) for nodes it did not spawn: `meshsim node`
processes (meshsim/agent/standalone.py) reached over their HTTP API only, every POST carrying the run's
token ($MESHSIM_TOKEN, from the 0600 env file `meshsim compose` writes next to the compose file, which
every node reads too), their summaries followed by one long poll each (meshsim/fabric/watch.py). The
controller itself (`meshsim controller`, which hands this fabric to `meshsim.run.runner.main`) is
meshsim/fabric/controller.py.

What a remote fabric can and cannot do to a node it did not spawn:
- start (before the first node): wait until every node answers GET /status (up to `ready_timeout`), and
  check each is the node the scenario says (name and address) of this run (the run id, $MESHSIM_RUN_ID from
  the same env file), else a RunError naming both.
- start_node: the node runs with `--hold-bgp`; POST /config (the peerings this controller rendered) and
  /local (what IPAM says now), then POST /start, or with `hold_bgp` not yet: `release` POSTs /start to all
  of them at once, so the cold start is timed as `meshsim run` times it. A node whose BGP already runs (a
  second `up` on the same containers) is stopped first, so it starts afresh.
- stop_node: POST /stop, a graceful BGP stop (Cease to every peer); the container stays up.
- kill_node: only with the Docker socket mounted into the controller (/var/run/docker.sock, or
  $MESHSIM_DOCKER_SOCKET), and only mode crash: `docker pause` (the host goes silent, peers notice by hold
  timer); a later start-node unpauses it and restarts its BGP from scratch. Mode sigkill is refused (the
  container would exit, and `up --exit-code-from` stops the whole stack then), so `was_killed` is never
  true. Without the socket: a RunError naming the event. A refused kill leaves the node running and
  followed.
- add-node: there is no container for a node the compose file does not have: a RunError, before any
  running node is reconfigured.
- A POST answered 401 is a token mismatch: a RunError saying that the nodes and the controller must read
  the same env file.
- A node that stops answering for 15 s while it should run is reported dead (the run fails with why).
- close(): stops following, resumes a node still paused; the containers and their BGP keep running
  (compose stops them; `up` without `--exit-code-from` leaves them up to look at).
It only talks to addresses on a network this host is attached to (or loopback), never through a router.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from meshsim.agent.config import LocalState, NodeConfig, node_configs
from meshsim.agent import API_PORT
from meshsim.agent.http import request
from meshsim.errors import RunError
from meshsim.fabric.base import POST_TIMEOUT, FabricBase, SnapshotSink, config_body
from meshsim.fabric.dockerapi import DOCKER_SOCKET, DockerSocket
from meshsim.fabric.watch import Watchers
from meshsim.host.attached import attached, connected_networks
from meshsim.logs import get_logger
from meshsim.model.cluster import Cluster
from meshsim.model.names import file_stem

DEFAULT_HTTP_PORT = API_PORT


# -- only directly attached networks ------------------------------------------------------------------

def check_reachable(addresses: dict[str, str], networks: list[IPv4Network] | None = None) -> None:
    """Every node address must be loopback or on an attached network: the controller never sends its
    requests through a router (outside the compose network there is no node of ours)."""
    nets = connected_networks() if networks is None else networks
    far = [f"{n} ({a})" for n, a in addresses.items() if not attached(a, nets)]
    if far:
        raise RunError(f"node addresses not on a network this controller is attached to: {', '.join(far)}; "
                       "the controller runs inside the compose network (`docker-compose up`), "
                       "`meshsim run` runs a scenario on this machine")


# -- the fabric ------------------------------------------------------------------------------------------

class RemoteFabric(FabricBase):
    """Nodes that run elsewhere, reached at their session address on `http_port` (see the module docstring).
    `mode` is "compose"."""

    mode = "compose"

    def __init__(self, cluster: Cluster, *, token: str | None = None, http_port: int = DEFAULT_HTTP_PORT,
                 bgp_port: int | None = None, loopback: bool = False, ready_timeout: float = 120.0,
                 docker: DockerSocket | None | bool = None, log_level: str = "info",
                 watchers: Watchers | None = None, run_id: str | None = None) -> None:
        """`token`: the run's API token, which the nodes were started with ($MESHSIM_TOKEN). `loopback=True`:
        the nodes run on this machine with `meshsim node --loopback` (tests); otherwise they bind their
        declared addresses (containers). `docker`: a DockerSocket for kill-node (None: use the mounted socket
        if there is one; False: never). `run_id`: the run id the nodes answer with ($MESHSIM_RUN_ID, from the
        same env file); None: the nodes' run id is not checked (a fresh one is made, as for any fabric)."""
        super().__init__(cluster, token=token, run_id=run_id)
        self.check_run_id = run_id is not None
        self.http_port = http_port
        self.bgp_port = bgp_port or cluster.scenario.bgp.listen_port
        self.loopback = loopback
        self.ready_timeout = ready_timeout
        self.log_level = log_level
        self.docker = DockerSocket.find() if docker is None else (docker or None)
        self.log = get_logger(component="remote-fabric")
        self.watch = watchers or Watchers(self.get)
        self.state: dict[str, str] = {n: "new" for n in self.configs()}  # new|running|stopped|frozen
        self.held: set[str] = set()  # running nodes whose BGP waits for release()
        self.starts: dict[str, int] = {}
        self.closed = False

    def _configs(self) -> dict[str, NodeConfig]:
        external = sorted({f"{p.name} of {node} -> {p.peer_address}" for node, ps in self.cluster.peerings().items()
                           for p in ps if p.peer_node is None})
        if external:  # nothing of ours answers there, and the containers send traffic to each other only
            raise RunError(f"BGP peers that are not nodes ({'; '.join(external)}) cannot be run in compose mode")
        sessions = None if self.loopback else {n.name: n.address for n in self.cluster.scenario.nodes}
        configs = node_configs(self.cluster, bgp_port=self.bgp_port, http_port=self.http_port,
                               workdir=Path("/tmp/meshsim-node"), session_addresses=sessions,
                               log_level=self.log_level)
        bird = sorted(n for n, c in configs.items() if c.implementation == "bird")
        if bird:
            raise RunError(f"nodes {', '.join(bird)} use implementation: bird, which compose does not run (a node "
                           "container runs meshsim's own engine); use `meshsim run --isolation netns`")
        return configs

    def attach(self, sink: SnapshotSink) -> None:
        self.watch.attach(sink)

    def running(self) -> list[str]:
        return [n for n, s in self.state.items() if s == "running"]

    def was_killed(self, name: str) -> bool:
        return False  # mode sigkill is refused in compose (see the module docstring)

    # -- HTTP ----------------------------------------------------------------------------------------------
    async def post(self, name: str, path: str, body: Any = None, timeout: float = POST_TIMEOUT) -> Any:
        """FabricBase.post, but every failure is a RunError (an event that could not be played), and a 401
        says what to do about the token."""
        host, port = self.http_address(name)
        try:
            status, payload = await request(host, port, "POST", path, body if body is not None else {},
                                            token=self.token, timeout=timeout)
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:  # a timeline event fails, not the run
            raise RunError(f"POST {path}: no answer from {host}:{port} ({str(exc) or type(exc).__name__})",
                           node=name) from None
        if status == 401:
            raise RunError(f"POST {path} at {host}:{port} was refused (401): the node was started with another API "
                           "token than this controller's; both read MESHSIM_TOKEN from the env file `meshsim "
                           "compose` wrote next to the compose file: regenerate it and `up` again (the containers "
                           "are recreated with the new token)", node=name)
        if status != 200:
            raise RunError(f"POST {path} answered {status}: {payload}", node=name)
        return payload

    async def _answer(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await self.get(name, "/status", timeout=3)
            except (OSError, asyncio.TimeoutError, ConnectionError, RunError) as exc:
                if time.monotonic() > deadline:
                    host, port = self.http_address(name)
                    raise RunError(f"does not answer on http://{host}:{port}/status after {timeout:.0f}s ({exc})",
                                   node=name) from None
                await asyncio.sleep(0.2)

    def _check_identity(self, name: str, status: Any) -> None:
        address = self.configs()[name].address
        if not isinstance(status, dict):
            status = {"name": f"not a meshsim node (GET /status answered {str(status)[:60]!r})"}
        if status.get("name") != name or status.get("address") != address:
            raise RunError(f"the node answering at {self.http_address(name)[0]} is {status.get('name')} "
                           f"({status.get('address')}), expected {name} ({address}): do the compose file and "
                           "MESHSIM_SCENARIO name the same nodes?", node=name)
        if self.check_run_id and status.get("run_id") != self.run_id:
            raise RunError(f"the node answering at {self.http_address(name)[0]} belongs to run id "
                           f"{status.get('run_id') or '(none)'}, this controller's is {self.run_id}: both read "
                           "MESHSIM_RUN_ID from the env file `meshsim compose` wrote next to the compose file; "
                           "regenerate it and `up` again (the containers are recreated with it)", node=name)

    # -- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Wait until every node answers, and is the node the scenario says (all at once)."""
        names = [n for n, s in self.state.items() if s == "new"]
        statuses = await asyncio.gather(*(self._answer(n, self.ready_timeout) for n in names))
        for name, status in zip(names, statuses):
            self._check_identity(name, status)
        self.log.info("nodes_answering", nodes=len(names))

    async def start_node(self, name: str, *, restart: bool = False, hold_bgp: bool = False) -> None:
        """`restart` changes nothing here: a compose node is never SIGKILLed, so it keeps no routes."""
        state = self.state.get(name)
        if state is None:
            raise RunError("start: this compose file has no container for it (add-node needs a container per "
                           "node; generate the file for a scenario that declares the node)", node=name)
        if state == "running":
            return
        if state == "frozen":  # crashed (paused) through the Docker socket: resume it; BGP restarts afresh below
            assert self.docker is not None
            if (await self.docker.state(name)).get("Paused"):
                await self.docker.do(name, "unpause")
        status = await self._answer(name, self.ready_timeout)
        self._check_identity(name, status)
        if status.get("bgp_running"):  # resumed after a crash, or a second run on the same containers: afresh
            if state == "new":
                self.log.warning("node_was_running", node=name,
                                 detail="BGP was already running (an earlier run?); stopping it to start afresh; "
                                        "counters include the earlier run: `down` between runs for clean figures")
            await self.post(name, "/stop")
        cfgs = self.configs()
        cfg = cfgs[name] = replace(cfgs[name], local=LocalState.of(self.cluster, name))
        await self.post(name, "/config", config_body(cfg))
        await self.post(name, "/local", cfg.local.to_json())
        if hold_bgp:
            self.held.add(name)
        else:
            await self.post(name, "/start")
        self.state[name] = "running"
        self.starts[name] = self.starts.get(name, 0) + 1
        self.watch.start(name)
        self.log.info("node_started", node=name, starts=self.starts[name], held=hold_bgp)

    async def release(self, names: list[str]) -> None:
        """POST /start to every held node at once."""
        held = [n for n in names if n in self.held and self.state.get(n) == "running"]
        await asyncio.gather(*(self.post(n, "/start") for n in held))
        self.held.difference_update(held)

    async def stop_node(self, name: str, timeout: float = 10.0) -> None:
        """Graceful: POST /stop (Cease to every peer); the container stays up."""
        if self.state.get(name) != "running":
            return
        self.state[name] = "stopped"
        self.held.discard(name)
        await self.watch.stop(name)
        await self.post(name, "/stop", timeout=timeout)

    async def kill_node(self, name: str, mode: str = "crash", hold_time: float | None = None) -> None:
        """crash: `docker pause` (the host goes silent: no FIN, no keepalive; peers notice by hold timer) until a
        start-node unpauses it and restarts its BGP from scratch. Needs the Docker socket; sigkill is refused
        (the container would exit, and `up --exit-code-from` stops the whole stack when one does)."""
        refusal = None
        if self.docker is None:
            refusal = (f"kill-node {name} (mode {mode}): the compose controller cannot kill a container without the "
                       f"Docker socket; mount {DOCKER_SOCKET} into the controller service, or use stop-node (a "
                       "graceful BGP stop)")
        elif mode != "crash":
            refusal = (f"kill-node {name} (mode {mode}): in compose mode only mode crash (docker pause) is played: a "
                       "killed container exits, and `up --exit-code-from` stops every container with it; use mode "
                       "crash or stop-node")
        if refusal is not None:
            self.watch.resend(name)  # the harness forgot the node's summary, but it runs on
            raise RunError(refusal, node=name)
        if self.state.get(name) != "running":
            return
        assert self.docker is not None
        self.state[name] = "frozen"
        self.held.discard(name)
        await self.watch.stop(name)
        await self.docker.do(name, "pause")

    async def push_configs(self) -> list[str]:
        """As every fabric, but a node the model gained (add-node) is refused before any node is reconfigured."""
        new = sorted(set(self._configs()) - set(self.configs()))
        if new:
            raise RunError(f"add-node: this compose file has no container for {', '.join(new)} (a node needs a "
                           "service in the file: generate one for a scenario that declares it)", node=new[0])
        return await super().push_configs()

    async def shut_down_elsewhere(self) -> None:
        """`meshsim down` on the host shut every node down (POST /shutdown; the controller learns it from its
        record's removal, meshsim/run/keeper.py): stop following them and take them out of `running()`, so the
        report's final views do not wait on addresses that no longer answer (15 s per request each)."""
        for name, state in self.state.items():
            if state in ("running", "frozen"):
                await self.watch.stop(name)
                self.state[name] = "shut down"

    async def close(self) -> None:
        """Stop following; a node still paused is resumed; the containers keep running. Idempotent."""
        if self.closed:
            return
        self.closed = True
        await self.watch.close()
        for name, state in self.state.items():
            if state == "frozen" and self.docker is not None:
                try:
                    await self.docker.do(name, "unpause")
                except (OSError, RunError) as exc:
                    self.log.warning("node_unpause_failed", node=name, error=str(exc))

    # -- reports -------------------------------------------------------------------------------------------------
    def tail(self, name: str, lines: int = 5) -> str:
        return f"(the node's log is its container's output: docker compose logs {name})"

    def collect_logs(self, dest: Path) -> None:
        """With the Docker socket: every node container's output into dest/<node>.log; without it, nothing."""
        if self.docker is None:
            return
        dest.mkdir(parents=True, exist_ok=True)
        for name, state in self.state.items():
            if state == "new":
                continue
            try:
                (dest / f"{file_stem(name)}.log").write_bytes(self.docker.logs(name))
            except (OSError, RunError, ValueError) as exc:  # logs are a courtesy
                self.log.warning("logs_not_collected", node=name, error=str(exc))

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode,
                "nodes": [{"name": n, "http": "%s:%d" % self.http_address(n), "state": s,
                           "starts": self.starts.get(n, 0)} for n, s in self.state.items()],
                "docker_socket": self.docker.path if self.docker is not None else None,
                "measured": "per node, as each node process reports it (one node per container): CPU as the thread "
                            "time of its callbacks, memory as its process's RSS"}
