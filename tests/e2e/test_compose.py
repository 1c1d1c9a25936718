"""Compose: the generated files, the controller's fabric, and end-to-end runs in Docker.

Without Docker (always run): `meshsim compose` output (the top-level docker-compose.yml is current, any N,
one subnet, static addresses and MACs, health checks every >= 2 s, NET_ADMIN, the controller, the token's
env file: mode 0600, referenced by every service, never in the compose file) and its clear errors; the
controller's `RemoteFabric` driving real `meshsim node --loopback --hold-bgp` processes over HTTP on 127.x
with the run's token (integration, under the lock), with `run_scenario` exactly as `meshsim run` calls it.

With Docker (`@pytest.mark.e2e`, root): `../shared/tools/make-base-image.sh` (engine + local base image),
scripts/wheelhouse.sh, `docker build --network none` against the local base image, then the top-level
docker-compose.yml with `up --exit-code-from controller` for the mesh and the RR scenario (report: every node
converged, sessions as designed, final tables equal to the expected ones), and with `--dataplane kernel`:
`ip route` in a node container holds the BGP routes (proto bird), a pod on one node pings a pod on another,
and the route is gone once the destination node stopped (a POST /stop with the token from the env file; one
without it is refused). The top-level file's env file (docker-compose.env) is written if missing and removed
again if the tests wrote it. Every stack is brought down (`down -v --remove-orphans`, fixed project name)
also on failure, after printing its logs. No Docker, no root, or no base-image script: the e2e tests skip and
say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import yaml

from meshsim.fabric.composefile import (ComposeError, compose_file, env_file_for, health_interval, layout, mac_for,
                                        write_env_file)
from meshsim.errors import RunError
from meshsim.agent.http import request
from meshsim.oracle.expected import expected_tables
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from meshsim.run.runner import run_scenario, summary
from meshsim.fabric.remote import RemoteFabric, check_fit, check_reachable, controller_token

ROOT = Path(__file__).resolve().parents[2]
BASE_SCRIPT = ROOT.parent / "shared" / "tools" / "make-base-image.sh"
BASE_IMAGE = "meshsim-base:local"
IMAGE = "meshsim:e2e"
PROJECT = "meshsim-e2e"
MESH = "scenarios/compose-mesh.yaml"
RR = "scenarios/compose-rr.yaml"


def _cluster(*files: str | Path) -> Cluster:
    return Cluster.build(load_scenario([str(ROOT / f) if not Path(f).is_absolute() else str(f) for f in files]))


def _scenario(base: str, nodes: int, *, first: int = 81, prefix: int = 24, rr: int = 0, events: str = "[]",
              ipip: str = "Never", extra: str = "") -> str:
    docs = []
    if rr:
        docs.append("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
                    "spec: {nodeToNodeMeshEnabled: false}\n")
        docs.append("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: peer-with-rrs}\n"
                    "spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}\n")
    docs.append("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: default-ipv4-ippool}\n"
                f"spec: {{cidr: 10.244.0.0/16, blockSize: 26, ipipMode: {ipip}}}\n")
    for i in range(nodes):
        labels = "\n  labels: {route-reflector: 'true'}" if i < rr else ""
        cid = ", routeReflectorClusterID: 244.0.0.1" if i < rr else ""
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: node{i + 1}{labels}\n"
                    f"spec: {{bgp: {{ipv4Address: {base}.{first + i}/{prefix}{cid}}}}}\n")
    if extra:
        docs.append(extra)
    workloads = ", ".join(f"node{i + 1}: 2" for i in range(nodes))
    docs.append(f"apiVersion: meshsim/v1\nkind: Scenario\nmetadata: {{name: gen{nodes}}}\n"
                f"spec:\n  workloads: {{{workloads}}}\n  timers: {{holdTime: 9s, keepaliveTime: 3s}}\n"
                f"  events: {events}\n")
    return "---\n".join(docs)


# ---------------------------------------------------------------- the generated files (no Docker) -----

def test_top_level_compose_file_is_current(monkeypatch):
    monkeypatch.chdir(ROOT)
    want = compose_file([MESH], "docker-compose.yml")
    assert (ROOT / "docker-compose.yml").read_text() == want, \
        "docker-compose.yml is stale: meshsim compose scenarios/compose-mesh.yaml -o docker-compose.yml"


def test_the_mesh_and_rr_scenarios_fit_the_top_level_file():
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    declared = data["services"]["controller"]["environment"]["MESHSIM_COMPOSE_NODES"]
    for scenario in (MESH, RR):
        check_fit(_cluster(scenario), declared)
    designs = {s: _cluster(s).scenario.bgp.node_to_node_mesh_enabled for s in (MESH, RR)}
    assert designs == {MESH: True, RR: False}
    with pytest.raises(RunError, match="does not fit this compose file: .*node3 has no service"):
        check_fit(_cluster(MESH), "node1=192.168.0.81 node2=192.168.0.82 node4=192.168.0.84")
    with pytest.raises(RunError, match="node1 is 192.168.0.81 in the scenario but 192.168.0.9 in the file"):
        check_fit(_cluster(MESH), "node1=192.168.0.9 node2=192.168.0.82 node3=192.168.0.83 node4=192.168.0.84")


def test_a_generated_file_for_20_nodes(tmp_path):
    scen = tmp_path / "gen20.yaml"
    scen.write_text(_scenario("10.77.0", 20, first=21, prefix=22))
    out = tmp_path / "compose" / "docker-compose.yml"
    out.parent.mkdir()
    text = compose_file([str(scen)], out)
    data = yaml.safe_load(text)
    services = data["services"]
    nodes = {k: v for k, v in services.items() if k != "controller"}
    assert len(nodes) == 20
    subnet = IPv4Network(data["networks"]["meshsim"]["ipam"]["config"][0]["subnet"])
    assert subnet == IPv4Network("10.77.0.0/22")
    addrs = [v["networks"]["meshsim"]["ipv4_address"] for v in nodes.values()]
    assert addrs == [f"10.77.0.{21 + i}" for i in range(20)]
    macs = [v["mac_address"] for v in services.values()]
    assert len(set(macs)) == 21 and macs[0] == "02:42:0a:4d:00:15"
    for name, svc in nodes.items():
        assert svc["cap_add"] == ["NET_ADMIN"]
        hc = svc["healthcheck"]
        assert float(hc["interval"].rstrip("s")) >= 2
        assert "$$MESHSIM_ADDRESS/9179" in hc["test"][-1] and svc["environment"]["MESHSIM_ADDRESS"] in addrs
        assert f"--name {name}" in svc["command"] and "--bgp-port 179" in svc["command"]
        assert "--hold-bgp" in svc["command"] and svc["image"] == "${MESHSIM_IMAGE:-meshsim:local}"
        assert (out.parent / svc["build"]["context"]).resolve() == ROOT
    ctl = services["controller"]
    assert set(ctl["depends_on"]) == set(nodes)
    assert all(d == {"condition": "service_healthy"} for d in ctl["depends_on"].values())
    assert IPv4Network(f"{ctl['networks']['meshsim']['ipv4_address']}/32").subnet_of(subnet)
    assert ctl["networks"]["meshsim"]["ipv4_address"] not in addrs
    # the scenario's folder is mounted where the commands look for it (relative to the compose file's folder)
    assert "../gen20.yaml" not in text and "/work/_scenario0:ro" in text
    assert "${MESHSIM_SCENARIO:-_scenario0/gen20.yaml}" in ctl["command"]


def _env_values(path: Path) -> dict[str, str]:
    """An env file read as compose reads one: KEY=VALUE lines, `#` comments and blank lines skipped."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out


