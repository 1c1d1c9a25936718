"""Compose files meshsim writes follow the Compose Specification: checked against its JSON schema
(tests/data/compose-spec.json), with no obsolete `version:` key, from a checkout and from a wheelhouse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from meshsim.fabric.composefile import ComposeError, compose_file

jsonschema = pytest.importorskip("jsonschema")
ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())


def check(text: str) -> dict:
    doc = yaml.safe_load(text)
    jsonschema.Draft7Validator(SCHEMA).validate(doc)
    assert "version" not in doc
    return doc


@pytest.mark.parametrize("scenario", ["compose-mesh.yaml", "compose-rr.yaml", "three-node-ipip.yaml"])
def test_generated_files_validate_against_the_compose_spec(scenario: str, tmp_path: Path) -> None:
    doc = check(compose_file([str(ROOT / "scenarios" / scenario)], tmp_path / "docker-compose.yml"))
    assert doc["services"]["controller"]["depends_on"]


def test_the_top_level_file_validates() -> None:
    check((ROOT / "docker-compose.yml").read_text())


def test_a_schema_violation_is_caught() -> None:  # the check can fail
    with pytest.raises(jsonschema.ValidationError):
        check("services:\n  node1:\n    cap_add: NET_ADMIN\n    bogus_key: 1\n")


def test_wheelhouse_context_ships_the_packaged_dockerfile(tmp_path: Path) -> None:
    wheels = tmp_path / "wheelhouse"
    wheels.mkdir()
    (wheels / "meshsim-0.1.0-py3-none-any.whl").write_bytes(b"")
    doc = check(compose_file([str(ROOT / "scenarios" / "compose-mesh.yaml")], tmp_path / "c.yml", wheelhouse=wheels))
    build = doc["x-image"]["build"]
    assert build["context"] == "wheelhouse" and build["dockerfile"] == "Dockerfile.meshsim"
    assert "pip install" in (wheels / "Dockerfile.meshsim").read_text()


def test_an_empty_wheelhouse_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="no meshsim-.*whl"):
        compose_file([str(ROOT / "scenarios" / "compose-mesh.yaml")], tmp_path / "c.yml", wheelhouse=tmp_path)
