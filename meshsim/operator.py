"""The operator's views behind the command line: `-o json|yaml|wide`, `meshsim show`, `meshsim examples`.

Owns `emit()` (a view's data as JSON or YAML on stdout), `show()` (birdc's output for a running node: from its
JSON views for a meshsim node, from its BIRD control socket for an `implementation: bird` node) and the
shipped examples (`examples()`: list or copy the scenarios packaged in meshsim/examples). meshsim.cli parses the
arguments and calls these.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import yaml

from meshsim.errors import MeshsimError, RunError


def emit(data: Any, fmt: str) -> None:
    """Print `data` as `-o json` or `-o yaml` prints it (both load back to the same data)."""
    if fmt == "json":
        print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), end="")


# ----------------------------------------------------------------------------------------------
# meshsim show NODE protocols|route|status


def show(files: Sequence[str] | None, node: str, words: Sequence[str], *, dialect: str = "bird1",
         output: str | None = None, run: str | None = None) -> str:
    """What `birdcl show WORDS` prints on `node` (BIRD 1.6 as Calico's calico-node runs it, or BIRD 2), or its
    data with `output` json/yaml. The node is found through its run's record (`run`, else the run of `files`,
    else the only run up)."""
    from meshsim.model.cluster import Cluster
    from meshsim.model.resources import load_scenario
    from meshsim.report.birdc import Clock, parse_command, render
    from meshsim.report.birdtable import bird_state, node_facts
    from meshsim.report.views import show_data
    from meshsim.run.client import birdc, fetch_views, find_run

    command = parse_command(words)
    rec = find_run(files, run)
    cluster = Cluster.build(load_scenario(rec.files))
    facts = node_facts(cluster, node)
    views = fetch_views(files, node, run=rec.name)
    status = views["status"]
    clock = Clock(time.time(), time.localtime)
    version = None
    if status.get("implementation") == "bird":
        sock = status.get("control_socket")
        if not sock:
            raise RunError("this BIRD node does not say where its control socket is (GET /status has no "
                           "control_socket)", node=node)
        banner, _ = birdc(sock, "show status")
        if dialect == "bird2" and output in (None, "wide"):
            text = " ".join(["show", *words] if words[0] != "show" else words)
            return banner + "\n" + birdc(sock, text)[1]
        from meshsim.report.birdread import state_from_bird

        state = state_from_bird(facts, birdc(sock, "show status")[1], birdc(sock, "show protocols all")[1],
                                birdc(sock, "show route all")[1], clock)
        version = banner.split()[1] if dialect == "bird2" and len(banner.split()) > 1 else None
    else:
        state = bird_state(facts, status, views["rib"], views["routes"])
    if output in ("json", "yaml"):
        from meshsim.report.views import plain

        return _dump(plain(show_data(state, command, dialect)), output)
    return render(state, command, clock, dialect=dialect, version=version)


def _dump(data: Any, fmt: str) -> str:
    return json.dumps(data, indent=2) + "\n" if fmt == "json" else yaml.safe_dump(data, sort_keys=False)


# ----------------------------------------------------------------------------------------------
# meshsim examples [--copy DIR]


class ExamplesError(MeshsimError):
    """The examples cannot be copied (the folder exists and holds a file of the same name)."""


def examples_root() -> Any:
    """The scenarios shipped inside the package (meshsim/examples, package data)."""
    return resources.files("meshsim") / "examples"


def _walk(root: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            out += _walk(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".yaml"):
            out.append((prefix + entry.name, entry))
    return out


def _summary(text: str) -> str:
    """The first comment line of a scenario file: what it shows."""
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def examples(copy_to: str | None = None, *, force: bool = False) -> str:
    files = _walk(examples_root())
    if copy_to is None:
        width = max(len(n) for n, _ in files)
        lines = [f"{name:<{width}}  {_summary(entry.read_text())}" for name, entry in files]
        return "\n".join(lines) + f"\n\n{len(files)} scenarios; `meshsim examples --copy DIR` copies them, then e.g. " \
            "`meshsim run DIR/three-node-ipip.yaml`\n"
    dest = Path(copy_to)
    clashes = [n for n, _ in files if (dest / n).exists()]
    if clashes and not force:
        raise ExamplesError(f"{dest} already holds {', '.join(clashes[:3])}{' ...' if len(clashes) > 3 else ''}; "
                            "pass --force to overwrite, or name another folder")
    for name, entry in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with resources.as_file(entry) as src:
            shutil.copyfile(src, target)
    return f"copied {len(files)} scenarios to {dest}/\n"


def write(text: str) -> None:
    sys.stdout.write(text)