def test_every_service_reads_the_token_from_the_env_file_and_no_compose_file_holds_it():
    text = (ROOT / "docker-compose.yml").read_text()
    services = yaml.safe_load(text)["services"]
    assert set(services) == {"node1", "node2", "node3", "node4", "controller"}
    assert all(svc["env_file"] == ["docker-compose.env"] for svc in services.values()), services
    assert "MESHSIM_TOKEN=" not in text and "MESHSIM_TOKEN:" not in text
    assert all("MESHSIM_TOKEN" not in svc.get("environment", {}) for svc in services.values())


def test_meshsim_compose_writes_a_fresh_0600_token_next_to_the_file(tmp_path, monkeypatch, capsys):
    from meshsim.cli import main as cli

    monkeypatch.chdir(tmp_path)
    os.umask(0o022)
    out = tmp_path / "c.yml"
    env = tmp_path / "c.env"
    env.write_text("MESHSIM_TOKEN=old\n")
    env.chmod(0o644)  # a looser file left behind does not survive
    assert cli(["compose", str(ROOT / MESH), "-o", str(out)]) == 0
    assert "c.env (the run's API token, mode 0600)" in capsys.readouterr().out
    first = _env_values(env)
    assert list(first) == ["MESHSIM_TOKEN"] and len(first["MESHSIM_TOKEN"]) >= 40
    assert (env.stat().st_mode & 0o777) == 0o600 and env.stat().st_uid == os.getuid()
    assert first["MESHSIM_TOKEN"] not in out.read_text()
    doc = yaml.safe_load(out.read_text())
    assert doc["services"]["controller"]["env_file"] == ["c.env"]
    assert (tmp_path / doc["x-image"]["build"]["context"]).resolve() == ROOT  # the checkout, from anywhere
    assert cli(["compose", str(ROOT / MESH), "-o", str(out)]) == 0
    assert _env_values(env)["MESHSIM_TOKEN"] != first["MESHSIM_TOKEN"]  # a fresh token each time
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.env", "c.yml"]  # no temp file left
    assert env_file_for("docker-compose.yml").name == "docker-compose.env"
    with pytest.raises(ComposeError, match="other than \\*.env"):
        env_file_for(tmp_path / "x.env")
    write_env_file(tmp_path / "given.env", "t0k3n")
    assert _env_values(tmp_path / "given.env") == {"MESHSIM_TOKEN": "t0k3n"}


