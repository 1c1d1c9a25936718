"""`meshsim run`: the embedded default. Every Node becomes a real process on this machine.

Owns `run_scenario` and the CLI entry: build the cluster model, start one `meshsim node` per Node
(BGP and HTTP on its own 127.x address), wait until every node's actual table equals its expected
table, print a live progress line and a summary, and write `report.json`, `routes/<node>.ip` and
`status/<node>.txt`. Ctrl-C, SIGTERM or a failure still stop every process and write what was
measured so far.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshsim.errors import MeshsimError, RunError
from meshsim.oracle.expected import expected_tables
from meshsim.logs import get_logger
from meshsim.report.metrics import Convergence, convergence, spread, totals
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from meshsim.report.markdown import markdown, plots
from meshsim.model.timeline import parse_timeline
from meshsim.run.harness import Harness
from meshsim.run.steps import run_step

SCHEMA = "meshsim.report.markdown/v1"


@dataclass
class RunResult:
    scenario: str
    files: list[str]
    started_at: float
    nodes: list[str]
    converged: bool = False
    cold: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    interrupted: bool = False
    mode: str = "local"
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    expected: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # what the fabric adds (netns: external_peers, the ToRs)

    def to_json(self) -> dict[str, Any]:
        per_node = {}
        for name in self.nodes:
            snap = self.snapshots.get(name)
            if not snap:
                per_node[name] = {"answered": False}
                continue
            usage = snap["counters"]["usage"]
            per_node[name] = {
                "answered": True,
                "converged": snap["routes"]["ip"] == self.expected.get(name),
                "routes": len(snap["routes"]["routes"]),
                "sessions": {s["name"]: {"peer": s["peer"], "type": s["type"], "state": s["state"],
                                         "info": s["info"], "flaps": s["flaps"]} for s in snap["status"]["sessions"]},
                "counters": snap["counters"]["totals"],
                "cpu_seconds": usage["node"]["cpu_seconds"], "rss_bytes": usage["node"]["rss_bytes"],
                "exabgp": usage["exabgp"],
            }
        return {"schema": SCHEMA, "scenario": self.scenario, "files": self.files, "mode": self.mode,
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
                "converged": self.converged, "interrupted": self.interrupted, "error": self.error,
                "cold_start": self.cold, "events": self.events, "totals": totals(self.snapshots),
                "nodes": per_node, **self.extra}


def _progress_printer(stream=sys.stderr):
    tty = stream.isatty()
    last = [0.0]

    def show(conv: Convergence, elapsed: float) -> None:
        line = (f"[{elapsed:6.1f}s] sessions {conv.sessions_up}/{conv.sessions_expected} Established, "
                f"tables {conv.nodes_converged}/{len(conv.diffs)} converged")
        if tty:
            stream.write("\r" + line.ljust(78))
            stream.flush()
        elif time.monotonic() - last[0] >= 2.0:
            last[0] = time.monotonic()
            stream.write(line + "\n")
            stream.flush()

    def done() -> None:
        if tty:
            stream.write("\n")
            stream.flush()

    return show, done


def _event_progress(i: int, total: int, what: str, stream=sys.stderr):
    tty = stream.isatty()
    last = [0.0]

    def show(conv: Convergence, elapsed: float) -> None:
        width = 20
        filled = int(width * (i + (conv.nodes_converged / max(1, len(conv.diffs)))) / max(1, total))
        bar = "#" * filled + "." * (width - filled)
        line = (f"[{bar}] event {i + 1}/{total} {what}: {elapsed:5.1f}s, "
                f"{conv.nodes_converged}/{len(conv.diffs)} nodes converged")
        if tty:
            stream.write("\r" + line[:110].ljust(110))
            stream.flush()
        elif time.monotonic() - last[0] >= 2.0:
            last[0] = time.monotonic()
            stream.write(line + "\n")
            stream.flush()

    return show


def cold_figures(conv: Convergence, snapshots: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "converged": conv.converged,
        "time_to_established_s": None if conv.sessions_time is None else round(conv.sessions_time, 3),
        "time_to_converged_s": None if conv.time is None else round(conv.time, 3),
        "per_node_s": spread(list(conv.per_node.values())),
        "per_node": {n: round(v, 3) for n, v in conv.per_node.items()},
        "sessions_expected": conv.sessions_expected, "sessions_established": conv.sessions_up,
        "not_converged": {n: d.to_json() for n, d in conv.diffs.items() if not d.equal},
        **totals(snapshots),
    }


def write_outputs(out: Path, result: RunResult) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "routes").mkdir(exist_ok=True)
    (out / "status").mkdir(exist_ok=True)
    for name, snap in result.snapshots.items():
        (out / "routes" / f"{name}.ip").write_text(snap["routes"]["ip"])
        (out / "status" / f"{name}.txt").write_text(snap["status"]["text"])
    data = result.to_json()
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    try:
        files = plots(data, out)
    except Exception as exc:  # a plotting problem must not lose the measurements
        get_logger(component="report").warning("plots_failed", error=str(exc))
        files = []
    (out / "report.md").write_text(markdown(data, files))


def summary(result: RunResult) -> str:
    c = result.cold
    lines = [f"scenario {result.scenario}: {len(result.nodes)} nodes, {c.get('sessions_expected', 0) // 2} BGP sessions; "
             f"{c.get('sessions_established', 0)}/{c.get('sessions_expected', 0)} Established as the nodes' "
             "`calicoctl node status` count them"]
    if c.get("time_to_established_s") is not None:
        lines.append(f"  all sessions Established after {c['time_to_established_s']:.2f} s")
    if c.get("time_to_converged_s") is not None:
        p = c["per_node_s"]
        lines.append(f"  converged after {c['time_to_converged_s']:.2f} s "
                     f"(per node min {p['min']:.2f} / p50 {p['p50']:.2f} / max {p['max']:.2f} s)")
    elif c:
        lines.append(f"  NOT converged: {len(c.get('not_converged', {}))} nodes differ from their expected table")
        for name, d in list(c.get("not_converged", {}).items())[:5]:
            lines.append(f"    {name}: missing {len(d['missing'])} {d['missing'][:2]}, extra {len(d['extra'])} "
                         f"{d['extra'][:2]}")
    for e in result.events:
        if e.get("error"):
            lines.append(f"  event {e['index']} {e['event']}: FAILED: {e['error']}")
        elif e.get("waited") is False:
            lines.append(f"  event {e['index']} {e['event']}: done (not waited for)")
        elif e.get("converged"):
            bo = e.get("blackouts") or []
            lines.append(f"  event {e['index']} {e['event']}: converged in {e['convergence_s']:.2f} s, "
                         f"{e['routes_changed']} route changes, {e['updates_received']} UPDATEs rx"
                         + (f", {len(bo)} blackouts (max {max(b['seconds'] for b in bo):.2f} s)" if bo else ""))
        else:
            lines.append(f"  event {e['index']} {e['event']}: NOT converged within {e['timeout_s']:.0f} s "
                         f"({len(e.get('not_converged', {}))} nodes differ)")
    t = totals(result.snapshots)
    lines.append(f"  UPDATEs sent {t['updates_sent']}, received {t['updates_received']}; withdrawals sent "
                 f"{t['withdrawals_sent']}, received {t['withdrawals_received']}; session flaps {t['flaps']}")
    rss = [s["counters"]["usage"]["node"]["rss_bytes"] + s["counters"]["usage"]["exabgp"]["rss_bytes"]
           for s in result.snapshots.values()]
    if rss:
        lines.append(f"  RSS per node (speaker + ExaBGP): mean {sum(rss) / len(rss) / 2**20:.0f} MiB, "
                     f"total {sum(rss) / 2**20:.0f} MiB")
    if result.extra.get("external_peers"):
        from meshsim.fabric.netns import summary_lines

        lines += summary_lines(result.extra)
    if result.error:
        lines.append(f"  error: {result.error}")
    if result.interrupted:
        lines.append("  interrupted: figures above are what was measured until then")
    return "\n".join(lines) + "\n"


async def run_scenario(files: list[str], *, out: Path | None = None, bgp_port: int | None = None,
                       timeout: float = 120.0, progress: bool = True, keep_running: bool = False,
                       log_level: str = "info", fabric_factory: Any = None, mode: str = "local") -> RunResult:
    """Run a scenario: cold start, then its timeline. `fabric_factory(cluster)` supplies where the nodes run
    (default: processes on this machine)."""
    log = get_logger(component="runner")
    scenario = load_scenario(files)
    cluster = Cluster.build(scenario)
    steps = parse_timeline(scenario)  # a bad timeline is rejected before anything starts
    result = RunResult(scenario=scenario.name, files=[str(f) for f in files], started_at=time.time(),
                       nodes=[n.name for n in scenario.nodes], mode=mode)
    harness = Harness(cluster, bgp_port=bgp_port, log_level=log_level,
                      fabric=fabric_factory(cluster) if fabric_factory else None)
    show, done = _progress_printer() if progress else (None, lambda: None)
    result.expected = {n: t.render_ip() for n, t in expected_tables(cluster).items()}
    try:
        await harness.start()
        result.started_at = harness.started_at
        conv = await harness.converge(timeout, progress=show)
        done()
        result.converged = conv.converged and conv.sessions_up == conv.sessions_expected
        result.cold = cold_figures(conv, harness.observer.snapshots)
        result.snapshots = dict(harness.observer.snapshots)
        log.info("cold_start_measured", converged=result.converged, seconds=result.cold["time_to_converged_s"])
        for i, step in enumerate(steps):
            show_event = _event_progress(i, len(steps), step.describe()) if progress else None
            ev = await run_step(harness, step, result.started_at, show_event)
            if progress:
                done()
            result.events.append(ev)
            log.info("event_measured", what=ev["event"], converged=ev.get("converged"),
                     seconds=ev.get("convergence_s"))
            result.snapshots = dict(harness.observer.snapshots)
        result.converged = result.converged and all(ev.get("converged", True) for ev in result.events)
        if hasattr(harness.fabric, "external_report"):  # netns: what the ToRs learned
            result.extra = await harness.fabric.external_report()
        if keep_running:
            print("converged; nodes keep running until Ctrl-C "
                  f"(try: meshsim status {' '.join(map(str, files))} --node {result.nodes[0]})", file=sys.stderr)
            await asyncio.Event().wait()
    except asyncio.CancelledError:
        done()
        result.interrupted = True
    except MeshsimError as exc:
        done()
        result.error = str(exc)
    finally:
        if not result.cold:
            await harness.observer.refresh(harness.running())
            result.snapshots = dict(harness.observer.snapshots)
            if result.snapshots:
                conv = convergence(harness.expected(), result.snapshots, result.started_at,
                                   harness.expected_sessions())
                result.cold = cold_figures(conv, result.snapshots)
        if out is not None:
            harness.fabric.collect_logs(out / "logs")
        await harness.close()
        if out is not None:
            write_outputs(out, result)
    return result


def main(args: Any) -> int:
    out = Path(args.out) if args.out else None

    async def go() -> RunResult:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        from meshsim.fabric.netns import check_isolation, fabric_factory

        isolation = getattr(args, "isolation", "loopback")
        from meshsim.cli import print_warnings  # model-import: what the load read past, on stderr

        scenario = load_scenario(args.files)
        print_warnings(scenario)
        check_isolation(scenario, isolation)
        factory = fabric_factory(isolation, getattr(args, "dataplane", "sim"), bgp_port=args.port)
        return await run_scenario(args.files, out=out, bgp_port=args.port, timeout=args.timeout,
                                  keep_running=args.keep_running, fabric_factory=factory,
                                  mode="local" if factory is None else isolation)

    try:
        result = asyncio.run(go())
    except KeyboardInterrupt:
        print("meshsim: interrupted; every node process was stopped", file=sys.stderr)
        return 130
    sys.stdout.write(summary(result))
    if out is not None:
        print(f"  report: {out / 'report.json'}; final tables in {out / 'routes'}/, status in {out / 'status'}/")
    if result.error:
        raise RunError(result.error)
    if result.interrupted:
        return 130
    return 0 if result.converged else 1
