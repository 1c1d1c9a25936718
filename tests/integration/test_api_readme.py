"""The README's example test runs as written: copied out of README.md (the blocks after `<!-- example: NAME -->`)
and run with pytest, once with this checkout's environment and once in a clean venv where only `meshsim[pytest]`
is installed, from the wheel `python -m build` makes, offline from ./wheelhouse (scripts/wheelhouse.sh fills it,
with EXTRAS=pytest for pytest's wheels; needs the package index once when they are missing).

Integration (the example starts real node processes on 127.x): run it under the lock."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / "wheelhouse"
pytestmark = [pytest.mark.integration]


def readme_examples() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    found = dict(re.findall(r"<!-- example: (\S+) -->\n```\w*\n(.*?)\n```", text, re.S))
    assert set(found) == {"test_calico_cluster.py", "pytest.ini"}, set(found)
    return found


def copy_examples(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for name, body in readme_examples().items():
        (where / name).write_text(body + "\n")
    return where


def run_pytest(python: Path | str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MESHSIM_"))}
    return subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_readme_example_is_complete_and_passes(tmp_path: Path) -> None:
    work = copy_examples(tmp_path / "work")
    r = run_pytest(sys.executable, work)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]


def sh(*argv: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    r = subprocess.run([str(a) for a in argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(map(str, argv))} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_the_readme_example_passes_in_a_clean_venv_with_only_meshsim_pytest(tmp_path: Path) -> None:
    pytest.importorskip("build", reason="the `build` package (pip install -e '.[test]')")
    wanted = ("pytest-", "pytest_asyncio-", "pluggy-", "iniconfig-", "pyyaml-", "setuptools-")
    if not all(list(WHEELHOUSE.glob(f"{w}*.whl")) for w in wanted):
        sh("bash", ROOT / "scripts" / "wheelhouse.sh", env={**os.environ, "EXTRAS": "pytest"}, cwd=ROOT)
    dist = tmp_path / "dist"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE)}
    sh(sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT, env=env)
    (wheel,) = dist.glob("meshsim-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    sh(env_dir / "bin" / "pip", "install", "-q", "--disable-pip-version-check", "--no-index", "--find-links",
       WHEELHOUSE, f"{wheel}[pytest]")
    installed = sh(env_dir / "bin" / "pip", "list", "--format=freeze")
    assert "pytest-asyncio==" in installed and "matplotlib" not in installed and "hypothesis" not in installed
    work = copy_examples(tmp_path / "work")  # outside the checkout: only the installed package is importable
    r = run_pytest(env_dir / "bin" / "python", work)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]
