"""The node API's handlers on garbage (issue 12, item 6): the real `NodeAgent.handle_http` over a real NativeEngine
(BGP not started: no socket is opened) gets generated bodies and queries. Whatever arrives, the answer is a 2xx or a
4xx `HttpError`, never another exception (a 500); and a refused request changes nothing: the node's table, its
config and the engine's config and IPAM state are as before. Bodies that are valid but for one bad element (the
half-applied case of the issue: `{"blocks": ["<its real /26>", "not-a-cidr"]}`) are always refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshsim.agent.agent import NodeAgent
from meshsim.agent.config import NodeConfig, node_configs
from meshsim.agent.http import HttpError
from meshsim.agent.netctx import NetContext
from meshsim.engines.native.engine import NativeEngine
from meshsim.fabric.base import config_body
from meshsim.model.cluster import Cluster
from meshsim.model.resources import load_scenario
from tests.conftest import SCENARIOS

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _config() -> NodeConfig:
    cluster = Cluster.build(load_scenario([SCENARIOS / "three-node-ipip.yaml"]))
    return node_configs(cluster, bgp_port=17900, http_port=9179, workdir=Path("/nonexistent"))["node1"]


CONFIG = _config()
LOCAL = CONFIG.local.to_json()
CONFIG_BODY = json.loads(json.dumps(config_body(CONFIG)))


def _state(agent: NodeAgent) -> tuple:
    e = agent.engine
    return (e.table_text(), e.history.digest, agent.config, e.config, e.local, e.running)


VIEWS = ["/status", "/routes", "/routelog", "/rib", "/counters", "/state", "/"]


async def _call(method: str, path: str, body: Any, query: dict[str, str] | None = None) -> tuple[int, tuple, tuple]:
    """(status, state before, state after) of one request on a fresh node. Whatever was accepted, the node
    still answers every view afterwards (accepted garbage must not break it either)."""
    log = structlog.wrap_logger(structlog.ReturnLogger())
    engine = NativeEngine(CONFIG, net=NetContext(None), log=log, on_change=lambda: None)
    agent = NodeAgent(CONFIG, engine, log=log, token="t")
    await asyncio.sleep(0)
    before = _state(agent)
    try:
        status, _ = await agent.handle_http(method, path, query or {}, body)
    except HttpError as exc:
        status = exc.status
    await asyncio.sleep(0)
    after = _state(agent)
    for view in VIEWS:
        await agent.handle_http("GET", view, {}, None)
    agent.summary()
    await engine.close()
    return status, before, after


def call(method: str, path: str, body: Any, query: dict[str, str] | None = None) -> tuple[int, tuple, tuple]:
    return asyncio.run(_call(method, path, body, query))


def _clean(method: str, path: str, body: Any, query: dict[str, str] | None = None) -> int:
    """The property: a 2xx, or a 4xx that changed nothing; never another exception."""
    status, before, after = call(method, path, body, query)
    assert 200 <= status < 300 or 400 <= status < 500, (path, body, status)
    if status >= 400:
        assert after == before, f"{path} {body!r} was refused ({status}) but changed the node"
    return status


def _refused_and_unchanged(method: str, path: str, body: Any, query: dict[str, str] | None = None) -> int:
    status = _clean(method, path, body, query)
    assert 400 <= status < 500, (path, body, status)
    return status


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
garbage = st.one_of(st.sampled_from(["not-a-cidr", "10.244.0.1/26", "10.244.0.0/33", "", "1.2.3.4", "::1/128",
                                     "10.0.0.0/8 ", "0x0a000000/8"]), json_values)

# -- any JSON at all --------------------------------------------------------------------------------------------


@SETTINGS
@given(path=st.sampled_from(["/local", "/config", "/teardown", "/shutdown", "/stop", "/start", "/nope"]),
       body=st.none() | st.dictionaries(st.sampled_from(["blocks", "affine", "workloads", "originate", "peers", "pools",
                                                         "cluster_id", "peer", "run_id", "x"]), json_values,
                                        max_size=4))
def test_any_body_gets_a_clean_answer_and_a_refusal_changes_nothing(path, body):
    _clean("POST", path, body)


@SETTINGS
@given(path=st.sampled_from(["/routelog", "/state", "/routes"]),
       query=st.dictionaries(st.sampled_from(["since", "after", "timeout", "format", "summary"]),
                             st.text(max_size=12), max_size=3))
def test_any_query_gets_a_clean_answer(path, query):
    query = {k: v for k, v in query.items() if not (k == "timeout" and v.strip().replace(".", "", 1).isdigit())}
    status, before, after = call("GET", path, None, query)
    assert status == 200 or 400 <= status < 500
    assert after == before, "a GET changed the node"


# -- valid but for one element -----------------------------------------------------------------------------------


@SETTINGS
@given(key=st.sampled_from(["blocks", "affine", "originate"]), bad=garbage.filter(lambda g: g != []),
       where=st.integers(0, 3))
def test_one_bad_cidr_refuses_the_whole_local_state(key, bad, where):
    body = json.loads(json.dumps(LOCAL))
    items = body[key] or []
    if isinstance(bad, str):
        try:
            from ipaddress import IPv4Network

            IPv4Network(bad)
            return  # a valid CIDR is not garbage
        except ValueError:
            pass
    body[key] = items[:where] + [bad] + items[where:]
    _refused_and_unchanged("POST", "/local", body)


@SETTINGS
@given(bad=st.one_of(garbage, st.lists(garbage, max_size=3)), where=st.integers(0, 3))
def test_one_bad_workload_refuses_the_whole_local_state(bad, where):
    body = json.loads(json.dumps(LOCAL))
    ok = ["10.244.1.5", "cali0123456789a"]
    if isinstance(bad, list) and len(bad) == 2 and all(isinstance(x, str) for x in bad):
        bad = [bad[0] + "x", bad[1]]  # never a valid [IP, interface]
    body["workloads"] = [ok] * where + [bad] + [ok]
    _refused_and_unchanged("POST", "/local", body)


PEER_FIELDS = ["name", "address", "session_address", "port", "asn", "passive", "rr_client", "type", "peer_node",
               "password", "restart_time", "keep_next_hop", "allow_local_as", "source_address", "ttl_security",
               "reachable_by", "filters", "calico_node"]
POOL_FIELDS = ["name", "cidr", "block_size", "ipip_mode", "vxlan_mode", "disabled", "disable_bgp_export"]


@SETTINGS
@given(i=st.integers(0, 1), field=st.sampled_from(PEER_FIELDS), bad=garbage, drop=st.booleans())
def test_a_generated_peer_field_is_refused_cleanly_or_keeps_the_node_whole(i, field, bad, drop):
    body = json.loads(json.dumps(CONFIG_BODY))
    peer = body["peers"][i]
    if drop:
        peer.pop(field, None)
    else:
        peer[field] = bad
    _clean("POST", "/config", body)


@SETTINGS
@given(field=st.sampled_from(POOL_FIELDS), bad=garbage, drop=st.booleans())
def test_a_generated_pool_field_is_refused_cleanly_or_keeps_the_node_whole(field, bad, drop):
    body = json.loads(json.dumps(CONFIG_BODY))
    pool = body["pools"][0]
    if drop:
        del pool[field]
    else:
        pool[field] = bad
    _clean("POST", "/config", body)


@pytest.mark.parametrize("body", [
    {"blocks": ["not-a-cidr"]},
    {**LOCAL, "blocks": [*LOCAL["blocks"], "not-a-cidr"]},
    {**LOCAL, "workloads": [["10.244.0.1", "cali1"], ["10.244.0.2"]]},
    {**LOCAL, "extra": 1},
])
def test_the_issues_half_applied_local_is_refused(body):
    assert _refused_and_unchanged("POST", "/local", body) == 400


@pytest.mark.parametrize("change", [
    {"pools": [{"name": "p", "cidr": "10.0.0.0/16"}]},
    {"pools": [{**CONFIG_BODY["pools"][0], "cidr": "banana"}]},
    {"pools": [{**CONFIG_BODY["pools"][0], "block_size": "26"}]},
    {"pools": [{**CONFIG_BODY["pools"][0], "block_size": 8}]},
    {"pools": [{**CONFIG_BODY["pools"][0], "ipip_mode": "Sometimes"}]},
    {"pools": "all"},
    {"cluster_id": "not-an-ip"},
    {"peers": [{**CONFIG_BODY["peers"][0], "session_address": "192.168.0.82"}]},  # off loopback: never dialled
    {"peers": [{**CONFIG_BODY["peers"][0], "passive": "yes"}]},
    {"peers": [{**CONFIG_BODY["peers"][0], "restart_time": "soon"}]},
    {"peers": [{**CONFIG_BODY["peers"][0], "filters": "f1"}]},
    {"peers": [CONFIG_BODY["peers"][0], CONFIG_BODY["peers"][0]]},
    {"peers": [{**CONFIG_BODY["peers"][0], "name": ""}]},
    {"peers": [{**CONFIG_BODY["peers"][0], "port": True}]},
    {"peers": [{**CONFIG_BODY["peers"][0], "asn": 0}]},
    {"peers": [{**CONFIG_BODY["peers"][0], "type": "friend"}]},
    {"peers": [{**CONFIG_BODY["peers"][0], "password": 5}]},
    {"peers": [{**CONFIG_BODY["peers"][0], "reachable_by": "gateway"}]},
    {"peers": [{**CONFIG_BODY["peers"][0], "filters": [None]}]},
    {"peers": [{k: v for k, v in CONFIG_BODY["peers"][0].items() if k != "asn"}]},
    {"pools": [{**CONFIG_BODY["pools"][0], "disabled": "no"}]},
    {"pools": [{**CONFIG_BODY["pools"][0], "extra": 1}]},
])
def test_a_bad_config_never_replaces_the_config(change):
    assert _refused_and_unchanged("POST", "/config", {**CONFIG_BODY, **change}) == 400


def test_the_same_config_is_accepted():
    status, before, after = call("POST", "/config", CONFIG_BODY)
    assert status == 200 and after[2] == before[2]