def test_the_controller_without_a_token_says_where_it_comes_from(monkeypatch, tmp_path, capsys):
    from meshsim.cli import main as cli

    monkeypatch.delenv("MESHSIM_TOKEN", raising=False)
    with pytest.raises(RunError, match="MESHSIM_TOKEN is not set: .* env file `meshsim compose` writes"):
        controller_token()
    assert cli(["controller", str(ROOT / MESH), "--out", str(tmp_path / "r")]) == 2
    assert "meshsim: error: MESHSIM_TOKEN is not set" in capsys.readouterr().err
    monkeypatch.setenv("MESHSIM_TOKEN", " abc \n")
    assert controller_token() == "abc"


def test_bird_nodes_are_a_clear_error_in_compose(tmp_path):
    scen = tmp_path / "bird.yaml"
    scen.write_text(_scenario("192.168.0", 2).replace(
        "  workloads:", "  hosts: {node2: {implementation: bird}}\n  workloads:"))
    with pytest.raises(ComposeError, match="nodes node2 use implementation: bird: a node container runs meshsim's own"):
        compose_file([str(scen)], tmp_path / "c.yml")
    with pytest.raises(RunError, match="nodes node2 use implementation: bird, which compose does not run"):
        RemoteFabric(_cluster(scen), token="t", docker=False)


def test_health_checks_stay_cheap_at_any_size():
    assert [health_interval(n) for n in (1, 4, 8, 9, 20, 100)] == [2, 2, 2, 3, 5, 25]


async def test_kill_node_is_refused_clearly_without_the_docker_socket_and_for_sigkill():
    class FakeDocker:
        calls: list[tuple[str, str]] = []

        async def do(self, service: str, action: str) -> None:
            self.calls.append((service, action))

    cluster = _cluster(MESH)
    with pytest.raises(RunError, match="kill-node node2 \\(mode crash\\): the compose controller cannot kill a "
                                      "container without the Docker socket; mount /var/run/docker.sock"):
        await RemoteFabric(cluster, docker=False).kill_node("node2")
    fabric = RemoteFabric(cluster, docker=FakeDocker())  # type: ignore[arg-type]
    fabric.state["node2"] = "running"
    with pytest.raises(RunError, match="mode sigkill.*only mode crash"):
        await fabric.kill_node("node2", mode="sigkill")
    await fabric.kill_node("node2", mode="crash")
    assert FakeDocker.calls == [("node2", "pause")] and fabric.running() == []


async def test_add_node_is_refused_before_any_running_node_is_reconfigured(tmp_path):
    from meshsim.model.timeline import parse_timeline

    scen = tmp_path / "add.yaml"
    scen.write_text(_scenario("192.168.0", 2, events="[{action: add-node, name: node9, ipv4Address: 192.168.0.99/24}]"))
    scenario = load_scenario([str(scen)])
    cluster = Cluster.build(scenario)
    posts: list[tuple[str, str]] = []

    class Recording(RemoteFabric):
        async def post(self, name, path, body=None, timeout=10.0):
            posts.append((name, path))

    fabric = Recording(cluster, token="t", docker=False)
    fabric.state = {"node1": "running", "node2": "running"}
    cluster.add_node(parse_timeline(scenario)[0].resource)  # what Harness.add_node does first
    with pytest.raises(RunError, match="node node9: add-node: this compose file has no container for node9"):
        await fabric.push_configs()
    assert posts == []  # node1 and node2 keep their peerings
    with pytest.raises(RunError, match="node node9: start: this compose file has no container for it"):
        await fabric.start_node("node9")


