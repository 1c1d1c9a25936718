"""The topology picture: who peers with whom (`meshsim peers S --graph FILE`, and report.md's Topology section).

Owns `topology(cluster, status)` (pure: nodes by role, mesh node, route reflector with its cluster ID, RR
client, external peer such as a ToR; one edge per BGP session, coloured by its state when the nodes' live
GET /status is given), `to_dot()` (Graphviz DOT text, no dependency) and the drawing: `write_graph(cluster,
path)` writes .dot itself and .png/.svg with networkx + matplotlib, the optional extra `meshsim[graph]`
(graphviz's `dot` binary is not needed). `markdown_section(cluster, out_dir)` is what a run report embeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from meshsim.errors import MeshsimError

ROLE_COLOURS = {"route reflector": "#d62728", "rr client": "#1f77b4", "mesh node": "#2ca02c",
                "external peer": "#7f7f7f"}
STATE_COLOURS = {"up": "#2ca02c", "start": "#ff7f0e", "down": "#d62728", None: "#555555"}


class GraphError(MeshsimError):
    """The picture cannot be drawn (an unknown file type, or the optional libraries are missing)."""


@dataclass(frozen=True)
class Vertex:
    name: str
    role: str  # route reflector | rr client | mesh node | external peer
    label: str


@dataclass(frozen=True)
class Edge:
    a: str
    b: str
    kind: str  # node-to-node mesh | node specific | global
    rr: bool  # one end is the other's route reflector
    state: str | None = None  # worst of both ends when live: down < start < up


def topology(cluster: Any, status: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[list[Vertex], list[Edge]]:
    sc = cluster.scenario
    peerings = cluster.peerings()
    clients = {p.peer_node for ps in peerings.values() for p in ps if p.rr_client and p.peer_node}
    vertices = []
    for n in sc.nodes:
        if n.rr_cluster_id:
            vertices.append(Vertex(n.name, "route reflector", f"{n.name}\\ncluster {n.rr_cluster_id}"))
        else:
            vertices.append(Vertex(n.name, "rr client" if n.name in clients else "mesh node", n.name))
    externals: dict[str, Vertex] = {}
    states: dict[tuple[str, str], list[str]] = {}
    for node, ps in peerings.items():
        for p in ps:
            other = p.peer_node or f"AS{p.peer_as} {p.peer_address}"
            if p.peer_node is None and other not in externals:
                externals[other] = Vertex(other, "external peer", f"{p.peer_address}\\nAS {p.peer_as}")
            sess = next((s for s in (status or {}).get(node, {}).get("sessions", []) if s.get("name") == p.name), None)
            if sess is not None:
                states.setdefault(_key(node, other), []).append(str(sess.get("state")))
    edges: dict[tuple[str, str], Edge] = {}
    for node, ps in peerings.items():
        for p in ps:
            other = p.peer_node or f"AS{p.peer_as} {p.peer_address}"
            key = _key(node, other)
            seen = states.get(key)
            state = min(seen, key=["down", "start", "up"].index) if seen and status is not None else None
            rr = p.rr_client or (key in edges and edges[key].rr)
            edges[key] = Edge(key[0], key[1], p.type, rr, state)
    return vertices + list(externals.values()), list(edges.values())


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def to_dot(vertices: list[Vertex], edges: list[Edge], name: str = "meshsim") -> str:
    """Graphviz DOT: route reflectors of one cluster ID in one box."""
    lines = [f'graph "{name}" {{', "  layout=neato; overlap=false; splines=true;",
             '  node [shape=ellipse, style=filled, fontcolor=white, fontname="Helvetica"];']
    clusters: dict[str, list[Vertex]] = {}
    for v in vertices:
        if v.role == "route reflector":
            clusters.setdefault(v.label.split("cluster ")[-1], []).append(v)
    for i, (cid, vs) in enumerate(sorted(clusters.items())):
        lines.append(f'  subgraph "cluster_{i}" {{ label="RR cluster {cid}"; ' +
                     " ".join(f'"{v.name}";' for v in vs) + " }")
    for v in vertices:
        shape = ", shape=box" if v.role == "external peer" else ""
        lines.append(f'  "{v.name}" [label="{v.label}", fillcolor="{ROLE_COLOURS[v.role]}"{shape}];')
    for e in edges:
        style = "bold" if e.rr else ("dashed" if e.kind == "global" else "solid")
        label = f', label="{e.state}"' if e.state else ""
        lines.append(f'  "{e.a}" -- "{e.b}" [style={style}, color="{STATE_COLOURS[e.state]}"{label}];')
    return "\n".join(lines) + "\n}\n"


def write_graph(cluster: Any, path: str | Path, status: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    path = Path(path)
    vertices, edges = topology(cluster, status)
    suffix = path.suffix.lower()
    if suffix == ".dot":
        path.write_text(to_dot(vertices, edges, cluster.scenario.name))
        return path
    if suffix not in (".png", ".svg"):
        raise GraphError(f"--graph {path}: unknown picture type {suffix or '(none)'}; expected .png, .svg or .dot")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import networkx as nx
    except ImportError as exc:
        raise GraphError(f"drawing {suffix} needs networkx and matplotlib ({exc.name} is missing): "
                         "pip install 'meshsim[graph]', or write --graph FILE.dot (no dependency)") from None
    g = nx.Graph()
    for v in vertices:
        g.add_node(v.name)
    for e in edges:
        g.add_edge(e.a, e.b)
    shells = [[v.name for v in vertices if v.role == r] for r in ("route reflector",)]
    shells.append([v.name for v in vertices if v.role in ("rr client", "mesh node")])
    shells.append([v.name for v in vertices if v.role == "external peer"])
    pos = nx.shell_layout(g, [s for s in shells if s])
    size = 6 + len(vertices) * 0.15
    fig, ax = plt.subplots(figsize=(size, size))
    for e in edges:
        (x1, y1), (x2, y2) = pos[e.a], pos[e.b]
        ax.plot([x1, x2], [y1, y2], color=STATE_COLOURS[e.state], lw=2.2 if e.rr else 0.9,
                ls="--" if e.kind == "global" else "-", alpha=0.8, zorder=1)
    for role, colour in ROLE_COLOURS.items():
        names = [v.name for v in vertices if v.role == role]
        if names:
            nx.draw_networkx_nodes(g, pos, nodelist=names, node_color=colour, node_size=900,
                                   node_shape="s" if role == "external peer" else "o", ax=ax, label=role)
    nx.draw_networkx_labels(g, pos, labels={v.name: v.label.replace("\\n", "\n") for v in vertices}, font_size=7,
                            ax=ax, bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
    title = f"{cluster.scenario.name}: {len(vertices)} speakers, {len(edges)} BGP sessions"
    if status is not None:
        up = sum(e.state == "up" for e in edges)
        title += f" ({up} up)"
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, markerscale=0.5, frameon=False)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def markdown_section(cluster: Any, out_dir: str | Path, status: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """report.md's Topology section: writes topology.svg into `out_dir` (or topology.dot without networkx and
    matplotlib) and returns the Markdown that shows it."""
    out_dir = Path(out_dir)
    vertices, edges = topology(cluster, status)
    roles = ", ".join(f"{sum(v.role == r for v in vertices)} {r}s" for r in ROLE_COLOURS
                      if any(v.role == r for v in vertices))
    text = f"## Topology\n\n{len(edges)} BGP sessions between {roles}.\n\n"
    try:
        write_graph(cluster, out_dir / "topology.svg", status)
        return text + "![topology](topology.svg)\n"
    except GraphError:
        (out_dir / "topology.dot").write_text(to_dot(vertices, edges, cluster.scenario.name))
        return text + "`topology.dot` (render it with Graphviz; `pip install 'meshsim[graph]'` draws topology.svg)\n"
