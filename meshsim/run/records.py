"""Run state records: one small JSON file per running emulation, for `up`, `inspect`, `down`, `status` and `show`.

Owns where records live (`runtime_dir()`), the record itself (`RunRecord`, with the nodes' addresses and the
processes and namespaces the run holds), how a record is written (atomically: a 0600 temp file in the same
directory, fsync, rename) and read, how a run name is reserved (`reserve`: O_EXCL, so two `up`s never take the
same name), and whether the process a record names still runs (`ProcessRef`: pid *and* start time, so a reused
pid is never mistaken for the runner).

The directory is `$MESHSIM_RUNTIME_DIR` if set (a compose controller writing into a mounted folder), else
`$XDG_RUNTIME_DIR/meshsim` (the per-user runtime directory of the XDG Base Directory spec), else `/run/meshsim`
as root, else `/tmp/meshsim-<uid>`. It is created 0700 and must belong to the user; records are 0600, since
each holds its run's API token (issue 12: only the run's user may POST to its nodes).
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from meshsim.errors import MeshsimError, NotFoundError, RunError

SCHEMA = "meshsim.run/v1"
SUFFIX = ".json"
LOG_SUFFIX = ".log"
NAME_MAX = 63
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # a DNS-1123 label, like a compose project name
NAME_RULE = f"a DNS-1123 label: lower-case letters, digits and '-', starting and ending with one, at most {NAME_MAX}"


class RecordError(MeshsimError):
    """A record or the runtime directory cannot be used (wrong owner or mode, unreadable, name taken)."""


# -- where ------------------------------------------------------------------------------------------------

def runtime_dir(create: bool = True) -> Path:
    """The directory holding the records (see the module docstring), created 0700 and checked: it must be a
    directory (not a link) owned by this user, with no access for group or others."""
    if os.environ.get("MESHSIM_RUNTIME_DIR"):
        path = Path(os.environ["MESHSIM_RUNTIME_DIR"])
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "meshsim"
    elif os.geteuid() == 0:
        path = Path("/run/meshsim")
    else:
        path = Path(f"/tmp/meshsim-{os.geteuid()}")
    if create:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordError(f"cannot create the run state directory {path}: {exc.strerror}") from None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    if not stat.S_ISDIR(st.st_mode):
        raise RecordError(f"the run state directory {path} is not a directory (a link or a file is not trusted)")
    if st.st_uid != os.geteuid():
        raise RecordError(f"the run state directory {path} belongs to uid {st.st_uid}, not to you "
                          f"(uid {os.geteuid()}); set XDG_RUNTIME_DIR to a directory of your own")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours, but too open (made by hand): close it before writing a token into it
    return path


def name_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    if len(name) > NAME_MAX:
        return f"is {len(name)} characters long (at most {NAME_MAX})"
    if not NAME_RE.match(name):
        return "has characters or a shape a run name cannot have"
    return None


def default_name(scenario_name: str) -> str:
    """A run name from the scenario's name: lower-cased, anything else than [a-z0-9-] turned into '-'."""
    text = re.sub(r"[^a-z0-9-]+", "-", scenario_name.lower()).strip("-")[:40].strip("-")
    return text or "run"


def check_name(name: str) -> str:
    problem = name_problem(name)
    if problem is not None:
        raise RecordError(f"run name {name[:80]!r} {problem}; a run name is {NAME_RULE}")
    return name


def record_path(name: str, directory: Path | None = None) -> Path:
    return (directory or runtime_dir()) / f"{check_name(name)}{SUFFIX}"


def log_path(name: str, directory: Path | None = None) -> Path:
    return (directory or runtime_dir()) / f"{check_name(name)}{LOG_SUFFIX}"


# -- which process ----------------------------------------------------------------------------------------