def test_layout_uses_the_scenario_gateway_and_a_free_controller_address():
    lay = layout(_cluster(MESH))
    assert (str(lay.subnet), str(lay.gateway), str(lay.controller)) == ("192.168.0.0/24", "192.168.0.1",
                                                                         "192.168.0.254")
    assert mac_for(lay.nodes["node1"]) == "02:42:c0:a8:00:51"


def test_nodes_in_two_subnets_are_a_clear_error():
    with pytest.raises(ComposeError, match=r"nodes in 2 subnets \(10.39.0.0/24: node1, node2; 10.40.0.0/24: node3\)"):
        compose_file([str(ROOT / "scenarios/two-subnets-no-ipip.yaml")], "/tmp/x.yml")


def test_an_external_bgp_peer_is_a_clear_error(tmp_path):
    scen = tmp_path / "ext.yaml"
    scen.write_text(_scenario("192.168.0", 2, extra="apiVersion: projectcalico.org/v3\nkind: BGPPeer\n"
                              "metadata: {name: tor}\nspec: {peerIP: 192.168.0.250, asNumber: 64512}\n"))
    with pytest.raises(ComposeError, match="BGP peers that are not nodes of the scenario .*192.168.0.250"):
        compose_file([str(scen)], tmp_path / "c.yml")


def test_the_controller_talks_only_to_attached_networks():
    check_reachable({"a": "127.168.0.81"}, [])
    check_reachable({"a": "192.168.0.81"}, [IPv4Network("192.168.0.0/24")])
    with pytest.raises(RunError, match=r"not on a network this controller is attached to: node1 \(192.168.0.81\)"):
        check_reachable({"node1": "192.168.0.81"}, [IPv4Network("172.17.0.0/16")])


def test_a_loopback_node_refuses_to_program_this_machines_table(capsys):
    from meshsim.cli import main as cli

    assert cli(["node", "--scenario", str(ROOT / MESH), "--name", "node1", "--loopback", "--dataplane", "kernel"]) == 2
    assert "--dataplane kernel with --loopback would program this machine's own routing table" in \
        capsys.readouterr().err


# ------------------------------------ the controller's fabric against real node processes (no Docker) -----

def _bgp_port() -> int:
    return 179 if os.geteuid() == 0 else 17900


TOKEN = "loopback-test-token"


@contextlib.contextmanager
def node_processes(scenario: Path, names: list[str], workdir: Path, token: str = TOKEN):
    """`meshsim node --scenario ... --loopback --hold-bgp`, one per node, as the containers run them (the token
    in MESHSIM_TOKEN, as the env file gives it to them)."""
    procs = []
    env = {**os.environ, "MESHSIM_TOKEN": token}
    try:
        for name in names:
            log = open(workdir / f"{name}.log", "wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "meshsim", "node", "--scenario", str(scenario), "--name", name, "--loopback",
                 "--hold-bgp", "--bgp-port", str(_bgp_port()), "--workdir", str(workdir / name)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env))
            log.close()
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


def _remote(token: str = TOKEN, **kw):
    return lambda c: RemoteFabric(c, token=token, loopback=True, docker=False, bgp_port=_bgp_port(),
                                  ready_timeout=30, **kw)


@pytest.mark.integration
async def test_remote_fabric_runs_a_scenario_as_meshsim_run_does(tmp_path):
    """RR design, then stop-node / start-node (POST /stop, /start), pods added (POST /local), and kill-node,
    which a compose controller without the Docker socket refuses with an error naming the event; the node
    whose kill was refused still runs and is still followed (the last event converges with it)."""
    events = ("[{action: stop-node, node: node4}, {action: start-node, node: node4}, "
              "{action: add-workloads, node: node3, count: 3}, {action: kill-node, node: node3}, "
              "{action: add-workloads, node: node3, count: 1}]")
    scen = tmp_path / "remote.yaml"
    scen.write_text(_scenario("192.168.77", 4, first=11, rr=2, events=events))
    with node_processes(scen, [f"node{i}" for i in range(1, 5)], tmp_path):
        result = await run_scenario([str(scen)], out=tmp_path / "out", progress=False, timeout=60,
                                    fabric_factory=_remote())
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["mode"] == "compose" and report["processes"]["mode"] == "compose"
    assert result.cold["converged"], result.cold
    assert result.cold["sessions_established"] == result.cold["sessions_expected"] == 10
    assert [e.get("converged") for e in result.events[:3]] == [True, True, True], result.events
    assert result.events[0]["sessions_lost"] == 4  # node4's two sessions, seen from both sides
    assert result.events[1]["sessions_established"] == 4
    kill = result.events[3]
    assert "kill-node node3 (mode crash): the compose controller cannot kill a container without the Docker " \
           "socket" in kill["error"]
    assert result.events[4]["converged"], result.events[4]
    assert not result.converged  # an event that could not be played is not a pass
    cluster = _cluster(scen)
    cluster.add_pods("node3", 3)
    cluster.add_pods("node3", 1)
    for name, table in expected_tables(cluster).items():
        assert (tmp_path / "out" / "routes" / f"{name}.ip").read_text() == table.render_ip()
    # every node reported its own process's memory (one node per process)
    assert all(n["rss_bytes"] > 10 << 20 for n in report["nodes"].values()), report["nodes"]


