"""The answer `meshsim compare` gives: figures per run, the verdict at the user's size, models per metric,
crossovers and what-if predictions. Pure: dicts in, dicts out (no I/O, no clock).

`run_figures(report)` reads a run's report dict (what `meshsim.run.runner.run_scenario` writes as
report.json, schema meshsim.report.markdown/v1). The keys it reads, and nothing else:
  converged;
  cold_start.{sessions_expected, time_to_established_s, time_to_converged_s, updates_received};
  totals.updates_received;
  nodes.<name>.{answered, cpu_seconds, rss_bytes} plus, when present, the BGP engine's own usage in
    nodes.<name>.exabgp (or .engine).{cpu_seconds, rss_bytes};
  events[].{index, event, action, label, waited, converged, convergence_s, updates_received,
    withdrawals_received, blackouts[].{node, route, seconds, unrecovered}}.
A run missing a key gives None for the figures built from it, never an error.
"""

from __future__ import annotations

import statistics
from typing import Any

from meshsim.report.scaling import (
    MESH,
    RR,
    Model,
    Shape,
    crossovers,
    exact_model,
    first_difference,
    fit,
    lower_everywhere,
)

TIE = 0.05  # measured figures within 5 % of each other are a tie (a shared, noisy machine)

# key, label, unit, kind (exact | rule | fit), exact function or fit terms per design, form text per design
METRICS: list[tuple[str, str, str, str, Any, dict[str, str]]] = [
    ("sessions", "BGP sessions", "", "exact", Shape.sessions,
     {MESH: "N(N-1)/2", RR: "R(R-1)/2 + R(N-R)"}),
    ("cold_advertisements", "cold start: prefix advertisements (rule)", "", "rule", Shape.cold_advertisements,
     {MESH: "P(N-1), P = p*N prefixes", RR: "p_c(N-R)*R(N-1) + p_r*R*((N-1) + (R-1)(N-R))"}),
    ("block_advertisements", "prefix advertisements per new block (rule)", "", "rule", Shape.block_advertisements,
     {MESH: "N-1", RR: "R(N-1)"}),
    ("cold_updates_rx", "cold start: UPDATE messages received", "", "fit", {MESH: ["A(N)"], RR: ["A(N)"]}, {}),
    ("rss_mib", "RSS per node (mean)", "MiB", "fit", {MESH: ["1", "N"], RR: ["1", "N"]}, {}),
    ("rss_max_mib", "RSS of the busiest node", "MiB", "fit", {MESH: ["1", "N"], RR: ["1", "N"]}, {}),
    ("rss_total_mib", "RSS, whole cluster", "MiB", "fit", {MESH: ["N", "N^2", "1"], RR: ["N", "N^2", "1"]}, {}),
    ("cpu_s", "CPU seconds, whole run, all nodes", "s", "fit", {MESH: ["N^2", "N", "1"], RR: ["N", "N^2", "1"]}, {}),
    ("cold_converged_s", "cold start: converged", "s", "fit", {MESH: ["1", "N", "N^2"], RR: ["1", "N", "N^2"]}, {}),
]
LABELS = {k: (label, unit) for k, label, unit, *_ in METRICS}


# ------------------------------------------------------------------------------------------------
# One run's figures


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _usage(node: dict[str, Any], key: str) -> float:
    """A node's CPU seconds or memory as its report states them (report v2: the node's own figure, its
    share of its worker's for meshsim nodes, its daemon's for BIRD nodes)."""
    engine = node.get("engine")
    extra = engine.get(key) if isinstance(engine, dict) else None  # report v1 kept the engine apart
    return (_num(node.get(key)) or 0.0) + (_num(extra) or 0.0)


