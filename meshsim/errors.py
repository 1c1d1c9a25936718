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

from dataclasses import dataclass
from typing import Any


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
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
        parts = [where]
        if self.doc is not None:
            doc = f"document {self.doc}"
            if self.kind:
                doc += f" ({self.kind}"
                doc += f" {self.name})" if self.name else ")"
            parts.append(doc)
        if self.field:
            parts.append(f"field {self.field}")
        text = ": ".join(parts) + ": " + self.message
        if self.expected is not None:
            text += f"; expected {self.expected}"
        if self.got is not None:
            text += f", got {self.got!r}"
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
        return f"{self.message} at position {self.pos} in selector {self.expr!r}"


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
        text = f"no {self.what} named {self.name!r}"
        if self.known:
            shown = ", ".join(self.known[:10]) + (", ..." if len(self.known) > 10 else "")
            text += f"; known: {shown}"
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
