"""meshsim.routes.routetable: renderings (as checked on a real kernel), dump order, lookup, diff, parse.

Every expected string below was printed by iproute2 6.1 / net-tools 2.10 on Linux for the same
routes (see tests/integration/test_routetable_kernel.py). Note iproute2's trailing space.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from meshsim.routes.routetable import DEFAULT, Route, RouteDelta, RouteTable, parse_ip_route


def ip(s: str) -> IPv4Address:
    return IPv4Address(s)


def net(s: str) -> IPv4Network:
    return IPv4Network(s)


# --- the Calico node lines -------------------------------------------------------------------

DEFAULT_GW = Route(dst=DEFAULT, via=ip("192.168.0.1"), dev="eth0")
CONNECTED = Route(dst=net("192.168.0.0/24"), dev="eth0", proto="kernel", scope="link", src=ip("192.168.0.81"))
BLACKHOLE = Route(dst=net("10.244.42.64/26"), type="blackhole", proto="bird")
WORKLOAD = Route(dst=net("10.244.42.68/32"), dev="caliba60dafcd06", proto="boot", scope="link")
IPIP = Route(dst=net("10.244.103.64/26"), via=ip("192.168.0.82"), dev="tunl0", proto="bird", onlink=True)
DIRECT = Route(dst=net("10.244.103.64/26"), via=ip("192.168.0.82"), dev="eth0", proto="bird")
RECURSIVE = Route(dst=net("192.168.169.192/26"), via=ip("10.39.0.1"), dev="eth0", proto="bird")
DHCP_DEFAULT = Route(dst=DEFAULT, via=ip("10.0.0.1"), dev="eth0", proto="dhcp", src=ip("10.0.0.5"), metric=100)

CALICO_LINES = [
    (DEFAULT_GW, "default via 192.168.0.1 dev eth0 "),
    (CONNECTED, "192.168.0.0/24 dev eth0 proto kernel scope link src 192.168.0.81 "),
    (BLACKHOLE, "blackhole 10.244.42.64/26 proto bird "),
    (WORKLOAD, "10.244.42.68 dev caliba60dafcd06 scope link "),
    (IPIP, "10.244.103.64/26 via 192.168.0.82 dev tunl0 proto bird onlink "),
    (DIRECT, "10.244.103.64/26 via 192.168.0.82 dev eth0 proto bird "),
    (RECURSIVE, "192.168.169.192/26 via 10.39.0.1 dev eth0 proto bird "),
    (DHCP_DEFAULT, "default via 10.0.0.1 dev eth0 proto dhcp src 10.0.0.5 metric 100 "),
]


@pytest.mark.parametrize(("route", "line"), CALICO_LINES, ids=[line.split()[0] + "-" + str(i)
                                                                for i, (_, line) in enumerate(CALICO_LINES)])
def test_render_ip_calico_lines(route: Route, line: str) -> None:
    assert route.render_ip() == line


@pytest.mark.parametrize(("route", "line"), [
    (Route(dst=net("10.96.0.0/16"), dev="eth0", proto="kernel", scope="link"),
     "10.96.0.0/16 dev eth0 proto kernel scope link "),
    (Route(dst=net("10.97.0.0/16"), dev="eth0", scope="universe", metric=0), "10.97.0.0/16 dev eth0 "),
    (Route(dst=net("10.250.6.0/24"), dev="eth0", scope="host"), "10.250.6.0/24 dev eth0 scope host "),
    (Route(dst=net("10.244.0.0/16"), via=ip("10.0.0.1"), dev="eth0", proto="static", metric=5),
     "10.244.0.0/16 via 10.0.0.1 dev eth0 proto static metric 5 "),
    (Route(dst=net("10.244.200.0/24"), via=ip("192.168.0.82"), dev="tunl0", proto="bird", src=ip("192.168.0.81"),
           metric=9, onlink=True),
     "10.244.200.0/24 via 192.168.0.82 dev tunl0 proto bird src 192.168.0.81 metric 9 onlink "),
    (Route(dst=net("10.244.201.0/24"), type="blackhole", proto="bird", metric=3),
     "blackhole 10.244.201.0/24 proto bird metric 3 "),
    (Route(dst=net("10.250.8.1/32"), type="blackhole"), "blackhole 10.250.8.1 "),
    (Route(dst=net("10.99.0.0/16"), type="unreachable"), "unreachable 10.99.0.0/16 "),
    (Route(dst=net("10.250.7.0/24"), type="prohibit", proto="bird", metric=12),
     "prohibit 10.250.7.0/24 proto bird metric 12 "),
    (Route(dst=net("0.0.0.0/1"), dev="eth0", scope="link"), "0.0.0.0/1 dev eth0 scope link "),
    (Route(dst=net("10.250.0.0/24"), dev="eth0", scope="link", metric=4294967295),
     "10.250.0.0/24 dev eth0 scope link metric 4294967295 "),
])
def test_render_ip_other_forms(route: Route, line: str) -> None:
    assert route.render_ip() == line


def test_hidden_fields_normalise() -> None:
    """boot proto, universe scope and metric 0 are what iproute2 hides; they equal "unset"."""
    assert WORKLOAD.proto is None
    assert WORKLOAD == Route(dst=net("10.244.42.68/32"), dev="caliba60dafcd06", scope="link")
    assert Route(dst=DEFAULT, dev="eth0", scope="global", metric=0) == Route(dst=DEFAULT, dev="eth0")


def test_strings_are_accepted() -> None:
    route = Route(dst="0.0.0.0/0", via="192.168.0.1", dev="eth0", src="192.168.0.81")  # type: ignore[arg-type]
    assert route.dst == DEFAULT and route.via == ip("192.168.0.1") and route.src == ip("192.168.0.81")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"dst": net("10.0.0.0/8"), "type": "multicast", "dev": "eth0"}, "unknown route type"),
    ({"dst": net("10.0.0.0/8")}, "needs via or dev"),
    ({"dst": net("10.0.0.0/8"), "type": "blackhole", "dev": "eth0"}, "takes no via, dev or onlink"),
    ({"dst": net("10.0.0.0/8"), "type": "unreachable", "via": ip("10.0.0.1")}, "takes no via"),
    ({"dst": net("10.0.0.0/8"), "dev": "eth0", "onlink": True}, "onlink needs a gateway"),
    ({"dst": net("10.0.0.0/8"), "via": ip("10.0.0.1"), "dev": "eth0", "scope": "link"}, "cannot have scope"),
    ({"dst": net("10.0.0.0/8"), "dev": "eth0", "scope": "site"}, "unknown scope"),
    ({"dst": net("10.0.0.0/8"), "dev": "eth0", "metric": -1}, "out of range"),
    ({"dst": net("10.0.0.0/8"), "dev": "eth0", "metric": 2**32}, "out of range"),
    ({"dst": net("10.0.0.0/8"), "dev": "a-device-name-too-long"}, "bad device name"),
    ({"dst": net("10.0.0.0/8"), "dev": "eth0", "proto": "bi rd"}, "bad proto"),
])
def test_route_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Route(**kwargs)  # type: ignore[arg-type]


# --- RouteTable: order, rendering ------------------------------------------------------------

NODE = RouteTable([RECURSIVE, IPIP, WORKLOAD, BLACKHOLE, CONNECTED, DHCP_DEFAULT, DEFAULT_GW,
                   Route(dst=net("10.244.42.64/32"), dev="caliba60dafcd06", scope="link")])

NODE_IP = """\
default via 192.168.0.1 dev eth0 
default via 10.0.0.1 dev eth0 proto dhcp src 10.0.0.5 metric 100 
10.244.42.64 dev caliba60dafcd06 scope link 
blackhole 10.244.42.64/26 proto bird 
10.244.42.68 dev caliba60dafcd06 scope link 
10.244.103.64/26 via 192.168.0.82 dev tunl0 proto bird onlink 
192.168.0.0/24 dev eth0 proto kernel scope link src 192.168.0.81 
192.168.169.192/26 via 10.39.0.1 dev eth0 proto bird 
"""

NODE_ROUTE_N = """\
Kernel IP routing table
Destination     Gateway         Genmask         Flags Metric Ref    Use Iface
0.0.0.0         192.168.0.1     0.0.0.0         UG    0      0        0 eth0
0.0.0.0         10.0.0.1        0.0.0.0         UG    100    0        0 eth0
10.244.42.64    0.0.0.0         255.255.255.255 UH    0      0        0 caliba60dafcd06
10.244.42.64    0.0.0.0         255.255.255.192 U     0      0        0 *
10.244.42.68    0.0.0.0         255.255.255.255 UH    0      0        0 caliba60dafcd06
10.244.103.64   192.168.0.82    255.255.255.192 UG    0      0        0 tunl0
192.168.0.0     0.0.0.0         255.255.255.0   U     0      0        0 eth0
192.168.169.192 10.39.0.1       255.255.255.192 UG    0      0        0 eth0
"""


def test_table_render_ip() -> None:
    assert NODE.render_ip() == NODE_IP


def test_table_render_route_n() -> None:
    assert NODE.render_route_n() == NODE_ROUTE_N


def test_empty_table() -> None:
    empty = RouteTable()
    assert empty.render_ip() == ""
    assert empty.render_route_n() == NODE_ROUTE_N.split("0.0.0.0")[0]
    assert len(empty) == 0 and list(empty) == [] and empty.lookup(ip("10.0.0.1")) is None


@pytest.mark.parametrize(("route", "row"), [
    (Route(dst=net("10.98.0.0/16"), type="prohibit"),
     "10.98.0.0       -               255.255.0.0     !     0      -        0 -"),
    (Route(dst=net("10.99.0.0/16"), type="unreachable", metric=12),
     "10.99.0.0       -               255.255.0.0     !     12     -        0 -"),
    (Route(dst=net("10.244.202.1/32"), type="unreachable", metric=4),
     "10.244.202.1    -               255.255.255.255 !H    4      -        0 -"),
    (Route(dst=net("10.250.8.1/32"), type="blackhole"),
     "10.250.8.1      0.0.0.0         255.255.255.255 UH    0      0        0 *"),
    (Route(dst=net("10.244.201.0/24"), type="blackhole", proto="bird", metric=3),
     "10.244.201.0    0.0.0.0         255.255.255.0   U     3      0        0 *"),
    (Route(dst=net("10.250.5.1/32"), via=ip("192.168.0.1"), dev="eth0"),
     "10.250.5.1      192.168.0.1     255.255.255.255 UGH   0      0        0 eth0"),
    (Route(dst=net("10.250.0.0/24"), dev="eth0", metric=4294967295),
     "10.250.0.0      0.0.0.0         255.255.255.0   U     -1     0        0 eth0"),
    (Route(dst=net("10.250.1.0/24"), dev="eth0", metric=100000000),
     "10.250.1.0      0.0.0.0         255.255.255.0   U     100000000 0        0 eth0"),
])
def test_route_n_rows(route: Route, row: str) -> None:
    assert route.render_route_n() == row


def test_dump_order() -> None:
    """Ascending network address; same address: longer prefix first; same prefix: lower metric first."""
    routes = [
        Route(dst=DEFAULT, via=ip("10.0.0.1"), dev="eth0", metric=100),
        Route(dst=net("192.168.0.0/24"), dev="eth0"),
        Route(dst=net("10.244.42.0/24"), dev="eth0"),
        Route(dst=DEFAULT, via=ip("10.0.0.1"), dev="eth0", metric=7),
        Route(dst=net("10.244.42.0/25"), dev="eth0"),
        Route(dst=net("0.0.0.0/1"), dev="eth0"),
        Route(dst=net("10.244.42.64/26"), type="blackhole", metric=1),
        Route(dst=net("10.244.42.64/32"), dev="cali1"),
        Route(dst=net("10.244.42.64/26"), type="blackhole"),
        Route(dst=net("10.9.0.0/16"), dev="eth0"),
        Route(dst=DEFAULT, via=ip("10.0.0.1"), dev="eth0"),
    ]
    got = [(str(r.dst), r.metric) for r in RouteTable(routes)]
    assert got == [
        ("0.0.0.0/1", None), ("0.0.0.0/0", None), ("0.0.0.0/0", 7), ("0.0.0.0/0", 100),
        ("10.9.0.0/16", None),
        ("10.244.42.0/25", None), ("10.244.42.0/24", None),
        ("10.244.42.64/32", None), ("10.244.42.64/26", None), ("10.244.42.64/26", 1),
        ("192.168.0.0/24", None),
    ]
    assert RouteTable(reversed(routes)) == RouteTable(routes)


def test_duplicate_dst_and_metric_rejected() -> None:
    with pytest.raises(ValueError, match="two routes for 10.244.103.64/26 metric 0"):
        RouteTable([IPIP, DIRECT])
    with pytest.raises(ValueError, match="two routes for default metric 0"):
        RouteTable([DEFAULT_GW, DEFAULT_GW])
    # same dst, different metric is fine (as in the kernel)
    assert len(RouteTable([DEFAULT_GW, DHCP_DEFAULT])) == 2


def test_container_protocol_and_helpers() -> None:
    assert len(NODE) == 8
    assert list(NODE) == list(NODE.routes)
    assert IPIP in NODE and DIRECT not in NODE and "x" not in NODE
    assert NODE.get(DEFAULT) == DEFAULT_GW
    assert NODE.get(DEFAULT, 100) == DHCP_DEFAULT
    assert NODE.get(net("10.0.0.0/8")) is None
    assert NODE == RouteTable(reversed(NODE.routes)) and hash(NODE) == hash(RouteTable(NODE.routes))
    assert NODE != RouteTable()

    replaced = NODE.with_routes(DIRECT)
    assert DIRECT in replaced and IPIP not in replaced and len(replaced) == 8
    assert NODE.with_routes(Route(dst=net("10.1.0.0/16"), dev="eth0")).routes[2].dst == net("10.1.0.0/16")
    assert IPIP in NODE  # unchanged

    assert len(NODE.without(DEFAULT)) == 6  # both default routes
    assert NODE.without(DHCP_DEFAULT).get(DEFAULT) == DEFAULT_GW
    assert NODE.without(IPIP, net("192.168.0.0/24")) == RouteTable(r for r in NODE if r not in (IPIP, CONNECTED))


# --- lookup -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("addr", "expected"), [
    ("10.244.42.68", WORKLOAD),            # /32 beats the /26 blackhole
    ("10.244.42.69", BLACKHOLE),           # blackhole matched; the caller sees the type
    ("10.244.42.64", Route(dst=net("10.244.42.64/32"), dev="caliba60dafcd06", scope="link")),
    ("10.244.103.100", IPIP),
    ("192.168.0.82", CONNECTED),
    ("192.168.169.255", RECURSIVE),
    ("8.8.8.8", DEFAULT_GW),               # default, lowest metric wins over metric 100
])
def test_lookup(addr: str, expected: Route) -> None:
    assert NODE.lookup(ip(addr)) == expected


def test_lookup_no_default_no_match() -> None:
    table = NODE.without(DEFAULT)
    assert table.lookup(ip("8.8.8.8")) is None
    assert table.lookup(ip("192.168.1.1")) is None
    assert table.lookup(ip("10.244.42.128")) is None  # just past the /26


def test_lookup_prefers_longest_then_lowest_metric() -> None:
    table = RouteTable([
        Route(dst=net("10.0.0.0/8"), dev="eth0", metric=1),
        Route(dst=net("10.1.0.0/16"), dev="eth1", metric=50),
        Route(dst=net("10.1.0.0/16"), dev="eth2", metric=20),
        Route(dst=net("10.1.2.0/24"), type="unreachable"),
    ])
    assert table.lookup(ip("10.1.3.4")).dev == "eth2"  # type: ignore[union-attr]
    assert table.lookup(ip("10.2.0.1")).dev == "eth0"  # type: ignore[union-attr]
    assert table.lookup(ip("10.1.2.3")).type == "unreachable"  # type: ignore[union-attr]
    assert table.lookup("10.1.3.4") == table.lookup(ip("10.1.3.4"))  # type: ignore[arg-type]


# --- diff --------------------------------------------------------------------------------------

def test_diff() -> None:
    new_route = Route(dst=net("10.244.7.0/26"), via=ip("192.168.0.83"), dev="tunl0", proto="bird", onlink=True)
    new = NODE.without(RECURSIVE).with_routes(DIRECT, new_route)
    delta = NODE.diff(new)
    assert delta == RouteDelta(added=(new_route, DIRECT), removed=(IPIP, RECURSIVE))  # changed = removed + added
    assert delta
    assert new.diff(NODE) == RouteDelta(added=(IPIP, RECURSIVE), removed=(new_route, DIRECT))


def test_diff_equal_and_empty() -> None:
    assert NODE.diff(RouteTable(NODE.routes)) == RouteDelta()
    assert not NODE.diff(RouteTable(NODE.routes))
    assert RouteTable().diff(NODE) == RouteDelta(added=NODE.routes, removed=())
    assert NODE.diff(RouteTable()) == RouteDelta(added=(), removed=NODE.routes)


def test_diff_metric_change_is_remove_plus_add() -> None:
    moved = Route(dst=DEFAULT, via=ip("10.0.0.1"), dev="eth0", proto="dhcp", src=ip("10.0.0.5"), metric=200)
    delta = NODE.diff(NODE.without(DHCP_DEFAULT).with_routes(moved))
    assert delta == RouteDelta(added=(moved,), removed=(DHCP_DEFAULT,))


# --- parse ---------------------------------------------------------------------------------------

def test_parse_round_trip() -> None:
    parsed = parse_ip_route(NODE_IP)
    assert parsed == NODE
    assert parsed.render_ip() == NODE_IP


def test_parse_every_rendered_form() -> None:
    routes = [r for r, _ in CALICO_LINES if r is not DIRECT] + [
        Route(dst=net("10.244.200.0/24"), via=ip("192.168.0.82"), dev="tunl0", proto="bird", src=ip("192.168.0.81"),
              metric=9, onlink=True),
        Route(dst=net("10.250.6.0/24"), dev="eth0", scope="host", metric=4294967295),
        Route(dst=net("10.250.8.1/32"), type="blackhole"),
        Route(dst=net("10.99.0.0/16"), type="unreachable"),
        Route(dst=net("10.98.0.0/16"), type="prohibit", proto="bird", metric=12),
        Route(dst=net("0.0.0.0/1"), dev="eth0", proto="openr", scope="link"),
    ]
    table = RouteTable(routes)
    assert parse_ip_route(table.render_ip()) == table


def test_parse_tolerates_missing_trailing_space_and_blank_lines() -> None:
    text = "\n".join(line.rstrip() for line in NODE_IP.splitlines()) + "\n\n"
    assert parse_ip_route(text) == NODE
    assert parse_ip_route("") == RouteTable()


@pytest.mark.parametrize(("text", "match"), [
    ("default via 192.168.0.1 dev eth0\n10.0.0.0/8 dev eth0 mtu 1400\n", r"line 2: unexpected 'mtu'"),
    ("10.0.0.1/8 dev eth0\n", r"line 1: bad destination '10.0.0.1/8'"),
    ("blackhole\n", r"line 1: no destination"),
    ("10.0.0.0/8 dev\n", r"line 1: 'dev' without a value"),
    ("10.0.0.0/8 dev eth0 dev eth1\n", r"line 1: unexpected 'dev'"),
    ("10.0.0.0/8 via 10.0.0.256 dev eth0\n", r"line 1: .*10\.0\.0\.256"),
    ("10.0.0.0/8 dev eth0 metric x\n", r"line 1: .*'x'"),
    ("blackhole 10.0.0.0/8 dev eth0\n", r"line 1: a blackhole route takes no via"),
    ("10.0.0.0/8 dev eth0 linkdown\n", r"line 1: unexpected 'linkdown': '10.0.0.0/8 dev eth0 linkdown'"),
    ("default via 192.168.0.1 dev eth0 \ndefault via 192.168.0.2 dev eth0 \n",
     r"line 2: a second route for default metric 0: 'default via 192.168.0.2 dev eth0'"),
])
def test_parse_errors_name_the_line(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_ip_route(text)
