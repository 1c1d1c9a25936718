"""The growth models of `meshsim compare`: exact session counts, advertisement counts by the stated rule
(closed form = the count on a real cluster model), least-squares fits, crossovers and what-ifs."""

from __future__ import annotations

import math

import pytest

from meshsim.model.cluster import Cluster
from meshsim.model.generate import cluster_yaml
from meshsim.model.resources import load_scenario
from meshsim.oracle.advertisements import advertisements
from meshsim.report.scaling import MESH, RR, Shape, crossovers, exact_model, fit, lower_everywhere

TOR = ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
       "spec: {peerIP: 192.168.0.254, asNumber: %d}\n")


def test_what_if_1000_nodes_with_2_reflectors():
    s = Shape(reflectors=2)
    assert s.sessions(MESH, 1000) == 499_500
    assert s.sessions(RR, 1000) == 1_997  # 1 between the reflectors + 2 x 998 clients
    # one block per node: the mesh sends each prefix to the 999 others; a client's prefix costs 2 x 999
    # (both reflectors send it to the 998 other nodes), a reflector's 999 + 998
    assert s.cold_advertisements(MESH, 1000) == 999_000
    assert s.cold_advertisements(RR, 1000) == 998 * 2 * 999 + 2 * (999 + 998) == 1_997_998
    assert s.block_advertisements(MESH, 1000) == 999 and s.block_advertisements(RR, 1000) == 1998
    assert s.sessions_per_node(RR, 1000) == (2, 999)


def _cluster(tmp_path, design, n, extra=""):
    path = tmp_path / f"{design}{n}.yaml"
    text = cluster_yaml("c", n, design=design, subnet="192.168.0.0/22")
    path.write_text(text + ("---\n" + extra if extra else ""))
    return Cluster.build(load_scenario([path]))


@pytest.mark.parametrize("design,n", [("mesh", 3), ("mesh", 9), ("rr", 3), ("rr", 7), ("rr", 12)])
@pytest.mark.parametrize("tor", [None, "ebgp", "ibgp"])
def test_closed_forms_equal_the_count_on_the_cluster_model(tmp_path, design, n, tor):
    c = _cluster(tmp_path, design, n, TOR % (65001 if tor == "ebgp" else 64512) if tor else "")
    a = advertisements(c)
    # IPIP Always: one block per node
    shape = Shape(reflectors=2, ext_ebgp=1.0 if tor == "ebgp" else 0.0, ext_ibgp=1.0 if tor == "ibgp" else 0.0)
    assert a.prefixes == n
    assert a.sessions == shape.sessions(design, n)
    assert a.cold.total == shape.cold_advertisements(design, n)
    client = "node1"
    assert a.per_new_block[client].total == shape.block_advertisements(design, n)


def test_dropped_copies_are_the_reflectors_copies_to_each_other(tmp_path):
    a = advertisements(_cluster(tmp_path, "rr", 8))
    # each client prefix: each of the 2 reflectors sends it to the other, which drops it by CLUSTER_LIST
    assert a.cold.dropped == 6 * 2
    assert a.per_new_block["node1"].dropped == 2


def test_fit_recovers_a_quadratic_and_states_its_error():
    shape = Shape(reflectors=2)
    pts = [(n, 3 + 0.5 * n + 0.01 * n * n) for n in (4, 10, 25, 50)]
    m = fit("rss", MESH, shape, ["1", "N", "N^2"], pts)
    assert m.coefficients == pytest.approx((3, 0.5, 0.01))
    assert m.rms == pytest.approx(0, abs=1e-9) and m.at(1000) == pytest.approx(3 + 500 + 10_000)
    noisy = fit("rss", MESH, shape, ["1", "N", "N^2"], [(n, y * (1.02 if i % 2 else 0.98)) for i, (n, y) in
                                                         enumerate(pts)])
    assert noisy.rms > 0 and 0 < noisy.max_rel_error < 0.1


def test_fit_keeps_costs_non_negative_and_says_when_points_are_too_few():
    shape = Shape(reflectors=2)
    # falling values: a negative slope is not a cost, so b is fitted as 0
    m = fit("t", MESH, shape, ["1", "N"], [(4, 10.0), (10, 8.0), (25, 7.0)])
    assert all(c >= 0 for c in m.coefficients) and m.terms == ("1",)
    assert m.at(1000) == pytest.approx(25 / 3)
    # two sizes: one term, so one residual is left to estimate the error from
    two = fit("t", MESH, shape, ["1", "N", "N^2"], [(4, 10.0), (10, 20.0)])
    assert len(two.terms) == 1 and two.rms is not None and two.predicts
    one = fit("t", MESH, shape, ["1", "N", "N^2"], [(4, 10.0)])
    assert one.rms is None and "no fit error" in one.note and not one.predicts
    assert fit("t", MESH, shape, ["1"], []).note == "no measured point"


def test_update_messages_fit_a_packing_ratio_on_the_rule():
    shape = Shape(reflectors=2)
    pts = [(n, 0.8 * shape.cold_advertisements(RR, n)) for n in (4, 8, 12)]
    m = fit("updates", RR, shape, ["A(N)"], pts)
    assert m.coefficients == pytest.approx((0.8,))
    assert m.at(1000) == pytest.approx(0.8 * 1_997_998)


def test_sessions_cross_at_4_nodes_and_advertisements_never():
    shape = Shape(reflectors=2)
    mesh = exact_model("sessions", MESH, shape, Shape.sessions, "N(N-1)/2")
    rr = exact_model("sessions", RR, shape, Shape.sessions, "R(R-1)/2 + R(N-R)")
    # N=3: 3 vs 3 (a tie); N=4: 6 vs 5; the mesh is never lower above 3 nodes
    assert crossovers(mesh, rr, 5000) == []
    assert lower_everywhere(mesh, rr, 5000) == RR
    mesh_a = exact_model("adv", MESH, shape, Shape.cold_advertisements, "P(N-1)", "rule")
    rr_a = exact_model("adv", RR, shape, Shape.cold_advertisements, "...", "rule")
    assert lower_everywhere(mesh_a, rr_a, 5000) == MESH


def test_crossover_of_two_fitted_curves():
    shape = Shape(reflectors=2)
    mesh = fit("cpu", MESH, shape, ["N^2"], [(n, 0.01 * n * n) for n in (4, 10, 20)])
    rr = fit("cpu", RR, shape, ["1", "N"], [(n, 2 + 0.05 * n) for n in (4, 10, 20)])
    # the curves meet at 0.01 N^2 = 2 + 0.05 N (N = 16.9); fitted curves tie within 5 %, so RR is lower from
    # the first N with 0.95 * 0.01 N^2 > 2 + 0.05 N (N = 17.4), i.e. from 18 nodes on
    [x] = crossovers(mesh, rr, 1000)
    assert (x.n, x.lower_from_here) == (math.ceil((0.05 + math.sqrt(0.05 ** 2 + 4 * 0.0095 * 2)) / 0.019), RR) \
        == (18, RR)


def test_exact_model_reports_a_cluster_that_is_not_the_standard_design():
    shape = Shape(reflectors=2)
    ok = exact_model("sessions", RR, shape, Shape.sessions, "f", counted=[(8, 13)])
    assert ok.note == ""
    off = exact_model("sessions", RR, shape, Shape.sessions, "f", counted=[(8, 15)])
    assert "differs" in off.note
