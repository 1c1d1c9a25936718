"""Speaker cost per route before and after ADD-PATH (RFC 7911): a cold start of 2 route reflectors and N clients.

Owns nothing but measurement. Pure: the routers run on tests/unit/bgpnet.py's in-memory network (no sockets, no
processes but this script's own children, simulated time). Each variant runs in a child process with a fresh
interpreter so the variants do not share codec memo caches:

  before   the tree at --before (default 2e71b2a, main before ADD-PATH: best path only, one path id for all),
           unpacked with `git archive` into a temporary directory;
  off      this tree, routers without ADD-PATH (`add_paths=False`: best path only, no path ids);
  on       this tree, routers with ADD-PATH (Calico's `add paths on`: every exportable path, per-source ids).

Topology: rr1 and rr2 share one cluster id (Calico's canonical RR setup), non-clients of each other; every
client peers with both as their client and originates one /26 block. Figures: CPU seconds (process_time) of
the whole cold start (sessions, codec, speaker) and of the speakers alone (`Speaker.handle` and friends,
wrapped), and the speaker's CPU per path received (the sum of every peer's `updates_received`).

Run (from the repository root):
    .venv/bin/python benchmarks/addpath.py [--clients 200] [--runs 3] [--before REF]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------- child


def child(tree: Path, clients: int, add_paths: bool | None) -> dict[str, float]:
    sys.path.insert(0, str(tree))
    import meshsim

    assert Path(meshsim.__file__).resolve().is_relative_to(tree.resolve()), meshsim.__file__
    from meshsim.bgp import router as router_mod
    from meshsim.bgp import speaker as speaker_mod
    from tests.unit import bgpnet

    speaker_cpu = [0.0]

    def timed(method):  # type: ignore[no-untyped-def]
        @functools.wraps(method)
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                speaker_cpu[0] += time.process_time() - start
        return wrapper

    for name in ("handle", "release_exports", "set_peers", "set_config"):
        setattr(speaker_mod.Speaker, name, timed(getattr(speaker_mod.Speaker, name)))
    if add_paths is not None:
        bgpnet.Router = functools.partial(router_mod.Router, add_paths=add_paths)  # type: ignore[assignment, misc]

    rrs = {"rr1": "10.0.0.1", "rr2": "10.0.0.2"}
    client_addr = {f"c{i}": f"192.168.{i // 200}.{i % 200 + 10}" for i in range(clients)}
    net = bgpnet.Net()
    start = time.process_time()
    for rr, addr in rrs.items():
        other = next(a for r, a in rrs.items() if r != rr)
        peers = [(f"Node_{other.replace('.', '_')}", other, addr < other, False)]
        peers += [(f"Node_{a.replace('.', '_')}", a, True, True) for a in client_addr.values()]
        net.add(rr, addr, peers=peers, cluster_id="244.0.0.1")
    for i, (c, addr) in enumerate(client_addr.items()):
        block = f"10.244.{i * 64 // 256}.{i * 64 % 256}/26"
        net.add(c, addr, peers=[(f"Node_{a.replace('.', '_')}", a, False, False) for a in rrs.values()],
                blocks=(block,))
    net.run(6.0)  # connect delay 2 s (jittered): every session is up and every table complete well before 6 s
    total = time.process_time() - start
    complete = all(len(net.routes(c)) == clients for c in client_addr)
    received = sum(c.updates_received for node in net.nodes.values()
                   for c in node.router.speaker.counters().values())
    return {"total_cpu_s": total, "speaker_cpu_s": speaker_cpu[0], "paths_received": received,
            "speaker_us_per_path": speaker_cpu[0] / max(received, 1) * 1e6, "complete": complete}


# ---------------------------------------------------------------------------------------------- parent


def run_child(tree: Path, clients: int, add_paths: bool | None) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(tree), "--clients", str(clients)]
    if add_paths is not None:
        cmd += ["--add-paths", "on" if add_paths else "off"]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=tree)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", default="2e71b2a", help="git ref of the tree before ADD-PATH")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--add-paths", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        add_paths = None if args.add_paths is None else args.add_paths == "on"
        print(json.dumps(child(args.child, args.clients, add_paths)))
        return

    with tempfile.TemporaryDirectory(prefix="meshsim-bench-before-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before], check=True, capture_output=True)
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        variants = {f"before ({args.before})": (Path(tmp), None), "off (this tree)": (ROOT, False),
                    "on (this tree)": (ROOT, True)}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for _ in range(args.runs):  # interleaved, so a busy neighbour slows every variant alike
            for name, (tree, add_paths) in variants.items():
                results[name].append(run_child(tree, args.clients, add_paths))
    print(f"cold start, 2 RRs (one cluster id) + {args.clients} clients, median of {args.runs} run(s), CPU seconds")
    print(f"{'variant':<22} {'total CPU s':>12} {'speaker CPU s':>14} {'paths rx':>9} {'speaker µs/path':>16}  complete")
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("total_cpu_s", "speaker_cpu_s", "speaker_us_per_path")}
        print(f"{name:<22} {med['total_cpu_s']:>12.2f} {med['speaker_cpu_s']:>14.2f} {int(runs[0]['paths_received']):>9}"
              f" {med['speaker_us_per_path']:>16.1f}  {all(r['complete'] for r in runs)}")


if __name__ == "__main__":
    main()
