"""Reading multi-document YAML fast, with positions, for errors that name file, document, field and line.

Owns: `read_documents(path) -> list[Doc]` and `Doc`, a typed accessor over one document whose every failure
raises `ScenarioError` with the dotted field path and its line; `parse_duration` (Go's `time.ParseDuration`).

How it reads: libyaml's C parser (PyYAML's `CSafeLoader`) produces the events with their marks, and this module
builds plain dicts, lists and scalars from them itself; PyYAML's composer and constructor (Python code run per
node) are what made a 2 MB dump take ~10 s. Line numbers are kept beside the data (`Doc.where`: per container,
the line of each key or item), so an error can name its line. `use_loader("python")` (the CLI:
MESHSIM_YAML_LOADER=python) selects PyYAML's pure-Python parser instead: same builder, same values; for
comparison and for machines without libyaml.

Scalars resolve the way Kubernetes' YAML (go-yaml v2) reads them: null, booleans (true/false/yes/no/on/off),
decimal/hex/octal integers, floats, everything else a string. Unlike PyYAML's YAML 1.1 there are no base-60
numbers (`64512:10` stays the string a BGP community is) and no timestamps (`creationTimestamp` stays text).
Bounds: a file expands to at most `MAX_NODES` nodes, aliases counted at their full size (a 500-byte "billion
laughs" fails at once instead of taking gigabytes), nesting is at most `MAX_DEPTH` deep, and a numeric literal
longer than `MAX_NUMBER_CHARS` stays text. Pure: no asyncio, no clock.
"""

from __future__ import annotations

import gc
import math
import re
from dataclasses import dataclass, field
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from pathlib import Path
from functools import lru_cache
from typing import Any, Iterable, Iterator

import yaml
from yaml import events as ev

from meshsim.errors import ScenarioError

MAX_NODES = 1_000_000
MAX_DEPTH = 100
MAX_NUMBER_CHARS = 64
LOADERS = ("c", "python")
_loader = "c"  # which YAML parser reads files: libyaml ("c", when PyYAML has it) or PyYAML's pure Python

# id(container) -> (container, {key: line} for a mapping | [line, ...] for a sequence); the container is kept so
# its id stays valid.
Where = dict[int, tuple[Any, Any]]


# ----------------------------------------------------------------------------------------------
# Scalars, as go-yaml v2 resolves plain (unquoted) ones

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {**dict.fromkeys(("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"), True),
          **dict.fromkeys(("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"), False)}
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9_]*)\Z")
_BASED = re.compile(r"([-+]?)0(b[01_]+|x[0-9a-fA-F_]+|o?[0-7_]+)\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_SPECIAL_FLOATS = {**{s + v: float(s + "inf") for s in ("", "+", "-") for v in (".inf", ".Inf", ".INF")},
                   ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan}
_NUMBER_START = frozenset("0123456789-+.")
_STR_TAG = "tag:yaml.org,2002:str"
_TAGGED = {"tag:yaml.org,2002:int": "int", "tag:yaml.org,2002:float": "float", "tag:yaml.org,2002:bool": "bool",
           "tag:yaml.org,2002:null": "null"}


def resolve_plain(value: str) -> Any:
    """A plain scalar's value: None, bool, int, float or the text itself."""
    if value in _NULLS:
        return None
    b = _BOOLS.get(value)
    if b is not None:
        return b
    if value[0] not in _NUMBER_START or len(value) > MAX_NUMBER_CHARS:
        return value
    if _DECIMAL.match(value):
        return int(value.replace("_", ""))
    m = _BASED.match(value)
    if m:
        digits = m.group(2).replace("_", "")
        base = {"b": 2, "x": 16, "o": 8}.get(digits[0], 8)
        number = int(digits[1:] if digits[0] in "bxo" else digits, base)
        return -number if m.group(1) == "-" else number
    if _FLOAT.match(value) and any(c in value for c in ".eE"):
        return float(value.replace("_", ""))
    special = _SPECIAL_FLOATS.get(value)
    return special if special is not None else value


