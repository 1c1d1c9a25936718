"""The errors meshsim shows to people.

Every user-facing error carries where it happened and what was expected, so the
CLI can print one clear line and exit 2 instead of a traceback:

    MeshsimError                      base; `str(e)` is the one line a user reads
     + ScenarioError                  a scenario/manifest file is wrong: path, doc, kind/name, field, expected, got
     + SelectorError                  a Calico selector expression does not parse: expr, pos, expected
     + IpamError                      an allocation cannot be satisfied (pool exhausted, block limit, strict affinity)
     + LookupError_                   a node, pod or address named on the command line does not exist
     + RunError                       a running scenario failed (a node or ExaBGP died, a port is taken, ...)

The core raises these; only `meshsim.cli` turns them into exit codes.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any

MAX_SHOWN = 160  # characters of a value or expectation shown in a message; the rest is cut with a marker

_REPR = reprlib.Repr()
_REPR.maxstring = MAX_SHOWN
_REPR.maxother = MAX_SHOWN
_REPR.maxlong = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def shown(value: Any) -> str:
    """`repr(value)` for a message, never longer than about MAX_SHOWN characters (reprlib: without building the
    whole repr of a huge value first)."""
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        return repr(value[:MAX_SHOWN]) + f"... [{len(value) - MAX_SHOWN} more characters]"
    text = _REPR.repr(value)
    if len(text) > MAX_SHOWN + 20:
        text = text[:MAX_SHOWN] + f"... [{len(text) - MAX_SHOWN} more characters]"
    return text


MAX_TEXT = 400  # characters of a message or expectation


def clipped(text: str, limit: int = MAX_TEXT) -> str:
    """A long message or expectation (e.g. "one of" 2,000 node names) cut to `limit` characters with a marker,
    control characters (a key holding a newline) escaped, so an error stays one line."""
    text = str(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) <= limit + 20:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


class MeshsimError(Exception):
    """Base of every error meant for a person."""


@dataclass
class ScenarioError(MeshsimError):
    """A scenario or manifest is wrong. Names the file, the document, the field and what was expected."""

    path: str
    message: str
    doc: int | None = None  # 1-based index of the YAML document in the file
    kind: str | None = None
    name: str | None = None
    field: str | None = None  # dotted path inside the document, e.g. spec.blockSize
    expected: str | None = None
    got: Any = None
    line: int | None = None  # 1-based line in the file, when known

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        where = clipped(self.path, MAX_SHOWN)
        if self.line is not None:
            where += f":{self.line}"
        parts = [where]
        if self.doc is not None:
            doc = f"document {self.doc}"
            if self.kind:
                doc += f" ({clipped(self.kind, MAX_SHOWN)}"
                doc += f" {clipped(self.name, MAX_SHOWN)})" if self.name else ")"
            parts.append(doc)
        if self.field:
            parts.append(f"field {clipped(self.field, MAX_SHOWN)}")
        text = ": ".join(parts) + ": " + clipped(self.message)
        if self.expected is not None:
            text += f"; expected {clipped(self.expected)}"
        if self.got is not None:
            text += f", got {shown(self.got)}"
        return text


@dataclass
class SelectorError(MeshsimError):
    """A Calico selector expression does not parse."""

    expr: str
    pos: int
    message: str

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.message} at position {self.pos} in selector {shown(self.expr)}"


@dataclass
class IpamError(MeshsimError):
    """An IPAM request cannot be satisfied (Calico's ErrBlockLimit, pool exhausted, strict affinity)."""

    node: str
    message: str

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"IPAM on node {self.node}: {self.message}"


@dataclass
class NotFoundError(MeshsimError):
    """A node, pod or address named by the user is not in the scenario."""

    what: str
    name: str
    known: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"no {self.what} named {shown(self.name)}"
        if self.known:
            listed = ", ".join(self.known[:10]) + (", ..." if len(self.known) > 10 else "")
            text += f"; known: {clipped(listed)}"
        return text


@dataclass
class RunError(MeshsimError):
    """A running scenario failed; what was measured so far is still written."""

    message: str
    node: str | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"node {self.node}: {self.message}" if self.node else self.message
