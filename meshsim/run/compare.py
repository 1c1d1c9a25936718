"""`meshsim compare`: the user's cluster in both BGP designs, measured side by side, with a verdict.

Owns `plan(...)` (what to run: the cluster as it is, its other design, the live mesh -> RR migration, and
the cluster resized to each `--nodes` size in both designs; every scenario is validated before anything
starts) and `compare(...)` (runs them with `run_scenario`, counts sessions and advertisements on each
cluster model, and writes comparison.json, comparison.md, the plots, designs/*.yaml and runs/*/).
A mesh's other design is route reflectors (`--reflectors K`, chosen by `--reflector-selector` or spread
over zones and subnets by meshsim); a cluster that already runs reflectors is compared with its full mesh.
Sizes count all nodes, reflectors included. The analysis is `meshsim.report.verdict`, the pages
`meshsim.report.comparison`; both read only the report keys listed in `meshsim.report.verdict`.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from meshsim.errors import ScenarioError
from meshsim.logs import get_logger
from meshsim.model.cluster import Cluster
from meshsim.model.designs import (
    MESH,
    RR,
    ReflectorChoice,
    design_of,
    full_mesh_design,
    migration_events,
    pick_reflectors,
    reflectors_of,
    route_reflector_design,
)
from meshsim.model.generate import resized, timeline_nodes
from meshsim.model.loader import load_scenario_text
from meshsim.model.resources import Event, Scenario, load_scenario
from meshsim.model.sources import Sources, derive
from meshsim.model.timeline import parse_timeline
from meshsim.oracle.advertisements import advertisements
from meshsim.report.scaling import Shape
from meshsim.report.verdict import (
    build_models,
    crossover_summary,
    median_figures,
    predictions,
    run_figures,
    verdict,
)

SCHEMA = "meshsim.comparison/v2"
DESIGNS = (MESH, RR)


@dataclass(frozen=True)
class Case:
    """One cluster to run: a design at a size; `files` when it is the user's own files, run as they are."""

    design: str
    size: int
    scenario: Scenario
    reflectors: tuple[str, ...]
    files: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    kind: str = "design"  # design | migration
    docs: Sources | None = None  # what is written to designs/<name>.yaml: the user's documents, changed

    @property
    def name(self) -> str:
        return "mesh-to-rr" if self.kind == "migration" else f"{self.design}-{self.size}"


@dataclass(frozen=True)
class Plan:
    user: Scenario
    files: tuple[str, ...]
    base_design: str
    size: int
    choice: ReflectorChoice
    cases: tuple[Case, ...]

    def case(self, design: str, size: int) -> Case:
        return next(c for c in self.cases if c.kind == "design" and c.design == design and c.size == size)


def _with_events(sc: Scenario, events: list[dict[str, Any]], name: str) -> Scenario:
    evs = tuple(Event(i, e["action"], tuple(e.items())) for i, e in enumerate(events))
    return replace(sc, spec=replace(sc.spec, name=name, events=evs, origin=None))


def _renamed(sc: Scenario, name: str) -> Scenario:
    return replace(sc, spec=replace(sc.spec, name=name))


def _variant(docs: Sources, before: Scenario, after: Scenario, case: str) -> tuple[Scenario, Sources]:
    """`after` written as the user's documents changed where it differs from `before` (which `docs` hold), and
    the scenario those documents load as: what runs is what the file says."""
    out = derive(docs, before, after)
    return load_scenario_text(out.text(), f"designs/{case}.yaml"), out