def _scalar(event: ev.ScalarEvent, where: str) -> Any:
    value = event.value
    tag = event.tag
    if tag in (None, "!"):
        return resolve_plain(value) if not event.style and event.implicit[0] else value
    if tag == _STR_TAG:
        return value
    kind = _TAGGED.get(tag)
    resolved = resolve_plain(value) if value else None
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool), "float": lambda v: isinstance(v, (int, float))
          and not isinstance(v, bool), "bool": lambda v: isinstance(v, bool), "null": lambda v: v is None}.get(kind or "")
    if ok is None or not ok(resolved):
        raise ScenarioError(where, f"YAML tag {tag} on {value[:40]!r} is not supported here",
                            line=event.start_mark.line + 1, expected="plain YAML values (no !!binary, !!set, ...)")
    return float(resolved) if kind == "float" else resolved


# ----------------------------------------------------------------------------------------------
# Events -> plain data


class _Frame:
    __slots__ = ("is_map", "items", "lines", "anchor", "count_at_start", "line")

    def __init__(self, is_map: bool, anchor: str | None, count: int, line: int) -> None:
        self.is_map = is_map
        self.items: list[Any] = []
        self.lines: list[int] = []
        self.anchor = anchor
        self.count_at_start = count
        self.line = line


def use_loader(name: str) -> None:
    """Select the YAML parser: "c" (libyaml, the default) or "python" (PyYAML's pure-Python parser; the CLI
    honours MESHSIM_YAML_LOADER=python). Both build the same values through the same code."""
    global _loader
    if name not in LOADERS:
        raise ValueError(f"unknown YAML loader {name!r} (want one of {', '.join(LOADERS)})")
    _loader = name


def _loader_class() -> type:
    if _loader == "python" or not getattr(yaml, "__with_libyaml__", False):
        return yaml.SafeLoader
    return yaml.CSafeLoader


def _documents(text: str, where: str, loader_class: type) -> Iterator[tuple[int, int, Any, Where]]:
    """(document index, first line, root value or None, where) per document of `text`. One loop over the parser's
    events with the current container's lists in locals: this is the hot path of loading a large dump."""
    count = 0  # nodes so far in this file, aliases counted at their full size
    index = 0
    anchors: dict[str, tuple[Any, int]] = {}
    frames: list[_Frame] = []
    root: list[Any] = []
    root_lines: list[int] = []
    items, lines, is_map = root, root_lines, False  # the innermost open container
    table: Where = {}
    doc_line = 1
    scalar_cls, alias_cls = ev.ScalarEvent, ev.AliasEvent
    map_start, seq_start, map_end, seq_end = ev.MappingStartEvent, ev.SequenceStartEvent, ev.MappingEndEvent, \
        ev.SequenceEndEvent
    loader = loader_class(text)
    get_event = loader.get_event
    try:
        while True:
            event = get_event()
            cls = type(event)
            if cls is scalar_cls:
                count += 1
                if is_map and not len(items) & 1:
                    value = event.value  # a key: its text as written
                elif event.tag is None and not event.style and event.implicit[0]:
                    value = resolve_plain(event.value)
                else:
                    value = _scalar(event, where)
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1)
                items.append(value)
                lines.append(event.start_mark.line + 1)
            elif cls is map_start or cls is seq_start:
                line = event.start_mark.line + 1
                if is_map and not len(items) & 1:
                    raise ScenarioError(where, "a mapping key must be a plain string, not a mapping or list", line=line)
                if len(frames) >= MAX_DEPTH:
                    raise ScenarioError(where, f"the YAML nests deeper than {MAX_DEPTH} levels", line=line,
                                        expected="a Calico or meshsim resource")
                count += 1
                frame = _Frame(cls is map_start, event.anchor, count, line)
                frames.append(frame)
                items, lines, is_map = frame.items, frame.lines, frame.is_map
            elif cls is map_end or cls is seq_end:
                frame = frames.pop()
                if cls is map_end:
                    keys = items[0::2]
                    data: Any = dict(zip(keys, items[1::2]))
                    if len(data) != len(keys):
                        seen: set[Any] = set()
                        for k, kline in zip(keys, lines[0::2]):
                            if k in seen:
                                raise ScenarioError(where, f"duplicate key {str(k)[:80]!r}", line=kline)
                            seen.add(k)
                    table[id(data)] = (data, dict(zip(keys, lines[0::2])))
                else:
                    data = items
                    table[id(data)] = (data, lines)
                if frame.anchor is not None:
                    anchors[frame.anchor] = (data, count - frame.count_at_start + 1)
                if frames:
                    top = frames[-1]
                    items, lines, is_map = top.items, top.lines, top.is_map
                else:
                    items, lines, is_map = root, root_lines, False
                items.append(data)
                lines.append(frame.line)
            elif cls is alias_cls:
                line = event.start_mark.line + 1
                if event.anchor not in anchors:
                    raise ScenarioError(where, f"YAML alias *{str(event.anchor)[:40]} names no anchor", line=line)
                value, size = anchors[event.anchor]
                if is_map and not len(items) & 1 and not isinstance(value, str):
                    raise ScenarioError(where, "a mapping key must be a plain string, not a mapping or list", line=line)
                count += size
                if count > MAX_NODES:
                    raise ScenarioError(where, f"the YAML expands to more than {MAX_NODES:,} values (aliases counted "
                                        "at their full size); a Calico dump never does", line=line,
                                        expected="a file without recursively nested aliases (a \"billion laughs\")")
                items.append(value)
                lines.append(line)
            elif cls is ev.DocumentStartEvent:
                index += 1
                doc_line = event.start_mark.line + 1
                root.clear()
                root_lines.clear()
                anchors.clear()
            elif cls is ev.DocumentEndEvent:
                yield index, doc_line, (root[0] if root else None), table
                table = {}
                if count > MAX_NODES:
                    raise ScenarioError(where, f"the YAML holds more than {MAX_NODES:,} values", line=doc_line,
                                        expected="a smaller file")
            elif cls is ev.StreamEndEvent:
                return
    finally:
        loader.dispose()


