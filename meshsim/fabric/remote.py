"""`meshsim controller`: run a scenario against nodes that run elsewhere (one container per node).

Owns `RemoteFabric`, a fabric for `Harness` that drives already-running `meshsim node` processes over
their HTTP endpoints only, and `main(args)`, the compose controller: check that the scenario fits the
compose file, then `run_scenario(..., fabric_factory=RemoteFabric, mode="compose")` exactly as
`meshsim run` does (cold start, timeline, report.json/report.md/routes/status), and exit 0 only when
every expected table was reached.

What a remote fabric can and cannot do to a node it did not spawn:
- start_node: the node runs with `--hold-bgp`; POST /local (what IPAM says now) then POST /start. A node
  whose BGP already runs (a second `up` on the same containers) is stopped first, so it starts afresh.
- stop_node: POST /stop, a graceful BGP stop (Cease to every peer); the container stays up.
- kill_node: only with the Docker socket mounted into the controller (/var/run/docker.sock, or
  $MESHSIM_DOCKER_SOCKET), and only mode crash: `docker pause` (the host goes silent, peers notice by hold
  timer); a later start-node unpauses it and restarts its BGP from scratch. Mode sigkill is refused (the
  container would exit, and `up --exit-code-from` stops the whole stack then). Without the socket: a
  RunError naming the event.
- add-node: there is no container for a node the compose file does not have: a RunError.
It only talks to addresses on a network this host is attached to (or loopback), never through a router.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any
from urllib.parse import quote

from meshsim.errors import RunError
from meshsim.logs import get_logger
from meshsim.fabric.nodeapi import NodeApi, config_body
from meshsim.model.cluster import Cluster
from meshsim.agent.config import LocalState, NodeConfig, node_configs
from meshsim.model.resources import load_scenario

DEFAULT_HTTP_PORT = 9179
DOCKER_SOCKET = "/var/run/docker.sock"


@dataclass
class RemoteNode:
    name: str
    config: NodeConfig
    proc: None = None  # no local process: the Observer never sees one exit (a dead node times out instead)
    frozen: bool = False  # paused (a crash through the Docker socket)
    state: str = "new"  # new | running | stopped | killed | absent (no container for it)
    starts: int = 0
    log_path: Path | None = None
    pids_seen: set[int] = field(default_factory=set)


# -- only directly attached networks ------------------------------------------------------------------

def connected_networks(path: str = "/proc/net/route") -> list[IPv4Network]:
    """Networks this host (container) reaches without a router: the routes with no gateway."""
    nets = []
    try:
        lines = Path(path).read_text().splitlines()[1:]
    except OSError:
        return nets
    for line in lines:
        f = line.split()
        if len(f) < 8:
            continue
        dest, gw, mask = (struct.pack("<I", int(x, 16)) for x in (f[1], f[2], f[7]))
        if gw != b"\0\0\0\0" or mask == b"\0\0\0\0":
            continue
        prefix = bin(int.from_bytes(mask, "big")).count("1")
        try:
            nets.append(IPv4Network((IPv4Address(dest), prefix), strict=False))
        except ValueError:
            continue
    return nets


def check_reachable(addresses: dict[str, str], networks: list[IPv4Network] | None = None) -> None:
    """Every node address must be loopback or on an attached network: the controller never sends its
    requests through a router (outside the compose network there is no node of ours)."""
    nets = connected_networks() if networks is None else networks
    far = [f"{n} ({a})" for n, a in addresses.items()
           if not IPv4Address(a).is_loopback and not any(IPv4Address(a) in net for net in nets)]
    if far:
        raise RunError(f"node addresses not on a network this controller is attached to: {', '.join(far)}; "
                       "the controller runs inside the compose network (`docker-compose up`), "
                       "`meshsim run` runs a scenario on this machine")


# -- the Docker Engine API, when its socket is mounted ----------------------------------------------------

class DockerSocket:
    """The few Engine API calls kill-node needs (pause, unpause, inspect, logs), over the unix socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._ids: dict[str, str] = {}
        self.project: str | None = os.environ.get("MESHSIM_COMPOSE_PROJECT")

    @classmethod
    def find(cls) -> "DockerSocket | None":
        path = os.environ.get("MESHSIM_DOCKER_SOCKET", DOCKER_SOCKET)
        return cls(path) if path and os.path.exists(path) else None

    def _call(self, method: str, path: str, timeout: float = 20.0) -> tuple[int, Any]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.path)
            s.sendall(f"{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n".encode())
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        finally:
            s.close()
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        try:
            return status, json.loads(body) if body.strip() else None
        except ValueError:
            return status, body.decode(errors="replace")

    async def call(self, method: str, path: str) -> tuple[int, Any]:
        return await asyncio.to_thread(self._call, method, path)

    def container(self, service: str) -> str:
        """The id of the compose service's container in our own compose project (sync; cached)."""
        if service in self._ids:
            return self._ids[service]
        if self.project is None:  # our own container's project (the hostname is our container id)
            status, me = self._call("GET", f"/containers/{socket.gethostname()}/json")
            if status == 200 and isinstance(me, dict):
                self.project = (me.get("Config", {}).get("Labels") or {}).get("com.docker.compose.project")
        labels = [f"com.docker.compose.service={service}"]
        if self.project:
            labels.append(f"com.docker.compose.project={self.project}")
        flt = quote(json.dumps({"label": labels}, separators=(",", ":")))
        status, found = self._call("GET", f"/containers/json?all=1&filters={flt}")
        if status != 200 or not found:
            raise RunError(f"no container for service {service} (project {self.project}) through the Docker socket")
        self._ids[service] = found[0]["Id"]
        return self._ids[service]

    async def do(self, service: str, action: str) -> None:
        cid = await asyncio.to_thread(self.container, service)
        status, payload = await self.call("POST", f"/containers/{cid}/{action}")
        if status not in (204, 304):
            raise RunError(f"docker {action} answered {status}: {payload}", node=service)

    async def state(self, service: str) -> dict[str, Any]:
        cid = await asyncio.to_thread(self.container, service)
        status, payload = await self.call("GET", f"/containers/{cid}/json")
        return payload.get("State", {}) if status == 200 and isinstance(payload, dict) else {}

    def logs(self, service: str) -> bytes:
        """The container's output (stdout and stderr, demultiplexed)."""
        cid = self.container(service)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        try:
            s.connect(self.path)
            s.sendall(f"GET /containers/{cid}/logs?stdout=1&stderr=1 HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        finally:
            s.close()
        body = data.partition(b"\r\n\r\n")[2]
        out, i = [], 0
        while i + 8 <= len(body):  # multiplexed stream: an 8-byte header per frame
            size = struct.unpack(">I", body[i + 4:i + 8])[0]
            out.append(body[i + 8:i + 8 + size])
            i += 8 + size
        return b"".join(out)


class RemoteFabric(NodeApi):
    """Nodes that run elsewhere, reached at their session address on `http_port`. Same methods as LocalFabric."""

    def __init__(self, cluster: Cluster, *, http_port: int = DEFAULT_HTTP_PORT, bgp_port: int | None = None,
                 loopback: bool = False, ready_timeout: float = 120.0, docker: DockerSocket | None | bool = None,
                 log_level: str = "info") -> None:
        """`loopback=True`: the nodes run on this machine with `meshsim node --loopback` (tests); otherwise they
        bind their declared addresses (containers). `docker`: a DockerSocket for kill-node (None: use the
        mounted socket if there is one; False: never)."""
        self.cluster = cluster
        self.http_port = http_port
        self.bgp_port = bgp_port or cluster.scenario.bgp.listen_port
        self.loopback = loopback
        self.ready_timeout = ready_timeout
        self.log_level = log_level
        self.docker = DockerSocket.find() if docker is None else (docker or None)
        self.log = get_logger(component="remote-fabric")
        self.nodes: dict[str, RemoteNode] = {n: RemoteNode(n, c) for n, c in self._configs().items()}
        self.closed = False

    def _configs(self) -> dict[str, NodeConfig]:
        external = sorted({f"{p.name} of {node} -> {p.peer_address}" for node, ps in self.cluster.peerings().items()
                           for p in ps if p.peer_node is None})
        if external:  # nothing of ours answers there, and the containers send traffic to each other only
            raise RunError(f"BGP peers that are not nodes ({'; '.join(external)}) cannot be run in compose mode")
        sessions = None if self.loopback else {n.name: n.address for n in self.cluster.scenario.nodes}
        return node_configs(self.cluster, bgp_port=self.bgp_port, http_port=self.http_port,
                            workdir=Path("/tmp/meshsim-node"), session_addresses=sessions, log_level=self.log_level)

    def http_address(self, name: str) -> tuple[str, int]:
        return self.nodes[name].config.session_address, self.http_port

    def running(self) -> list[str]:
        return [n for n, p in self.nodes.items() if p.state == "running" and not p.frozen]

    # -- lifecycle ------------------------------------------------------------------------------
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

    async def start_node(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None or node.state == "absent":
            raise RunError("start: this compose file has no container for it (add-node needs a container per "
                           "node; generate the file for a scenario that declares the node)", node=name)
        if node.state == "running" and not node.frozen:
            return
        if node.frozen:  # crashed (paused) through the Docker socket: resume it; BGP restarts afresh below
            assert self.docker is not None
            if (await self.docker.state(name)).get("Paused"):
                await self.docker.do(name, "unpause")
            node.frozen = False
        status = await self._answer(name, self.ready_timeout)
        if status.get("name") != name or status.get("address") != node.config.address:
            raise RunError(f"the node answering at {self.http_address(name)[0]} is {status.get('name')} "
                           f"({status.get('address')}), expected {name} ({node.config.address}): do the compose "
                           "file and MESHSIM_SCENARIO name the same nodes?", node=name)
        if status.get("bgp_running"):  # resumed after a crash, or a second run on the same containers: afresh
            if node.state == "new":
                self.log.warning("node_was_running", node=name,
                                 detail="BGP was already running (an earlier run?); stopping it to start afresh; "
                                        "counters include the earlier run: `down` between runs for clean figures")
            await self.post(name, "/stop")
        have = {s["name"] for s in status.get("sessions", [])}
        if have != {p.name for p in node.config.peers}:
            await self.post(name, "/config", config_body(node.config))
        node.config = replace(node.config, local=LocalState.of(self.cluster, name))
        await self.post(name, "/local", node.config.local.to_json())
        await self.post(name, "/start")
        node.state = "running"
        node.starts += 1
        self.log.info("node_started", node=name, starts=node.starts)

    async def wait_ready(self, names: list[str], timeout: float | None = None) -> None:
        """Until every node answers on HTTP (it was started by us, so it does at once in compose)."""
        timeout = self.ready_timeout if timeout is None else timeout
        await asyncio.gather(*(self._answer(n, timeout) for n in names))

    async def stop_node(self, name: str, timeout: float = 10.0) -> None:
        """Graceful: POST /stop (ExaBGP sends a Cease NOTIFICATION on every session); the container stays up."""
        node = self.nodes[name]
        if node.state != "running":
            return
        try:
            await self.post(name, "/stop", timeout=timeout)
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
            self.log.warning("node_stop_failed", node=name, error=str(exc))
        node.state = "stopped"

    async def kill_node(self, name: str, mode: str = "crash", hold_time: float | None = None) -> None:
        """crash: `docker pause` (the host goes silent: no FIN, no keepalive; peers notice by hold timer) until a
        start-node unpauses it and restarts its BGP from scratch. Needs the Docker socket; sigkill is refused
        (the container would exit, and `up --exit-code-from` stops the whole stack when one does)."""
        if self.docker is None:
            raise RunError(f"kill-node {name} (mode {mode}): the compose controller cannot kill a container "
                           f"without the Docker socket; mount {DOCKER_SOCKET} into the controller service, "
                           "or use stop-node (a graceful BGP stop)", node=name)
        if mode != "crash":
            raise RunError(f"kill-node {name} (mode {mode}): in compose mode only mode crash (docker pause) is "
                           "played: a killed container exits, and `up --exit-code-from` stops every container "
                           "with it; use mode crash or stop-node", node=name)
        node = self.nodes[name]
        if node.state != "running":
            return
        await self.docker.do(name, "pause")
        node.state = "killed"
        node.frozen = True

    async def close(self) -> None:
        """The containers keep running (compose stops them); a node still paused is resumed. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for name, node in self.nodes.items():
            if node.frozen and self.docker is not None:
                try:
                    await self.docker.do(name, "unpause")
                except (OSError, RunError) as exc:
                    self.log.warning("node_unpause_failed", node=name, error=str(exc))

    # -- talking to nodes ---------------------------------------------------------------------------
    def _new_node(self, name: str, cfg: NodeConfig) -> "RemoteNode":
        return RemoteNode(name, cfg, state="absent")  # a node added at run time has no container

    def tail(self, name: str, lines: int = 5) -> str:
        return f"(the node's log is its container's output: docker-compose logs {name})"

    def collect_logs(self, dest: Path) -> None:
        """With the Docker socket: every node container's output into dest/<node>.log; without it, nothing."""
        if self.docker is None:
            return
        dest.mkdir(parents=True, exist_ok=True)
        for name, node in self.nodes.items():
            if node.state == "absent":
                continue
            try:
                (dest / f"{name}.log").write_bytes(self.docker.logs(name))
            except (OSError, RunError, ValueError) as exc:  # logs are a courtesy
                self.log.warning("logs_not_collected", node=name, error=str(exc))


# -- the controller ---------------------------------------------------------------------------------------

def check_fit(cluster: Cluster, declared: str | None) -> None:
    """MESHSIM_COMPOSE_NODES ("node1=192.168.0.81 ...", written by `meshsim compose`) against the scenario."""
    if not declared:
        return
    services = dict(item.split("=", 1) for item in declared.split())
    problems = []
    for n in cluster.scenario.nodes:
        if n.name not in services:
            problems.append(f"{n.name} has no service")
        elif services[n.name] != str(n.address):
            problems.append(f"{n.name} is {n.address} in the scenario but {services[n.name]} in the file")
    extra = sorted(set(services) - {n.name for n in cluster.scenario.nodes})
    if extra:
        problems.append(f"services without a Node in the scenario: {', '.join(extra)}")
    if problems:
        raise RunError(f"scenario {cluster.scenario.name} does not fit this compose file: {'; '.join(problems)}; "
                       f"generate one for it: meshsim compose SCENARIO -o FILE")


OUTPUTS = ("report.json", "report.md", "convergence.png", "per_node.png")


def clear_previous(out: Path) -> None:
    """A mounted report folder is reused across runs: remove what an earlier run wrote, nothing else."""
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    for sub, suffix in (("routes", ".ip"), ("status", ".txt"), ("logs", ".log")):
        if (out / sub).is_dir():
            for f in (out / sub).glob(f"*{suffix}"):
                f.unlink(missing_ok=True)


def give_back(out: Path) -> None:
    """The controller runs as root: hand what it wrote to the owner of the (bind-mounted) folder."""
    try:
        st = out.stat()
    except OSError:
        return
    if os.geteuid() != 0 or st.st_uid == 0:
        return
    for p in [out, *out.rglob("*")]:
        try:
            os.chown(p, st.st_uid, st.st_gid)
        except OSError:
            pass


def main(args: Any) -> int:
    from meshsim.run.runner import run_scenario, summary

    files = list(args.files)
    cluster = Cluster.build(load_scenario(files))
    check_fit(cluster, os.environ.get("MESHSIM_COMPOSE_NODES"))
    check_reachable({n.name: str(n.address) for n in cluster.scenario.nodes})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clear_previous(out)
    async def go():
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_scenario(files, out=out, timeout=args.timeout, fabric_factory=RemoteFabric, mode="compose")

    try:
        result = asyncio.run(go())
    except KeyboardInterrupt:
        print("meshsim controller: interrupted", file=sys.stderr)
        return 130
    finally:
        give_back(out)
    sys.stdout.write(summary(result))
    print(f"  report: {out / 'report.json'}; final tables in {out / 'routes'}/, status in {out / 'status'}/")
    sys.stdout.flush()
    if result.error:
        raise RunError(result.error)
    if result.interrupted:
        return 130
    return 0 if result.converged else 1