def plan(files: Sequence[str], *, sizes: Sequence[int] = (), reflectors: int | None = None,
         selector: str | None = None, pods: int | None = None, migration: bool = True) -> Plan:
    """Everything `compare` will run, built and validated (a bad timeline or size fails here). Every design
    is the user's own documents with the design's changes made (meshsim.model.sources): the services,
    filters, passwords, IPAM state and unmodelled fields of the user's files stay as they are."""
    paths = [str(f) for f in files]
    user = load_scenario(paths)
    docs = Sources.read(paths)
    base = design_of(user)
    n0 = len(user.nodes)
    if base == MESH:
        choice = pick_reflectors(user, reflectors, selector, avoid=timeline_nodes(user))
        mesh_v, mesh_docs = user, docs
        rr_v, rr_docs = _variant(docs, user, route_reflector_design(user, choice.names), f"{RR}-{n0}")
    else:
        if reflectors is not None or selector is not None:
            raise ScenarioError("<command line>", "the cluster already runs route reflectors "
                                f"({', '.join(reflectors_of(user))}); it is compared with its full mesh",
                                field="--reflectors" if reflectors is not None else "--reflector-selector",
                                expected="no --reflectors / --reflector-selector for a route-reflector cluster")
        choice = ReflectorChoice(reflectors_of(user), "the cluster's own route reflectors")
        mesh_v, mesh_docs = _variant(docs, user, full_mesh_design(user), f"{MESH}-{n0}")
        rr_v, rr_docs = user, docs
    cluster_id = next(n.rr_cluster_id for n in rr_v.nodes if n.rr_cluster_id is not None)
    r = len(choice.names)
    cases = [Case(base, n0, user, choice.names if base == RR else (), files=tuple(paths))]
    other = RR if base == MESH else MESH
    o_sc, o_docs = (rr_v, rr_docs) if other == RR else (mesh_v, mesh_docs)
    o_sc, o_docs = _variant(o_docs, o_sc, _renamed(o_sc, f"{user.name}-{other}"), f"{other}-{n0}")
    cases.append(Case(other, n0, o_sc, choice.names if other == RR else (), docs=o_docs))
    if migration:
        mig = _with_events(mesh_v, migration_events(mesh_v, rr_v, rr_docs), f"{user.name}-mesh-to-rr")
        mig, mig_docs = _variant(mesh_docs, mesh_v, mig, "mesh-to-rr")
        cases.append(Case(RR, n0, mig, choice.names, kind="migration", docs=mig_docs))
    named = timeline_nodes(user)
    for n in sorted(set(sizes) - {n0}):
        if n <= r:
            raise ScenarioError("<command line>", f"a size must hold the {r} route reflectors and a client",
                                field="--nodes", expected=f"sizes above {r}", got=n)
        gen = resized(mesh_v, n, first=choice.names, pods=pods)
        mesh_n, mesh_n_docs = _variant(mesh_docs, mesh_v, _renamed(gen.scenario, f"{user.name}-mesh-{n}"),
                                       f"{MESH}-{n}")
        pick = pick_reflectors(mesh_n, r, selector if base == MESH else None, prefer=choice.names, avoid=named)
        rr_n, rr_n_docs = _variant(mesh_n_docs, mesh_n, _renamed(route_reflector_design(mesh_n, pick.names,
                                                                                         cluster_id),
                                                                  f"{user.name}-rr-{n}"), f"{RR}-{n}")
        cases += [Case(MESH, n, mesh_n, (), notes=gen.notes, docs=mesh_n_docs),
                  Case(RR, n, rr_n, pick.names, notes=gen.notes, docs=rr_n_docs)]
    for c in cases:
        parse_timeline(c.scenario)
        Cluster.build(c.scenario)
    return Plan(user, tuple(paths), base, n0, choice, tuple(cases))


MAX_HEADER_CHANGES = 12


def _header(p: Plan, c: Case) -> str:
    lines = [f"Generated by `meshsim compare {' '.join(p.files)}`: the cluster "]
    if c.kind == "migration":
        lines[0] += "as a full mesh, with a timeline that migrates it live to route reflectors in the order of"
        lines.append("Calico's docs (BGPPeer, then each reflector Node, then nodeToNodeMeshEnabled false).")
    elif c.size == p.size:
        lines[0] += f"as {'route reflectors' if c.design == RR else 'a full mesh'}."
    else:
        lines[0] += f"resized to {c.size} nodes (copies of its nodes; its timeline replayed by position),"
        lines.append(f"as {'route reflectors' if c.design == RR else 'a full mesh'}.")
    if c.reflectors:
        lines.append(f"Route reflectors: {', '.join(c.reflectors)} ({p.choice.how}).")
    lines += [f"Note: {n}." for n in c.notes]
    if c.docs is not None:
        lines.append("These are the documents of your files, each under a comment naming where it came from; "
                     "meshsim changed only:")
        changes = list(c.docs.changes)
        lines += [f"  - {x}" for x in changes[:MAX_HEADER_CHANGES]]
        if len(changes) > MAX_HEADER_CHANGES:
            lines.append(f"  - and {len(changes) - MAX_HEADER_CHANGES} more (each noted above its document)")
    lines.append("Try: meshsim validate / peers / routes on this file.")
    return "\n".join(lines)


