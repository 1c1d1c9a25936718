"""The `meshsim` command line.

Owns argument parsing and the one place where errors become exit codes: a `MeshsimError` prints one
line (`meshsim: error: ...`) and exits 2; Ctrl-C exits 130. Subcommands that read a scenario are pure;
`run`, `up`, `down`, `node`, `worker`, `show` and `status`/`routes --live` drive processes (meshsim.run,
meshsim.agent); `inspect` reads the runs' state records (meshsim.run.records).
Longer than ~400 lines because the parser has one block per subcommand; command bodies that grow live elsewhere
(meshsim.operator: `-o` output, `show`, `examples`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections import Counter
from typing import Sequence

from meshsim import __version__
from meshsim.agent import API_PORT
from meshsim.errors import MeshsimError, NotFoundError


def print_warnings(scenario) -> None:
    """What the load read past (Scenario.warnings), one line each on stderr."""
    for warning in scenario.warnings:
        print(f"meshsim: warning: {warning}", file=sys.stderr)


def _load(files: Sequence[str]):
    from meshsim.model.cluster import Cluster
    from meshsim.model.resources import load_scenario

    scenario = load_scenario(files)
    print_warnings(scenario)
    return Cluster.build(scenario)


def cmd_validate(args: argparse.Namespace) -> int:
    from meshsim.model.resources import load_scenario
    from meshsim.model.cluster import Cluster

    from meshsim.model.timeline import parse_timeline

    scenario = load_scenario(args.files)
    print_warnings(scenario)
    cluster = Cluster.build(scenario)
    steps = parse_timeline(scenario)
    if args.output in ("json", "yaml"):
        from meshsim.operator import emit
        from meshsim.report.views import validate_data

        emit(validate_data(cluster, len(steps)), args.output)
        return 0
    print(f"{', '.join(scenario.files)}: OK (scenario {scenario.name}, {len(steps)} events)")
    pools = ", ".join(f"{p.name} {p.cidr} /{p.block_size} ipip {p.ipip_mode}" for p in scenario.pools)
    print(f"IPPool: {len(scenario.pools)} ({pools})")
    rr = [n.name for n in scenario.nodes if n.rr_cluster_id]
    subnets = Counter(str(n.subnet) for n in scenario.nodes)
    print(f"Node: {len(scenario.nodes)} ({len(rr)} route reflectors; subnets "
          + ", ".join(f"{s} x{c}" for s, c in subnets.items()) + ")")
    b = scenario.bgp
    print(f"BGPConfiguration: nodeToNodeMeshEnabled {str(b.node_to_node_mesh_enabled).lower()}, "
          f"asNumber {b.as_number}, listenPort {b.listen_port}")
    print(f"BGPPeer: {len(scenario.peers)}" + (f" ({', '.join(p.name for p in scenario.peers)})" if scenario.peers
                                                else ""))
    if scenario.filters:
        print(f"BGPFilter: {len(scenario.filters)} ({', '.join(f.name for f in scenario.filters)})")
    services = [*b.service_cluster_ips, *b.service_external_ips, *b.service_loadbalancer_ips]
    if services or scenario.services:
        print(f"Service advertisement: {', '.join(map(str, services)) or 'no ranges'}; "
              f"{len(scenario.services)} Services, {len(scenario.service_endpoints)} Endpoints")
    if scenario.has_ipam_state:
        print(f"IPAM state: {len(scenario.ipam_blocks)} IPAMBlocks, {len(scenario.ipam_handles)} IPAMHandles, "
              f"{len(scenario.reservations)} IPReservations (the dump's allocations are the truth)")
    print(f"IPAMConfiguration: strictAffinity {str(scenario.ipam.strict_affinity).lower()}, "
          f"maxBlocksPerHost {scenario.ipam.max_blocks_per_host}")
    print(f"BlockAffinity: {len(scenario.affinities)} pinned; blocks claimed in all: {len(cluster.ipam.blocks)}")
    print(f"WorkloadEndpoint: {len(scenario.endpoints)} pinned; pods in all: {len(cluster.pods)}")
    peerings = cluster.peerings()
    from meshsim.model.peering import session_pairs

    print(f"Sessions: {len(session_pairs(peerings))} node-to-node; events: {len(scenario.spec.events)}")
    if args.output == "wide":
        from meshsim.report.views import wide_tables

        print("\n" + wide_tables(cluster), end="")
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    if args.live:
        if args.output in ("json", "yaml"):
            from meshsim.errors import RunError
            from meshsim.operator import emit
            from meshsim.run.client import fetch_views

            if args.node is None:
                raise RunError("--live needs --node NAME")
            emit(fetch_views(args.files, args.node, ("routes",), args.run)["routes"], args.output)
            return 0
        from meshsim.run.client import live_routes

        print(live_routes(args.files, args.node, args.format, args.run), end="")
        return 0
    _need_files(args, "routes")
    from meshsim.oracle.expected import expected_tables

    cluster = _load(args.files)
    tables = expected_tables(cluster)
    names = [args.node] if args.node else [n.name for n in cluster.scenario.nodes]
    for name in names:
        if name not in tables:
            raise NotFoundError("node", name, tuple(tables))
    if args.output in ("json", "yaml"):
        from meshsim.operator import emit
        from meshsim.report.views import routes_data

        emit(routes_data(tables, names), args.output)
        return 0
    for i, name in enumerate(names):
        table = tables[name]
        if len(names) > 1:
            print(("" if i == 0 else "\n") + f"# {name}")
        print(table.render_ip() if args.format == "ip" else table.render_route_n(), end="")
    return 0


def _need_files(args: argparse.Namespace, command: str) -> None:
    if not args.files:
        from meshsim.errors import RunError

        raise RunError(f"meshsim {command} needs the scenario FILE(s)" + (" (or --live --node NAME for a running "
                                                                           "node)" if command == "routes" else ""))


def cmd_peers(args: argparse.Namespace) -> int:
    from meshsim.report.calicoctl import peerings_table

    if not args.files and args.live and args.run is not None:  # the running scenario's files
        from meshsim.run.client import find_run

        args.files = find_run(None, args.run).files
    _need_files(args, "peers")
    cluster = _load(args.files)
    if args.node:
        cluster.scenario.node(args.node)
    if args.graph:
        from meshsim.report.topology import write_graph

        status = None
        if args.live:
            from meshsim.run.client import fetch_views

            status = {n.name: fetch_views(args.files, n.name, ("status",), args.run)["status"]
                      for n in cluster.scenario.nodes}
        print(f"wrote {write_graph(cluster, args.graph, status=status)}")
        return 0
    if args.output in ("json", "yaml"):
        from meshsim.operator import emit
        from meshsim.report.views import peers_data

        emit(peers_data(cluster.peerings(), args.node), args.output)
        return 0
    if args.output == "wide":
        from meshsim.report.views import peers_wide

        print(peers_wide(cluster.peerings(), args.node), end="")
        return 0
    print(peerings_table(cluster.peerings(), args.node), end="")
    return 0


def cmd_ipam(args: argparse.Namespace) -> int:
    from meshsim.report.calicoctl import ipam_table

    cluster = _load(args.files)
    if args.output in ("json", "yaml"):
        from meshsim.operator import emit
        from meshsim.report.views import ipam_data

        emit(ipam_data(cluster), args.output)
        return 0
    print(ipam_table(cluster), end="")
    if args.output == "wide":
        from meshsim.report.views import ipam_wide

        print("\n" + ipam_wide(cluster), end="")
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from meshsim.oracle.expected import expected_tables
    from meshsim.oracle.trace import trace

    cluster = _load(args.files)
    result = trace(cluster, expected_tables(cluster), args.src, args.dst)
    print(result.render(), end="")
    return 0 if result.delivered else 1


def cmd_status(args: argparse.Namespace) -> int:
    if args.output in ("json", "yaml"):
        from meshsim.operator import emit
        from meshsim.run.client import fetch_views

        emit(fetch_views(args.files, args.node, ("status",), args.run)["status"], args.output)
        return 0
    from meshsim.run.client import live_status

    print(live_status(args.files, args.node, args.run), end="")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from meshsim.operator import show, write

    write(show(args.file, args.node, args.words, dialect=args.format, output=args.output, run=args.run))
    return 0


def cmd_examples(args: argparse.Namespace) -> int:
    from meshsim.operator import examples, write

    write(examples(args.copy, force=args.force))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from meshsim.fabric.netns import check_isolation, fabric_factory
    from meshsim.run.runner import main as run_main

    factory = fabric_factory(args.isolation, args.dataplane, bgp_port=args.port, workers=args.workers,
                             process_per_node=args.process_per_node)

    def check(cluster: object) -> None:
        check_isolation(cluster, args.isolation)

    if args.keep_running or args.notify_fd is not None:  # a run that stays up gets a state record
        from meshsim.run.keeper import run_kept

        return run_kept(args, factory, check)
    return run_main(args, factory, mode_check=check)


def cmd_up(args: argparse.Namespace) -> int:
    from meshsim.run.lifecycle import up

    return up(args)


def cmd_down(args: argparse.Namespace) -> int:
    from meshsim.run.lifecycle import down

    return down(args)


def cmd_inspect(args: argparse.Namespace) -> int:
    from meshsim.run.inspect import inspect

    return inspect(args)


def cmd_node(args: argparse.Namespace) -> int:
    from meshsim.agent.standalone import main as node_main

    return node_main(args)


def cmd_worker(args: argparse.Namespace) -> int:
    from meshsim.agent.worker import main as worker_main

    return worker_main(args)


def _csv(text: str, kind: type, flag: str) -> list:
    from meshsim.errors import ScenarioError

    try:
        values = [kind(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ScenarioError("<command line>", "is not a comma-separated list", field=flag,
                            expected="like mesh,rr or 10,25", got=text) from None
    if not values:
        raise ScenarioError("<command line>", "is empty", field=flag, expected="at least one value", got=text)
    return values


def cmd_compare(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from meshsim.errors import ScenarioError
    from meshsim.run.compare import compare

    sizes = _csv(args.nodes, int, "--nodes") if args.nodes else []
    what_if = _csv(args.what_if, int, "--what-if") if args.what_if else []
    for flag, values in (("--nodes", sizes), ("--what-if", what_if)):
        if any(n < 2 for n in values):
            raise ScenarioError("<command line>", "a cluster needs at least 2 nodes", field=flag,
                                expected="sizes of 2 nodes or more, counting every node (reflectors included)",
                                got=",".join(map(str, values)))
    if args.repeat < 1:
        raise ScenarioError("<command line>", "must be at least 1", field="--repeat", got=args.repeat)
    out = Path(args.out)

    async def go() -> dict:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # the run under way stops its nodes, then the comparison ends
            loop.add_signal_handler(sig, task.cancel)
        return await compare(args.files, out=out, sizes=sizes, reflectors=args.reflectors,
                             selector=args.reflector_selector, what_if=what_if, repeat=args.repeat,
                             timeout=args.timeout, pods=args.pods, migration=not args.no_migration)

    try:
        data = asyncio.run(go())
    except (KeyboardInterrupt, asyncio.CancelledError):
        md = out / "comparison.md"
        where = f"; what was measured is in {md}" if md.exists() else ""
        print(f"meshsim: interrupted; every node process was stopped{where}", file=sys.stderr)
        return 130
    print((out / "comparison.md").read_text())
    ok = all(m.get("converged") for d in data["medians"].values() for m in d.values())
    return 0 if ok else 1


def cmd_compose(args: argparse.Namespace) -> int:
    from meshsim.fabric.composefile import main as compose_main

    return compose_main(args)


def cmd_controller(args: argparse.Namespace) -> int:
    from meshsim.fabric.controller import main as controller_main

    return controller_main(args)


def _global_flags(suppress: bool) -> argparse.ArgumentParser:
    """--log-level and --log-json, accepted before and after the subcommand (a subcommand's copy has no
    default, so it does not undo the value given before it)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--log-level", default=argparse.SUPPRESS if suppress else None,
                   help="debug|info|warning|error (default warning)")
    p.add_argument("--log-json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                   help="log JSON lines instead of console text")
    return p


def _output(p: argparse.ArgumentParser, what: str = "") -> None:
    p.add_argument("-o", "--output", choices=("json", "yaml", "wide"), default=None,
                   help="json|yaml: the same data as data (loads back with any JSON/YAML reader); wide: "
                        + (what or "the same table"))


def _run_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", metavar="RUN", default=None,
                   help="the run to ask (`meshsim inspect` lists them; needed when several are up)")


