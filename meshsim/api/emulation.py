"""An emulated Calico cluster a program or an asyncio test drives step by step: `emulate(...)` and `Emulation`.

Owns the lifecycle of one emulation (load the scenario, start its nodes on the right fabric, wait for the cold
start to converge, tear everything down whatever happens) and the actions a test takes on it. It adds no second
implementation of anything: the nodes run on the fabrics `meshsim run` uses (fabric.local / fabric.netns), the
cluster is driven through `run.harness.Harness`, every action is a timeline `Step` validated by
`model.timeline.parse_timeline` and measured by `run.steps.run_step` (so its record has the timeline event's
fields), and `report()` is `run.runner.RunResult.to_json()`, what `report.json` holds.

Teardown, also when the block fails or is cancelled: measure the last state (only when a report is written),
stop every process (`Harness.close`), write the report, then the synchronous last resorts (kill the workers'
process groups, delete the namespaces, remove the temp dirs), which run even when the graceful part was cut short.
Longer than ~250 lines for a class: it is the API's one object, one method per documented call.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Literal

from meshsim.api.actions import TimelineActions
from meshsim.api.records import EmulationError, EventRecord, NotConverged, PeerEndpoint
from meshsim.errors import MeshsimError, NotFoundError, RunError, ScenarioError

Isolation = Literal["loopback", "netns"]
Dataplane = Literal["sim", "kernel"]
ExternalPeers = Literal["gobgpd", "none"]


class Emulation(TimelineActions):
    """A running emulated Calico cluster. Make one with `meshsim.emulate(...)` (see there for the options).

    Every node is a real BGP speaker (meshsim's engine, or BIRD with `implementation: bird` in netns mode) with
    real TCP sessions; the "datastore" is meshsim's model of the scenario's Calico resources. Reading: `nodes`,
    `running`, `expected_routes`, `routes`, `status`, `rib`, `peer_endpoint`, `report`. Acting: the timeline's
    events as methods, each returning when the event converges as the timeline defines it, with its
    `EventRecord`. Not safe to drive from several tasks at once: actions are serialised.

    Over 250 lines because it is the whole public surface in one documented class (the actions live apart,
    in `TimelineActions`); every method is a thin call into the harness, the oracle or the runner.
    """

    def __init__(self, files: list[str | Path], *, text: str | None = None, workers: int | None = None,
                 isolation: Isolation = "loopback", dataplane: Dataplane = "sim", timeout: float = 120.0,
                 out: str | Path | None = None, bgp_port: int | None = None, log_level: str = "info",
                 process_per_node: bool = False, external_peers: ExternalPeers | None = None,
                 check: bool = True, wait: bool = True) -> None:
        if not files and text is None:
            raise EmulationError("emulate() needs scenario files or text=")
        self._files = [Path(f) for f in files]
        self._text = text
        self._text_dir: Path | None = None
        self.workers = workers
        self.isolation = isolation
        self.dataplane = dataplane
        self.timeout = timeout
        self.out = Path(out) if out is not None else None
        self.bgp_port = bgp_port
        self.log_level = log_level
        self.process_per_node = process_per_node
        self.external_peers: ExternalPeers = external_peers or ("gobgpd" if isolation == "netns" else "none")
        self.check = check
        self.wait = wait
        self._harness: Any = None
        self._result: Any = None
        self._state: Literal["new", "starting", "running", "closed"] = "new"
        self._lock: asyncio.Lock | None = None
        self._pending_stale: dict[str, tuple[Any, float, float, EventRecord]] = {}

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def __aenter__(self) -> "Emulation":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> "Emulation":
        """Build the cluster, start every node, wait for the cold start to converge (`timeout`; not with
        `wait=False`). Raises `NotConverged` naming the nodes that differ (unless `check=False`); tears down on
        any failure."""
        if self._state != "new":
            raise EmulationError(f"this emulation was already started ({self._state})")
        self._state = "starting"
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        self._state = "running"
        return self

    async def _start(self) -> None:
        from meshsim.fabric.netns import fabric_factory
        from meshsim.model.cluster import Cluster
        from meshsim.oracle.expected import expected_tables
        from meshsim.report.metrics import expected_digests
        from meshsim.run.harness import Harness
        from meshsim.run.runner import RunResult, cold_figures

        _quiet_logs()
        scenario = self._load()
        self._check_mode(scenario)
        if self.out is not None:  # a place the report cannot be written is an error before anything starts
            from meshsim.run.runner import prepare_out

            prepare_out(self.out)
        cluster = Cluster.build(scenario)
        fabric = fabric_factory(self.isolation, self.dataplane, bgp_port=self.bgp_port, log_level=self.log_level,
                                workers=self.workers, process_per_node=self.process_per_node)(cluster)
        if fabric.mode == "netns" and self.external_peers == "none":
            self._leave_external_peers_to_the_test(fabric)
        self._result = RunResult(scenario=scenario.name, files=[str(f) for f in self._files], started_at=time.time(),
                                 nodes=[n.name for n in scenario.nodes], mode=fabric.mode)
        self._result.expected = {n: e.digest for n, e in expected_digests(expected_tables(cluster)).items()}
        h = self._harness = Harness(cluster, fabric)
        await h.start()
        self._result.started_at = h.started_at
        if not self.wait:
            return  # the first wait_converged() measures the cold start
        conv = await h.converge(self.timeout)
        self._result.converged = conv.converged and conv.sessions_up == conv.sessions_expected
        self._result.cold = cold_figures(conv, h.observer.snapshots)
        self._result.snapshots = dict(h.observer.snapshots)
        if self.check and not self._result.converged:
            raise NotConverged("the cold start", self.timeout, self._result.cold, logs=self._log_tails(conv.diffs),
                               hint=self._external_peer_hint())

    def _external_peer_hint(self) -> str | None:
        """A node with an external BGPPeer that never came up holds its routes back (graceful-restart recovery,
        `bird -R`, up to 240 s): say how to start one's own speaker during the cold start."""
        if self.external_peers != "none":
            return None
        external = sorted({p.address for cfg in self._harness.fabric.configs().values() for p in cfg.peers
                           if p.peer_node is None})
        if not external:
            return None
        return (f"the scenario's external BGP peers ({', '.join(external[:3])}) were not up: a Calico node waits for "
                "every peer during its graceful-restart recovery (bird -R, up to 240 s) before it programs routes. "
                "Start your own speaker during the cold start: emulate(..., wait=False), peer_endpoint(), then "
                "await wait_converged(); or shorten the wait with the Scenario's spec.timers.restartWait")

    def _load(self) -> Any:
        from meshsim.model.resources import load_scenario

        files = list(self._files)
        text_path = None
        if self._text is not None:
            self._text_dir = Path(tempfile.mkdtemp(prefix="meshsim-api-"))
            text_path = self._text_dir / "scenario.yaml"
            text_path.write_text(self._text)
            files.append(text_path)
        try:
            return load_scenario(files)
        except ScenarioError as exc:
            if text_path is not None and exc.path == str(text_path):
                raise replace(exc, path="<text>") from None
            raise

    def _check_mode(self, scenario: Any) -> None:
        bird = [n.name for n in scenario.nodes if scenario.host(n.name).implementation == "bird"]
        if bird and self.isolation != "netns":
            raise RunError(f"nodes {', '.join(bird)} use implementation: bird, which needs isolation=\"netns\" (root): "
                           "BIRD marks next hops in 127/8 unreachable")
        if self.external_peers == "gobgpd" and self.isolation != "netns":
            raise RunError("external_peers=\"gobgpd\" needs isolation=\"netns\" (gobgpd holds the peer's declared "
                           "address in a namespace of its own); on loopback your own speaker peers through "
                           "peer_endpoint()")

    @staticmethod
    def _leave_external_peers_to_the_test(fabric: Any) -> None:
        """netns: make the external peers' namespaces and addresses, but start no gobgpd there."""
        from meshsim.fabric.tors import TorDaemons

        fabric.tors = TorDaemons(fabric.cluster, replace(fabric.topology, tors=[]), fabric.workdir, fabric.running,
                                 log=fabric.log)

    async def close(self) -> None:
        """Stop every node and remove everything the emulation made (idempotent). With `out`, the report, final
        tables, status and logs are written there, as `meshsim run --out` writes them (report.json before the nodes
        stop, the rest after); what could not be written raises RunError once everything is stopped."""
        if self._state == "closed":
            return
        self._state = "closed"
        h = self._harness
        unwritten: list[str] = []
        try:
            if h is not None:
                if self.out is not None and self._result is not None:  # runner.py's order: report.json, close, rest
                    from meshsim.run.runner import _measure_last, write_report_json

                    self._sync_result()
                    await _measure_last(h, self._result)
                    self._result.processes = h.fabric.describe()
                    unwritten += write_report_json(self.out, self._result)
                await h.close(keep_files=True)
                if self.out is not None and self._result is not None:
                    from meshsim.run.runner import write_views

                    unwritten += write_views(self.out, self._result, h.fabric.collect_logs)
        finally:
            self._last_resort()
        if unwritten:
            raise RunError(f"could not write the report: {'; '.join(unwritten[:3])}"
                           + (" ..." if len(unwritten) > 3 else ""))

    def _last_resort(self) -> None:
        """Synchronous, safe while being cancelled: whatever the graceful close did not finish."""
        fabric = getattr(self._harness, "fabric", None)
        try:
            for name in ("kill_all_now", "teardown_network", "remove_files"):
                step = getattr(fabric, name, None)
                if step is not None:
                    step()
        finally:
            if self._text_dir is not None:
                shutil.rmtree(self._text_dir, ignore_errors=True)

    # -- reading -------------------------------------------------------------------------------------------
    def _live(self) -> Any:
        if self._state != "running" or self._harness is None:
            raise EmulationError(f"the emulation is not running ({self._state})")
        return self._harness

    @property
    def nodes(self) -> list[str]:
        """Every node of the cluster (added ones included), running or not, in scenario order."""
        return [n.name for n in self._live().cluster.scenario.nodes]

    @property
    def running(self) -> list[str]:
        """The nodes up now (not stopped or killed)."""
        return sorted(self._live().running())

    @property
    def cold_start(self) -> dict[str, Any]:
        """The cold start's figures, as report.json's `cold_start` (time_to_converged_s, per_node_s, ...)."""
        self._live()
        return dict(self._result.cold)

    @property
    def is_running(self) -> bool:
        """Started and not closed yet."""
        return self._state == "running"

    @property
    def scenario(self) -> str:
        """The scenario's name (its Scenario document's metadata.name)."""
        return str(self._live().cluster.scenario.name)

    @property
    def files(self) -> list[str]:
        """The files the scenario was read from (`text=` is one of them while the emulation runs)."""
        self._live()
        return [str(f) for f in self._files] + ([str(self._text_dir / "scenario.yaml")] if self._text_dir else [])

    @property
    def mode(self) -> str:
        """Where the nodes run: `local` (isolation loopback) or `netns`."""
        return str(self._live().fabric.mode)

    def _node(self, node: str, running: bool = False) -> str:
        h = self._live()
        h.cluster.scenario.node(node)  # NotFoundError naming the known nodes
        if running and node not in h.running():
            raise EmulationError(f"node {node} is not running")
        return node

    def expected_routes(self, node: str) -> list[str]:
        """The node's expected routing table now (what Calico's BIRD and Felix would program), as `ip route`
        lines; a SIGKILLed node's routes count while its peers keep them as stale."""
        self._node(node, running=True)
        text: str = self._harness.expected()[node].table.render_ip()
        return text.splitlines()

    def expected_advertised(self, node: str, peer_ip: str) -> list[str]:
        """The prefixes `node` should advertise now to the external BGPPeer at `peer_ip` (its own blocks and what
        it learned, through Calico's export rules for that peer), sorted: what your speaker should learn."""
        from meshsim.oracle.expected import expected_external

        h = self._live()
        self._node(node)
        table = expected_external(h.cluster, h.running()).get(IPv4Address(peer_ip), {})
        return [str(prefix) for prefix, paths in sorted(table.items()) if any(r.node == node for r in paths)]

    async def routes(self, node: str) -> list[str]:
        """The node's actual routing table, as `ip route` lines (GET /routes?format=ip)."""
        text = await self._get(node, "/routes?format=ip")
        return str(text).splitlines()

    async def status(self, node: str) -> dict[str, Any]:
        """GET /status: name, address, bgp_running, implementation, sessions [{peer, type, state, since, info,
        ...}], and `text`, `calicoctl node status` as Calico prints it."""
        return dict(await self._get(node, "/status"))

    async def rib(self, node: str) -> dict[str, Any]:
        """GET /rib: the node's Adj-RIB-In, Loc-RIB and Adj-RIB-Out per peer."""
        return dict(await self._get(node, "/rib"))

    async def _get(self, node: str, path: str) -> Any:
        h = self._live()
        self._node(node, running=True)
        try:
            return await h.fabric.get(node, path, timeout=15)
        except (OSError, asyncio.TimeoutError) as exc:
            raise EmulationError(f"node {node}: GET {path} failed: {exc}") from None

    def peer_endpoint(self, node: str, peer_ip: str) -> PeerEndpoint:
        """Where your own BGP speaker peers with `node` for the external BGPPeer (peerIP `peer_ip`) the scenario
        declares for it: see `PeerEndpoint`."""
        h = self._live()
        self._node(node)
        want = str(IPv4Address(peer_ip))
        cfg = h.fabric.configs()[node]
        peer = next((p for p in cfg.peers if p.peer_node is None and p.address == want), None)
        if peer is None:
            known = sorted({p.address for p in cfg.peers if p.peer_node is None})
            raise NotFoundError(f"external BGP peer of node {node} (a BGPPeer whose peerIP is no node)", want,
                                tuple(known))
        netns = None
        if h.fabric.mode == "netns":
            if self.external_peers == "gobgpd":
                raise EmulationError(f"meshsim runs gobgpd as peer {want} (isolation=\"netns\"); pass "
                                     "external_peers=\"none\" to emulate() to peer your own speaker there")
            netns = next(t.ns for t in h.fabric.topology.tors if str(t.address) == want)
        return PeerEndpoint(node=node, node_address=cfg.session_address, node_port=cfg.bgp_port, node_as=cfg.asn,
                            node_router_id=cfg.address, local_address=peer.session_address, local_port=peer.port,
                            peer_as=peer.asn, peer_router_id=peer.address, netns=netns, hold_time=cfg.hold_time,
                            password=peer.password)

    def report(self) -> dict[str, Any]:
        """Everything measured so far, as `report.json` holds it (schema meshsim.report/v2): the cold start,
        every event's record, totals, processes and per-node figures."""
        self._live()
        self._sync_result()
        self._result.processes = self._harness.fabric.describe()
        return dict(self._result.to_json())

    def _sync_result(self) -> None:
        h = self._harness
        r = self._result
        r.nodes = [n.name for n in h.cluster.scenario.nodes]
        r.snapshots = dict(h.observer.snapshots)
        try:
            r.expected = {n: e.digest for n, e in self._harness.expected().items()}
        except MeshsimError:
            pass
        r.converged = bool(r.cold.get("converged")) and all(ev.get("converged", True) for ev in r.events)

    def http_address(self, node: str) -> tuple[str, int]:
        """Where the node's HTTP API answers (host, port): `curl http://HOST:PORT/status` (GETs need no token)."""
        self._node(node)
        host, port = self._live().fabric.http_address(node)
        return str(host), int(port)

    def log_tail(self, node: str, lines: int = 20) -> str:
        """The last lines of the node's log (JSON lines)."""
        return str(self._live().fabric.tail(node, lines))

    def _log_tails(self, nodes: Any, lines: int = 5) -> dict[str, str]:
        fabric = self._harness.fabric
        return {n: fabric.tail(n, lines) for n in list(nodes)[:3]}

def _quiet_logs() -> None:
    """The fabric logs through structlog; unconfigured, structlog prints every event to stdout. A program that has
    not configured it gets meshsim's own setup (warnings and errors on stderr; MESHSIM_LOG_LEVEL)."""
    import structlog

    if not structlog.is_configured():
        from meshsim.logs import configure

        configure()


def emulate(*scenario_files: str | Path, text: str | None = None, workers: int | None = None,
            isolation: Isolation = "loopback", dataplane: Dataplane = "sim", timeout: float = 120.0,
            out: str | Path | None = None, bgp_port: int | None = None, log_level: str = "info",
            process_per_node: bool = False, external_peers: ExternalPeers | None = None,
            check: bool = True, wait: bool = True) -> Emulation:
    """An emulated Calico cluster, as an async context manager:

        async with meshsim.emulate("cluster.yaml", workers=2) as emu:
            await emu.add_workloads("node1", 10)
            assert await emu.routes("node2") == emu.expected_routes("node2")

    Entering starts every node and waits for the cold start to converge (raising `NotConverged`, which names the
    nodes that differ, after `timeout` seconds); leaving stops every process and removes every namespace and
    temp dir, also when the block raises or is cancelled. Options mirror `meshsim run`:
    - `scenario_files`: Calico YAML files (calicoctl/kubectl dumps) and meshsim's Scenario document;
      `text=`: the same as one YAML string (added after the files);
    - `isolation`: "loopback" (every node on its own 127.x address; no root) or "netns" (root: every node in a
      network namespace holding its declared address; needed by `implementation: bird` nodes);
      `dataplane` "kernel" (netns only): nodes also program their namespace's kernel table;
    - `workers`: worker processes hosting the nodes (default: one per CPU); `process_per_node`;
    - `out`: a folder to write report.json, report.md, final tables, status and logs into on teardown;
    - `bgp_port` (default 179 as root, 17900 otherwise; netns: the scenario's listenPort), `log_level` of the
      nodes' logs;
    - `external_peers`: what runs at an external BGPPeer's address: "none" (the default on loopback): nothing,
      your own speaker peers there (`peer_endpoint`); "gobgpd" (the default in netns): a passive gobgpd;
    - `check=False`: a cold start, event or wait that does not converge returns its figures instead of raising;
    - `wait=False`: return as soon as every node runs, without waiting for the cold start: start your own BGP
      speakers (`peer_endpoint`), then `await emu.wait_converged()` measures the cold start. Needed when the
      scenario declares external BGPPeers: a Calico node holds its routes back until every peer is up or its
      graceful-restart recovery (`bird -R`) gives up after 240 s.
    `await emulate(...).start()` and `await emu.close()` do the same without a `with` block.
    """
    return Emulation(list(scenario_files), text=text, workers=workers, isolation=isolation, dataplane=dataplane,
                     timeout=timeout, out=out, bgp_port=bgp_port, log_level=log_level,
                     process_per_node=process_per_node, external_peers=external_peers, check=check, wait=wait)


__all__ = ["Emulation", "emulate"]