def _counted(c: Case) -> dict[str, float]:
    """Sessions and advertisements counted on the case's cluster model (exact, by the stated rule)."""
    a = advertisements(Cluster.build(c.scenario))
    rrs = set(c.reflectors) if c.design == RR else set()
    clients = [n.name for n in c.scenario.nodes if n.name not in rrs]
    pod_nodes = [dict(e.fields).get("node") for e in c.scenario.spec.events if e.action == "add-workloads"]
    client = next((x for x in pod_nodes if x in clients), clients[0])
    return {"sessions": a.sessions, "cold_advertisements": a.cold.total, "cold_dropped": a.cold.dropped,
            "block_advertisements": a.per_new_block[client].total if a.per_new_block else None,
            "block_node": client,
            "sessions_client": statistics.median(a.sessions_by_node[x] for x in clients),
            "sessions_busiest": max(a.sessions_by_node.values()),
            "prefixes": a.prefixes, "_adv": a}


def shape_of(p: Plan, counted: dict[str, dict[str, dict[str, Any]]]) -> Shape:
    """The cluster's shape at the user's size: reflectors, prefixes per node (per role), outside peers."""
    key = str(p.size)
    am, ar = counted[MESH][key]["_adv"], counted[RR][key]["_adv"]
    rrs = set(p.choice.names)
    clients = [n for n in ar.prefixes_by_node if n not in rrs]
    mean = statistics.mean
    return Shape(reflectors=len(rrs), p_node=am.prefixes / p.size,
                 p_client=mean(ar.prefixes_by_node[n] for n in clients) if clients else 1.0,
                 p_reflector=mean(ar.prefixes_by_node[n] for n in rrs) if rrs else 1.0,
                 ext_ebgp=mean(e for e, _ in ar.external_by_node.values()),
                 ext_ibgp=mean(i for _, i in ar.external_by_node.values()))


