"""The plots of `meshsim compare`: comparison.png (measured medians against N, mesh next to RR) and
scaling.png (per metric: measured or counted points, the model's curve for each design, the what-if
sizes marked with their predictions, crossovers marked).

Axis rule: a linear y-axis starts at 0, so a 1 % difference looks like 1 %; when what-if sizes stretch
the range past 20x, both axes are logarithmic, which shows ratios and again never magnifies a small
difference. Owns `comparison_plots(data, models, out)`; matplotlib is optional.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshsim.report.markdown import _pyplot
from meshsim.report.scaling import MESH, RR, Model
from meshsim.report.verdict import METRICS

STYLE = {MESH: ("#4477aa", "o"), RR: ("#cc6677", "s")}
MEASURED = [("sessions", "BGP sessions", ""), ("cold_converged_s", "cold start: converged", "s"),
            ("cold_updates_rx", "cold start: UPDATEs received", ""), ("cpu_s", "CPU s, whole run", "s"),
            ("rss_mib", "RSS per node", "MiB"), ("rss_total_mib", "RSS, whole cluster", "MiB")]


def _label(data: dict[str, Any], design: str) -> str:
    return "mesh" if design == MESH else f"RR x{data['reflectors']['count']}"


def _measured_plot(plt: Any, data: dict[str, Any], out: Path) -> str | None:
    med = data["medians"]
    events = list(dict.fromkeys(e for d in (MESH, RR) for f in med[d].values() for e, v in f.get("events", {}).items()
                                if v.get("waited") is not False))
    panels = [(k, f"{t} ({u})" if u else t) for k, t, u in MEASURED] + [(f"event:{e}", f"event {e} (s)")
                                                                      for e in events]
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, panels):
        for d in (MESH, RR):
            xs, ys = [], []
            for n in data["sizes"]:
                f = med[d].get(str(n))
                if not f:
                    continue
                v = (f["events"].get(key[6:]) or {}).get("convergence_s") if key.startswith("event:") else f.get(key)
                if v is not None:
                    xs.append(n)
                    ys.append(v)
            color, marker = STYLE[d]
            ax.plot(xs, ys, marker=marker, color=color, label=_label(data, d))
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("nodes (all, reflectors included)", fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("measured medians (y from 0)", fontsize=10)
    fig.tight_layout()
    path = out / "comparison.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def _points(data: dict[str, Any], key: str, design: str, kind: str) -> list[tuple[float, float]]:
    src = data["counted"] if kind in ("exact", "rule") else data["medians"]
    return sorted((float(n), f[key]) for n, f in (src.get(design) or {}).items() if f.get(key) is not None)


def _scaling_plot(plt: Any, data: dict[str, Any], models: dict[str, dict[str, Model]], out: Path) -> str | None:
    sizes = [float(n) for n in data["sizes"]] + [float(n) for n in data["what_if"]]
    lo, hi = max(2.0, min(sizes)), max(sizes)
    log = hi / lo > 20
    grid = sorted({*sizes, *[lo * (hi / lo) ** (i / 80) for i in range(81)]}) if log \
        else [lo + (hi - lo) * i / 80 for i in range(81)]
    cols = 3
    rows = (len(METRICS) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax, (key, label, unit, kind, *_) in zip(axes.flat, METRICS):
        for d in (MESH, RR):
            color, marker = STYLE[d]
            m = models[key][d]
            curve = [(n, m.at(n)) for n in grid]
            curve = [(x, y) for x, y in curve if y is not None and (y > 0 or not log)]
            if curve:
                ax.plot([x for x, _ in curve], [y for _, y in curve], "-" if kind != "fit" else "--", color=color,
                        label=f"{_label(data, d)}: {m.form}", linewidth=1.2)
            pts = [(x, y) for x, y in _points(data, key, d, kind) if y > 0 or not log]
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker, color=color, linestyle="none",
                        label=f"{_label(data, d)} {'counted' if kind != 'fit' else 'measured'}")
            wi = [(n, m.at(n)) for n in data["what_if"]]
            wi = [(x, y) for x, y in wi if y is not None and (y > 0 or not log)]
            if wi:
                ax.plot([x for x, _ in wi], [y for _, y in wi], marker, mfc="none", color=color, linestyle="none")
        for n in data["what_if"]:
            ax.axvline(n, color="#999999", linestyle=":", linewidth=0.8)
        cx = (data.get("crossovers") or {}).get(key, {}).get("crossovers") or []
        for x in cx:
            ax.axvline(x["n"], color="#333333", linestyle="-.", linewidth=0.8)
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        tag = {"exact": "exact", "rule": "by the rule", "fit": "estimate"}[kind]
        ax.set_title(f"{label}{f' ({unit})' if unit else ''}: {tag}", fontsize=9)
        ax.set_xlabel("nodes (all); dotted: what-if sizes", fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(METRICS):]:
        ax.axis("off")
    fig.suptitle("models: points = runs or counts, lines = model, hollow = what-if predictions"
                 + (" (log-log)" if log else " (y from 0)"), fontsize=10)
    fig.tight_layout()
    path = out / "scaling.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def comparison_plots(data: dict[str, Any], models: dict[str, dict[str, Model]] | None, out: Path) -> list[str]:
    plt = _pyplot()
    if plt is None:
        return []
    files = [_measured_plot(plt, data, out)]
    if models:
        files.append(_scaling_plot(plt, data, models, out))
    return [f for f in files if f]
