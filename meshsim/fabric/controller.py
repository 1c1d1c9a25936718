"""`meshsim controller`: the compose controller, run a scenario against nodes that run in containers.

Owns `main(args)`: check that the scenario fits the compose file (`check_fit`, `check_reachable`), then hand
`meshsim.run.runner.main` a RemoteFabric (meshsim/fabric/remote.py), so the run is exactly `meshsim run`'s (cold
start, timeline, report.json/report.md/routes/status in the mounted report folder, exit 0 only when every
expected table was reached). What it reads from the env file `meshsim compose` writes (meshsim/fabric/
composefile.py) and the compose file:
- MESHSIM_TOKEN, the run's API token, and MESHSIM_RUN_ID, the run id every node answers with (the nodes read
  the same file): both required, a clear error without them;
- MESHSIM_RUNTIME_DIR: the host's run state directory, mounted (`${XDG_RUNTIME_DIR:-/run}/meshsim`). The
  controller registers the run there (meshsim/run/keeper.py, a record with no runner on the host: it is alive
  while its nodes answer with its run id), so `meshsim inspect`, `status`, `routes --live`, `show`, `peers
  --graph --live` and `down` on the host find it. It runs as root in its container and hands the record to the
  directory's owner, as it hands the report to the report folder's owner. The record names the scenario files
  by their host paths (MESHSIM_HOST_DIR from the env file, MESHSIM_HOST_MOUNTS from the compose file);
- MESHSIM_KEEP_RUNNING=yes (or `--keep-running`): after the verdict, stay up and keep the record's health true
  (`docker compose up -d`), until `docker compose stop|down` (SIGTERM), `meshsim down RUN` on the host (which
  shuts the nodes down and removes the record), or every node is gone. The default is one-shot, for
  `up --exit-code-from controller`; its record is removed when it exits.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from meshsim.errors import RunError
from meshsim.fabric.remote import RemoteFabric, check_reachable
from meshsim.model.cluster import Cluster

if TYPE_CHECKING:
    from meshsim.run.keeper import Registration

YES = ("1", "yes", "true", "on")
NO = ("", "0", "no", "false", "off")


def check_fit(cluster: Cluster, declared: str | None) -> None:
    """MESHSIM_COMPOSE_NODES ("node1=192.168.0.81 ...", written by `meshsim compose`) against the scenario."""
    if not declared:
        return
    services = dict(item.split("=", 1) for item in declared.split())
    problems = []
    for n in cluster.scenario.nodes:
        if n.name not in services:
            problems.append(f"{n.name} has no service")
        elif services[n.name] != str(n.address):
            problems.append(f"{n.name} is {n.address} in the scenario but {services[n.name]} in the file")
    extra = sorted(set(services) - {n.name for n in cluster.scenario.nodes})
    if extra:
        problems.append(f"services without a Node in the scenario: {', '.join(extra)}")
    if problems:
        raise RunError(f"scenario {cluster.scenario.name} does not fit this compose file: {'; '.join(problems)}; "
                       f"generate one for it: meshsim compose SCENARIO -o FILE")


OUTPUTS = ("report.json", "report.md", "convergence.png", "per_node.png")


def clear_previous(out: Path) -> None:
    """A mounted report folder is reused across runs: remove what an earlier run wrote, nothing else."""
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    for sub, suffix in (("routes", ".ip"), ("status", ".txt"), ("logs", ".log")):
        if (out / sub).is_dir():
            for f in (out / sub).glob(f"*{suffix}"):
                f.unlink(missing_ok=True)


def give_back(out: Path) -> None:
    """The controller runs as root: hand what it wrote to the owner of the (bind-mounted) folder."""
    try:
        st = out.stat()
    except OSError:
        return
    if os.geteuid() != 0 or st.st_uid == 0:
        return
    for p in [out, *out.rglob("*")]:
        try:
            os.chown(p, st.st_uid, st.st_gid)
        except OSError:
            pass


def controller_token() -> str:
    token = os.environ.get("MESHSIM_TOKEN", "").strip()
    if not token:
        raise RunError("MESHSIM_TOKEN is not set: the controller and the nodes read the run's API token from the env "
                       "file `meshsim compose` writes next to the compose file (env_file: in every service); "
                       "regenerate the compose file (`meshsim compose SCENARIO -o FILE`, or `make compose-file`)")
    return token


def controller_run_id() -> str:
    run_id = os.environ.get("MESHSIM_RUN_ID", "").strip()
    if not run_id:
        raise RunError("MESHSIM_RUN_ID is not set: the controller and the nodes read the run's id from the env file "
                       "`meshsim compose` writes next to the compose file (MESHSIM_RUN_ID next to MESHSIM_TOKEN; an "
                       "env file written before meshsim had run ids lacks it); regenerate it (`make compose-file`, "
                       "or `meshsim compose SCENARIO -o FILE`) and `up` again")
    return run_id


def keep_running(args: Any) -> bool:
    """`--keep-running`, or MESHSIM_KEEP_RUNNING (the compose file passes it on) yes|no."""
    value = os.environ.get("MESHSIM_KEEP_RUNNING", "").strip().lower()
    if value not in YES + NO:
        raise RunError(f"MESHSIM_KEEP_RUNNING={value!r}: expected yes or no (1/0, true/false)")
    return bool(getattr(args, "keep_running", False)) or value in YES


def host_files(files: list[str], env: Any = None) -> list[str]:
    """The scenario files as the host names them (the record lists them, so `meshsim status SCENARIO`, `show`
    and `peers --graph --live` on the host find the run and read its scenario): a file under a folder the compose
    file mounts (MESHSIM_HOST_MOUNTS, "CONTAINER=HOST ...", HOST relative to the compose file's folder, which
    MESHSIM_HOST_DIR names) becomes its host path; any other keeps its container path."""
    from meshsim.run.records import files_key

    env = os.environ if env is None else env
    base = env.get("MESHSIM_HOST_DIR", "").strip()
    mounts = [item.split("=", 1) for item in shlex.split(env.get("MESHSIM_HOST_MOUNTS", "")) if "=" in item]
    mounts.sort(key=lambda m: -len(m[0]))  # the deepest mount first
    out = []
    for f in files_key(files):
        path = PurePosixPath(f)
        for container, host in mounts if base else []:
            if path == PurePosixPath(container) or PurePosixPath(container) in path.parents:
                out.append(os.path.normpath(os.path.join(base, host, str(path.relative_to(container)))))
                break
        else:
            out.append(f)
    return out


def registration(files: list[str], run_id: str) -> "Registration | None":
    """The run's state record in the host's runtime directory (MESHSIM_RUNTIME_DIR, mounted), written for the
    directory's owner; None without that variable (a compose file from before), or when no record can be written
    there (a warning says why; the run goes on without one). A record of the same run id (this project's
    controller run before, on the same nodes) is taken over: same run, same name."""
    where = os.environ.get("MESHSIM_RUNTIME_DIR", "").strip()
    if not where:
        return None
    from meshsim.model.resources import load_scenario
    from meshsim.run import records
    from meshsim.run.keeper import Registration

    scenario = load_scenario(files)
    try:
        directory, owner = records.mounted_dir(Path(where))
        reg = Registration(files, scenario.name, local_runner=False, directory=directory, owner=owner)
        reg.record.files = host_files(files)
        reg.record.run_id, reg.record.mode = run_id, RemoteFabric.mode
        reg.claim(adopt_run_id=run_id)
    except (records.RecordError, OSError) as exc:
        print(f"meshsim: warning: {exc}; this run has no state record (`meshsim inspect`, status and down on the "
              "host will not find it)", file=sys.stderr, flush=True)
        return None
    return reg


def main(args: Any) -> int:
    """The compose controller: checks, then `meshsim.run.runner.main` with a RemoteFabric, registered."""
    from meshsim.run.runner import main as run_main

    token = controller_token()
    run_id = controller_run_id()
    args.keep_running = keep_running(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clear_previous(out)
    log_level = getattr(args, "log_level", None) or "info"

    def check(cluster: Cluster) -> None:
        check_fit(cluster, os.environ.get("MESHSIM_COMPOSE_NODES"))
        check_reachable({n.name: str(n.address) for n in cluster.scenario.nodes})

    def make(cluster: Cluster) -> RemoteFabric:
        return RemoteFabric(cluster, token=token, run_id=run_id, log_level=log_level)

    reg = registration(list(args.files), run_id)
    try:
        if reg is None:
            return run_main(args, make, mode_check=check)
        return run_main(args, reg.factory(make), mode_check=check,
                        keeper=reg.keeper if args.keep_running else None)
    finally:
        if reg is not None:
            reg.close()
        give_back(out)
