"""meshsim against real BIRD on the same generated clusters, side by side in one run (root).

    sudo .venv/bin/python benchmarks/bird_vs_meshsim.py [--cases mesh:50,rr:50,mesh:100,rr:100] [--runs 3]
                                                        [--hold 9s --keepalive 3s]

N counts all nodes, reflectors included (rr:50 is 2 route reflectors + 48 clients). Each case runs twice per
repetition: every node a meshsim node (meshsim's default: worker processes on this machine, BGP on 127.x) and
every node real BIRD 2 (`implementation: bird` in `--isolation netns`: one namespace per node, Calico's bird.cfg
as confd renders it, started as calico-node starts it: `bird -R`). Both sides run Calico's timers (connect delay
2 s, connect retry 5 s, error wait 5,30, graceful restart) with hold 9 s / keepalive 3 s (--hold/--keepalive:
Calico's defaults are 240 s / 80 s; at 3 s, 100 meshed BIRD daemons keep 1.5 of this machine's 2 cores busy with
keepalives alone, which slows everything they do), IPIP Never, 2 pods per node. Per run:
- cold start: every process and agent is up with BGP held (BIRD daemons with their BGP protocols disabled);
  the clock starts when BGP is released on every node at once; "converged" is when the last table reached its
  expected content, "all sessions Established" when the last session came up (later than the tables when a
  session flapped after delivering its routes, e.g. a connection collision resolved late);
- a new block: 70 pods on one node, until every node holds the new block;
- a graceful stop: one node stops (Cease to every peer), until every other node has withdrawn it;
- memory: the BGP engines (meshsim's worker processes; the BIRD daemons), after convergence; the BIRD nodes'
  Python agents are reported apart (they are meshsim's adapter around BIRD, not BGP);
- idle CPU: CPU seconds the engines use over an idle window after convergence, per second of it.
Figures are medians over the runs; the ratio column is meshsim / BIRD (under 1: meshsim is faster or smaller).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from meshsim.fabric.local import WorkerFabric  # noqa: E402
from meshsim.fabric.netns import NetnsFabric  # noqa: E402
from meshsim.host.procstats import proc_usage  # noqa: E402
from meshsim.logs import configure  # noqa: E402
from meshsim.model.cluster import Cluster  # noqa: E402
from meshsim.model.generate import cluster_yaml  # noqa: E402
from meshsim.model.resources import load_scenario  # noqa: E402
from meshsim.run.harness import Harness  # noqa: E402

IDLE_WINDOW = 10.0


def scenario_text(impl: str, nodes: int, design: str, hold: str = "9s", keepalive: str = "3s") -> str:
    return cluster_yaml(f"bench-{design}-{nodes}-{impl}", nodes, design=design, ipip="Never", hold=hold,
                        keepalive=keepalive, subnet="192.168.48.0/22",
                        implementation="bird" if impl == "bird" else None)


def engine_usage(h: Harness, impl: str) -> tuple[float, int, int]:
    """(CPU seconds, RSS bytes) of the BGP engines, and the RSS of BIRD's agents (0 for meshsim)."""
    workers = h.fabric.describe().get("workers", [])
    if impl == "meshsim":
        usage = [proc_usage(w["pid"]) for w in workers if w["pid"]]
        return sum(c for c, _ in usage), sum(r for _, r in usage), 0
    pids = {s["counters"]["usage"]["pid"] for s in h.observer.snapshots.values() if s["counters"]["usage"]["pid"]}
    usage = [proc_usage(p) for p in pids]
    agents = sum(proc_usage(w["pid"])[1] for w in workers if w["pid"])
    return sum(c for c, _ in usage), sum(r for _, r in usage), agents


