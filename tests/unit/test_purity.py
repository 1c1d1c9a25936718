"""The domain core stays pure: no asyncio, no sockets or subprocesses, no clock, no adapters.

Pure code is named by folder (`PURE_PACKAGES`) plus a few single modules that sit beside adapters
(`PURE_MODULES`). For every module in them the test reads its imports (absolute and relative, at
any depth, also inside functions) and checks that:
- none is a forbidden standard module (I/O, processes, clocks, threads);
- every meshsim module it imports is itself pure (so a core module cannot reach the adapters through
  a relative import or another module);
- ExaBGP is imported by the one codec module only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "meshsim"
PURE_PACKAGES = ("model", "bgp", "routes", "oracle")
PURE_MODULES = ("meshsim.errors", "meshsim.report.metrics", "meshsim.report.calicoctl", "meshsim.report.birdtable",
                "meshsim.report.birdc", "meshsim.report.birdread", "meshsim.report.scaling",
                "meshsim.engines.bird.confd", "meshsim.engines.bird.inputs", "meshsim.engines.bird.readback")
FORBIDDEN = {"asyncio", "socket", "subprocess", "time", "datetime", "threading", "multiprocessing", "selectors",
             "signal", "uvloop", "structlog", "logging", "os", "shutil", "tempfile"}
CODEC = "meshsim.bgp.codec"
ALLOWED = {CODEC: {"os"}}
"""The codec hides the user's `exabgp*` environment variables while ExaBGP imports (so ExaBGP never reads
them), which needs os.environ; it does no I/O with it."""


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def pure_modules() -> set[str]:
    mods = set(PURE_MODULES)
    for name in all_modules():
        if any(name == f"meshsim.{p}" or name.startswith(f"meshsim.{p}.") for p in PURE_PACKAGES):
            mods.add(name)
    return mods


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every module `path` imports, as absolute dotted names, with the line."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, node.lineno))
            # `from meshsim.bgp import speaker` imports the submodule meshsim.bgp.speaker
            out += [(f"{mod}.{a.name}", node.lineno) for a in node.names if f"{mod}.{a.name}" in all_modules()]
    return out


def test_the_pure_packages_exist_and_say_so():
    for pkg in PURE_PACKAGES:
        init = PKG / pkg / "__init__.py"
        assert init.exists(), f"meshsim/{pkg}/ is listed as pure but has no __init__.py"
        assert "Pure" in (ast.get_docstring(ast.parse(init.read_text())) or ""), \
            f"meshsim/{pkg}/__init__.py should say in its docstring that the package is pure"


@pytest.mark.parametrize("module", sorted(pure_modules()))
def test_pure_module_imports_no_io_no_clock_and_no_adapter(module):
    modules = all_modules()
    pure = pure_modules()
    path = modules[module]
    for imported, line in imports_of(path):
        root = imported.split(".")[0]
        assert root not in FORBIDDEN - ALLOWED.get(module, set()), \
            f"{module} imports {imported} (line {line}): pure code does no I/O"
        if root == "exabgp":
            assert module == CODEC, f"{module} imports exabgp (line {line}): only {CODEC} may"
        if root == "meshsim" and imported in modules:
            assert imported in pure, (f"{module} imports {imported} (line {line}), which is not pure "
                                      f"(pure: the packages {', '.join(PURE_PACKAGES)} and {', '.join(PURE_MODULES)})")


def test_only_the_codec_imports_exabgp():
    users = []
    for name, path in all_modules().items():
        if any(imp.split(".")[0] == "exabgp" for imp, _ in imports_of(path)):
            users.append(name)
    assert set(users) <= {CODEC, "meshsim.engines.exabgp"}, users


def test_the_checker_follows_relative_imports(tmp_path):
    """A pure module reaching an adapter through `from ..agent import x` is caught."""
    fake = PKG / "bgp" / "_purity_probe.py"
    fake.write_text("from ..agent import node\n")
    try:
        assert ("meshsim.agent.node", 1) in imports_of(fake) or ("meshsim.agent", 1) in imports_of(fake)
    finally:
        fake.unlink()
