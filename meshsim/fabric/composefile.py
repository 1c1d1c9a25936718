"""`meshsim compose`: a docker-compose file that runs a scenario with one container per Node.

Owns `compose_file(files, output)`, which renders the file as text (deterministic, so a checked-in
file can be tested to be current), and `main(args)`. What the file holds:
- one user-defined bridge network whose subnet is the nodes' subnet, with the scenario's gateway as the
  bridge's address; nodes in several subnets, and BGP peers that are no node (external peerIPs: nothing
  would answer there, and the containers talk to each other only) are clear errors. (Not `internal`:
  Docker drops bridged packets whose source is outside the subnet there, i.e. pod-to-pod traffic.)
- one service per Node at its declared address with a fixed MAC (02:42 + the address, as Docker would
  pick it), `cap_add: [NET_ADMIN]` (so `--dataplane kernel` can program the container's routing table),
  BGP on the scenario's listenPort, the HTTP status endpoint on 9179, a health check (every 2 s, longer
  from 9 nodes on: N/4 s, so the checks cost the same small share of the CPU at any N);
  nodes start with `--hold-bgp` and the controller starts them all, so the cold start is measured as
  `meshsim run` measures it;
- a one-shot `controller` service (`meshsim controller`) that waits for healthy nodes, runs the scenario,
  writes the report into ./reports (or $MESHSIM_REPORTS) and exits 0 only when every table converged;
- `env_file: <name>.env` in every service (nodes and controller): the run's API token, `MESHSIM_TOKEN=...`,
  which every POST to a node must carry (meshsim/agent/http.py). `main` writes that file next to the compose
  file, with a fresh token, mode 0600 (only the user reads it; it never enters the image: .dockerignore),
  and never into the compose file itself, which stays deterministic and can be committed;
- every service has the same `build:` and `image:`, so no compose version tries to pull: the build context is
  this checkout, or (`--wheelhouse DIR`, or meshsim installed from a wheel) a folder with the packaged
  meshsim/docker/Dockerfile, which installs meshsim from DIR's wheels or from the package index.
No `version:` key (the Compose Specification; compose v2 warns about it); tests/unit/test_compose_schema.py
checks the files against the compose-spec JSON schema. Compose v1 (`docker-compose` >= 1.27) and v2
(`docker compose`) both read it. Environment variables the
file reads: MESHSIM_SCENARIO (another scenario with the same nodes, relative to the compose file's
folder), MESHSIM_DATAPLANE (sim|kernel), MESHSIM_TIMEOUT, MESHSIM_REPORTS, MESHSIM_IMAGE, BASE_IMAGE.
Nodes with `implementation: bird` are a clear error (a node container runs meshsim's own engine).
Pure apart from reading the scenario and writing the output files.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from meshsim.errors import MeshsimError
from meshsim.oracle.expected import host_view
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario

HTTP_PORT = 9179
WORKDIR = "/work"  # scenario folders are mounted under it; the containers' working directory
DEFAULT_IMAGE = "meshsim:local"


def health_interval(nodes: int) -> int:
    """Seconds between health checks: >= 2, and ~4 checks a second in all (each is a `docker exec`: every 2 s
    on 20 containers cost ~0.55 of this machine's 2 cores, for the whole run)."""
    return max(2, -(-nodes // 4))


class ComposeError(MeshsimError):
    """The scenario cannot be laid out as a compose file (several subnets, no room for the controller, ...)."""


@dataclass(frozen=True)
class Layout:
    subnet: IPv4Network
    gateway: IPv4Address
    controller: IPv4Address
    nodes: dict[str, IPv4Address]  # in scenario order


def mac_for(address: IPv4Address) -> str:
    """02:42:<the four octets>: what Docker itself assigns, fixed in the file."""
    return "02:42:" + ":".join(f"{b:02x}" for b in address.packed)


def layout(cluster: Cluster) -> Layout:
    nodes = cluster.scenario.nodes
    if not nodes:
        raise ComposeError("the scenario has no Node: nothing to run")
    subnets: dict[IPv4Network, list[str]] = {}
    for n in nodes:
        subnets.setdefault(IPv4Network(n.subnet), []).append(n.name)
    if len(subnets) > 1:
        parts = "; ".join(f"{s}: {', '.join(names)}" for s, names in subnets.items())
        raise ComposeError(f"nodes in {len(subnets)} subnets ({parts}): a compose file puts every node on one "
                           "bridge network, and Docker does not route between bridge networks; give the nodes "
                           "one subnet (their ipv4Address prefix), or run the scenario with `meshsim run`")
    subnet = next(iter(subnets))
    bird = [n.name for n in nodes if cluster.scenario.host(n.name).implementation == "bird"]
    if bird:
        raise ComposeError(f"nodes {', '.join(bird)} use implementation: bird: a node container runs meshsim's own "
                           "BGP engine, not BIRD; run the scenario with `meshsim run --isolation netns`")
    external = sorted({f"{p.name} of {node} -> {p.peer_address}" for node, ps in cluster.peerings().items()
                       for p in ps if p.peer_node is None})
    if external:
        raise ComposeError(f"BGP peers that are not nodes of the scenario ({'; '.join(external)}): a compose run "
                           "has no BGP speaker at those addresses, and its containers send traffic to each other "
                           "only; remove those BGPPeers (peerIP), or run the scenario with `meshsim run`")
    if subnet.prefixlen > 29:
        raise ComposeError(f"the nodes' subnet {subnet} is too small for a bridge network with a gateway and a "
                           "controller: use a prefix of /29 or shorter in the nodes' ipv4Address")
    used = {n.address for n in nodes}
    for n in nodes:
        if n.address in (subnet.network_address, subnet.broadcast_address):
            raise ComposeError(f"node {n.name}: {n.address} is the network or broadcast address of {subnet}")
    gateway = host_view(cluster, nodes[0].name).gateway
    if gateway not in subnet or gateway in used or gateway in (subnet.network_address, subnet.broadcast_address):
        gateway = next(a for a in subnet.hosts() if a not in used)
    used.add(gateway)
    controller = next((a for a in reversed(list(subnet.hosts())) if a not in used), None)
    if controller is None:
        raise ComposeError(f"no free address left in {subnet} for the controller")
    return Layout(subnet=subnet, gateway=gateway, controller=controller, nodes={n.name: n.address for n in nodes})


def _project_root() -> Path | None:
    """Where the Dockerfile is: the current folder, else the source checkout meshsim runs from."""
    for cand in (Path.cwd(), Path(__file__).resolve().parents[2]):  # the checkout holding meshsim/fabric/
        if (cand / "Dockerfile").is_file() and (cand / "meshsim").is_dir():
            return cand
    return None


def _rel(path: Path, base: Path) -> str:
    # abspath, not resolve(): a folder reached through a symlink (scenarios/ -> meshsim/examples) keeps its name
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base))).as_posix()


