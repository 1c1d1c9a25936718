"""The pages of `meshsim compare`: comparison.md (the verdict first, then growth, models, measured tables,
the live migration and the cluster), comparison.json, comparison.png (measured medians against N) and
scaling.png (measured points, model curves, what-if sizes marked).

Owns `write_comparison(data, out)` and `comparison_markdown(data)`; the plots are drawn by
`meshsim.report.comparison_plots` (matplotlib is optional: without it the markdown says so). `data` is what
`meshsim.run.compare` gathers; comparison.json is that dict (schema meshsim.comparison/v2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meshsim.oracle.advertisements import RULE
from meshsim.report.scaling import MESH, RR
from meshsim.report.verdict import LABELS, METRICS

NAMES = {MESH: "full mesh", RR: "route reflectors"}
COEF = {"1": "a", "N": "b", "N^2": "c", "A(N)": "k"}


def _n(v: Any, unit: str = "") -> str:
    """1,997 / 0.413 s / 67.1 MiB / '-'."""
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        text = f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    else:
        text = f"{int(v):,}"
    return f"{text} {unit}".strip()


def _lower(lower: str | None, reflectors: int) -> str:
    return {MESH: "mesh", RR: f"RR ({reflectors})", "tie": "tie", None: "-"}[lower]


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
            + ["| " + " | ".join(r) + " |" for r in rows] + [""])


def _verdict(data: dict[str, Any]) -> list[str]:
    v = data["verdict"]
    r = data["reflectors"]["count"]
    c = data["cluster"]
    other = RR if c["design"] == MESH else MESH
    lines = [f"## Verdict at your size: {c['size']} nodes", "",
             f"Your cluster runs a **{NAMES[c['design']]}**; the other design is **{NAMES[other]}**"
             + (f" with {r} reflectors: {', '.join(data['reflectors']['names'])} ({data['reflectors']['how']})."
                if other == RR else f" (its reflectors {', '.join(data['reflectors']['names'])} become mesh nodes)."),
             f"Lower is better everywhere. Sessions are exact; advertisements follow the rule below; the rest is "
             f"measured here (medians of {data['repeat']} run(s); within 5 % is a tie).", ""]
    rows = []
    for it in v["items"]:
        mesh, rr = _n(it["mesh"], it["unit"]), _n(it["rr"], it["unit"])
        if it["key"] == "sessions" and it.get("per_node"):
            pm, pr = it["per_node"][MESH], it["per_node"][RR]
            mesh += f" ({_n(pm[1])} per node)"
            rr += f" ({_n(pr[0])} per client, {_n(pr[1])} on the busiest)"
        by = f"{it['ratio']:g}x" if it["ratio"] and it["lower"] not in ("tie", None) else "-"
        rows.append([it["label"], mesh, rr, _lower(it["lower"], r), by, it["basis"]])
    lines += _table(["", NAMES[MESH], f"{NAMES[RR]} ({r})", "lower", "by", "basis"], rows)
    mig = v.get("migration")
    if mig:
        if mig["blackouts"]:
            lines.append(f"**Live migration mesh -> RR** (Calico's documented steps, measured): "
                         f"{_n(mig['blackouts'])} route blackouts, the worst {_n(mig['blackout_max_s'], 's')} "
                         f"(during \"{mig['worst_step']}\")" + ("" if mig["converged"] else "; DID NOT CONVERGE")
                         + ". Details below.")
        else:
            lines.append("**Live migration mesh -> RR** (Calico's documented steps, measured): no route was lost "
                         "on any node" + ("" if mig["converged"] else ", but it DID NOT CONVERGE") + ".")
        lines.append("")
    lines += ["**In short:** " + _in_short(data), ""]
    bad = [d for d, ok in v["converged"].items() if ok is False]
    if bad:
        lines += [f"**Did not converge:** {', '.join(NAMES[d] for d in bad)} at {c['size']} nodes "
                  "(see runs/*/report.md); its measured figures are not a fair comparison.", ""]
    return lines


SHORT = {"sessions": "BGP sessions", "block_advertisements": "advertisements per new block",
         "pod_event_updates": "UPDATEs in the pod event", "cold_advertisements": "cold-start advertisements",
         "cold_updates_rx": "cold-start UPDATEs", "cold_converged_s": "cold-start time",
         "rss_mib": "memory per node", "rss_max_mib": "memory of the busiest node", "rss_total_mib": "cluster memory",
         "cpu_s": "CPU"}


def _in_short(data: dict[str, Any]) -> str:
    v = data["verdict"]
    items = {i["key"]: i for i in v["items"]}
    parts = []
    for design in (RR, MESH):
        keys = v["lower_on"][design]
        if keys:
            what = ", ".join(f"{SHORT.get(k, k)} {items[k]['ratio']:g}x ({_n(items[k][design], items[k]['unit'])} "
                             f"vs {_n(items[k][MESH if design == RR else RR], items[k]['unit'])})"
                             if items[k]["ratio"] else SHORT.get(k, k) for k in keys)
            parts.append(f"{NAMES[design]} {'need' if design == RR else 'needs'} less: {what}")
    if v["lower_on"]["tie"]:
        parts.append("a tie on " + ", ".join(SHORT.get(k, k) for k in v["lower_on"]["tie"]))
    text = "; ".join(parts) + "."
    mig = v.get("migration")
    if mig:
        text += (f" Moving there live costs {_n(mig['blackouts'])} route blackouts of up to "
                 f"{_n(mig['blackout_max_s'], 's')}." if mig["blackouts"] else " Moving there live lost no route.")
    grow = []
    for key, cx in (data.get("crossovers") or {}).items():
        if cx["crossovers"]:
            x = cx["crossovers"][-1]
            grow.append(f"{SHORT.get(key, key)}: {NAMES[x['lower_from_here']]} from {x['n']:,} nodes"
                        + (" (estimate)" if cx["estimate"] else ""))
    if grow:
        text += " As the cluster grows, the lower design changes: " + "; ".join(grow) + "."
    if data.get("what_if"):
        n = max(data["what_if"])
        p = data["predictions"][str(n)]
        text += (f" At {n:,} nodes: {_n(p['sessions'][MESH])} vs {_n(p['sessions'][RR])} sessions, "
                 f"{_n(p['block_advertisements'][MESH])} vs {_n(p['block_advertisements'][RR])} advertisements per "
                 "new block (mesh vs RR).")
    return text


def _growth(data: dict[str, Any]) -> list[str]:
    lines = ["## As the cluster grows", ""]
    r = data["reflectors"]["count"]
    for key, cx in (data.get("crossovers") or {}).items():
        label = LABELS[key][0]
        est = " (estimate: fitted on the measured sizes)" if cx["estimate"] else ""
        if cx["crossovers"]:
            text = "; ".join(f"{NAMES[x['lower_from_here']]} lower from {x['n']:,} nodes" for x in cx["crossovers"])
            lines.append(f"- {label}: {text}{est}.")
        elif cx["lower_everywhere"]:
            below = " (within 5 % of each other below)" if cx["estimate"] and cx["from"] > min(data["sizes"]) else ""
            lines.append(f"- {label}: {NAMES[cx['lower_everywhere']]} lower at every size from {cx['from']:,} to "
                         f"{cx['up_to']:,} nodes{below}{est}.")
        else:
            lines.append(f"- {label}: no difference between the designs{est}.")
    lines.append("")
    if not data.get("what_if"):
        lines += ["(`--what-if 500,1000,5000` predicts every metric at sizes too big to run here.)", ""]
        return lines
    sizes = [str(n) for n in data["what_if"]]
    rows = []
    for key, label, unit, kind, *_ in METRICS:
        pair = data["models"][key]
        err = _fit_error(pair)
        cells = [label, kind if kind != "fit" else "estimate", err]
        for n in sizes:
            p = data["predictions"][n][key]
            far = " †" if (p.get("extrapolation") or 0) > 10 and p[MESH] is not None else ""
            cells.append(f"{_n(p[MESH], unit)} / {_n(p[RR], unit)}{far}")
        rows.append(cells)
    lines.append(f"What-if (mesh / RR with {r} reflectors; N counts all nodes):")
    lines.append("")
    lines += _table(["metric", "basis", "fit error on the runs (mesh; RR)"] + [f"N={int(n):,}" for n in sizes], rows)
    if any(m["kind"] == "fit" and m.get("rms") is None for pair in data["models"].values() for m in pair.values()):
        lines += ["Estimates need at least two measured sizes (`--nodes`); '-' marks those this run cannot give.",
                  ""]
    largest = max(data["sizes"])
    lines += [f"Estimates extrapolate from runs of at most {largest} nodes; † marks those more than 10x beyond "
              "(read them as trends and orders of magnitude, not as figures). Sessions are exact and advertisements "
              "exact by the rule at any size.", ""]
    return lines


def _fit_error(pair: dict[str, Any]) -> str:
    out = []
    for d in (MESH, RR):
        m = pair[d]
        if m["kind"] != "fit":
            return "exact" if m["kind"] == "exact" else "by the rule"
        if m.get("rms") is None:
            out.append("unknown")
        else:
            out.append(f"{100 * m['max_rel_error']:.0f} %")
    return "; ".join(out)


def _models(data: dict[str, Any]) -> list[str]:
    lines = ["## Models", "", f"Prefix advertisements are counted by this rule: {RULE}. A real cold start also "
             "sends transient changes, and an UPDATE message packs several prefixes, so the measured UPDATE "
             "messages are fitted as k x the rule's count A(N).", "",
             "Fits: least squares over the stated form with non-negative coefficients (each term is a cost); "
             "fit error = largest |residual| / value on the measured sizes.", ""]
    s = data["shape"]
    lines.append(f"Shape used for every size: R = {s['reflectors']} reflectors; prefixes per node at cold start "
                 f"p = {s['p_node']:.3g} (mesh), p_c = {s['p_client']:.3g} per client, p_r = {s['p_reflector']:.3g} "
                 f"per reflector; peers outside the cluster per node: {s['ext_ebgp']:.3g} eBGP, "
                 f"{s['ext_ibgp']:.3g} iBGP.")
    lines.append("")
    rows = []
    for key, label, unit, *_ in METRICS:
        for d in (MESH, RR):
            m = data["models"][key][d]
            if m["kind"] == "fit":
                coef = ", ".join(f"{COEF[t]} = {c:.4g}" for t, c in zip(m.get("terms", []), m.get("coefficients", [])))
                err = "-" if m.get("rms") is None else f"rms {m['rms']:.3g}{(' ' + unit) if unit else ''}, " \
                                                        f"max {100 * m['max_rel_error']:.1f} %"
                pts = str(len(m.get("points", [])))
            else:
                coef, err, pts = "-", "0 (exact)" if m["kind"] == "exact" else "0 (rule)", "-"
            rows.append([label, NAMES[d], m["form"], coef, pts, err, m.get("note", "")])
    lines += _table(["metric", "design", "form", "coefficients", "sizes", "fit error", "note"], rows)
    return lines


def _measured(data: dict[str, Any]) -> list[str]:
    med = data["medians"]
    sizes = [str(n) for n in data["sizes"]]
    r = data["reflectors"]["count"]
    lines = ["## Measured", "", f"Medians of {data['repeat']} run(s) per design and size; counted = on the "
             "cluster model.", ""]
    rows = []
    counted_keys = [("sessions", "BGP sessions (counted)"), ("cold_advertisements", LABELS["cold_advertisements"][0]),
                    ("block_advertisements", LABELS["block_advertisements"][0])]
    for key, label in counted_keys:
        for n in sizes:
            a = data["counted"].get(MESH, {}).get(n, {}).get(key)
            b = data["counted"].get(RR, {}).get(n, {}).get(key)
            rows.append([label, n, _n(a), _n(b)])
    keys = [("sessions", "BGP sessions (measured)", "")] + [(k, LABELS[k][0], LABELS[k][1]) for k in
                                                            ("cold_updates_rx", "cold_converged_s", "rss_mib",
                                                             "rss_max_mib", "rss_total_mib", "cpu_s")]
    keys.insert(2, ("cold_established_s", "cold start: all sessions Established", "s"))
    keys.append(("updates_rx", "UPDATE messages received, whole run", ""))
    for key, label, unit in keys:
        for n in sizes:
            rows.append([label, n, _n(med[MESH].get(n, {}).get(key), unit), _n(med[RR].get(n, {}).get(key), unit)])
    events = list(dict.fromkeys(e for d in (MESH, RR) for f in med[d].values() for e in f.get("events", {})))
    for e in events:
        for n in sizes:
            a = med[MESH].get(n, {}).get("events", {}).get(e, {})
            b = med[RR].get(n, {}).get("events", {}).get(e, {})
            if a.get("waited") is False:
                continue
            cell = lambda x: (f"{_n(x.get('convergence_s'), 's')}, {_n(x.get('updates_rx'))} UPDATEs"  # noqa: E731
                              + (f", {_n(x.get('blackouts'))} blackouts" if x.get("blackouts") else "")) if x else "-"
            rows.append([f"event {e}", n, cell(a), cell(b)])
    lines += _table(["metric", "N", NAMES[MESH], f"{NAMES[RR]} ({r})"], rows)
    not_conv = [f"{NAMES[d]} N={n}" for d in (MESH, RR) for n in sizes if med[d].get(n, {}).get("converged") is False]
    if not_conv:
        lines += [f"**Did not converge:** {', '.join(not_conv)} (see runs/*/report.md).", ""]
    return lines


def _migration(data: dict[str, Any]) -> list[str]:
    mig = (data.get("verdict") or {}).get("migration")
    if not mig:
        return []
    rows = [[s["label"] or s["event"], _n(s["convergence_s"], "s"), _n(s["blackouts"]),
             _n(s["blackout_max_s"], "s") if s["blackouts"] else "-", _n(s["blackout_nodes"]),
             _n(s["unrecovered"])] for s in mig["steps"]]
    return (["## Live migration mesh -> route reflectors", "",
             f"The cluster as a full mesh, then Calico's documented steps one by one while every node runs "
             f"(`{data['designs'].get('mesh-to-rr', ['designs/mesh-to-rr.yaml'])[0]}`). A blackout is a route a node "
             "should have kept through the step but lost for a while.", ""]
            + _table(["step", "converged in", "blackouts", "worst", "nodes hit", "not restored"], rows))


def _cluster(data: dict[str, Any]) -> list[str]:
    c = data["cluster"]
    lines = ["## Your cluster", "", f"{', '.join(data['files'])}: {c['size']} nodes. Every design meshsim built is a "
             "Calico YAML file you can inspect with `meshsim validate`, `peers` or `routes`:", ""]
    lines += [f"- {name}: `{' '.join(paths)}`" for name, paths in data["designs"].items()]
    lines.append("")
    if data["notes"]:
        lines += ["Generated sizes copy your nodes (labels, subnet, pods; the first copy of a node is that node) and "
                  "replay your timeline by position. Notes: " + "; ".join(data["notes"]) + ".", ""]
    rows = [[n["name"], n["address"], n["subnet"], n["labels"].get("topology.kubernetes.io/zone", "-"),
             "reflector" if n["role"] == "reflector" else "-"] for n in c["nodes"]]
    lines += _table(["node", "address", "subnet", "zone", f"in the {NAMES[RR]} design"], rows)
    return lines


def comparison_markdown(data: dict[str, Any], plot_files: list[str] | None = None) -> str:
    c = data["cluster"]
    lines = [f"# Full mesh or route reflectors? {c['name']}, {c['size']} nodes", ""]
    if data.get("interrupted"):
        lines += ["**INTERRUPTED:** the figures below are what was measured until then.", ""]
    lines += _verdict(data) + _growth(data) + _models(data) + _measured(data) + _migration(data) + _cluster(data)
    if plot_files:
        lines += ["## Plots", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in plot_files] + [""]
    elif plot_files is not None:
        lines += ["(plots need matplotlib: `pip install 'meshsim[plots]'`)", ""]
    lines += ["Each run's own report (tables, per-event figures, plots) is in `runs/<design>-<N>-<repeat>/`.", ""]
    return "\n".join(lines)


def write_comparison(data: dict[str, Any], out: Path) -> None:
    """comparison.json, the plots and comparison.md (a plotting failure never loses the figures)."""
    from meshsim.report.comparison_plots import comparison_plots

    models = data.pop("_models", None)
    (out / "comparison.json").write_text(json.dumps(data, indent=2) + "\n")
    try:
        files = comparison_plots(data, models, out)
    except Exception as exc:  # noqa: BLE001 - the figures matter more than the pictures
        from meshsim.logs import get_logger

        get_logger(component="report").warning("plots_failed", error=str(exc))
        files = []
    (out / "comparison.md").write_text(comparison_markdown(data, files))