def start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22), or None when it is gone
    or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessRef:
    """A process as a record names it: a pid is only this process while its start time is the same."""

    pid: int
    start: int | None

    @classmethod
    def of(cls, pid: int) -> "ProcessRef":
        return cls(pid, start_ticks(pid))

    def alive(self) -> bool:
        return self.start is not None and start_ticks(self.pid) == self.start


# -- the record -------------------------------------------------------------------------------------------

@dataclass
class NodeEntry:
    """Where a node of the run answers: its HTTP API (host:port) and its BGP session address."""

    http: str
    bgp: str
    namespace: str | None = None
    worker: int | None = None  # pid of the worker process hosting it
    container: str | None = None

    @property
    def http_host_port(self) -> tuple[str, int]:
        host, _, port = self.http.rpartition(":")
        return host, int(port)


@dataclass
class RunRecord:
    name: str
    run_id: str
    token: str
    mode: str  # local | netns | compose
    state: str  # starting | up | stopping
    scenario: str
    files: list[str]
    started_at: float
    runner: ProcessRef | None  # None: no process on this machine keeps the run (compose: containers do)
    nodes: dict[str, NodeEntry] = field(default_factory=dict)
    workers: list[ProcessRef] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    workdir: str | None = None
    log: str | None = None
    health: dict[str, Any] = field(default_factory=dict)  # written by the runner: see lifecycle.health()
    schema: str = SCHEMA

    def alive(self) -> bool:
        """The run's keeper still runs. A record without a runner on this machine (compose: the controller and
        the nodes run in containers) is alive while one of its nodes answers with its run id."""
        if self.runner is not None:
            return self.runner.alive()
        return any(probe(e.http) == self.run_id for e in list(self.nodes.values())[:3])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """What `inspect -o json` shows: everything but the token."""
        data = self.to_json()
        data.pop("token")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunRecord":
        if data.get("schema") != SCHEMA:
            raise ValueError(f"schema {data.get('schema')!r}, expected {SCHEMA}")
        data = dict(data)
        runner = data.pop("runner")
        return cls(runner=ProcessRef(**runner) if runner else None,
                   nodes={n: NodeEntry(**e) for n, e in data.pop("nodes").items()},
                   workers=[ProcessRef(**w) for w in data.pop("workers")], **data)


def probe(address: str, timeout: float = 1.0) -> str | None:
    """The run id a node at `address` (host:port) answers GET /status with, or None when nothing answers. Plain
    http.client: no proxy from the environment is ever asked."""
    import http.client

    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/status", headers={"Accept": "application/json"})
        reply = conn.getresponse()
        data = json.loads(reply.read(1 << 20)) if reply.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    return data.get("run_id") if isinstance(data, dict) and isinstance(data.get("run_id"), str) else None


def files_key(files: list[str] | tuple[str, ...]) -> list[str]:
    """Scenario files as a record stores them (resolved paths): how `status S` finds the run of S."""
    return [str(Path(f).resolve()) for f in files]


# -- reading and writing -----------------------------------------------------------------------------------

def write(record: RunRecord, directory: Path | None = None) -> Path:
    """Write atomically: readers see the old record or the new one, never half of one. 0600 from the first
    byte (the token never sits in a file others could read)."""
    directory = directory or runtime_dir()
    path = record_path(record.name, directory)
    tmp = directory / f".{record.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record.to_json(), f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def reserve(record: RunRecord, *, explicit: bool, directory: Path | None = None) -> RunRecord:
    """Claim `record.name` (O_EXCL: of two `up`s at once, one gets it). A name given by the user that is taken
    is an error; a default name takes the next free suffix (name-2, name-3, ...)."""
    directory = directory or runtime_dir()
    base = check_name(record.name)
    for i in range(1, 1000):
        name = base if i == 1 else f"{base[:NAME_MAX - 4]}-{i}"
        path = directory / f"{name}{SUFFIX}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            if explicit:
                other = _peek(path)
                what = "is up" if other is None or other.alive() else "left a stale record (its runner is gone)"
                raise RecordError(f"a run named {name} {what}: `meshsim down {name}` stops it, or pick another "
                                  "--name") from None
            continue
        record.name = name
        with os.fdopen(fd, "w") as f:
            json.dump(record.to_json(), f, indent=1)
        return record
    raise RecordError(f"no free run name like {base} in {directory}")


