"""The same small scenario with every node a meshsim speaker, then with every node real BIRD 2, side by side.

    sudo .venv/bin/python benchmarks/bird_vs_meshsim.py [--nodes 6] [--runs 3] [--design mesh|rr]

--nodes counts all nodes, route reflectors included (--design rr --nodes 6: 2 reflectors + 4 clients).

Both runs use `--isolation netns` (one network namespace per node, on a bridge), the same Calico resources, hold
9 s / keepalive 3 s, IPIP Never, 2 pods per node. Per run: cold start (all sessions Established, every table equal
to its expected table, timed from the first process start), then one event (70 pods on one node: a new block every
other node must learn). Figures are medians over the runs; the ratio column is BIRD / meshsim.
CPU and RSS are per node: the node process (meshsim agent, or the birdnode adapter) and its BGP engine (ExaBGP, or
BIRD) separately, so the engine's own cost is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from meshsim.model.generate import cluster_yaml  # noqa: E402
from meshsim.logs import configure  # noqa: E402
from meshsim.model.cluster import Cluster  # noqa: E402
from meshsim.model.resources import load_scenario  # noqa: E402
from meshsim.run.harness import Harness  # noqa: E402
from meshsim.fabric.netns import NetnsFabric  # noqa: E402


def scenario_text(impl: str, nodes: int, design: str) -> str:
    return cluster_yaml(f"bench-{impl}", nodes, design=design, ipip="Never", subnet="192.168.50.0/24",
                        implementation=impl)


async def one_run(impl: str, nodes: int, design: str, http_port: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="meshsim-bench-") as d:
        path = Path(d) / "s.yaml"
        path.write_text(scenario_text(impl, nodes, design))
        cluster = Cluster.build(load_scenario([path]))
        fabric = NetnsFabric(cluster, http_port=http_port)
        async with Harness(cluster, fabric=fabric) as h:
            conv = await h.converge(90)
            if not conv.converged or conv.sessions_up != conv.sessions_expected:
                raise SystemExit(f"{impl}: cold start did not converge: {conv.sessions_up}/{conv.sessions_expected} "
                                 f"sessions, {conv.nodes_converged}/{len(conv.diffs)} tables")
            snaps = dict(h.observer.snapshots)
            cold = {"established_s": conv.sessions_time or 0.0, "converged_s": conv.time or 0.0}
            t = time.time()
            await h.add_pods("node1", 70)
            ev = await h.converge(60, since=t)
            if not ev.converged:
                raise SystemExit(f"{impl}: the new block did not reach every node")
            await asyncio.sleep(0.5)
            await h.observer.refresh(h.running())
            after = dict(h.observer.snapshots)

        def per_node(snapshots: dict, part: str, key: str) -> float:
            vals = [s["counters"]["usage"][part][key] for s in snapshots.values()]
            return sum(vals) / len(vals)

        return {
            "sessions Established (s)": cold["established_s"],
            "cold start converged (s)": cold["converged_s"],
            "new block on every node (s)": ev.time or 0.0,
            "agent CPU per node (s)": per_node(after, "node", "cpu_seconds"),
            "engine CPU per node (s)": per_node(after, "exabgp", "cpu_seconds"),
            "agent RSS per node (MiB)": per_node(snaps, "node", "rss_bytes") / 2**20,
            "engine RSS per node (MiB)": per_node(snaps, "exabgp", "rss_bytes") / 2**20,
        }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=6, help="all nodes, reflectors included (default 6)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--design", choices=("mesh", "rr"), default="mesh")
    ap.add_argument("--http-port", type=int, default=39179)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    configure("warning")
    results: dict[str, list[dict[str, float]]] = {"meshsim": [], "bird": []}
    for r in range(args.runs):
        for impl in ("meshsim", "bird"):
            results[impl].append(await one_run(impl, args.nodes, args.design, args.http_port))
            print(f"run {r + 1}/{args.runs} {impl}: done", file=sys.stderr)
    keys = list(results["meshsim"][0])
    med = {impl: {k: statistics.median(run[k] for run in runs) for k in keys} for impl, runs in results.items()}
    total = args.nodes
    print(f"\n{args.design}, {total} nodes, netns isolation, medians of {args.runs} runs "
          f"(BIRD {os.popen('bird --version 2>&1').read().strip().split()[-1]}, ExaBGP meshsim speaker)\n")
    print(f"| {'figure':<30} | {'all meshsim':>12} | {'all BIRD':>12} | {'BIRD / meshsim':>14} |")
    print(f"|{'-' * 32}|{'-' * 14}|{'-' * 14}|{'-' * 16}|")
    for k in keys:
        a, b = med["meshsim"][k], med["bird"][k]
        ratio = f"{b / a:.2f}x" if a and b else "-"

        def cell(v: float) -> str:  # CPU comes in clock ticks (10 ms): 0 means less than one tick
            return f"{v:.3f}" if v or "CPU" not in k else "<0.010"

        print(f"| {k:<30} | {cell(a):>12} | {cell(b):>12} | {ratio:>14} |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