@pytest.mark.integration
async def test_a_wrong_token_is_a_clear_error_and_no_node_starts(tmp_path):
    scen = tmp_path / "token.yaml"
    scen.write_text(_scenario("192.168.78", 2, first=11))
    with node_processes(scen, ["node1", "node2"], tmp_path):
        result = await run_scenario([str(scen)], progress=False, timeout=20, fabric_factory=_remote("not-the-token"))
        statuses = [(await request(f"127.168.78.{11 + i}", 9179, "GET", "/status"))[1] for i in range(2)]
    assert result.error and "was refused (401): the node was started with another API token" in result.error
    assert "MESHSIM_TOKEN" in result.error and not result.converged
    assert "  error: node node1: POST /config at 127.168.78.11:9179 was refused (401)" in summary(result)
    assert [s["bgp_running"] for s in statuses] == [False, False]


@pytest.mark.integration
async def test_a_node_that_dies_fails_the_run_with_why(tmp_path):
    """The long poll notices a node process gone (no container runtime tells us): the run fails naming it."""
    from meshsim.fabric.watch import Watchers

    scen = tmp_path / "dies.yaml"
    scen.write_text(_scenario("192.168.79", 2, first=11, events="[{action: sleep, duration: 8s}, "
                                                                "{action: add-workloads, node: node1, count: 1}]"))
    made: list[RemoteFabric] = []

    def factory(c: Cluster) -> RemoteFabric:
        f = _remote()(c)
        f.watch = Watchers(f.get, dead_after=3.0, retry=0.5)
        made.append(f)
        return f

    with node_processes(scen, ["node1", "node2"], tmp_path) as procs:
        async def kill_after_cold_start() -> None:
            async with asyncio.timeout(60):  # a run that fails before releasing BGP must not hang the test
                while not made or len(made[0].running()) < 2 or made[0].held:
                    await asyncio.sleep(0.1)
            await asyncio.sleep(3)  # two nodes converge well within this, even on a busy machine
            procs[1].send_signal(signal.SIGKILL)

        killer = asyncio.create_task(kill_after_cold_start())
        try:
            result = await run_scenario([str(scen)], progress=False, timeout=30, fabric_factory=factory)
        finally:
            killer.cancel()
            await asyncio.gather(killer, return_exceptions=True)
    assert result.cold["converged"], (result.error, result.cold)
    assert result.error and result.error.startswith("node node2: node died: stopped answering GET /state"), \
        result.error  # runner.main turns it into `meshsim: error: ...` and exit code 2


# ------------------------------------------------------------------------ end to end in Docker ----------

def run(cmd: list[str], *, timeout: float = 300, env: dict[str, str] | None = None, cwd: Path = ROOT,
        check: bool = False) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


@dataclass
class Docker:
    compose: list[str]  # ["docker", "compose"] (v2) or ["docker-compose"] (v1)
    build_seconds: float


def _docker_unavailable() -> str | None:
    """Why the e2e tests cannot run here, or None. Runs the shared base-image script (installs and starts
    the engine if needed, builds meshsim-base:local; idempotent, ~0.2 s when done)."""
    if os.geteuid() != 0:
        return "needs root (the Docker engine and make-base-image.sh)"
    if BASE_SCRIPT.is_file():
        try:
            res = run(["bash", str(BASE_SCRIPT), BASE_IMAGE], timeout=900)
        except subprocess.TimeoutExpired:
            return f"{BASE_SCRIPT} did not finish within 900 s"
        if res.returncode != 0:
            return f"{BASE_SCRIPT} failed ({res.returncode}): {(res.stderr or res.stdout)[-600:]}"
    elif shutil.which("docker") is None:
        return f"no docker, and no {BASE_SCRIPT} to install it"
    try:
        if run(["docker", "info"], timeout=30).returncode != 0:
            return "`docker info` fails: no Docker engine running"
        if run(["docker", "image", "inspect", BASE_IMAGE], timeout=30).returncode != 0:
            return f"no {BASE_IMAGE} image (build it with {BASE_SCRIPT})"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker does not answer: {exc}"
    return None


