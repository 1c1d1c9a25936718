"""`meshsim compare`: the same timeline on generated clusters of several sizes, as a full mesh and with
route reflectors, measured side by side.

Owns `compare(...)`: for every size N and design it generates a cluster (mesh: N nodes; rr: R reflectors
with a shared cluster ID + N clients, a BGPPeer selecting the reflectors, mesh off), takes the pool,
timers and events of the given scenario, runs it for real (`run_scenario`), and writes
`comparison.json`, `comparison.md` (a table per metric, mesh next to RR, and which design wins where,
in numbers) and plots against N. Medians over --repeat runs. Every run's own report stays in runs/.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from meshsim.errors import ScenarioError
from meshsim.model.generate import cluster_yaml
from meshsim.model.resources import load_scenario
from meshsim.model.timeline import parse_timeline
from meshsim.run.runner import run_scenario

METRICS = [
    # key, label, unit, lower is better
    ("sessions", "BGP sessions", "", True),
    ("cold_established_s", "cold start: all sessions Established", "s", True),
    ("cold_converged_s", "cold start: converged", "s", True),
    ("updates_rx", "UPDATEs received (all nodes, whole run)", "", True),
    ("cpu_s", "CPU seconds (all nodes, speaker + ExaBGP)", "s", True),
    ("rss_mib", "RSS per node (speaker + ExaBGP)", "MiB", True),
    ("rss_total_mib", "RSS, whole cluster", "MiB", True),
]


def generated_scenario(template_path: str, design: str, n: int, reflectors: int, pods: int) -> str:
    """The template's pool, timers and events on a generated cluster."""
    sc = load_scenario([template_path])
    pool = sc.pools[0]
    t = sc.spec.timers
    text = cluster_yaml(f"{sc.name}-{design}-{n}", n, design=design, reflectors=reflectors, pods=pods,
                        hold=f"{t.hold_time:g}s", keepalive=f"{t.keepalive_time:g}s", pool=str(pool.cidr),
                        ipip=pool.ipip_mode, subnet="192.168.0.0/22")
    events = [dict(ev.fields) for ev in sc.spec.events]
    if events:
        text = text.rstrip("\n") + "\n  events:\n" + "".join(
            "    - " + yaml.safe_dump(ev, default_flow_style=True, width=10_000).strip() + "\n" for ev in events)
    return text


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    nodes = [n for n in report["nodes"].values() if n.get("answered")]
    cold = report["cold_start"]
    events = {}
    for e in report["events"]:
        if e.get("waited") is False:
            continue
        events[f"{e['index']}: {e['event']}"] = e.get("convergence_s")
    rss = [n["rss_bytes"] + n["exabgp"]["rss_bytes"] for n in nodes]
    return {
        "converged": report["converged"],
        "sessions": cold.get("sessions_expected", 0) // 2,
        "cold_established_s": cold.get("time_to_established_s"),
        "cold_converged_s": cold.get("time_to_converged_s"),
        "updates_rx": report["totals"]["updates_received"],
        "cpu_s": round(sum(n["cpu_seconds"] + n["exabgp"]["cpu_seconds"] for n in nodes), 2),
        "rss_mib": round(statistics.mean(rss) / 2**20, 1) if rss else None,
        "rss_total_mib": round(sum(rss) / 2**20, 0),
        "events": events,
        "blackouts": sum(len(e.get("blackouts") or []) for e in report["events"]),
    }


def _median(values: list[Any]) -> Any:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 3) if vals else None