async def compare(files: Sequence[str], *, out: Path, sizes: Sequence[int] = (), reflectors: int | None = None,
                  selector: str | None = None, what_if: Sequence[int] = (), repeat: int = 1, timeout: float = 180.0,
                  pods: int | None = None, migration: bool = True, progress: bool = True,
                  runner: Any = None) -> dict[str, Any]:
    """Run every case of `plan(...)` `repeat` times and write the comparison into `out`. `runner` stands in
    for `run_scenario` (same signature; it must write `<out>/report.json`)."""
    from meshsim.report.comparison import write_comparison
    from meshsim.run.runner import run_scenario

    runner = runner or run_scenario

    p = plan(files, sizes=sizes, reflectors=reflectors, selector=selector, pods=pods, migration=migration)
    out.mkdir(parents=True, exist_ok=True)
    (out / "designs").mkdir(exist_ok=True)
    paths: dict[str, list[str]] = {}
    shown: dict[str, list[str]] = {}  # as the report names them: the user's files, or relative to `out`
    for c in p.cases:
        if c.files:
            paths[c.name] = shown[c.name] = list(c.files)
            continue
        path = out / "designs" / f"{c.name}.yaml"
        assert c.docs is not None
        path.write_text(c.docs.text(header=_header(p, c)))
        paths[c.name] = [str(path)]
        shown[c.name] = [f"designs/{c.name}.yaml"]
    counted: dict[str, dict[str, dict[str, Any]]] = {MESH: {}, RR: {}}
    for c in p.cases:
        if c.kind == "design":
            counted[c.design][str(c.size)] = _counted(c)
    shape = shape_of(p, counted)
    data: dict[str, Any] = {
        "schema": SCHEMA, "files": list(p.files), "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cluster": {"name": p.user.name, "design": p.base_design, "size": p.size, "nodes": [
            {"name": n.name, "address": str(n.address), "subnet": str(n.subnet), "labels": dict(n.labels),
             "role": "reflector" if n.name in p.choice.names else "client"} for n in p.user.nodes]},
        "reflectors": {"names": list(p.choice.names), "how": p.choice.how, "count": len(p.choice.names)},
        "designs": shown,
        "sizes": sorted({c.size for c in p.cases}), "what_if": sorted(set(what_if)), "repeat": repeat,
        "notes": sorted({n for c in p.cases for n in c.notes}),
        "counted": {d: {n: {k: v for k, v in f.items() if not k.startswith("_")} for n, f in by.items()}
                    for d, by in counted.items()},
        "shape": asdict(shape), "runs": [],
    }
    figures: dict[str, list[dict[str, Any]]] = {c.name: [] for c in p.cases}
    try:
        for c in p.cases:
            for r in range(repeat):
                run_dir = out / "runs" / f"{c.name}-{r + 1}"
                t0 = time.monotonic()
                fig, error, interrupted = await _one_run(runner, paths[c.name], run_dir, timeout)
                figures[c.name].append(fig)
                data["runs"].append({"case": c.name, "design": c.design, "nodes": c.size, "kind": c.kind,
                                     "repeat": r + 1, "dir": str(run_dir.relative_to(out)),
                                     "wall_s": round(time.monotonic() - t0, 1), "error": error,
                                     **{k: v for k, v in fig.items() if k != "events"}})
                if progress:
                    print(f"  {c.name:>12} run {r + 1}/{repeat}: "
                          f"{'converged' if fig['converged'] else 'NOT converged'}, cold {fig['cold_converged_s']} s, "
                          f"{fig['sessions'] or 0:.0f} sessions, {fig['blackouts']} blackouts", file=sys.stderr)
                if interrupted:  # Ctrl-C or SIGTERM: the runner ended that run cleanly; the comparison ends with it
                    raise asyncio.CancelledError
    except BaseException:  # Ctrl-C or a failure: write what was measured so far, then let it through
        data["interrupted"] = True
        raise
    finally:
        _analyse(data, p, figures, counted, shape)
        write_comparison(data, out)
    return data


async def _one_run(runner: Any, files: list[str], run_dir: Path, timeout: float
                   ) -> tuple[dict[str, Any], str | None, bool]:
    """One run's figures, its error, and whether it was interrupted (the runner takes Ctrl-C / SIGTERM, stops
    its nodes and returns what it measured; the caller then stops too). A run that fails without a report (a
    bug in a node or the engine) is recorded as not converged, so the runs after it still happen."""
    interrupted = False
    try:
        result = await runner(files, out=run_dir, progress=False, timeout=timeout)
        error, interrupted = result.error, result.interrupted
    except Exception as exc:  # noqa: BLE001 - one broken run must not lose the others
        get_logger(component="compare").error("run_failed", run=run_dir.name, error=repr(exc))
        error = f"{type(exc).__name__}: {exc}"
    report = run_dir / "report.json"
    fig = run_figures(json.loads(report.read_text()) if report.exists() else {})
    return fig, error, interrupted


def _analyse(data: dict[str, Any], p: Plan, figures: dict[str, list[dict[str, Any]]],
             counted: dict[str, dict[str, dict[str, Any]]], shape: Shape) -> None:
    medians: dict[str, dict[str, Any]] = {MESH: {}, RR: {}}
    for c in p.cases:
        if c.kind == "design" and figures[c.name]:
            medians[c.design][str(c.size)] = median_figures(figures[c.name])
    mig = figures.get("mesh-to-rr")
    data["medians"] = medians
    data["migration"] = median_figures(mig) if mig else None
    clean = {d: {n: {k: v for k, v in f.items() if not k.startswith("_")} for n, f in by.items()}
             for d, by in counted.items()}
    models = build_models(shape, medians, clean)
    measured = [c.size for c in p.cases if figures[c.name]]
    up_to = max([5000, *data["what_if"]])
    data["models"] = {k: {d: m.to_json() for d, m in pair.items()} for k, pair in models.items()}
    data["crossovers"] = crossover_summary(models, up_to)
    data["predictions"] = predictions(models, data["what_if"], max(measured, default=0))
    data["verdict"] = verdict(p.size, medians, clean, data["migration"])
    data["_models"] = models  # for the plots; not written to comparison.json