def image_context(out_dir: Path, wheelhouse: str | Path | None) -> tuple[Path, str | None]:
    """The build context (and Dockerfile name in it) for the compose file: this source checkout and its
    Dockerfile; or, given a wheelhouse or outside a checkout, a folder holding meshsim/docker/Dockerfile (shipped
    in the package) that installs meshsim from the wheelhouse's wheels, or from the package index."""
    root = _project_root()
    if root is not None and wheelhouse is None:
        return root, None
    from importlib import resources

    dockerfile = (resources.files("meshsim") / "docker" / "Dockerfile").read_text()
    ctx = Path(wheelhouse) if wheelhouse is not None else out_dir / "meshsim-image"
    if wheelhouse is not None and not any(ctx.glob("meshsim-*.whl")):
        raise ComposeError(f"--wheelhouse {ctx}: no meshsim-*.whl in it; fill it with scripts/wheelhouse.sh (in a "
                           "checkout), or `pip download meshsim -d DIR` / `pip wheel meshsim -w DIR`")
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile.meshsim").write_text(dockerfile)
    return ctx, "Dockerfile.meshsim"


def env_file_for(output: str | Path) -> Path:
    """Where the token lives: next to the compose file, its name with .env (docker-compose.yml ->
    docker-compose.env)."""
    out = Path(output)
    env = out.with_suffix(".env")
    if env.name == out.name:
        raise ComposeError(f"{out}: name the compose file something other than *.env (its token file is *.env)")
    return env