def _compose_command() -> list[str] | None:
    for cmd in (["docker-compose"], ["docker", "compose"]):
        try:
            if shutil.which(cmd[0]) and run([*cmd, "version"], timeout=30).returncode == 0:
                return cmd
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def _image_id(ref: str) -> str | None:
    res = run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], timeout=30)
    return res.stdout.strip() if res.returncode == 0 else None


@pytest.fixture(scope="session")
def docker() -> Docker:
    reason = _docker_unavailable()
    if reason:
        pytest.skip(f"Docker e2e: {reason}")
    compose = _compose_command()
    if compose is None:
        pytest.skip("Docker e2e: neither docker-compose (v1) nor `docker compose` (v2) is installed")
    wheels = run(["bash", "scripts/wheelhouse.sh"], timeout=300)
    if wheels.returncode != 0 and not list((ROOT / "wheelhouse").glob("*.whl")):
        pytest.skip(f"Docker e2e: cannot fill the wheelhouse (pip download failed): {wheels.stderr[-600:]}")
    old = _image_id(IMAGE)
    t0 = time.monotonic()
    build = run(["docker", "build", "--network", "none", "--force-rm", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
                 "-t", IMAGE, "."], timeout=600)
    seconds = time.monotonic() - t0
    assert build.returncode == 0, f"docker build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    print(f"\n[e2e] docker build ({'cached' if old else 'cold'}): {seconds:.1f} s", file=sys.stderr)
    if old and old != _image_id(IMAGE):  # the previous build is now untagged: remove it and its layers
        run(["docker", "image", "rm", old], timeout=120)
    return Docker(compose=compose, build_seconds=seconds)