def run_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The figures `compare` uses from one run's report dict (keys listed in the module docstring)."""
    nodes = [n for n in (report.get("nodes") or {}).values() if n.get("answered")]
    cold = report.get("cold_start") or {}
    rss = [_usage(n, "rss_bytes") / 2**20 for n in nodes]
    events: dict[str, dict[str, Any]] = {}
    for e in report.get("events") or []:
        bo = e.get("blackouts") or []
        events[f"{e.get('index')}: {e.get('event')}"] = {
            "action": e.get("action"), "label": e.get("label") or "", "waited": e.get("waited", True),
            "converged": e.get("converged"), "convergence_s": _num(e.get("convergence_s")),
            "updates_rx": _num(e.get("updates_received")), "withdrawals_rx": _num(e.get("withdrawals_received")),
            "blackouts": len(bo), "blackout_max_s": max((b.get("seconds", 0.0) for b in bo), default=0.0),
            "blackout_nodes": len({b.get("node") for b in bo}),
            "unrecovered": sum(1 for b in bo if b.get("unrecovered")),
        }
    expected = _num(cold.get("sessions_expected"))
    return {
        "converged": bool(report.get("converged")),
        "sessions": None if expected is None else expected / 2,
        "cold_established_s": _num(cold.get("time_to_established_s")),
        "cold_converged_s": _num(cold.get("time_to_converged_s")),
        "cold_updates_rx": _num(cold.get("updates_received")),
        "cold_update_messages_rx": _num(cold.get("update_messages_received")),
        "updates_rx": _num((report.get("totals") or {}).get("updates_received")),
        "cpu_s": round(sum(_usage(n, "cpu_seconds") for n in nodes), 2) if nodes else None,
        "rss_mib": round(statistics.mean(rss), 1) if rss else None,
        "rss_max_mib": round(max(rss), 1) if rss else None,
        "rss_total_mib": round(sum(rss), 1) if rss else None,
        "events": events,
        "blackouts": sum(e["blackouts"] for e in events.values()),
        "blackout_max_s": max((e["blackout_max_s"] for e in events.values()), default=0.0),
    }


def _median(values: list[Any]) -> Any:
    vals = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return round(statistics.median(vals), 3) if vals else None


def median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeated runs of one design and size (events field by field)."""
    keys = [k for k in runs[0] if k not in ("events", "converged")]
    out: dict[str, Any] = {k: _median([r.get(k) for r in runs]) for k in keys}
    out["converged"] = all(r["converged"] for r in runs)
    names = list(dict.fromkeys(e for r in runs for e in r["events"]))
    out["events"] = {}
    for name in names:
        evs = [r["events"][name] for r in runs if name in r["events"]]
        merged = {k: _median([e.get(k) for e in evs]) for k in evs[0] if k not in ("action", "label", "waited",
                                                                                   "converged")}
        merged.update(action=evs[0]["action"], label=evs[0]["label"], waited=evs[0]["waited"],
                      converged=all(e.get("converged") for e in evs))
        out["events"][name] = merged
    return out


# ------------------------------------------------------------------------------------------------
# Models, crossovers, predictions


def build_models(shape: Shape, medians: dict[str, dict[str, dict[str, Any]]],
                 counted: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, Model]]:
    """Every metric of METRICS for both designs: exact/rule models checked against the counts, fits on the
    measured medians (sizes as str keys, as in the JSON)."""
    models: dict[str, dict[str, Model]] = {}
    for key, _label, _unit, kind, spec, forms in METRICS:
        models[key] = {}
        for design in (MESH, RR):
            if kind in ("exact", "rule"):
                pts = [(float(n), v[key]) for n, v in (counted.get(design) or {}).items() if v.get(key) is not None]
                form = forms[design]
                if key == "sessions" and (shape.ext_ebgp or shape.ext_ibgp):
                    form += " + e*N (peers outside the cluster)"
                models[key][design] = exact_model(key, design, shape, spec, form, kind, pts)
            else:
                pts = [(float(n), f.get(key)) for n, f in (medians.get(design) or {}).items()]
                models[key][design] = fit(key, design, shape, spec[design], [(n, y) for n, y in pts if y is not None])
    return models


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or min(a, b) <= 0:
        return None
    return max(a, b) / min(a, b)


def lower_of(mesh: float | None, rr: float | None, tie: float = 0.0) -> str | None:
    """'mesh', 'rr', 'tie' (within `tie` relative), or None when a value is missing."""
    if mesh is None or rr is None:
        return None
    if mesh == rr or (min(mesh, rr) > 0 and max(mesh, rr) / min(mesh, rr) - 1 <= tie):
        return "tie"
    return MESH if mesh < rr else RR


def crossover_summary(models: dict[str, dict[str, Model]], up_to: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, pair in models.items():
        if not pair[MESH].predicts or not pair[RR].predicts:
            continue
        xs = crossovers(pair[MESH], pair[RR], up_to)
        out[key] = {"crossovers": [x.to_json() for x in xs],
                    "lower_everywhere": lower_everywhere(pair[MESH], pair[RR], up_to),
                    "from": first_difference(pair[MESH], pair[RR], up_to), "up_to": up_to,
                    "estimate": pair[MESH].kind == "fit"}
    return out


def predictions(models: dict[str, dict[str, Model]], sizes: list[int], largest_measured: float) \
        -> dict[str, dict[str, dict[str, Any]]]:
    """What each model says at each what-if size, with its basis and error."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for n in sizes:
        row: dict[str, dict[str, Any]] = {}
        for key, pair in models.items():
            cell: dict[str, Any] = {}
            for design, m in pair.items():
                v = m.at(n) if m.predicts else None
                cell[design] = None if v is None else round(v, 3)
                cell[f"{design}_rms"] = None if m.rms is None else round(m.rms, 3)
            cell["lower"] = lower_of(cell[MESH], cell[RR])
            r = ratio(cell[MESH], cell[RR])
            cell["ratio"] = None if r is None else round(r, 3)
            cell["basis"] = pair[MESH].kind
            if pair[MESH].kind == "fit" and largest_measured:
                cell["extrapolation"] = round(n / largest_measured, 1)
            row[key] = cell
        out[str(n)] = row
    return out