def _lifecycle_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start an emulation in the background; returns once it has converged",
                       description="Start the scenario's nodes in the background (a detached runner keeps them up "
                                   "and watched) and return once every node's table equals its expected table, "
                                   "printing the summary. The run's state record (its id, token, nodes and their "
                                   "addresses, processes, namespaces) lets status, routes --live, show, inspect and "
                                   "down find it. Not converged within --timeout: the run is left up for inspection, "
                                   "exit 1. Ctrl-C while waiting brings it down.")
    p.add_argument("files", nargs="+", metavar="SCENARIO")
    p.add_argument("--name", default=None, metavar="RUN",
                   help="the run's name (default: the scenario's name, with -2, -3 ... when taken)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for convergence (default 120)")
    p.add_argument("--isolation", choices=("loopback", "netns"), default="loopback",
                   help="as for `meshsim run` (netns: root, every node in a namespace of its own)")
    p.add_argument("--dataplane", choices=("sim", "kernel"), default="sim", help="as for `meshsim run`")
    p.add_argument("--workers", type=int, default=None, help="worker processes hosting the nodes (as for run)")
    p.add_argument("--port", type=int, default=None, help="BGP port for every node (as for run)")
    p.add_argument("--process-per-node", action="store_true", help="one process per node instead of shared workers")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("inspect", help="list the emulations that run (meshsim up), or the nodes of one")
    p.add_argument("run", nargs="?", metavar="RUN")
    _output(p, "adds the runner's pid and the scenario files (with RUN: the namespaces)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("down", help="stop an emulation cleanly and remove its state record (also a stale one)")
    p.add_argument("run", nargs="?", metavar="RUN", help="the run to stop (needed when several are up)")
    p.add_argument("--all", action="store_true", help="stop every run")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds the runner gets to stop its nodes before it is killed (default 60)")
    p.set_defaults(func=cmd_down)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshsim", parents=[_global_flags(False)],
                                     description="Emulate Calico's BGP control plane: IPAM, node-to-node mesh and "
                                     "route reflectors, with real BGP sessions (ExaBGP's message codec).")
    parser.add_argument("--version", action="version", version=f"meshsim {__version__}")
    common = _global_flags(True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_parser = sub.add_parser

    def add_parser(name: str, **kw: object) -> argparse.ArgumentParser:
        return _add_parser(name, parents=[common], **kw)  # type: ignore[arg-type]

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser("validate", help="check a scenario and summarise it per resource kind")
    p.add_argument("files", nargs="+", metavar="FILE")
    _output(p, "also `calicoctl get ippool|node|bgppeer -o wide` tables of the resources")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("routes", help="print a node's expected route table (or its live one with --live)")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--node", help="node name (default: every node)")
    p.add_argument("--format", choices=("ip", "route"), default="ip", help="`ip route` or `route -n` (default ip)")
    p.add_argument("--live", action="store_true", help="read the table from the running node (meshsim up): FILE "
                                                       "picks the run of that scenario; optional with one run up")
    _run_flag(p)
    _output(p, "the same table (iproute2 has no wide form)")
    p.set_defaults(func=cmd_routes)

    p = sub.add_parser("peers", help="print each node's BGP peerings as confd computes them")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--node", help="only this node")
    _output(p, "adds LOCAL ADDRESS (the source address) and the peer's PORT")
    p.add_argument("--graph", metavar="FILE.png|.svg|.dot",
                   help="draw the topology instead: nodes by role (mesh node, route reflector with its cluster ID, "
                        "RR client, external peer), sessions as edges (needs meshsim[graph] for png/svg)")
    p.add_argument("--live", action="store_true",
                   help="with --graph: colour each session by its state on the running nodes")
    _run_flag(p)
    p.set_defaults(func=cmd_peers)

    p = sub.add_parser("ipam", help="print blocks per node, their use, and borrowed addresses")
    p.add_argument("files", nargs="+", metavar="FILE")
    _output(p, "adds a table of blocks with their pool, state and pods")
    p.set_defaults(func=cmd_ipam)

    p = sub.add_parser("trace", help="follow a packet from a pod (or node/address) to a pod or address")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--from", dest="src", required=True, metavar="POD|IP", help="pod (ns/name or name), node or IP")
    p.add_argument("--to", dest="dst", required=True, metavar="POD|IP", help="pod, node or IP")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("status", help="`calicoctl node status` of a running node (meshsim up)")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="the scenario of the run to ask (optional: --run RUN, or the only run that is up)")
    p.add_argument("--node", required=True)
    _run_flag(p)
    _output(p, "the same table (calicoctl node status has no wide form)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("show", help="what `birdcl show ...` prints on a running node: protocols [all] [NAME], "
                                    "route [all] [for PREFIX], status",
                       description="Print what `birdcl show WORDS` prints on NODE of a running scenario, as "
                                   "Calico's BIRD (1.6) prints it, or BIRD 2 with --format bird2. A meshsim node's "
                                   "state comes from its JSON views; an `implementation: bird` node's from its "
                                   "BIRD's control socket.")
    p.add_argument("node", metavar="NODE")
    p.add_argument("words", nargs="+", metavar="protocols|route|status",
                   help="protocols [all] [NAME] | route [all] [primary] [for ADDRESS|PREFIX] [protocol NAME] | status")
    p.add_argument("-f", "--file", action="append", metavar="SCENARIO",
                   help="the scenario of the run to ask (repeat for several files; optional: --run RUN, or the "
                        "only run that is up)")
    _run_flag(p)
    p.add_argument("--format", choices=("bird1", "bird2"), default="bird1",
                   help="bird1: Calico's BIRD 1.6 (default); bird2: BIRD 2.0")
    _output(p, "the same text")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("examples", help="list the scenarios shipped with meshsim, or copy them to a folder")
    p.add_argument("--copy", metavar="DIR", help="copy every shipped scenario into DIR (subfolders kept)")
    p.add_argument("--force", action="store_true", help="with --copy: overwrite files of the same name")
    p.set_defaults(func=cmd_examples)

    p = sub.add_parser("run", help="run the scenario: one real node process per Node, real BGP on 127.x")
    p.add_argument("files", nargs="+", metavar="SCENARIO")
    p.add_argument("--out", default=None, help="write report.json, routes/, status/ here")
    p.add_argument("--port", type=int, default=None,
                   help="BGP port for every node (default: 179 as root, otherwise 17900)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for convergence (default 120)")
    p.add_argument("--keep-running", action="store_true",
                   help="stay up after converging until Ctrl-C or `meshsim down` (the run gets a state record, "
                        "like `meshsim up`'s, so status/show/inspect find it)")
    p.add_argument("--name", default=None, metavar="RUN",
                   help="with --keep-running: the run's name (default: the scenario's name, made unique)")
    p.add_argument("--notify-fd", type=int, default=None, help=argparse.SUPPRESS)  # `meshsim up`'s pipe
    p.add_argument("--isolation", choices=("loopback", "netns"), default="loopback",
                   help="loopback: every node on its own 127.x address (default); netns (root): every node in a "
                        "network namespace of its own on a bridge, holding its declared address (needed by "
                        "implementation: bird nodes and external peers)")
    p.add_argument("--dataplane", choices=("sim", "kernel"), default="sim",
                   help="kernel (with --isolation netns): meshsim nodes also program their namespace's routing "
                        "table, so `ip -n msim-<run>-<node> route` shows the routes")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes hosting the nodes (default: one per CPU, more if the nodes' sockets "
                        "would not fit one process's open-file limit)")
    p.add_argument("--process-per-node", action="store_true",
                   help="one process per node instead of shared workers")
    p.set_defaults(func=cmd_run)

    _lifecycle_parsers(sub)

    p = sub.add_parser("compare", help="your cluster as a full mesh and with route reflectors: a verdict, "
                                       "crossovers and what-ifs")
    p.add_argument("files", nargs="+", metavar="CLUSTER",
                   help="the cluster's Calico YAML (+ a Scenario document: timers, pods, timeline)")
    p.add_argument("--nodes", default="", help="also run generated clusters of these sizes, e.g. 10,25 (sizes count "
                                              "all nodes, reflectors included)")
    p.add_argument("--reflectors", type=int, default=None,
                   help="route reflectors for a mesh cluster (default 2, or all that --reflector-selector matches)")
    p.add_argument("--reflector-selector", default=None, metavar="SELECTOR",
                   help="Calico selector on node labels choosing the reflectors, e.g. \"rr-candidate == 'true'\" "
                        "(default: meshsim spreads them over zones and subnets)")
    p.add_argument("--what-if", default="", metavar="SIZES",
                   help="predict every metric at these sizes, e.g. 500,1000,5000")
    p.add_argument("--repeat", type=int, default=1, help="runs per size and design; medians are reported")
    p.add_argument("--pods", type=int, default=None,
                   help="pods per generated node (default: as many as the node it copies)")
    p.add_argument("--no-migration", action="store_true", help="skip the live mesh -> RR migration run")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("compose", help="write a docker-compose file running the scenario, one container per node")
    p.add_argument("files", nargs="+", metavar="SCENARIO")
    p.add_argument("-o", "--output", required=True, help="the compose file to write")
    p.add_argument("--scenario-path", default=None,
                   help="where the scenario files are inside the containers (default: as given, under /meshsim)")
    p.add_argument("--wheelhouse", metavar="DIR", default=None,
                   help="build the image from meshsim's wheel and its dependencies' wheels in DIR (as "
                        "scripts/wheelhouse.sh fills it), with no network; the default is this checkout's "
                        "Dockerfile, or outside a checkout the package index")
    p.set_defaults(func=cmd_compose)

    p = sub.add_parser("controller", help="(compose) wait for the node containers, run the timeline, write the report")
    p.add_argument("files", nargs="+", metavar="SCENARIO")
    p.add_argument("--out", default="/reports", help="report folder (default /reports)")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--keep-running", action="store_true",
                   help="stay up after the verdict, keeping the run's record true, until SIGTERM (`docker compose "
                        "down`) or `meshsim down RUN` on the host (also: MESHSIM_KEEP_RUNNING=yes)")
    p.set_defaults(func=cmd_controller)

    p = sub.add_parser("node", help="run one node process (started by `meshsim run`, or one per container)")
    p.add_argument("--config", help="the node's JSON config written by the runner")
    p.add_argument("--scenario", nargs="+", metavar="FILE", help="compute the config from the scenario instead")
    p.add_argument("--name", help="the Node this process is (with --scenario)")
    p.add_argument("--bgp-port", type=int, default=179)
    p.add_argument("--http-port", type=int, default=API_PORT)
    p.add_argument("--workdir", default="/tmp/meshsim-node")
    p.add_argument("--loopback", action="store_true", help="bind the 127.x address mapped from the declared one")
    p.add_argument("--dataplane", choices=("sim", "kernel"), default=None,
                   help="kernel: also program this host's (container's, namespace's) routing table")
    p.add_argument("--hold-bgp", action="store_true",
                   help="serve HTTP at once but start BGP only on POST /start (the compose controller starts "
                        "every node, so the cold start is measured as `meshsim run` measures it)")
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("worker", help="(internal) a worker process hosting nodes, driven by `meshsim run` over stdin")
    p.set_defaults(func=cmd_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from meshsim.logs import configure

    configure(args.log_level, args.log_json or None)
    if args.func is not cmd_worker and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # started with `cmd &` from a script, which ignores SIGINT: `kill -INT` / Ctrl-C still stops us cleanly
        # (`meshsim up` brings its run down, `compare` writes what it measured); workers leave it to their runner
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if os.environ.get("MESHSIM_YAML_LOADER"):
            from meshsim.model.yamldoc import use_loader

            try:
                use_loader(os.environ["MESHSIM_YAML_LOADER"].lower())
            except ValueError as exc:
                raise NotFoundError("YAML loader (MESHSIM_YAML_LOADER)", os.environ["MESHSIM_YAML_LOADER"],
                                    ("c", "python")) from exc
        return int(args.func(args) or 0)
    except MeshsimError as exc:
        print(f"meshsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("meshsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so in one line; the traceback only when asked for
        if (args.log_level or "").lower() == "debug":
            raise
        print(f"meshsim: internal error: {type(exc).__name__}: {exc} (rerun with --log-level debug for the "
              "traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
