"""Cold-start benchmark: N-node meshes and route-reflector clusters, side by side in one run.

    .venv/bin/python benchmarks/scale.py                 # mesh 10, mesh 30, RR 30 (2 reflectors + 28 clients)
    .venv/bin/python benchmarks/scale.py --cases mesh:10,rr:30 --repeat 3

A case's N counts all nodes, route reflectors included (rr:30 is 2 reflectors and 28 clients), so mesh:30
and rr:30 are the same cluster in its two designs.

Each case is a real `meshsim run` (one node process and one ExaBGP per node, BGP on 127.x). Prints
one table: sessions, time to all Established, time to converged, UPDATEs, CPU seconds and RSS per
node (speaker + ExaBGP), and each case's ratio to the first case, so the figures compare within
one run on a shared, noisy machine. Medians over --repeat runs.
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
    snaps = result.snapshots.values()
    cpu = [s["counters"]["usage"]["node"]["cpu_seconds"] + s["counters"]["usage"]["exabgp"]["cpu_seconds"]
           for s in snaps]
    rss = [s["counters"]["usage"]["node"]["rss_bytes"] + s["counters"]["usage"]["exabgp"]["rss_bytes"] for s in snaps]
    exa = [s["counters"]["usage"]["exabgp"]["rss_bytes"] for s in snaps]
    c = result.cold
    return {
        "converged": result.converged, "nodes": len(result.nodes),
        "sessions": c.get("sessions_expected", 0) // 2,  # BGP sessions (each has two ends)
        "established": c.get("time_to_established_s") or float("nan"),
        "converged_s": c.get("time_to_converged_s") or float("nan"),
        "updates": c.get("updates_received", 0),
        "cpu_per_node": statistics.mean(cpu) if cpu else float("nan"),
        "rss_per_node": statistics.mean(rss) / 2**20 if rss else float("nan"),
        "exabgp_rss": statistics.mean(exa) / 2**20 if exa else float("nan"),
        "rss_total": sum(rss) / 2**20,
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
    head = (f"{'case':<12} {'nodes':>5} {'sessions':>8} {'established s':>13} {'converged s':>11} {'ratio':>6} "
            f"{'UPDATEs rx':>10} {'CPU s/node':>10} {'RSS MiB/node':>12} {'(ExaBGP)':>8} {'RSS MiB total':>13} "
            f"{'ratio':>6}")
    print(head)
    print("-" * len(head))
    for label, m in rows:
        print(f"{label:<12} {m['nodes']:>5} {m['sessions']:>8} {m['established']:>13.2f} {m['converged_s']:>11.2f} "
              f"{m['converged_s'] / base['converged_s']:>6.2f} {m['updates']:>10} {m['cpu_per_node']:>10.2f} "
              f"{m['rss_per_node']:>12.1f} {m['exabgp_rss']:>8.1f} {m['rss_total']:>13.0f} "
              f"{m['rss_total'] / base['rss_total']:>6.2f}" + ("" if m["converged"] else "  NOT CONVERGED"))
    return 0 if all(m["converged"] for _, m in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