def read_documents(path: str | Path) -> list["Doc"]:
    """All non-empty documents of one YAML file, each with its line table."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ScenarioError(where, "file not found") from None
    except IsADirectoryError:
        raise ScenarioError(where, "is a directory, expected a YAML file") from None
    except OSError as exc:
        raise ScenarioError(where, f"cannot read file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(where, f"is not UTF-8 text (byte {exc.start})", expected="a UTF-8 YAML file") from None
    if "===" in text:
        # `calicoctl datastore migrate export` separates its YAML, its ClusterInformation JSON and its IPAM JSON
        # with lines "===" (calicoctl commands/datastore/migrate/export.go); they are document boundaries.
        text = re.sub(r"(?m)^===[ \t]*$", "---", text)
    return parse_documents(text, where)


def parse_documents(text: str, where: str = "<text>") -> list["Doc"]:
    docs: list[Doc] = []
    # The cyclic GC would scan the growing heap of fresh dicts and lists again and again (they form no cycles);
    # pausing it while building halves the time of a large dump, as json-like loaders do.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for index, line, data, table in _documents(text, where, _loader_class()):
            if data is None:
                continue
            docs.append(Doc(where, index, data, table, line=line))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise ScenarioError(where, f"YAML syntax error: {problem}", line=mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        raise ScenarioError(where, f"YAML syntax error: unacceptable character #x{exc.character:04x}"
                            if isinstance(exc.character, int) else "YAML syntax error: unacceptable character",
                            line=line, expected="printable text (no control characters)") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(where, "YAML syntax error: " + " ".join(str(exc).split())[:200]) from None
    except RecursionError:
        raise ScenarioError(where, "the YAML nests too deeply to read", expected="a Calico or meshsim resource") from None
    finally:
        if gc_was_enabled:
            gc.enable()
    return docs


# ----------------------------------------------------------------------------------------------
# Durations

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
MAX_DURATION = 290 * 365 * 24 * 3600.0  # Go's time.Duration (int64 nanoseconds) tops out at ~292 years


def parse_go_duration(text: str) -> float | None:
    """Go's `time.ParseDuration` (what Kubernetes' metav1.Duration reads): "2m0s", "1h0m0s", "1.5s", "300ms",
    "0" -> seconds; None when Go would refuse it (a bare number other than 0, an unknown unit, ...)."""
    s = text.strip()
    sign = 1.0
    if s[:1] in ("-", "+"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        return None
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _GO_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            return None
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    total *= sign
    return total if abs(total) <= MAX_DURATION else None


def parse_duration(value: Any) -> float | None:
    """A duration in seconds from a Go duration ("2m0s", "9s", "500ms", "1h30m") or, for meshsim's own fields, a
    bare number of seconds (9, 1.5) and the older "1.5m"; None when unparsable, negative, NaN or infinite."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            go = parse_go_duration(text)
            if go is None:
                return None
            seconds = go
    else:
        return None
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0 or seconds > MAX_DURATION:
        return None
    return seconds


# ----------------------------------------------------------------------------------------------
# Documents

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
