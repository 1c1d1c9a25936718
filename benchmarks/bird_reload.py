"""How long real BIRD takes to reload a Calico node's configuration, by the number of BGP peers (root).

    sudo .venv/bin/python benchmarks/bird_reload.py [--cases mesh:50,mesh:100,mesh:200,rr:100] [--runs 7]

confd re-renders bird.cfg whenever a node's own blocks change (bird_aggr.cfg's static routes) and BIRD
reconfigures: it parses the whole file and compares every protocol before the new routes exist. For node1 of a
generated cluster (a mesh node has N-1 peers, a client of two reflectors 2), this renders confd's files as meshsim
renders them, starts BIRD 2 in a network namespace of its own (no route to any peer: its sessions never come up,
nothing leaves the namespace) and times `birdc configure`. meshsim's engine waits `bird_reload_time(peers)`
(meshsim/bgp/timers.py, fitted on these figures) before it originates a node's new block.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from meshsim.bgp.timers import bird_reload_time  # noqa: E402
from meshsim.engines.bird import confd  # noqa: E402
from meshsim.engines.bird.inputs import bird_input  # noqa: E402
from meshsim.model.cluster import Cluster  # noqa: E402
from meshsim.model.generate import cluster_yaml  # noqa: E402
from meshsim.model.resources import load_scenario  # noqa: E402


def measure(design: str, nodes: int, runs: int) -> tuple[int, list[float]]:
    """(BGP peers of node1, seconds of each `birdc configure`)."""
    with tempfile.TemporaryDirectory(prefix="meshsim-reload-") as d:
        path = Path(d) / "s.yaml"
        path.write_text(cluster_yaml(f"reload-{design}-{nodes}", nodes, design=design, ipip="Never",
                                     hold="240s", keepalive="80s", subnet="192.168.48.0/22", implementation="bird"))
        cluster = Cluster.build(load_scenario([path]))
        inp = bird_input(cluster, "node1")
        for name, text in confd.render(inp, "bird2").items():
            (Path(d) / name).write_text(text)
        peers = len(cluster.peerings()["node1"])
        ns = f"meshsim-reload-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        bird = None
        try:
            subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
            sock = Path(d) / "bird.ctl"
            bird = subprocess.Popen(["ip", "netns", "exec", ns, "bird", "-f", "-c", "bird.cfg", "-s", str(sock)],
                                    cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not sock.exists():
                if bird.poll() is not None:
                    raise SystemExit(f"BIRD exited ({bird.returncode}) on the rendered config of {design}:{nodes}")
                time.sleep(0.05)
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                r = subprocess.run(["birdc", "-s", str(sock), "configure"], capture_output=True, text=True)
                times.append(time.perf_counter() - t)
                if "Reconfigured" not in r.stdout:
                    raise SystemExit(f"birdc configure: {r.stdout.strip() or r.stderr.strip()}")
            return peers, times
        finally:
            if bird is not None:
                bird.terminate()
                bird.wait()
            subprocess.run(["ip", "netns", "del", ns], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="rr:100,mesh:50,mesh:100,mesh:200", help="design:N,... (node1 of each)")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (BIRD runs in a network namespace)", file=sys.stderr)
        return 2
    print(f"medians of {args.runs} `birdc configure` on node1\n")
    print("| case | BGP peers | BIRD reload | meshsim's model | model - BIRD |")
    print("|---|---|---|---|---|")
    for case in args.cases.split(","):
        design, n = case.split(":")
        peers, times = measure(design, int(n), args.runs)
        med = statistics.median(times) * 1000
        model = bird_reload_time(peers) * 1000
        print(f"| {design} {n} | {peers} | {med:.1f} ms | {model:.1f} ms | {model - med:+.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