ENV_HEADER = ("# The API token of this compose project's nodes and controller: every POST to a node needs\n"
              "#   Authorization: Bearer $MESHSIM_TOKEN   (and Content-Type: application/json)\n"
              "# Written by `meshsim compose` (a fresh token each time), mode 0600. A secret: keep it out of version\n"
              "# control and images. Regenerate it, then `up` again: compose recreates the containers with it.\n")


def write_env_file(path: str | Path, token: str | None = None) -> Path:
    """Write `MESHSIM_TOKEN=<token>` (a fresh one by default) to `path`, mode 0600 from the first byte on
    (a temp file in the same folder, renamed over it; an existing file's looser mode does not survive)."""
    from meshsim.agent.http import new_token

    path = Path(path)
    token = token or new_token()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(ENV_HEADER + f"MESHSIM_TOKEN={token}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _q(value: str) -> str:
    """A YAML double-quoted scalar."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def compose_file(files: Sequence[str], output: str | Path, *, scenario_path: str | None = None,
                 image: str = DEFAULT_IMAGE, wheelhouse: str | Path | None = None) -> str:
    """The compose file (text) for the scenario in `files`, to be written at `output`; relative paths in it
    (build context, scenario folders, ./reports) are relative to the output file's folder, as compose reads
    them."""
    cluster = Cluster.build(load_scenario(files))
    lay = layout(cluster)
    sc = cluster.scenario
    out_dir = Path(output).resolve().parent
    bgp_port = sc.bgp.listen_port

    # scenario files inside the containers: each scenario folder mounted read-only under /work
    mounts: dict[str, str] = {}  # host folder (relative to the compose file) -> container folder
    in_container: list[str] = []
    if scenario_path:
        in_container = shlex.split(scenario_path)
    else:
        for f in files:
            host_dir = _rel(Path(f).parent, out_dir)
            if host_dir not in mounts:
                if host_dir == "." or not host_dir.startswith(".."):
                    mounts[host_dir] = str(PurePosixPath(WORKDIR) / host_dir) if host_dir != "." else WORKDIR
                else:
                    mounts[host_dir] = f"{WORKDIR}/_scenario{len(mounts)}"
            rel = PurePosixPath(os.path.relpath(mounts[host_dir], WORKDIR)) / Path(f).name
            in_container.append(str(rel))
    default_scenario = " ".join(shlex.quote(p) for p in in_container)
    scenario_arg = "${MESHSIM_SCENARIO:-" + default_scenario + "}"
    volumes = [f"{'./' + h if h != '.' and not h.startswith('..') else h}:{c}:ro" for h, c in mounts.items()]

    env_name = env_file_for(output).name
    root, dockerfile = image_context(out_dir, wheelhouse)
    shown_files = " ".join(_rel(Path(f), out_dir) if not Path(f).is_absolute() else str(f) for f in files)
    lines: list[str] = [
        f"# Generated by `meshsim compose {shown_files} -o {Path(output).name}`: regenerate, don't edit.",
        f"# Scenario {sc.name}: {len(sc.nodes)} nodes on {lay.subnet} (gateway {lay.gateway}), one container per",
        "# node (BGP on its declared address, HTTP status on :9179), and a one-shot controller that starts them,",
        "# waits until every route table is as expected, plays the timeline and writes the report to",
        "# ./reports (exit code 0 = every table converged). Every service reads the run's API token from",
        f"# {env_name} (MESHSIM_TOKEN, mode 0600, never committed): `meshsim compose` writes it next to this",
        "# file with a fresh token (for the checkout's file: make compose-file). With a registry, on any machine:",
        "#   docker compose up --build --exit-code-from controller        (or docker-compose, v1)",
        "# Offline: scripts/wheelhouse.sh, then",
        "#   BASE_IMAGE=meshsim-base:local docker-compose up --build --exit-code-from controller",
        "# Environment: MESHSIM_SCENARIO (another scenario with these nodes, relative to this folder),",
        "# MESHSIM_DATAPLANE=kernel (also program the containers' routing tables), MESHSIM_TIMEOUT (s),",
        "# MESHSIM_REPORTS (report folder), MESHSIM_IMAGE, BASE_IMAGE. Then: docker-compose down -v",
        "",
        "x-image: &image",
        "  build:",
        f"    context: {_q(_rel(root, out_dir))}",
    ]
    if dockerfile is not None:
        from meshsim import __version__

        lines += [f"    dockerfile: {dockerfile}"]
    lines += [
        "    args:",
        '      BASE_IMAGE: "${BASE_IMAGE:-python:3.11-slim}"',
    ]
    if dockerfile is not None:
        lines += [f'      MESHSIM_VERSION: "{__version__}"']
    lines += [
        f'  image: "${{MESHSIM_IMAGE:-{image}}}"',
        f"  working_dir: {WORKDIR}",
        "  init: true",
        f"  env_file: [{_q(env_name)}]",
        "",
        "x-node: &node",
        "  <<: *image",
        "  cap_add: [NET_ADMIN]",
        "  stop_grace_period: 5s",
    ]
    if volumes:
        lines += ["  volumes:"] + [f"    - {_q(v)}" for v in volumes]
    lines += [
        "  healthcheck:",
        f'    test: ["CMD", "bash", "-c", "exec 3<>/dev/tcp/$$MESHSIM_ADDRESS/{HTTP_PORT}"]',
        f"    interval: {health_interval(len(lay.nodes))}s",
        "    timeout: 2s",
        "    retries: 30",
        "",
        "services:",
    ]
    for name, addr in lay.nodes.items():
        lines += [
            f"  {name}:",
            "    <<: *node",
            f"    hostname: {name}",
            f"    mac_address: {_q(mac_for(addr))}",
            "    environment:",
            f"      MESHSIM_ADDRESS: {_q(str(addr))}",
            "    command: >-",
            f"      node --scenario {scenario_arg} --name {name}",
            f"      --bgp-port {bgp_port} --http-port {HTTP_PORT} --dataplane ${{MESHSIM_DATAPLANE:-sim}} --hold-bgp",
            "    networks:",
            "      meshsim:",
            f"        ipv4_address: {lay.nodes[name]}",
        ]
    fit = " ".join(f"{n}={a}" for n, a in lay.nodes.items())
    lines += [
        "  controller:",
        "    <<: *image",
        f"    mac_address: {_q(mac_for(lay.controller))}",
        "    environment:",
        f"      MESHSIM_COMPOSE_NODES: {_q(fit)}",
        "    command: >-",
        f"      controller {scenario_arg} --out /reports --timeout ${{MESHSIM_TIMEOUT:-180}}",
        "    volumes:",
    ]
    lines += [f"      - {_q(v)}" for v in volumes]
    lines += [
        '      - "${MESHSIM_REPORTS:-./reports}:/reports"',
        "      # - /var/run/docker.sock:/var/run/docker.sock  # lets kill-node events pause/kill/start node containers",
        "    depends_on:",
    ]
    for name in lay.nodes:
        lines += [f"      {name}:", "        condition: service_healthy"]
    lines += [
        "    networks:",
        "      meshsim:",
        f"        ipv4_address: {lay.controller}",
        "",
        "networks:",
        "  meshsim:",
        "    driver: bridge",
        "    ipam:",
        "      config:",
        f"        - subnet: {lay.subnet}",
        f"          gateway: {lay.gateway}",
    ]
    return "\n".join(lines) + "\n"


def main(args: Any) -> int:
    text = compose_file(args.files, args.output, scenario_path=getattr(args, "scenario_path", None),
                        wheelhouse=getattr(args, "wheelhouse", None))
    env = env_file_for(args.output)
    try:
        Path(args.output).write_text(text)
        write_env_file(env)
    except OSError as exc:
        raise ComposeError(f"cannot write {exc.filename or args.output}: {exc.strerror or exc}") from None
    cluster_nodes = text.count("    <<: *node\n")
    print(f"wrote {args.output}: {cluster_nodes} node services + controller, and {env} (the run's API token, "
          f"mode 0600); run it with `docker-compose -f {args.output} up --build --exit-code-from controller`")
    return 0
