"""Cold-start benchmark: N-node meshes and route-reflector clusters, side by side in one run.

    .venv/bin/python benchmarks/scale.py                 # mesh 10, mesh 30, RR 30 (2 reflectors + 28 clients)
    .venv/bin/python benchmarks/scale.py --cases mesh:200,rr:500 --repeat 1

A case's N counts all nodes, route reflectors included (rr:500 is 2 reflectors and 498 clients), so mesh:30
and rr:30 are the same cluster in its two designs.

Each case is a real `meshsim run` with its defaults (worker processes hosting the nodes, as many as CPUs or
more when the sockets need it; BGP on 127.x; hold 9 s / keepalive 3 s; Calico's connect delay). Prints one
table: sessions, time to all Established and to converged (from BGP's release on every node), UPDATE
messages received, the workers' CPU seconds and memory per node (all workers' RSS / nodes), and each case's
ratio to the first case, so the figures compare within one run on a shared, noisy machine. Medians over
--repeat runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meshsim.model.generate import cluster_yaml  # noqa: E402
from meshsim.logs import configure  # noqa: E402
from meshsim.run.runner import run_scenario  # noqa: E402


async def one(design: str, n: int, workdir: Path, timeout: float) -> dict:
    path = workdir / f"{design}-{n}.yaml"
    path.write_text(cluster_yaml(f"bench-{design}-{n}", n, design=design))
    result = await run_scenario([str(path)], progress=False, timeout=timeout)
    workers = result.processes.get("workers", [])
    rss = sum(w["rss_bytes"] for w in workers)
    cpu = sum(w["cpu_seconds"] for w in workers)
    c = result.cold
    nodes = len(result.nodes)
    return {
        "converged": result.converged, "nodes": nodes, "workers": len(workers),
        "sessions": c.get("sessions_expected", 0) // 2,  # BGP sessions (each has two ends)
        "established": c.get("time_to_established_s") or float("nan"),
        "converged_s": c.get("time_to_converged_s") or float("nan"),
        "updates": c.get("update_messages_received", 0),
        "cpu_total": cpu,
        "rss_per_node": rss / nodes / 2**20 if nodes else float("nan"),
        "rss_total": rss / 2**20,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="mesh:10,mesh:30,rr:30", help="design:N,... (N counts all nodes: rr:30 = 2 reflectors + 28 clients)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=180)
    args = ap.parse_args()
    configure("error")
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="meshsim-bench-") as d:
        for design, n in cases:
            runs = [asyncio.run(one(design, n, Path(d), args.timeout)) for _ in range(args.repeat)]
            med = {k: statistics.median([r[k] for r in runs]) for k in runs[0] if k != "converged"}
            med["converged"] = all(r["converged"] for r in runs)
            label = f"mesh {n}" if design == "mesh" else f"RR {n} (2 RR)"
            rows.append((label, med))
            print(f"  done: {label}: converged={med['converged']} in {med['converged_s']:.2f}s", file=sys.stderr)
    base = rows[0][1]
    head = (f"{'case':<14} {'nodes':>5} {'workers':>7} {'sessions':>8} {'established s':>13} {'converged s':>11} "
            f"{'ratio':>6} {'UPDATE msgs rx':>14} {'CPU s (all)':>11} {'MiB/node':>8} {'MiB total':>9} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for label, m in rows:
        print(f"{label:<14} {m['nodes']:>5} {m['workers']:>7} {m['sessions']:>8} {m['established']:>13.2f} "
              f"{m['converged_s']:>11.2f} {m['converged_s'] / base['converged_s']:>6.2f} {m['updates']:>14} "
              f"{m['cpu_total']:>11.1f} {m['rss_per_node']:>8.1f} {m['rss_total']:>9.0f} "
              f"{m['rss_total'] / base['rss_total']:>6.2f}" + ("" if m["converged"] else "  NOT CONVERGED"))
    return 0 if all(m["converged"] for _, m in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
