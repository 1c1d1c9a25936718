"""Property tests for BGP message handling on a live session (issue 12): whatever bytes a peer sends on an
Established session, the router answers with a clean NOTIFICATION (RFC 4271 §6) or takes them as a valid
message, never raises, never hangs; the other sessions and every route not learned from that peer are untouched,
and the mesh comes back to the same tables by itself. tests/unit/test_codec.py fuzzes the decoder alone; this
feeds the same kind of garbage through the whole router (framing, FSM, speaker), sans I/O (tests/unit/bgpnet.py).
"""

from __future__ import annotations

import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshsim.bgp import codec
from tests.unit.bgpnet import Net, mesh

MARKER = b"\xff" * 16
EXAMPLES = int(os.environ.get("BGP_FUZZ_EXAMPLES", "150"))


def _framed(msg_type: int, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), msg_type) + body


def _update(attributes: bytes, nlri: bytes) -> bytes:
    return _framed(2, struct.pack("!H", 0) + struct.pack("!H", len(attributes)) + attributes + nlri)


GARBAGE = st.one_of(
    st.binary(min_size=1, max_size=200),  # anything at all (mostly a bad marker)
    st.builds(_framed, st.integers(0, 255), st.binary(max_size=200)),  # a valid header, any type, any body
    st.builds(_framed, st.sampled_from([1, 2, 3, 4, 5]), st.binary(max_size=200)),
    st.builds(_update, st.binary(max_size=60), st.binary(max_size=20)),  # an UPDATE with garbage attributes
    st.builds(lambda length, rest: MARKER + struct.pack("!H", length) + rest,  # a lying length
              st.integers(0, 0xFFFF), st.binary(max_size=40)),
)

FIXED = {"10.244.1.0/26": "local", "10.244.3.0/26": "Mesh_192_168_0_3"}  # node1's own and node3's block


def _converged() -> Net:
    net = Net()
    mesh(net, 3)
    net.run(10)
    assert net.routes("node1") == {**FIXED, "10.244.2.0/26": "Mesh_192_168_0_2"}
    return net


def _notifications(net: Net, sender: str, since: int) -> list:
    out = []
    for _, name, _, data in net.sent[since:]:
        if name == sender:
            out += [codec.decode(m, None) for m in codec.frame(data)[0] if m[18] == 3]
    return out


@settings(max_examples=EXAMPLES, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.lists(GARBAGE, min_size=1, max_size=3))
def test_garbage_from_a_peer_resets_at_most_its_session_and_the_mesh_recovers(garbage: list[bytes]) -> None:
    net = _converged()
    sent_before = len(net.sent)
    for data in garbage:
        net.inject("node1", "node2", data)
    net.run_for(0.5)  # a router that raised would have raised here, out of Router.handle
    # the other session and every route not learned from node2 are untouched
    assert net.state("node1", "Mesh_192_168_0_3") == "up"
    assert net.state("node3", "Mesh_192_168_0_1") == "up"
    table = net.routes("node1")
    assert {p: table.get(p) for p in FIXED} == FIXED
    assert set(table) <= {*FIXED, "10.244.2.0/26"} | {p for p, src in table.items() if src == "Mesh_192_168_0_2"}
    # what node1 said about it is a well-formed NOTIFICATION with an RFC 4271 §4.5 error code
    for n in _notifications(net, "node1", sent_before):
        assert 1 <= n.code <= 6, n
    # and by itself, within a few retry periods, the mesh is back to the tables it had (Calico's, unchanged)
    net.run_for(120)
    for name, peer in (("node1", "Mesh_192_168_0_2"), ("node2", "Mesh_192_168_0_1")):
        assert net.state(name, peer) == "up", (name, net.nodes[name].router.session(peer).info)
    if net.downs("node1"):  # the session was reset: whatever the garbage announced went with it
        assert net.routes("node1") == {**FIXED, "10.244.2.0/26": "Mesh_192_168_0_2"}
    assert net.routes("node1")["10.244.2.0/26"] == "Mesh_192_168_0_2"