async def one_run(impl: str, nodes: int, design: str, hold: str = "9s", keepalive: str = "3s") -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="meshsim-bench-") as d:
        path = Path(d) / "s.yaml"
        path.write_text(scenario_text(impl, nodes, design, hold, keepalive))
        cluster = Cluster.build(load_scenario([path]))
        fabric = WorkerFabric(cluster) if impl == "meshsim" else NetnsFabric(cluster)
        async with Harness(cluster, fabric=fabric) as h:
            conv = await h.converge(300)
            if not conv.converged or conv.sessions_up != conv.sessions_expected:
                raise SystemExit(f"{impl} {design}:{nodes}: cold start did not converge: {conv.sessions_up}/"
                                 f"{conv.sessions_expected} sessions, {conv.nodes_converged}/{conv.nodes} tables")
            cpu0, rss, agents = engine_usage(h, impl)
            t0 = time.monotonic()
            await asyncio.sleep(IDLE_WINDOW)
            cpu1, _, _ = engine_usage(h, impl)
            idle = (cpu1 - cpu0) / (time.monotonic() - t0)
            node = "node1"
            # each event is timed from the instant the nodes are told (h.acted_at), after the harness's oracle
            await h.add_pods(node, 70)
            block = await h.converge(120, since=h.acted_at)
            if not block.converged:
                raise SystemExit(f"{impl}: the new block did not reach every node")
            await h.stop_node("node2")
            stop = await h.converge(120, since=h.acted_at)
            if not stop.converged:
                raise SystemExit(f"{impl}: the stopped node was not withdrawn everywhere")
        return {"cold start converged (s)": conv.time or 0.0,
                "all sessions Established (s)": conv.sessions_time or 0.0,
                "new block on every node (s)": block.time or 0.0,
                "graceful stop withdrawn (s)": stop.time or 0.0,
                "engines memory (MiB)": rss / 2**20,
                "idle CPU (cores)": idle,
                "BIRD agents memory (MiB)": agents / 2**20}


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="mesh:50,rr:50,mesh:100,rr:100", help="design:N,... (N counts all nodes)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hold", default="9s", help="BGP hold time of every node (a Go duration; Calico's default 240s)")
    ap.add_argument("--keepalive", default="3s", help="keepalive time (Calico's default 80s)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (BIRD nodes run in network namespaces)", file=sys.stderr)
        return 2
    configure("error")
    # SIGTERM (kill, a CI timeout) cancels the run like Ctrl-C, so the Harness removes its namespaces and daemons
    me = asyncio.current_task()
    assert me is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases.split(",")]
    table: list[tuple[str, dict[str, dict[str, float]]]] = []
    for design, n in cases:
        runs: dict[str, list[dict[str, float]]] = {"meshsim": [], "bird": []}
        for r in range(args.runs):
            for impl in ("meshsim", "bird"):
                runs[impl].append(await one_run(impl, n, design, args.hold, args.keepalive))
                f = runs[impl][-1]
                print(f"{design}:{n} run {r + 1}/{args.runs} {impl}: cold {f['cold start converged (s)']:.2f} s, "
                      f"new block {f['new block on every node (s)']:.3f} s, "
                      f"graceful stop {f['graceful stop withdrawn (s)']:.3f} s", file=sys.stderr)
        med = {impl: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for impl, rs in runs.items()}
        table.append((f"{design} {n}" if design == "mesh" else f"2 RR + {n - 2}", med))
    bird = os.popen("bird --version 2>&1").read().strip().split()[-1]
    print(f"\nmedians of {args.runs} runs; meshsim: default workers on 127.x; BIRD {bird}: one daemon per namespace; "
          f"hold {args.hold} / keepalive {args.keepalive}, Calico's other timers\n")
    print("| case | figure | meshsim | BIRD | meshsim / BIRD |")
    print("|---|---|---|---|---|")
    for label, med in table:
        for k in med["meshsim"]:
            a, b = med["meshsim"][k], med["bird"][k]
            if k.startswith("BIRD agents"):
                print(f"| {label} | {k} | - | {b:.1f} | - |")
                continue
            # events take milliseconds: three decimals show them (and which side is faster)
            digits = 1 if "MiB" in k else (3 if "CPU" in k or max(a, b) < 1 else 2)
            ratio = f"{a / b:.2f}" if b else "-"
            print(f"| {label} | {k} | {a:.{digits}f} | {b:.{digits}f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
