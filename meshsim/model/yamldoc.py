"""Reading multi-document YAML with positions, for errors that name file, document, field and line.

Owns: `read_documents(path) -> list[Doc]` and `Doc`, a typed accessor over one document
whose every failure raises `ScenarioError` with the dotted field path and its line.
Pure: no asyncio, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from pathlib import Path
from typing import Any, Iterable

import yaml

from meshsim.errors import ScenarioError

Lines = dict[tuple[str | int, ...], int]


def _plain(node: yaml.Node, path: tuple[str | int, ...], lines: Lines, where: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ScenarioError(where, "a mapping key must be a plain string", line=key_node.start_mark.line + 1)
            key = str(yaml.SafeLoader("").construct_scalar(key_node))
            if key in out:
                raise ScenarioError(
                    where,
                    f"duplicate key {key!r}",
                    field=".".join(str(p) for p in (*path, key)),
                    line=key_node.start_mark.line + 1,
                )
            out[key] = _plain(value_node, (*path, key), lines, where)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*path, i), lines, where) for i, item in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    return loader.construct_object(node, deep=True)


def read_documents(path: str | Path) -> list["Doc"]:
    """All non-empty documents of one YAML file, each with its line table."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(where, "file not found") from None
    except IsADirectoryError:
        raise ScenarioError(where, "is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(where, f"cannot read file: {exc}") from None
    docs: list[Doc] = []
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=yaml.SafeLoader), start=1):
            if node is None:
                continue
            lines: Lines = {}
            data = _plain(node, (), lines, where)
            docs.append(Doc(where, index, data, lines))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ScenarioError(where, f"YAML syntax error: {problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(where, f"YAML syntax error: {exc}") from None
    return docs


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(value: Any) -> float | None:
    """'9s', '500ms', '1.5m', '2h' or a bare number of seconds -> seconds; None when unparsable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    m = _DURATION.match(value)
    if not m:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[m.group(2)]
    return float(m.group(1)) * scale


@dataclass
class Doc:
    """One YAML document and typed access to its fields by dotted path."""

    path: str
    index: int
    data: Any
    lines: Lines = field(default_factory=dict)
    kind: str | None = None
    name: str | None = None

    # -- errors -----------------------------------------------------------------
    def error(self, fieldpath: str | None, message: str, expected: str | None = None, got: Any = None) -> ScenarioError:
        line = None
        if fieldpath:
            parts: list[str | int] = [int(p) if p.isdigit() else p for p in fieldpath.split(".")]
            while parts and line is None:
                line = self.lines.get(tuple(parts))
                parts.pop()
        if line is None:
            line = self.lines.get(())
        return ScenarioError(
            self.path, message, doc=self.index, kind=self.kind, name=self.name,
            field=fieldpath, expected=expected, got=got, line=line,
        )

    # -- raw access -------------------------------------------------------------
    def raw(self, fieldpath: str, default: Any = None) -> Any:
        cur: Any = self.data
        for part in fieldpath.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return default
            cur = cur[part]
        return cur

    def has(self, fieldpath: str) -> bool:
        sentinel = object()
        return self.raw(fieldpath, sentinel) is not sentinel

    def check_fields(self, fieldpath: str, allowed: Iterable[str]) -> dict[str, Any]:
        """The mapping at `fieldpath` (or {} if absent); unknown keys are errors."""
        value = self.data if fieldpath == "" else self.raw(fieldpath, None)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(fieldpath or None, "must be a mapping", got=value)
        allowed = list(allowed)
        for key in value:
            if key not in allowed:
                full = f"{fieldpath}.{key}" if fieldpath else key
                raise self.error(full, f"unknown field {key!r}", expected="one of " + ", ".join(allowed))
        return value

    # -- typed getters ------------------------------------------------------------
    def string(self, fieldpath: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.raw(fieldpath, None)
        if value is None:
            if required:
                raise self.error(fieldpath, "is required", expected="a string")
            return default
        if not isinstance(value, str):
            raise self.error(fieldpath, "must be a string", expected="a string", got=value)
        return value

    def boolean(self, fieldpath: str, default: bool) -> bool:
        value = self.raw(fieldpath, None)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(fieldpath, "must be true or false", expected="true or false", got=value)
        return value

    def integer(self, fieldpath: str, default: int | None, lo: int | None = None, hi: int | None = None,
                required: bool = False) -> int | None:
        value = self.raw(fieldpath, None)
        rng = f"an integer {lo}..{hi}" if lo is not None and hi is not None else "an integer"
        if value is None:
            if required:
                raise self.error(fieldpath, "is required", expected=rng)
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            else:
                raise self.error(fieldpath, "must be an integer", expected=rng, got=value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.error(fieldpath, "is out of range", expected=rng, got=value)
        return value

    def choice(self, fieldpath: str, choices: Iterable[str], default: str) -> str:
        choices = list(choices)
        value = self.raw(fieldpath, None)
        if value is None:
            return default
        if value not in choices:
            raise self.error(fieldpath, "is not a valid value", expected=" | ".join(choices), got=value)
        return value

    def network(self, fieldpath: str, required: bool = False) -> IPv4Network | None:
        value = self.raw(fieldpath, None)
        if value is None:
            if required:
                raise self.error(fieldpath, "is required", expected="an IPv4 CIDR like 10.244.0.0/16")
            return None
        try:
            return IPv4Network(str(value), strict=True)
        except ValueError as exc:
            raise self.error(fieldpath, f"is not a valid IPv4 CIDR ({exc})",
                             expected="an IPv4 CIDR like 10.244.0.0/16", got=value) from None

    def address(self, fieldpath: str, required: bool = False) -> IPv4Address | None:
        value = self.raw(fieldpath, None)
        if value is None:
            if required:
                raise self.error(fieldpath, "is required", expected="an IPv4 address")
            return None
        try:
            return IPv4Address(str(value))
        except (AddressValueError, ValueError):
            raise self.error(fieldpath, "is not a valid IPv4 address", expected="an IPv4 address like 192.168.0.81",
                             got=value) from None

    def interface(self, fieldpath: str, required: bool = False) -> tuple[IPv4Address, IPv4Network] | None:
        """'192.168.0.81/24' -> (address, its subnet)."""
        value = self.raw(fieldpath, None)
        if value is None:
            if required:
                raise self.error(fieldpath, "is required", expected="an address with prefix like 192.168.0.81/24")
            return None
        text = str(value)
        if "/" not in text:
            raise self.error(fieldpath, "needs a prefix length (the node's subnet)",
                             expected="an address with prefix like 192.168.0.81/24", got=value)
        try:
            addr_text, plen = text.split("/", 1)
            address = IPv4Address(addr_text)
            subnet = IPv4Network(f"{addr_text}/{plen}", strict=False)
        except (AddressValueError, NetmaskValueError, ValueError):
            raise self.error(fieldpath, "is not a valid address/prefix",
                             expected="an address with prefix like 192.168.0.81/24", got=value) from None
        return address, subnet

    def duration(self, fieldpath: str, default: float | None) -> float | None:
        value = self.raw(fieldpath, None)
        if value is None:
            return default
        seconds = parse_duration(value)
        if seconds is None:
            raise self.error(fieldpath, "is not a valid duration", expected="a duration like 9s, 500ms, 2m", got=value)
        return seconds

    def labels(self, fieldpath: str) -> dict[str, str]:
        value = self.raw(fieldpath, None)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(fieldpath, "must be a mapping of label keys to values", got=value)
        out: dict[str, str] = {}
        for k, v in value.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            if not isinstance(v, (str, int, float)):
                raise self.error(f"{fieldpath}.{k}", "label values must be strings", got=v)
            out[str(k)] = str(v)
        return out
