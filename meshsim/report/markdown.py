"""Reports people read: `report.md` tables and matplotlib plots, from a run's report.json data.

Owns `markdown(report, plot_files, topology)` and `plots(report, out)` for one run (the mesh-vs-RR comparison's
pages are `meshsim.report.comparison`). Pure apart from writing the PNG files it is asked for;
matplotlib is optional (`pip install meshsim[plots]`): without it the markdown says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _f(v: Any, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def _mib(v: float | int | None) -> str:
    return "-" if not v else f"{v / 2**20:.0f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def markdown(report: dict[str, Any], plot_files: list[str] | None = None, topology: str | None = None) -> str:
    """report.md; `topology` is the section meshsim.report.topology.markdown_section(cluster, out_dir) wrote
    (its picture beside report.md), shown after the verdict."""
    c = report.get("cold_start", {})
    nodes = report.get("nodes", {})
    lines = [f"# meshsim run: {report['scenario']}", ""]
    verdict = "converged" if report.get("converged") else "DID NOT CONVERGE"
    if report.get("interrupted"):
        verdict = "INTERRUPTED (figures are what was measured until then)"
    if report.get("error"):
        verdict += f"; error: {report['error']}"
    lines += [f"Started {report['started_at']} ({report['mode']} mode), {len(nodes)} nodes: **{verdict}**.", ""]
    if topology:
        lines += [topology.rstrip("\n"), ""]
    lines += ["## Cold start", ""]
    p = c.get("per_node_s") or {}
    lines.append(_table(
        ["sessions Established", "all Established", "converged", "per node min / p50 / p95 / max",
         "UPDATEs rx", "withdrawals rx", "flaps"],
        [[f"{c.get('sessions_established', 0)}/{c.get('sessions_expected', 0)}",
          _f(c.get("time_to_established_s"), " s"), _f(c.get("time_to_converged_s"), " s"),
          " / ".join(_f(p.get(k)) for k in ("min", "p50", "p95", "max")) + " s",
          _f(c.get("updates_received")), _f(c.get("withdrawals_received")), _f(c.get("flaps"))]]))
    if c.get("nodes_not_running"):
        lines += [f"Nodes that never ran: {', '.join(c['nodes_not_running'])}", ""]
    if c.get("not_converged"):
        lines += ["Nodes that differ from their expected table:", ""]
        for n, d in c["not_converged"].items():
            lines.append(f"- {n}: missing {d['missing'][:3]}, extra {d['extra'][:3]}")
        lines.append("")
    events = report.get("events", [])
    if events:
        lines += ["## Events", ""]
        rows = []
        for e in events:
            p = e.get("per_node_s") or {}
            bo = e.get("blackouts") or []
            worst = max((b["seconds"] for b in bo), default=None)
            peak = max((e.get("peak_rss_bytes") or {}).values(), default=None)
            state = "error" if e.get("error") else ("-" if e.get("waited") is False else
                                                    ("yes" if e.get("converged") else "**timed out**"))
            rows.append([str(e["index"]), e["event"], f"{e['at_s']:.1f}", state, _f(e.get("convergence_s"), " s"),
                         " / ".join(_f(p.get(k)) for k in ("p50", "p95", "max")) if p else "-",
                         _f(e.get("routes_changed")), _f(e.get("updates_received")),
                         _f(e.get("withdrawals_received")),
                         f"+{e.get('sessions_established', 0)} -{e.get('sessions_lost', 0)} "
                         f"~{e.get('flaps', 0)}" if "sessions_lost" in e else "-",
                         f"{len(bo)} (max {worst:.2f} s)" if bo else "none", _mib(peak)])
        lines.append(_table(["#", "event", "at s", "converged", "time", "per node p50 / p95 / max",
                             "routes changed", "UPDATEs rx", "withdrawals rx", "sessions +up -lost ~flaps",
                             "blackouts", "peak RSS MiB/node"], rows))
        for e in events:
            if e.get("error"):
                lines.append(f"- event {e['index']} ({e['event']}) failed: {e['error']}")
            for n, d in (e.get("not_converged") or {}).items():
                lines.append(f"- event {e['index']} ({e['event']}): {n} missing {d['missing'][:3]}, "
                             f"extra {d['extra'][:3]}")
            for b in (e.get("blackouts") or [])[:10]:
                lines.append(f"- event {e['index']} ({e['event']}): blackout on {b['node']} for {b['route']}: "
                             f"{b['seconds']:.3f} s" + (" (not restored)" if b.get("unrecovered") else ""))
        lines.append("")
    after = report.get("after_converged")
    if after:
        state = "still converged" if after["converged"] else "**NOT converged any more**"
        lines += ["## After converging (kept running)", "",
                  f"Kept running {_f(after.get('seconds'), ' s', 0)} after converging; at the end {state}: "
                  f"{after['sessions_up']}/{after['sessions_expected']} sessions Established, {after['flaps']} "
                  f"session flaps, {after['running']}/{after['nodes']} nodes running.", ""]
        lines += [f"- {change}" for change in after.get("changes", [])]
        lines.append("")
    lines += ["## Nodes", ""]
    rows = []
    for name, n in nodes.items():
        if not n.get("answered"):
            rows.append([name, "-", "-", "-", "-", "-", "-"])
            continue
        up = sum(1 for s in n["sessions"].values() if s["state"] == "up")
        c = n["counters"]
        msgs = f"{c.get('messages_sent', {}).get('update', '-')}/{c.get('messages_received', {}).get('update', '-')}"
        rows.append([name, n.get("engine", "meshsim"), f"{up}/{len(n['sessions'])}",
                     "yes" if n["converged"] else "no", str(n["routes"]),
                     f"{c['updates_sent']}/{c['updates_received']}", msgs, _f(n["cpu_seconds"], digits=3),
                     f"{n['rss_bytes'] / 2**20:.1f}" if n.get("rss_bytes") else "-"])
    lines.append(_table(["node", "engine", "sessions up", "table as expected", "routes", "routes tx/rx",
                         "UPDATE messages tx/rx", "CPU s", "memory MiB"], rows))
    processes = report.get("processes") or {}
    if processes.get("workers"):
        lines += ["", "## Processes", "", f"Measured: {processes.get('measured', '')}", ""]
        lines.append(_table(["worker", "pid", "nodes", "CPU s", "RSS MiB"],
                            [[str(w["index"]), str(w["pid"]), str(len(w["nodes"])), _f(w["cpu_seconds"]),
                              _mib(w["rss_bytes"])] for w in processes["workers"]]))
    if plot_files:
        lines += ["## Plots", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in plot_files] + [""]
    elif plot_files is not None:
        lines += ["(plots need matplotlib: `pip install 'meshsim[plots]'`)", ""]
    return "\n".join(lines)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        return None


def plots(report: dict[str, Any], out: Path) -> list[str]:
    """convergence.png (time per event, cold start first) and per_node.png (distribution per event)."""
    plt = _pyplot()
    if plt is None:
        return []
    out.mkdir(parents=True, exist_ok=True)
    labels, times, dists = [], [], []
    cold = report.get("cold_start", {})
    if cold.get("time_to_converged_s") is not None:
        labels.append("cold start")
        times.append(cold["time_to_converged_s"])
        dists.append(list((cold.get("per_node") or {}).values()))
    for e in report.get("events", []):
        if e.get("waited") is False or e.get("error"):
            continue
        labels.append(f"{e['index']}: {e['event']}")
        times.append(e.get("convergence_s") or 0.0)
        dists.append(list((e.get("per_node") or {}).values()))
    files = []
    if labels:
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) + 2), 4))
        ax.bar(range(len(labels)), times, color="#4477aa")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("seconds to converged")
        ax.set_title(f"{report['scenario']}: convergence per event")
        fig.tight_layout()
        fig.savefig(out / "convergence.png", dpi=100)
        plt.close(fig)
        files.append(str(out / "convergence.png"))
        if any(dists):
            fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) + 2), 4))
            data = [d or [0.0] for d in dists]
            ax.boxplot(data)
            ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=8)
            ax.set_ylabel("seconds, per node")
            ax.set_title(f"{report['scenario']}: per-node convergence")
            fig.tight_layout()
            fig.savefig(out / "per_node.png", dpi=100)
            plt.close(fig)
            files.append(str(out / "per_node.png"))
    return files
