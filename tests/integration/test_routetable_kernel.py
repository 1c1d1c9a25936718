"""meshsim.routes.routetable against a real kernel main table in a throwaway network namespace.

Builds a Calico-like node table with the module, installs it with `ip -n NS route add` (in
shuffled order: the dump order must not depend on insertion), and checks that `ip route` and
`route -n` print exactly what `render_ip()` / `render_route_n()` say, that `parse_ip_route`
reads the kernel's output back, and that `lookup` agrees with `ip route get fibmatch`.
Only routes inside the namespace are touched; the namespace is always deleted.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest

from meshsim.routes.routetable import Route, RouteTable, parse_ip_route

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 `ip` not installed"),
]

NEEDS_ROUTE = pytest.mark.skipif(shutil.which("route") is None,
                                 reason="net-tools `route` not installed (apt-get install net-tools)")

ETH0_ADDRS = ("192.168.0.81/24", "10.0.0.5/24", "10.39.0.2/16")
DEVICES = ("eth0", "tunl0", "caliba60dafcd06")


def R(dst: str, **kw: object) -> Route:
    return Route(dst=IPv4Network(dst), **kw)  # type: ignore[arg-type]


GW = IPv4Address("192.168.0.1")
PEER = IPv4Address("192.168.0.82")

TABLE = RouteTable([
    # host routes; the proto-kernel ones appear when the addresses are added
    R("0.0.0.0/0", via=GW, dev="eth0"),
    R("0.0.0.0/0", via=IPv4Address("10.0.0.1"), dev="eth0", proto="dhcp", src=IPv4Address("10.0.0.5"),
      metric=100),
    R("0.0.0.0/1", via=GW, dev="eth0", proto="static", metric=10),
    R("192.168.0.0/24", dev="eth0", proto="kernel", scope="link", src=IPv4Address("192.168.0.81")),
    R("10.0.0.0/24", dev="eth0", proto="kernel", scope="link", src=IPv4Address("10.0.0.5")),
    R("10.39.0.0/16", dev="eth0", proto="kernel", scope="link", src=IPv4Address("10.39.0.2")),
    # own block blackhole + local workloads (one at the block's own address)
    R("10.244.42.64/26", type="blackhole", proto="bird"),
    R("10.244.42.64/26", type="blackhole", proto="bird", metric=1),
    R("10.244.42.64/32", dev="caliba60dafcd06", proto="boot", scope="link"),
    R("10.244.42.68/32", dev="caliba60dafcd06", scope="link"),
    # BGP-learned: IPIP Always, Never on-subnet, Never off-subnet (gateway recursive)
    R("10.244.103.64/26", via=PEER, dev="tunl0", proto="bird", onlink=True),
    R("10.244.104.64/26", via=PEER, dev="eth0", proto="bird"),
    R("192.168.169.192/26", via=IPv4Address("10.39.0.1"), dev="eth0", proto="bird"),
    R("10.244.0.0/16", via=IPv4Address("10.0.0.1"), dev="eth0", proto="static", metric=5),
    R("10.244.105.1/32", via=PEER, dev="tunl0", proto="bird", src=IPv4Address("192.168.0.81"), metric=9,
      onlink=True),
    R("10.244.106.0/24", dev="eth0"),
    R("10.244.107.0/24", dev="eth0", scope="host", metric=4294967295),
    R("10.250.8.1/32", type="blackhole"),
    # reject routes (`!` in route -n)
    R("10.99.0.0/16", type="unreachable"),
    R("10.98.0.0/16", type="prohibit", proto="bird", metric=12),
    R("10.244.202.1/32", type="unreachable", metric=4),
])

PROBES = ("10.244.42.64", "10.244.42.65", "10.244.42.68", "10.244.42.127", "10.244.103.70", "10.244.105.1",
          "10.244.1.1", "192.168.0.9", "192.168.169.200", "8.8.8.8", "200.1.1.1", "10.39.200.1", "10.99.1.1",
          "10.244.202.1", "10.98.0.1", "10.250.8.1")


def run(*args: str) -> str:
    res = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def add_args(r: Route) -> list[str]:
    """`ip route add` arguments for a Route, built from its fields."""
    args = [r.type, str(r.dst)]
    if r.via is not None:
        args += ["via", str(r.via)]
    if r.dev is not None:
        args += ["dev", r.dev]
    if r.proto is not None:
        args += ["proto", r.proto]
    if r.type == "unicast":
        # explicit: iproute2 would pick scope link for a gateway-less route left unsaid
        args += ["scope", r.scope or "global"]
    if r.src is not None:
        args += ["src", str(r.src)]
    if r.metric is not None:
        args += ["metric", str(r.metric)]
    if r.onlink:
        args.append("onlink")
    return args


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh namespace with Calico-named veth ends, up, and eth0 addressed; deleted afterwards."""
    name = f"meshsim-rt-{os.getpid()}-{secrets.token_hex(3)}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {res.stderr.strip()}")
    try:
        for i, dev in enumerate(DEVICES):
            run("ip", "-n", name, "link", "add", dev, "type", "veth", "peer", "name", f"peer{i}")
            run("ip", "-n", name, "link", "set", dev, "up")
            run("ip", "-n", name, "link", "set", f"peer{i}", "up")
        run("ip", "-n", name, "link", "set", "lo", "up")
        for addr in ETH0_ADDRS:
            run("ip", "-n", name, "addr", "add", addr, "dev", "eth0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def install(ns: str, table: RouteTable, seed: int) -> None:
    """Add every route not made by the kernel itself (proto kernel), in shuffled order."""
    routes = [r for r in table if r.proto != "kernel"]
    random.Random(seed).shuffle(routes)
    for r in routes:
        run("ip", "-n", ns, "route", "add", *add_args(r))


@pytest.mark.parametrize("seed", [1, 2])
def test_ip_route_matches_kernel(netns: str, seed: int) -> None:
    install(netns, TABLE, seed)
    out = run("ip", "-n", netns, "route")
    assert out == TABLE.render_ip()


def test_parse_round_trips_kernel_output(netns: str) -> None:
    install(netns, TABLE, 3)
    out = run("ip", "-n", netns, "route")
    parsed = parse_ip_route(out)
    assert parsed == TABLE
    assert parsed.render_ip() == out


@NEEDS_ROUTE
def test_route_n_matches_kernel(netns: str) -> None:
    install(netns, TABLE, 4)
    out = run("ip", "netns", "exec", netns, "route", "-n")
    assert out == TABLE.render_route_n()


@NEEDS_ROUTE
def test_empty_table_renders_like_kernel(netns: str) -> None:
    for addr in ETH0_ADDRS:
        run("ip", "-n", netns, "addr", "del", addr, "dev", "eth0")
    assert run("ip", "-n", netns, "route") == RouteTable().render_ip() == ""
    assert run("ip", "netns", "exec", netns, "route", "-n") == RouteTable().render_route_n()


def test_lookup_agrees_with_fibmatch(netns: str) -> None:
    install(netns, TABLE, 5)
    for probe in PROBES:
        res = subprocess.run(["ip", "-n", netns, "route", "get", "fibmatch", probe], capture_output=True, text=True)
        mine = TABLE.lookup(IPv4Address(probe))
        assert mine is not None, probe
        if mine.type == "unicast":
            assert res.returncode == 0, (probe, res.stderr)
            assert res.stdout == mine.render_ip() + "\n", probe
        else:
            # the kernel refuses to "get" a route to a blackhole / unreachable / prohibit destination
            assert res.returncode != 0, (probe, res.stdout)