async def compare(template: str, *, designs: list[str], sizes: list[int], reflectors: int = 2, repeat: int = 1,
                  out: Path, timeout: float = 180.0, pods: int = 2, progress: bool = True) -> dict[str, Any]:
    for d in designs:
        if d not in ("mesh", "rr"):
            raise ScenarioError("<command line>", "unknown design", field="--designs", expected="mesh, rr", got=d)
    sc = load_scenario([template])
    smallest = min(sizes)
    parse_timeline(sc, node_names=[f"node{i + 1}" for i in range(smallest)]
                   + [f"rr{i + 1}" for i in range(reflectors if "rr" in designs else 0)])
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[int, list[dict[str, Any]]]] = {d: {n: [] for n in sizes} for d in designs}
    data: dict[str, Any] = {"schema": "meshsim.comparison/v1", "template": str(template), "designs": designs,
                            "sizes": sizes, "reflectors": reflectors, "repeat": repeat,
                            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": []}
    try:
        for n in sizes:
            for d in designs:
                for r in range(repeat):
                    run_dir = out / "runs" / f"{d}-{n}-{r + 1}"
                    run_dir.mkdir(parents=True, exist_ok=True)
                    path = run_dir / "scenario.yaml"
                    path.write_text(generated_scenario(template, d, n, reflectors, pods))
                    t0 = time.monotonic()
                    result = await run_scenario([str(path)], out=run_dir, progress=False, timeout=timeout)
                    report = json.loads((run_dir / "report.json").read_text())
                    fig = _figures(report)
                    results[d][n].append(fig)
                    data["runs"].append({"design": d, "nodes": n, "repeat": r + 1, **fig,
                                         "wall_s": round(time.monotonic() - t0, 1), "error": result.error})
                    if progress:
                        print(f"  {d:>4} N={n:<3} run {r + 1}/{repeat}: "
                              f"{'converged' if fig['converged'] else 'NOT converged'}, cold "
                              f"{fig['cold_converged_s']} s, {fig['sessions']} sessions", file=sys.stderr)
    finally:
        data["medians"] = {d: {str(n): _median_fig(results[d][n]) for n in sizes if results[d][n]} for d in designs}
        (out / "comparison.json").write_text(json.dumps(data, indent=2) + "\n")
        files = comparison_plots(data, out)
        (out / "comparison.md").write_text(comparison_markdown(data, files))
    return data


def _median_fig(runs: list[dict[str, Any]]) -> dict[str, Any]:
    fig = {k: _median([r[k] for r in runs]) for k, *_ in METRICS}
    names = sorted({e for r in runs for e in r["events"]}, key=lambda s: int(s.split(":")[0]))
    fig["events"] = {e: _median([r["events"].get(e) for r in runs]) for e in names}
    fig["converged"] = all(r["converged"] for r in runs)
    fig["blackouts"] = _median([r["blackouts"] for r in runs])
    return fig


def _fmt(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    return f"{v:g} {unit}".strip() if isinstance(v, (int, float)) else str(v)


def comparison_markdown(data: dict[str, Any], plot_files: list[str]) -> str:
    med = data["medians"]
    sizes = [str(n) for n in data["sizes"]]
    designs = data["designs"]
    label = {"mesh": "mesh", "rr": f"RR ({data['reflectors']} reflectors)"}
    lines = [f"# Full mesh vs route reflectors: {Path(data['template']).name}", "",
             f"Generated clusters of {', '.join(sizes)} nodes (RR: {data['reflectors']} reflectors + N clients), "
             f"real BGP over ExaBGP on this machine, medians of {data['repeat']} run(s) each. Lower is better "
             "everywhere.", ""]
    header = ["metric", "N"] + [label[d] for d in designs] + (["winner"] if len(designs) == 2 else [])
    rows = []
    wins: list[str] = []

    def row(name: str, unit: str, n: str, values: list[Any]) -> None:
        cells = [name, n] + [_fmt(v, unit) for v in values]
        if len(values) == 2:
            a, b = values
            if a is None or b is None:
                cells.append("-")
            elif a == b or (min(a, b) > 0 and max(a, b) / min(a, b) < 1.05):
                cells.append("tie (within 5%)")
            else:
                lo, hi = (a, b) if a < b else (b, a)
                who = label[designs[0]] if a < b else label[designs[1]]
                ratio = f"{hi / lo:.2f}x" if lo else "n/a"
                cells.append(f"{who} ({ratio} less)")
                wins.append(f"- {name} at N={n}: {who} wins, {_fmt(lo, unit)} vs {_fmt(hi, unit)} ({ratio}).")
        rows.append(cells)

    for key, name, unit, _ in METRICS:
        for n in sizes:
            row(name, unit, n, [med.get(d, {}).get(n, {}).get(key) for d in designs])
    event_names = sorted({e for d in designs for n in sizes for e in med.get(d, {}).get(n, {}).get("events", {})},
                         key=lambda s: int(s.split(":")[0]))
    for e in event_names:
        for n in sizes:
            row(f"event {e}: converged", "s", n, [med.get(d, {}).get(n, {}).get("events", {}).get(e) for d in designs])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(c) + " |" for c in rows]
    lines.append("")
    not_conv = [f"{d} N={n}" for d in designs for n in sizes if not med.get(d, {}).get(n, {}).get("converged", True)]
    if not_conv:
        lines += [f"**Did not converge:** {', '.join(not_conv)} (see runs/*/report.md).", ""]
    if wins:
        lines += ["## Which design wins where", ""] + wins + [""]
    if plot_files:
        lines += ["## Plots", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in plot_files] + [""]
    lines += ["Each run's own report (tables, per-event figures, plots) is in `runs/<design>-<N>-<repeat>/`.", ""]
    return "\n".join(lines)


def comparison_plots(data: dict[str, Any], out: Path) -> list[str]:
    from meshsim.report.markdown import _pyplot

    plt = _pyplot()
    if plt is None:
        return []
    med = data["medians"]
    sizes = data["sizes"]
    panels = [(k, f"{name}" + (f" ({unit})" if unit else "")) for k, name, unit, _ in METRICS]
    event_names = sorted({e for d in med for n in med[d] for e in med[d][n].get("events", {})},
                         key=lambda s: int(s.split(":")[0]))
    panels += [(f"event:{e}", f"event {e} (s)") for e in event_names]
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, panels):
        for d, style in (("mesh", "o-"), ("rr", "s--")):
            if d not in med:
                continue
            xs, ys = [], []
            for n in sizes:
                fig_n = med[d].get(str(n))
                if not fig_n:
                    continue
                v = fig_n["events"].get(key[6:]) if key.startswith("event:") else fig_n.get(key)
                if v is not None:
                    xs.append(n)
                    ys.append(v)
            ax.plot(xs, ys, style, label="mesh" if d == "mesh" else f"RR x{data['reflectors']}")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("nodes", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    path = out / "comparison.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [str(path)]