def _peek(path: Path) -> RunRecord | None:
    try:
        return RunRecord.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def read(name: str, directory: Path | None = None) -> RunRecord:
    directory = directory or runtime_dir()
    path = record_path(name, directory)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        known = tuple(r.name for r in all_records(directory))
        raise NotFoundError("run", name, known) from None
    except (OSError, ValueError) as exc:
        raise RecordError(f"the record of run {name} ({path}) cannot be read: {exc}; `meshsim down {name}` "
                          "removes it") from None
    try:
        return RunRecord.from_json(data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RecordError(f"the record of run {name} ({path}) is not a meshsim run record ({exc}); "
                          f"`meshsim down {name}` removes it") from None


def all_records(directory: Path | None = None) -> list[RunRecord]:
    """Every readable record, oldest first (unreadable ones are listed by `broken_records`)."""
    directory = directory or runtime_dir(create=False)
    out = []
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        rec = _peek(path)
        if rec is not None and path.name == f"{rec.name}{SUFFIX}":
            out.append(rec)
    return sorted(out, key=lambda r: (r.started_at, r.name))


def broken_records(directory: Path | None = None) -> list[str]:
    """Names of record files that do not read as records (a crash mid-way cannot make one: writes are atomic;
    a hand edit can)."""
    directory = directory or runtime_dir(create=False)
    if not directory.is_dir():
        return []
    good = {r.name for r in all_records(directory)}
    return sorted(p.name[:-len(SUFFIX)] for p in directory.glob(f"*{SUFFIX}") if p.name[:-len(SUFFIX)] not in good)


def remove(name: str, *, run_id: str | None = None, directory: Path | None = None) -> bool:
    """Remove a run's record (and its runner log); with `run_id`, only if the record is still that run's."""
    directory = directory or runtime_dir(create=False)
    path = record_path(name, directory)
    if run_id is not None:
        current = _peek(path)
        if current is not None and current.run_id and current.run_id != run_id:
            return False
    gone = False
    try:
        path.unlink()
        gone = True
    except FileNotFoundError:
        pass
    return gone


def age(seconds: float) -> str:
    """45s, 3m12s, 2h05m, 3d04h: how `inspect` shows how long a run has been up."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def now() -> float:
    return time.time()


def pick(name: str | None, *, files: list[str] | None = None, directory: Path | None = None,
         verb: str = "use") -> RunRecord:
    """The run a command means: `name` if given; else the live run of `files` (the scenario-file form of
    `status S`); else the only live run. Errors say what is up and how to choose."""
    if name is not None:
        rec = read(name, directory)
        if not rec.alive():
            raise RunError(f"run {rec.name} is not running (its runner, pid {rec.runner.pid if rec.runner else '?'}, "
                           f"is gone): `meshsim down {rec.name}` cleans up what it left and removes its record")
        return rec
    records = all_records(directory)
    live = [r for r in records if r.alive()]
    stale = [r.name for r in records if not r.alive()]
    hint = f" (stale records: {', '.join(stale)}; `meshsim down RUN` removes them)" if stale else ""
    if files:
        key = files_key(files)
        live = [r for r in live if r.files == key]
        if not live:
            raise RunError(f"no running emulation of {' '.join(files)}: `meshsim up {' '.join(files)}` starts one "
                           f"(`meshsim inspect` lists what runs){hint}")
    if not live:
        raise RunError(f"no emulation is up: `meshsim up SCENARIO` starts one{hint}")
    if len(live) > 1:
        raise RunError(f"{len(live)} emulations are up ({', '.join(r.name for r in live)}); "
                       f"name one to {verb}: --run RUN")
    return live[0]