# ------------------------------------------------------------------------------------------------
# The verdict at the user's size


def _item(key: str, mesh: float | None, rr: float | None, basis: str, **extra: Any) -> dict[str, Any]:
    label, unit = LABELS.get(key, (key, ""))
    label = extra.pop("label", label)
    unit = extra.pop("unit", unit)
    lower = lower_of(mesh, rr, TIE if basis == "measured" else 0.0)
    r = ratio(mesh, rr)
    return {"key": key, "label": label, "unit": unit, "mesh": mesh, "rr": rr, "basis": basis, "lower": lower,
            "ratio": None if r is None else round(r, 2), **extra}


def pod_event(figures: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The first event that adds or removes pods (the timeline's 'pod event')."""
    for name, e in (figures.get("events") or {}).items():
        if e.get("action") in ("add-workloads", "remove-workloads") and e.get("waited", True):
            return name, e
    return None


def migration_summary(figures: dict[str, Any] | None) -> dict[str, Any] | None:
    """The live mesh -> RR migration: blackouts per step and the worst one."""
    if not figures:
        return None
    steps = [{"event": name, "label": e.get("label"), "convergence_s": e.get("convergence_s"),
              "blackouts": e.get("blackouts"), "blackout_max_s": e.get("blackout_max_s"),
              "blackout_nodes": e.get("blackout_nodes"), "unrecovered": e.get("unrecovered")}
             for name, e in figures["events"].items()]
    worst = max(steps, key=lambda s: s["blackout_max_s"] or 0.0, default=None)
    return {"converged": figures.get("converged"), "steps": steps, "blackouts": figures.get("blackouts"),
            "blackout_max_s": figures.get("blackout_max_s"),
            "worst_step": worst["label"] or worst["event"] if worst and worst["blackout_max_s"] else None}


def verdict(n0: int, medians: dict[str, dict[str, dict[str, Any]]], counted: dict[str, dict[str, dict[str, float]]],
            migration: dict[str, Any] | None) -> dict[str, Any]:
    """The short answer at the user's size `n0`: per metric the two designs, which is lower, by how much."""
    key = str(n0)
    m = (medians.get(MESH) or {}).get(key) or {}
    r = (medians.get(RR) or {}).get(key) or {}
    cm = (counted.get(MESH) or {}).get(key) or {}
    cr = (counted.get(RR) or {}).get(key) or {}
    items = [
        _item("sessions", cm.get("sessions"), cr.get("sessions"), "exact",
              per_node={MESH: [cm.get("sessions_client"), cm.get("sessions_busiest")],
                        RR: [cr.get("sessions_client"), cr.get("sessions_busiest")]}),
        _item("block_advertisements", cm.get("block_advertisements"), cr.get("block_advertisements"), "rule"),
    ]
    ev_m, ev_r = pod_event(m), pod_event(r)
    if ev_m and ev_r:
        items.append(_item("pod_event_updates", ev_m[1].get("updates_rx"), ev_r[1].get("updates_rx"), "measured",
                           label=f"UPDATE messages received in event {ev_m[0]}", unit=""))
    items += [
        _item("cold_advertisements", cm.get("cold_advertisements"), cr.get("cold_advertisements"), "rule"),
        _item("cold_updates_rx", m.get("cold_updates_rx"), r.get("cold_updates_rx"), "measured"),
        _item("cold_converged_s", m.get("cold_converged_s"), r.get("cold_converged_s"), "measured"),
        _item("rss_mib", m.get("rss_mib"), r.get("rss_mib"), "measured"),
        _item("rss_max_mib", m.get("rss_max_mib"), r.get("rss_max_mib"), "measured"),
        _item("rss_total_mib", m.get("rss_total_mib"), r.get("rss_total_mib"), "measured"),
        _item("cpu_s", m.get("cpu_s"), r.get("cpu_s"), "measured"),
    ]
    wins = {MESH: [i["key"] for i in items if i["lower"] == MESH], RR: [i["key"] for i in items if i["lower"] == RR],
            "tie": [i["key"] for i in items if i["lower"] == "tie"]}
    return {"size": n0, "items": items, "lower_on": wins, "migration": migration_summary(migration),
            "converged": {MESH: m.get("converged"), RR: r.get("converged")}}
