"""Reading multi-document YAML fast, with positions, for errors that name file, document, field and line.

Owns: `read_documents(path) -> list[Doc]`, `file_text(path)` and `document_texts(text)` (each document's own
text, so an unchanged document can be written back as the user printed it). Doc, the typed accessor over one
document, is meshsim.model.document; durations are meshsim.model.durations; both are re-exported here.

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
from pathlib import Path
from typing import Any, Iterator

import yaml
from yaml import events as ev

from meshsim.errors import ScenarioError
from meshsim.model.document import MAX_NUMBER_CHARS, Doc, Where
from meshsim.model.durations import MAX_DURATION, parse_duration, parse_go_duration

MAX_NODES = 1_000_000
MAX_DEPTH = 100
LOADERS = ("c", "python")
_loader = "c"  # which YAML parser reads files: libyaml ("c", when PyYAML has it) or PyYAML's pure Python



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
    return parse_documents(file_text(path), str(path))


def file_text(path: str | Path) -> str:
    """A YAML file's text as the reader parses it (UTF-8; `===` lines of a migrate export made `---`)."""
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
    return text


def document_texts(text: str) -> dict[int, str] | None:
    """Each document's own text, by document index (as `parse_documents` numbers them): the comments before
    it, its content, no `---` line. None when the text does not split cleanly (directives, content on the
    `---` line): callers then write the values instead."""
    loader = _loader_class()(text)
    out: dict[int, str] = {}
    index, start = 0, 0
    try:
        while True:
            event = loader.get_event()
            if isinstance(event, ev.DocumentStartEvent):
                index += 1
            elif isinstance(event, ev.DocumentEndEvent):
                end = event.end_mark.index
                out[index] = text[start:end]
                start = end
            elif isinstance(event, ev.StreamEndEvent):
                break
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    for i, chunk in out.items():
        lines = chunk.splitlines(keepends=True)
        body = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        if body and body[0].rstrip() in ("---", "..."):
            lines.remove(body[0])
            body = body[1:]
        if body and (body[0].startswith(("%", "---", "...")) or any(ln.rstrip() == "---" for ln in body)):
            return None
        chunk = "".join(lines)
        out[i] = chunk if chunk.endswith("\n") or not chunk else chunk + "\n"
    return out


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


__all__ = ["read_documents", "parse_documents", "file_text", "document_texts", "use_loader", "resolve_plain", "Doc", "Where", "parse_duration",
           "parse_go_duration", "MAX_DURATION", "MAX_NODES", "MAX_DEPTH", "MAX_NUMBER_CHARS"]
