"""One YAML document and typed access to its fields, every failure a `ScenarioError` naming file, document,
field (dotted path) and line.

Owns `Doc` (raw access, mappings, lists, strings, booleans, bounded integers, choices, IPv4 addresses, networks and
address/prefix pairs, durations, labels) and field paths: dotted text, or tuples when a key holds dots (a node named
`ip-10-0-0-1.ec2.internal`, an annotation `projectcalico.org/IPv4Address`). Lines come from the table the YAML reader
keeps beside the data (meshsim.model.yamldoc). Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from typing import Any, Iterable

from meshsim.errors import ScenarioError
from meshsim.model.durations import parse_duration

MAX_NUMBER_CHARS = 64

# id(container) -> (container, {key: line} for a mapping | [line, ...] for a sequence); the container is kept so
# its id stays valid.
Where = dict[int, tuple[Any, Any]]

FieldPath = str | tuple[str | int, ...]
"""A field's path: dotted text ("spec.bgp.ipv4Address"), or a tuple of parts when a key holds dots
(("spec", "workloads", "ip-10-0-0-1.ec2.internal"))."""


def _parts(fieldpath: FieldPath | None) -> tuple[str | int, ...]:
    if not fieldpath:
        return ()
    if isinstance(fieldpath, tuple):
        return fieldpath
    return tuple(int(p) if p.isdigit() else p for p in fieldpath.split("."))


@lru_cache(maxsize=4096)
def _split(fieldpath: str) -> tuple[str, ...]:
    return tuple(fieldpath.split("."))


def _keys(fieldpath: FieldPath) -> tuple[str | int, ...]:
    """Parts for walking the data: dotted text splits into strings (list indexes are looked up as strings by raw)."""
    if isinstance(fieldpath, tuple):
        return fieldpath
    return _split(fieldpath)


_DOTTED_QUAD = re.compile(r"(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})(?:/(\d{1,2}))?\Z")


def fast_network(text: str, strict: bool = True) -> IPv4Network:
    """IPv4Network(text) for the common "a.b.c.d/n" form without ipaddress's slower general parser (a dump has
    thousands); anything else, or anything out of range, goes through ipaddress and its errors."""
    m = _DOTTED_QUAD.match(text)
    if m:
        octets = [int(g) for g in m.group(1, 2, 3, 4)]
        plen = int(m.group(5)) if m.group(5) is not None else 32
        if max(octets) <= 255 and plen <= 32:
            value = (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]
            if not strict:
                value &= (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
            return IPv4Network((value, plen), strict=strict)
    return IPv4Network(text, strict=strict)


def field_text(fieldpath: FieldPath | None) -> str | None:
    if fieldpath is None or fieldpath == "":
        return None
    if isinstance(fieldpath, tuple):
        return ".".join(str(p) for p in fieldpath)
    return fieldpath


def subpath(fieldpath: FieldPath, *more: str | int) -> FieldPath:
    """`fieldpath` + more parts, staying dotted text when nothing holds a dot."""
    if isinstance(fieldpath, str) and not any(isinstance(m, str) and "." in m for m in more):
        return ".".join([fieldpath, *map(str, more)]) if fieldpath else ".".join(map(str, more))
    return (*_parts(fieldpath), *more)


@dataclass
class Doc:
    """One YAML document and typed access to its fields by dotted path."""

    path: str
    index: int
    data: Any
    where: Where = field(default_factory=dict, repr=False)
    line: int | None = None  # the document's first line
    kind: str | None = None
    name: str | None = None

    # -- positions --------------------------------------------------------------
    def line_of(self, parts: Iterable[str | int]) -> int | None:
        """The line of the deepest field along `parts` that exists (the document's first line if none)."""
        line = None
        cur: Any = self.data
        for part in parts:
            entry = self.where.get(id(cur))
            if entry is None or entry[0] is not cur:
                break
            if isinstance(cur, dict):
                if part not in cur:
                    break
                line = entry[1].get(part, line)
                cur = cur[part]
            elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
                line = entry[1][part]
                cur = cur[part]
            else:
                break
        if line is None:
            entry = self.where.get(id(self.data))
            if entry is not None and entry[0] is self.data and isinstance(self.data, dict) and entry[1]:
                line = min(entry[1].values())
        return line if line is not None else self.line

    def derived(self, data: Any, original: Any) -> "Doc":
        """A document made from `original` (a list item) with a few keys added: `data` is a copy of it, and its
        fields keep their lines."""
        where = self.where
        entry = where.get(id(original))
        if entry is not None and entry[0] is original and data is not original:
            where[id(data)] = (data, entry[1])
        return Doc(self.path, self.index, data, where, line=self.line_of(()))

    # -- errors -----------------------------------------------------------------
    def error(self, fieldpath: FieldPath | None, message: str, expected: str | None = None,
              got: Any = None) -> ScenarioError:
        return ScenarioError(
            self.path, message, doc=self.index, kind=self.kind, name=self.name,
            field=field_text(fieldpath), expected=expected, got=got, line=self.line_of(_parts(fieldpath)),
        )

    # -- raw access -------------------------------------------------------------
    def raw(self, fieldpath: FieldPath, default: Any = None) -> Any:
        cur: Any = self.data
        for part in _keys(fieldpath):
            if type(cur) is dict:
                if part not in cur:
                    return default
                cur = cur[part]
            elif isinstance(cur, list) and isinstance(part, (str, int)) and str(part).isdigit() \
                    and int(part) < len(cur):
                cur = cur[int(part)]
            else:
                return default
        return cur

    def has(self, fieldpath: FieldPath) -> bool:
        sentinel = object()
        return self.raw(fieldpath, sentinel) is not sentinel

    def check_fields(self, fieldpath: FieldPath, allowed: Iterable[str]) -> dict[str, Any]:
        """The mapping at `fieldpath` (or {} if absent); unknown keys are errors."""
        value = self.data if fieldpath in ("", ()) else self.raw(fieldpath, None)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(fieldpath or None, "must be a mapping", got=value)
        allowed = allowed if isinstance(allowed, (set, frozenset, dict)) else list(allowed)
        for key in value:
            if key not in allowed:
                full = subpath(fieldpath, key) if fieldpath not in ("", ()) else str(key)
                raise self.error(full, f"unknown field {str(key)[:80]!r}",
                                 expected="one of " + ", ".join(sorted(allowed)))
        return value

    def mapping(self, fieldpath: FieldPath) -> dict[str, Any]:
        """The mapping at `fieldpath`, {} when absent or null; anything else is an error."""
        value = self.raw(fieldpath, None)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(fieldpath, "must be a mapping", got=value)
        return value

    def sequence(self, fieldpath: FieldPath) -> list[Any]:
        """The list at `fieldpath`, [] when absent or null; anything else is an error."""
        value = self.raw(fieldpath, None)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(fieldpath, "must be a list", got=value)
        return value

    # -- typed getters ------------------------------------------------------------
    def string(self, fieldpath: FieldPath, default: str | None = None, required: bool = False) -> str | None:
        value = self.raw(fieldpath, None)
        if value is None:
            if required:
                raise self.error(fieldpath, "is required", expected="a string")
            return default
        if not isinstance(value, str):
            raise self.error(fieldpath, "must be a string", expected="a string", got=value)
        return value

    def boolean(self, fieldpath: FieldPath, default: bool) -> bool:
        value = self.raw(fieldpath, None)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(fieldpath, "must be true or false", expected="true or false", got=value)
        return value

    def integer(self, fieldpath: FieldPath, default: int | None, lo: int | None = None, hi: int | None = None,
                required: bool = False) -> int | None:
        value = self.raw(fieldpath, None)
        rng = f"an integer {lo}..{hi}" if lo is not None and hi is not None else "an integer"
        if value is None:
            if required:
                raise self.error(fieldpath, "is required", expected=rng)
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= MAX_NUMBER_CHARS:
                value = int(value)
            else:
                raise self.error(fieldpath, "must be an integer", expected=rng, got=value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.error(fieldpath, "is out of range", expected=rng, got=value)
        return value

    def choice(self, fieldpath: FieldPath, choices: Iterable[str], default: str) -> str:
        choices = list(choices)
        value = self.raw(fieldpath, None)
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            raise self.error(fieldpath, "is not a valid value", expected=" | ".join(choices), got=value)
        return value

    def network(self, fieldpath: FieldPath, required: bool = False, strict: bool = True) -> IPv4Network | None:
        value = self.raw(fieldpath, None)
        if value is None:
            if required:
                raise self.error(fieldpath, "is required", expected="an IPv4 CIDR like 10.244.0.0/16")
            return None
        return self.parse_network(fieldpath, value, strict=strict)

    def parse_network(self, fieldpath: FieldPath, value: Any, strict: bool = True) -> IPv4Network:
        if not isinstance(value, str):
            raise self.error(fieldpath, "is not an IPv4 CIDR", expected="an IPv4 CIDR like 10.244.0.0/16", got=value)
        try:
            return fast_network(value, strict=strict)
        except ValueError as exc:
            raise self.error(fieldpath, f"is not a valid IPv4 CIDR ({str(exc)[:120]})",
                             expected="an IPv4 CIDR like 10.244.0.0/16", got=value) from None

    def address(self, fieldpath: FieldPath, required: bool = False) -> IPv4Address | None:
        value = self.raw(fieldpath, None)
        if value is None:
            if required:
                raise self.error(fieldpath, "is required", expected="an IPv4 address")
            return None
        return self.parse_address(fieldpath, value)

    def parse_address(self, fieldpath: FieldPath, value: Any) -> IPv4Address:
        try:
            if not isinstance(value, str):
                raise ValueError
            return IPv4Address(value)
        except (AddressValueError, ValueError):
            raise self.error(fieldpath, "is not a valid IPv4 address", expected="an IPv4 address like 192.168.0.81",
                             got=value) from None

    def interface(self, fieldpath: FieldPath, required: bool = False) -> tuple[IPv4Address, IPv4Network] | None:
        """'192.168.0.81/24' -> (address, its subnet)."""
        value = self.raw(fieldpath, None)
        if value is None:
            if required:
                raise self.error(fieldpath, "is required", expected="an address with prefix like 192.168.0.81/24")
            return None
        return self.parse_interface(fieldpath, value)

    def parse_interface(self, fieldpath: FieldPath, value: Any) -> tuple[IPv4Address, IPv4Network]:
        expected = "an address with prefix like 192.168.0.81/24"
        if not isinstance(value, str):
            raise self.error(fieldpath, "is not an address/prefix", expected=expected, got=value)
        if "/" not in value:
            raise self.error(fieldpath, "needs a prefix length (the node's subnet)", expected=expected, got=value)
        try:
            addr_text, plen = value.split("/", 1)
            address = IPv4Address(addr_text)
            subnet = IPv4Network(f"{addr_text}/{plen}", strict=False)
        except (AddressValueError, NetmaskValueError, ValueError):
            raise self.error(fieldpath, "is not a valid address/prefix", expected=expected, got=value) from None
        return address, subnet

    def duration(self, fieldpath: FieldPath, default: float | None, *, go: bool = False,
                 maximum: float | None = None) -> float | None:
        """A duration in seconds. `go=True` for Calico fields (metav1.Duration): Go syntax only ("2m0s", "90s")."""
        value = self.raw(fieldpath, None)
        if value is None:
            return default
        expected = "a Go duration like 2m0s, 90s, 500ms" if go else "a duration like 9s, 500ms, 2m0s"
        seconds = parse_duration(value)
        if go and isinstance(value, (int, float)) and not isinstance(value, bool) and value != 0:
            seconds = None  # metav1.Duration reads a string; Go refuses a bare number ("missing unit")
        if seconds is None:
            raise self.error(fieldpath, "is not a valid duration", expected=expected, got=value)
        if maximum is not None and seconds > maximum:
            raise self.error(fieldpath, "is too long", expected=f"at most {maximum:g}s", got=value)
        return seconds

    def labels(self, fieldpath: FieldPath) -> dict[str, str]:
        value = self.raw(fieldpath, None)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(fieldpath, "must be a mapping of label keys to values", got=value)
        out: dict[str, str] = {}
        for k, v in value.items():
            if v is None:
                v = ""
            if isinstance(v, bool):
                v = "true" if v else "false"
            if not isinstance(v, (str, int, float)):
                raise self.error(subpath(fieldpath, k), "label values must be strings", got=v)
            out[str(k)] = str(v)
        return out


__all__ = ["Doc", "FieldPath", "Where", "field_text", "subpath", "fast_network"]