class Stack:
    """One compose project (fixed name) on a compose file; `down -v --remove-orphans` before and after."""

    def __init__(self, docker: Docker, file: Path, project: str = PROJECT, env: dict[str, str] | None = None):
        self.docker = docker
        self.file = file
        self.project = project
        self.env = {**os.environ, "BASE_IMAGE": BASE_IMAGE, "MESHSIM_IMAGE": IMAGE, **(env or {})}

    def compose(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None):
        return run([*self.docker.compose, "-f", str(self.file), "-p", self.project, *args], timeout=timeout,
                   env={**self.env, **(env or {})}, cwd=self.file.parent)

    def up(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
        t0 = time.monotonic()
        res = self.compose("up", "--no-build", *args, env=env, timeout=timeout)
        return res, time.monotonic() - t0

    def container(self, service: str) -> str:
        cid = self.compose("ps", "-q", service, timeout=60).stdout.strip()
        assert cid, f"no container for {service}"
        return cid

    def exec(self, service: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return run(["docker", "exec", self.container(service), *cmd], timeout=timeout)

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "3", timeout=180)

    @contextlib.contextmanager
    def logs_on_failure(self):
        try:
            yield
        except BaseException:
            logs = self.compose("logs", "--no-color", "--tail", "60", timeout=120)
            print(f"\n===== {self.project} logs =====\n{logs.stdout[-20000:]}\n{logs.stderr[-2000:]}", file=sys.stderr)
            raise


@pytest.fixture
def stack(docker):
    """`make(file)`: a Stack on the compose file, brought down before and after. The file's token env file is
    written if missing (as `meshsim compose` / `make compose-file` would) and removed afterwards if written here."""
    created: list[Stack] = []
    written: list[Path] = []

    def make(file: Path = ROOT / "docker-compose.yml", **kw) -> Stack:
        env = env_file_for(file)
        if not env.exists():
            write_env_file(env)
            written.append(env)
        s = Stack(docker, file, **kw)
        s.down()  # a leftover project with the same subnet would make `up` fail ("Pool overlaps")
        created.append(s)
        return s

    try:
        yield make
    finally:
        for s in created:
            s.down()
        for env in written:
            env.unlink(missing_ok=True)


def _check_report(reports: Path, scenario: str | Path, flapped: set[str] = frozenset()) -> dict:
    """The controller's report: every node converged, its sessions as designed and up (none flapped but on
    the nodes in `flapped`), its final table the expected one."""
    report = json.loads((reports / "report.json").read_text())
    cluster = _cluster(scenario)
    expected = expected_tables(cluster)
    peerings = cluster.peerings()
    assert report["mode"] == "compose" and report["converged"] and not report["error"], report
    assert set(report["nodes"]) == set(expected)
    for name, table in expected.items():
        node = report["nodes"][name]
        assert node["answered"] and node["converged"], (name, node)
        assert set(node["sessions"]) == {p.name for p in peerings[name]}, (name, node["sessions"])
        assert all(s["state"] == "up" for s in node["sessions"].values()), node
        assert name in flapped or all(s["flaps"] == 0 for s in node["sessions"].values()), node
        assert (reports / "routes" / f"{name}.ip").read_text() == table.render_ip(), name
    cold = report["cold_start"]
    assert cold["sessions_established"] == cold["sessions_expected"] == sum(len(p) for p in peerings.values())
    return report


@pytest.mark.e2e
@pytest.mark.parametrize("scenario", [MESH, RR], ids=["mesh", "rr"])
def test_compose_up_runs_the_scenario_and_the_controller_gives_the_verdict(stack, scenario, tmp_path):
    s = stack()
    reports = tmp_path / "reports"
    with s.logs_on_failure():
        res, seconds = s.up("--exit-code-from", "controller",
                            env={"MESHSIM_SCENARIO": scenario, "MESHSIM_REPORTS": str(reports)})
        assert res.returncode == 0, f"up exited {res.returncode}:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}"
        report = _check_report(reports, scenario)
    print(f"\n[e2e] {scenario}: up --exit-code-from controller {seconds:.1f} s, cold start converged after "
          f"{report['cold_start']['time_to_converged_s']} s", file=sys.stderr)


@pytest.mark.e2e
def test_kernel_dataplane_routes_pods_ping_and_a_stopped_node_is_withdrawn(stack, tmp_path):
    s = stack(env={"MESHSIM_DATAPLANE": "kernel", "MESHSIM_SCENARIO": MESH,
                   "MESHSIM_REPORTS": str(tmp_path / "reports")})
    cluster = _cluster(MESH)
    expected = expected_tables(cluster)
    with s.logs_on_failure():
        res, _ = s.up("-d")
        assert res.returncode == 0, res.stderr[-3000:]
        waited = run(["docker", "wait", s.container("controller")], timeout=240)
        assert waited.stdout.strip() == "0", f"controller exited {waited.stdout.strip()}"
        first = _check_report(tmp_path / "reports", MESH)

        # the BGP routes and the own-block blackhole are in node1's real kernel table, as `ip route` prints them
        # (programmed right after the simulated table changes: allow the dataplane a moment)
        want = {line for line in expected["node1"].render_ip().splitlines() if "proto bird" in line}
        deadline = time.monotonic() + 10
        while True:
            kernel = s.exec("node1", "ip", "route").stdout
            bird = {line for line in kernel.splitlines() if "proto bird" in line}
            if bird == want or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert bird == want and len(bird) == 4, kernel

        # a pod on node1 reaches a pod on node2 (pods are addresses on lo; packets go via node2's eth0)
        src = str(cluster.pods_on("node1")[-1].ip)
        dst = str(cluster.pods_on("node2")[-1].ip)
        ping = s.exec("node1", "ping", "-c", "2", "-W", "2", "-I", src, dst)
        assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout + ping.stderr

        # node2 stops BGP (graceful): its block leaves node1's kernel table
        block = next(str(b.cidr) for b in cluster.ipam.blocks_of("node2"))
        assert any(line.startswith(block) for line in bird)
        # a POST without the run's token is refused (any container or host on the bridge can reach the API);
        # with the token the node1 container has from the env file, node2's BGP stops
        post = ("import os, sys, urllib.request as u, urllib.error as e\n"
                "h = {'Content-Type': 'application/json'}\n"
                "if sys.argv[1] == 'token': h['Authorization'] = 'Bearer ' + os.environ['MESHSIM_TOKEN']\n"
                "r = u.Request('http://192.168.0.82:9179/stop', data=b'{}', method='POST', headers=h)\n"
                "try: print(u.urlopen(r, timeout=5).read().decode())\n"
                "except e.HTTPError as x: print(x.code, x.read().decode())\n")
        refused = s.exec("node1", "python", "-c", post, "none")
        assert refused.stdout.startswith("401 ") and "Authorization: Bearer" in refused.stdout, refused.stdout
        assert s.exec("node1", "ip", "route").stdout.count(block) >= 1  # still there
        stop = s.exec("node1", "python", "-c", post, "token")
        assert '"ok": true' in stop.stdout, stop.stdout + stop.stderr
        deadline = time.monotonic() + 20
        while True:
            kernel = s.exec("node1", "ip", "route").stdout
            if not any(line.startswith(block) for line in kernel.splitlines()):
                break
            assert time.monotonic() < deadline, f"{block} still in node1's table after node2 stopped:\n{kernel}"
            time.sleep(0.3)
        assert s.exec("node1", "ping", "-c", "1", "-W", "1", "-I", src, dst).returncode != 0

        # a second controller run on the same containers (BGP running on three, stopped on node2) starts every
        # node afresh and converges again: node2's block is back in node1's table
        res, _ = s.up("-d")
        assert res.returncode == 0, res.stderr[-3000:]
        waited = run(["docker", "wait", s.container("controller")], timeout=240)
        assert waited.stdout.strip() == "0", f"second controller run exited {waited.stdout.strip()}"
        second = _check_report(tmp_path / "reports", MESH, flapped={"node1", "node2", "node3", "node4"})
        assert second["started_at"] != first["started_at"]  # a new report, not the first one left in place
        assert second["totals"]["updates_sent"] > first["totals"]["updates_sent"]  # counters include the first run
        deadline = time.monotonic() + 10
        while not any(line.startswith(block) for line in s.exec("node1", "ip", "route").stdout.splitlines()):
            assert time.monotonic() < deadline, f"{block} not back in node1's table after the second run"
            time.sleep(0.3)


def _generated(tmp_path: Path, nodes: int) -> Path:
    scen = tmp_path / f"gen{nodes}.yaml"
    scen.write_text(_scenario("192.168.0", nodes, first=81))
    out = tmp_path / "docker-compose.yml"
    out.write_text(compose_file([str(scen)], out))
    write_env_file(env_file_for(out))
    return out


@pytest.mark.e2e
def test_a_generated_20_node_file_converges(stack, tmp_path):
    file = _generated(tmp_path, 20)
    s = stack(file, project=f"{PROJECT}-20")
    with s.logs_on_failure():
        res, seconds = s.up("--exit-code-from", "controller", timeout=400)
        assert res.returncode == 0, f"up exited {res.returncode}:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}"
        report = _check_report(tmp_path / "reports", tmp_path / "gen20.yaml")
    print(f"\n[e2e] generated 20-node file: up --exit-code-from controller {seconds:.1f} s, cold start converged "
          f"after {report['cold_start']['time_to_converged_s']} s", file=sys.stderr)


@pytest.mark.e2e
def test_kill_node_crash_through_the_docker_socket(stack, tmp_path):
    """With the Docker socket mounted into the controller, kill-node (crash) pauses the node's container: its
    peers notice by hold timer (9 s) and withdraw its block; start-node resumes it and it rejoins."""
    scen = tmp_path / "crash.yaml"
    scen.write_text(_scenario("192.168.0", 3, first=81, events="[{action: kill-node, node: node2}, "
                                                                "{action: start-node, node: node2}]"))
    out = tmp_path / "docker-compose.yml"
    text = compose_file([str(scen)], out)
    socket_line = "# - /var/run/docker.sock:/var/run/docker.sock"
    assert socket_line in text
    out.write_text(text.replace(socket_line, "- /var/run/docker.sock:/var/run/docker.sock"))
    write_env_file(env_file_for(out))
    s = stack(out, project=f"{PROJECT}-crash")
    with s.logs_on_failure():
        res, seconds = s.up("--exit-code-from", "controller", timeout=240)
        assert res.returncode == 0, f"up exited {res.returncode}:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}"
        report = _check_report(tmp_path / "reports", scen, flapped={"node1", "node2", "node3"})
        kill, start = report["events"]
        assert kill["converged"] and kill["sessions_lost"] == 4, kill
        assert 5 <= kill["convergence_s"] <= 20, kill  # the hold timer (9 s), not a Cease
        assert start["converged"] and start["sessions_established"] == 4, start
        assert (tmp_path / "reports" / "logs" / "node2.log").read_text().count("node_started") >= 1
    print(f"\n[e2e] kill-node crash through the Docker socket: up {seconds:.1f} s, peers withdrew after "
          f"{kill['convergence_s']} s", file=sys.stderr)
