"""meshsim installs and runs without the repository: `python -m build` makes a wheel and an sdist, each installs
offline into a fresh venv from the wheelhouse (scripts/wheelhouse.sh), and the installed command validates and
runs a scenario it ships (`meshsim examples --copy`), from a folder outside the checkout.

Integration (the run starts real node processes on 127.x): run it under the lock. Needs the package index once
to fill ./wheelhouse if it is empty (as the compose end-to-end tests do)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / "wheelhouse"
pytestmark = [pytest.mark.integration]


def sh(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    r = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, argv))} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build", reason="the `build` package (pip install -e '.[test]')")
    if not list(WHEELHOUSE.glob("pyyaml-*.whl")) or not list(WHEELHOUSE.glob("setuptools-*.whl")):
        sh("bash", ROOT / "scripts" / "wheelhouse.sh", cwd=ROOT)
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE)}
    sh(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, ROOT, env=env)
    return out


def fresh_venv(where: Path, artefact: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    pip = where / "bin" / "pip"
    sh(pip, "install", "-q", "--disable-pip-version-check", "--no-index", "--find-links", WHEELHOUSE, artefact)
    return where / "bin" / "meshsim"


def test_wheel_installs_offline_and_runs_a_packaged_scenario(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("meshsim-*.whl")
    meshsim = fresh_venv(tmp_path / "venv", wheel)
    work = tmp_path / "work"  # outside the checkout: nothing of the repository is on the path
    work.mkdir()
    listing = sh(meshsim, "examples", cwd=work)
    assert "three-node-ipip.yaml" in listing and "golden/ipip-always-c1.yaml" in listing
    sh(meshsim, "examples", "--copy", "ex", cwd=work)
    assert "OK (scenario three-node-ipip" in sh(meshsim, "validate", "ex/three-node-ipip.yaml", cwd=work)
    sh(meshsim, "run", "ex/three-node-ipip.yaml", "--out", "out", "--timeout", "90", cwd=work, timeout=300)
    assert (work / "out" / "report.json").exists() and (work / "out" / "routes" / "node1.ip").exists()
    # compose outside a checkout: the image builds from the packaged Dockerfile and the wheelhouse
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for w in [wheel, *WHEELHOUSE.glob("*.whl")]:
        if not w.name.startswith("meshsim-") or w == wheel:
            (wheels / w.name).write_bytes(w.read_bytes())
    sh(meshsim, "compose", "ex/compose-mesh.yaml", "-o", "docker-compose.yml", "--wheelhouse", wheels, cwd=work)
    text = (work / "docker-compose.yml").read_text()
    assert "dockerfile: Dockerfile.meshsim" in text and (wheels / "Dockerfile.meshsim").exists()


def test_sdist_installs_offline_and_validates(dist: Path, tmp_path: Path) -> None:
    (sdist,) = dist.glob("meshsim-*.tar.gz")
    meshsim = fresh_venv(tmp_path / "venv", sdist)
    out = sh(meshsim, "examples", cwd=tmp_path)
    assert "rr-2x6.yaml" in out
    sh(meshsim, "examples", "--copy", "ex", cwd=tmp_path)
    assert "OK (scenario rr-2x6" in sh(meshsim, "validate", "ex/rr-2x6.yaml", cwd=tmp_path)
