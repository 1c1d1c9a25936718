"""The domain core stays pure: no asyncio, no ExaBGP, no sockets or subprocesses, no clock reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = ["resources", "yamldoc", "selectors", "ipam", "model", "peering", "expected", "felix", "routetable", "trace",
        "rib", "policy", "speaker", "metrics", "bgptypes", "timeline", "generate", "render", "errors", "nodeconfig"]
FORBIDDEN_MODULES = {"asyncio", "exabgp", "socket", "subprocess", "time", "datetime", "threading"}
PKG = Path(__file__).resolve().parents[2] / "meshsim"


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_io_and_reads_no_clock(module):
    tree = ast.parse((PKG / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]] if node.level == 0 else []
        else:
            continue
        bad = FORBIDDEN_MODULES.intersection(names)
        assert not bad, f"meshsim/{module}.py imports {bad} (line {node.lineno})"


def test_only_the_adapter_imports_or_runs_exabgp():
    users = []
    for path in PKG.rglob("*.py"):
        text = path.read_text()
        tree = ast.parse(text)
        imports = any((isinstance(n, ast.Import) and any(a.name.split(".")[0] == "exabgp" for a in n.names))
                      or (isinstance(n, ast.ImportFrom) and n.level == 0 and (n.module or "").startswith("exabgp"))
                      for n in ast.walk(tree))
        if imports or '"server"' in text and "exabgp" in text.lower() and path.name != "exabgp.py":
            users.append(path.name)
    assert users in ([], ["exabgp.py"]), users
