#!/usr/bin/env python3
"""Capture the golden files of `meshsim show` (tests/golden/birdc/): what real BIRD's birdc prints for a small
Calico cluster, and what meshsim's nodes hold for the same cluster.

For each lab scenario (tests/golden/birdc/{mesh,rr}.yaml) and each BIRD version (1.6.8, the release Calico's fork
is built on, and 2.0.12):
- every Node runs real BIRD in a network namespace of its own (msbc-<n>), on a bridge in a hub namespace, at its
  declared address, with a default route to the scenario's gateway, tunl0 holding the node's IPIP tunnel address,
  and one device per pod (`caliXXXXXXXXXXX`, Calico's name) carrying `POD/32 dev caliX scope link` as Felix
  programs it; BIRD reads the bird.cfg / bird_aggr.cfg / bird_ipam.cfg confd renders
  (meshsim.engines.bird.confd: dialect bird1 for 1.6.8, without Calico's `krt_tunnel` statements, which upstream
  BIRD lacks; dialect bird2 for 2.0.12);
- once every session is Established and every node holds every block, the real `birdc -s SOCKET COMMAND` output
  of the commands in COMMANDS is stored as tests/golden/birdc/<lab>/bird<major>/<node>/<file>.txt.
Then the same scenario runs as meshsim nodes (`meshsim run --keep-running`) and each captured node's GET /status,
/rib and /routes are stored as tests/golden/birdc/<lab>/meshsim/<node>.json. index.json lists every file with its
command and the capture time.

Root only. Run it under the integration lock, it binds 127.x:179 and creates namespaces:
  flock /tmp/meshsim-integration.lock .venv/bin/python scripts/capture-birdc.py [--bird1 PATH] [--lab mesh]
Everything it creates (namespaces, processes, temp dirs) is removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meshsim.agent.config import loopback_map  # noqa: E402
from meshsim.engines.bird import confd  # noqa: E402
from meshsim.model.cluster import Cluster  # noqa: E402
from meshsim.model.resources import load_scenario  # noqa: E402
from meshsim.oracle.expected import host_view  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "birdc"
LABS = {"mesh": ("node1", "node2"), "rr": ("rr1", "node1")}
PREFIX = "msbc"
BIRDS = {"1": ("/work/scratch/bird1/usr/sbin/bird", "/work/scratch/bird1/usr/sbin/birdc"),
         "2": ("/usr/sbin/bird", "/usr/sbin/birdc")}
_created: list[str] = []
_procs: list[subprocess.Popen] = []


def sh(*argv: str, check: bool = True, stdin: str | None = None) -> str:
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r.stdout


def cleanup() -> None:
    for p in _procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    _procs.clear()
    for ns in reversed(_created):
        pids = sh("ip", "netns", "pids", ns, check=False).split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        sh("ip", "netns", "del", ns, check=False)
    _created.clear()


def add_ns(name: str) -> None:
    sh("ip", "netns", "add", name)
    _created.append(name)
    sh("ip", "-n", name, "link", "set", "lo", "up")


def ns_of(i: int) -> str:
    return f"{PREFIX}-{i}"


def build_lab(cluster: Cluster, dialect: str, work: Path, bird: str) -> dict[str, Path]:
    """Namespaces, devices and BIRD daemons for every node; returns node -> control socket."""
    hub = f"{PREFIX}-hub"
    add_ns(hub)
    sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", hub, "link", "set", "br0", "up")
    sockets = {}
    for i, node in enumerate(cluster.scenario.nodes, start=1):
        ns = ns_of(i)
        add_ns(ns)
        hv = host_view(cluster, node.name)
        sh("ip", "-n", hub, "link", "add", f"v{i}", "type", "veth", "peer", "name", hv.interface, "netns", ns)
        sh("ip", "-n", hub, "link", "set", f"v{i}", "master", "br0", "up")
        cmds = [f"addr add {node.address}/{node.subnet.prefixlen} dev {hv.interface}",
                f"link set {hv.interface} up", f"route add default via {hv.gateway} dev {hv.interface}"]
        tunnel = cluster.tunnel_address(node.name)
        if tunnel is not None:
            cmds += ["link add tunl0 type ifb", "link set tunl0 up", f"addr add {tunnel}/32 dev tunl0"]
        for pod in cluster.pods.values():
            if pod.node == node.name:
                cmds += [f"link add {pod.interface} type ifb", f"link set {pod.interface} up",
                         f"route add {pod.ip}/32 dev {pod.interface} scope link"]
        sh("ip", "-n", ns, "-batch", "-", stdin="\n".join(cmds) + "\n")
        conf = work / node.name
        conf.mkdir(parents=True)
        for name, text in confd.render(confd.bird_input(cluster, node.name), dialect).items():
            if dialect == "bird1":
                text = re.sub(r'\n\s*krt_tunnel = "[^"]*";', "", text)  # Calico's patch; upstream 1.6.8 lacks it
                assert "krt_tunnel" not in text, "a CrossSubnet pool: its if/else needs krt_tunnel"
            (conf / name).write_text(text)
        sock = conf / "bird.ctl"
        log = open(conf / "bird.out", "w")
        _procs.append(subprocess.Popen(["ip", "netns", "exec", ns, bird, "-f", "-c", str(conf / "bird.cfg"),
                                        "-s", str(sock)], cwd=conf, stdout=log, stderr=subprocess.STDOUT))
        sockets[node.name] = sock
    return sockets


def birdc(client: str, sock: Path, command: str) -> str:
    return sh(client, "-s", str(sock), *command.split())


def wait_converged(cluster: Cluster, sockets: dict[str, Path], client: str, timeout: float = 90) -> None:
    blocks = {str(b.cidr) for b in cluster.ipam.blocks.values()}
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    stable_since = None
    while time.monotonic() < deadline:
        state = {}
        ok = True
        for name, sock in sockets.items():
            try:
                protos = birdc(client, sock, "show protocols")
                routes = birdc(client, sock, "show route")
            except RuntimeError:
                ok = False
                continue
            bgp = [line for line in protos.splitlines() if " BGP " in line]
            if not bgp or not all("Established" in line for line in bgp):
                ok = False
            if not all(b in routes for b in blocks):
                ok = False
            state[name] = protos.split("\n", 1)[-1] + routes
        if ok and state == last:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 3:
                return
        else:
            stable_since = None
        last = state
        time.sleep(0.5)
    raise RuntimeError(f"BIRD lab did not converge in {timeout:.0f} s")


def commands(cluster: Cluster, node: str) -> list[str]:
    peers = [p.name for p in cluster.peerings()[node]]
    remote = next(b for b in sorted(cluster.ipam.blocks.values(), key=lambda b: b.cidr) if b.affinity != node)
    return (["show status", "show protocols", "show protocols all"] + [f"show protocols all {p}" for p in peers]
            + ["show route", "show route all", f"show route for {remote.cidr} all",
               f"show route for {remote.cidr.network_address + 1}"])


def slug(command: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", command.replace("/", "_")).strip("-")


def capture_bird(lab: str, version: str, index: dict) -> None:
    bird, client = BIRDS[version]
    path = GOLDEN / f"{lab}.yaml"
    cluster = Cluster.build(load_scenario([str(path)]))
    work = Path(tempfile.mkdtemp(prefix="meshsim-birdc-"))
    try:
        sockets = build_lab(cluster, "bird1" if version == "1" else "bird2", work, bird)
        wait_converged(cluster, sockets, client)
        for node in LABS[lab]:
            out = GOLDEN / lab / f"bird{version}" / node
            out.mkdir(parents=True, exist_ok=True)
            for command in commands(cluster, node):
                text = birdc(client, sockets[node], command)
                name = slug(command) + ".txt"
                (out / name).write_text(text)
                index.setdefault(lab, {}).setdefault(f"bird{version}", {}).setdefault(node, {})[name] = command
            index[lab][f"bird{version}"]["captured_at"] = time.time()
            print(f"{lab} bird{version} {node}: {len(commands(cluster, node))} outputs", flush=True)
    finally:
        cleanup()
        shutil.rmtree(work, ignore_errors=True)


def _get(host: str, path: str) -> object:
    with urllib.request.urlopen(f"http://{host}:9179{path}", timeout=5) as r:
        return json.loads(r.read())


def capture_meshsim(lab: str, index: dict) -> None:
    path = GOLDEN / f"{lab}.yaml"
    cluster = Cluster.build(load_scenario([str(path)]))
    hosts = {k: str(v) for k, v in loopback_map(cluster).items()}
    blocks = {str(b.cidr) for b in cluster.ipam.blocks.values()}
    out_dir = Path(tempfile.mkdtemp(prefix="meshsim-birdc-run-"))
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "meshsim"), "run", str(path), "--keep-running",
                             "--out", str(out_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _procs.append(proc)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"meshsim run exited {proc.returncode}: {proc.stdout.read()[-2000:]}")
            try:
                ready = all(all(s["state"] == "up" for s in _get(h, "/status")["sessions"])
                            and blocks <= set(_get(h, "/rib")["loc_rib"]) for h in hosts.values())
            except OSError:
                ready = False
            if ready:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("meshsim run did not converge")
            time.sleep(0.5)
        time.sleep(3)
        out = GOLDEN / lab / "meshsim"
        out.mkdir(parents=True, exist_ok=True)
        for node in LABS[lab]:
            views = {view: _get(hosts[node], f"/{view}") for view in ("status", "rib", "routes")}
            (out / f"{node}.json").write_text(json.dumps(views, indent=1, sort_keys=True) + "\n")
        index.setdefault(lab, {})["meshsim"] = {"captured_at": time.time(), "nodes": list(LABS[lab])}
        print(f"{lab} meshsim: {', '.join(LABS[lab])}", flush=True)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(out_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", choices=sorted(LABS), action="append", help="default: every lab")
    parser.add_argument("--bird1", default=BIRDS["1"][0], help="BIRD 1.6.8's bird (birdc beside it)")
    parser.add_argument("--only", choices=("bird1", "bird2", "meshsim"), action="append")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("capture-birdc: needs root (network namespaces)", file=sys.stderr)
        return 2
    BIRDS["1"] = (args.bird1, str(Path(args.bird1).with_name("birdc")))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    index_path = GOLDEN / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    try:
        for lab in args.lab or sorted(LABS):
            for what in args.only or ("bird1", "bird2", "meshsim"):
                if what == "meshsim":
                    capture_meshsim(lab, index)
                else:
                    capture_bird(lab, what[-1], index)
    finally:
        cleanup()
        index_path.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
