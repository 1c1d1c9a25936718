"""The ExaBGP API commands meshsim sends (ExaBGP 5.0 syntax), including one command for several neighbors."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from meshsim.bgp.types import PathAttrs
from meshsim.engines.exabgp import announce_command, withdraw_command

A, B = IPv4Address("127.168.0.81"), IPv4Address("127.168.0.82")
P = IPv4Network("10.244.1.0/26")


def test_announce_to_one_neighbor_with_rr_attributes():
    attrs = PathAttrs(next_hop=IPv4Address("192.168.0.83"), originator_id=IPv4Address("192.168.0.83"),
                      cluster_list=(IPv4Address("244.0.0.1"),))
    assert announce_command(A, P, attrs) == (
        "neighbor 127.168.0.81 announce route 10.244.1.0/26 next-hop 192.168.0.83 origin igp local-preference 100 "
        "originator-id 192.168.0.83 cluster-list [ 244.0.0.1 ]")


def test_one_command_for_several_neighbors():
    attrs = PathAttrs(next_hop=IPv4Address("192.168.0.83"))
    assert announce_command([A, B], P, attrs).startswith(
        "neighbor 127.168.0.81 , neighbor 127.168.0.82 announce route 10.244.1.0/26 next-hop 192.168.0.83")
    assert withdraw_command([A, B], P) == "neighbor 127.168.0.81 , neighbor 127.168.0.82 withdraw route 10.244.1.0/26"
