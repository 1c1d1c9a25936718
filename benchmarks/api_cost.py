"""What each call of the public API costs (README "In your own tests"): wall time of `emulate()` (enter: start every
node and wait for the cold start; exit: stop everything), of each reading call and of each action, and memory
(the test process's own RSS growth, the worker processes' RSS as the report measures them).

Owns nothing but measurement. Full meshes of N nodes (cluster_yaml, hold 9 s, 2 pods per node), loopback
isolation, default workers (one per CPU). Start-up cost is mostly the workers' Python start and BGP's own
`connect delay time` (2 s, jittered); an action's cost is its convergence plus the measurement run_step makes.
The machine may be shared: figures are one run each, say so when quoting them.

Run (from the repository root, under the integration lock):
    flock /tmp/meshsim-integration.lock .venv/bin/python benchmarks/api_cost.py [--nodes 3,10,50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from typing import Any

import meshsim
from meshsim.model.generate import cluster_yaml


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def timed(what: str, out: dict[str, float], coro: Any) -> Any:
    t = time.perf_counter()
    result = await coro
    out[what] = round(time.perf_counter() - t, 3)
    return result


async def one(nodes: int) -> dict[str, Any]:
    text = cluster_yaml(f"cost{nodes}", nodes, subnet="192.168.0.0/22", hold="9s", keepalive="3s")
    before = rss_mib()
    calls: dict[str, float] = {}
    t = time.perf_counter()
    emu = meshsim.emulate(text=text, timeout=300)
    await emu.start()
    calls["emulate() enter (cold start converged)"] = round(time.perf_counter() - t, 3)
    try:
        cold = emu.cold_start["time_to_converged_s"]
        for what, node in (("expected_routes() first", "node1"), ("expected_routes() next", "node2")):
            t = time.perf_counter()
            emu.expected_routes(node)
            calls[what] = round(time.perf_counter() - t, 4)
        await timed("routes()", calls, emu.routes("node1"))
        await timed("status()", calls, emu.status("node1"))
        await timed("rib()", calls, emu.rib("node1"))
        t = time.perf_counter()
        report = emu.report()
        calls["report()"] = round(time.perf_counter() - t, 4)
        await timed("add_workloads(70)", calls, emu.add_workloads(f"node{nodes}", 70))
        await timed("stop_node()", calls, emu.stop_node("node2"))
        await timed("start_node()", calls, emu.start_node("node2"))
        await timed("kill_node(sigkill)", calls, emu.kill_node("node2", mode="sigkill"))
        await timed("start_node() after sigkill", calls, emu.start_node("node2"))
        await timed("wait_converged()", calls, emu.wait_converged())
        workers = report["processes"]["workers"]
        grown = rss_mib() - before
    finally:
        t = time.perf_counter()
        await emu.close()
        calls["emulate() exit"] = round(time.perf_counter() - t, 3)
    return {"nodes": nodes, "cold_start_converged_s": cold, "calls_s": calls, "workers": len(workers),
            "workers_rss_mib": round(sum(w["rss_bytes"] for w in workers) / 2**20, 1),
            "test_process_rss_growth_mib": round(grown, 1),
            "test_process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


async def main(sizes: list[int]) -> None:
    for n in sizes:
        print(json.dumps(await one(n)), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", default="3,10,50")
    args = ap.parse_args()
    asyncio.run(main([int(x) for x in args.nodes.split(",")]))
