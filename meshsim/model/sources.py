"""The user's own documents, and variants of them that differ from the user's files only where a design changes
the cluster.

Owns `Sources` (the top-level documents of the user's files as read: kinds, List wrappers, and every field,
modelled or not, as printed; `Sources.read(paths)`, `.text(header)`, `.resource(key)`), `derive(sources,
before, after)`, `key_of(resource)` and `model_resources(scenario)`.

`derive` compares two models of the cluster resource by resource, keyed by kind and name (`before` is what
`sources` hold, `after` what the variant must be), and writes `after` by editing the user's documents:
- a resource equal in both keeps its document as it is;
- a resource gone from `after` loses its document, or its item of a List;
- a changed Node, BGPConfiguration or BGPPeer gets only its changed fields written, in its document's flavour
  (a Kubernetes v1 Node takes Calico's projectcalico.org/* annotations and labels, as calico-node reads them
  in libcalico-go K8sNodeToCalico; a Calico Node its spec.bgp and labels), so the fields meshsim does not
  model stay as printed; any other changed resource is written anew by `meshsim.model.render`, keeping its
  metadata;
- a resource new in `after` is appended, written by `meshsim.model.render` in the Calico API version the
  user's files use; the Scenario document is rewritten when its name, timers, workloads or events change.
Documents meshsim reads past (Felix and policy kinds, IPv6, nodes without a BGP address) stay as they are.
Every change is listed in `Sources.changes` and in a comment above its document. An unchanged document is
written as the user's file printed it, comments included; a changed one is written anew from its values.
Pure: no asyncio, no clock.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

from meshsim.model.calico import Reading
from meshsim.model.document import Doc
from meshsim.model.kube import ANNOTATION_ASN, ANNOTATION_CLUSTER_ID, ANNOTATION_IPV4, ANNOTATION_LABELS, \
    ANNOTATION_TUNNEL
from meshsim.model.loader import expand_lists, parse_resource
from meshsim.model.render import (API, BGPCONFIG_SPEC, BGPPEER_SPEC, CORE_API, bgpconfig_dict, bgppeer_dict, comment,
                                  resource_dict, yaml_text)
from meshsim.model.resources import (CALICO_API_VERSIONS, BGPConfiguration, BGPPeer, IPAMBlock, IPAMConfiguration,
                                     Node, Scenario, ScenarioSpec, Secret, Service, ServiceEndpoints,
                                     WorkloadEndpoint)
from meshsim.model.yamldoc import document_texts, file_text, parse_documents

Key = tuple[str, str]
"""A resource's identity across two models: (kind, name); namespaced objects are named namespace/name, an
IPAMBlock by its CIDR, the meshsim Scenario document is ("Scenario", "")."""

ADDED = "<added by meshsim>"
SCENARIO: Key = ("Scenario", "")


def key_of(res: Any) -> Key:
    match res:
        case ScenarioSpec():
            return SCENARIO
        case IPAMConfiguration():
            return ("IPAMConfiguration", "default")
        case IPAMBlock():
            return ("IPAMBlock", str(res.cidr))
        case ServiceEndpoints():
            return ("Endpoints", f"{res.namespace}/{res.name}")
        case WorkloadEndpoint() | Service() | Secret():
            return (type(res).__name__, f"{res.namespace}/{res.name}")
    return (type(res).__name__, res.name)


def model_resources(sc: Scenario) -> dict[Key, Any]:
    """Every resource of a scenario by key, the default BGP and IPAM configurations included (declared or not)."""
    out: dict[Key, Any] = {key_of(sc.bgp): sc.bgp, key_of(sc.ipam): sc.ipam}
    for group in (sc.node_bgp, sc.pools, sc.reservations, sc.peers, sc.filters, sc.nodes, sc.affinities,
                  sc.ipam_blocks, sc.ipam_handles, sc.endpoints, sc.secrets, sc.services, sc.service_endpoints):
        for r in group:
            out[key_of(r)] = r
    out[SCENARIO] = sc.spec
    return out


def _describe(key: Key) -> str:
    return f"{key[0]} {key[1]}" if key[1] else key[0]


@dataclass(frozen=True)
class TopDoc:
    """One top-level document: where it came from (`path`, `index`; ADDED for meshsim's), its data, and what
    meshsim changed in it."""

    path: str
    index: int
    data: Any
    notes: tuple[str, ...] = ()
    text: str | None = field(default=None, repr=False, compare=False)  # as printed, while unchanged
    comments: str = field(default="", repr=False, compare=False)  # the comment lines it opens with


@dataclass
class _Unit:
    """One resource document: a top-level document, or an item of a List (`item`), and what it parses to."""

    top: int
    item: int | None
    api: str | None
    kind: str | None
    resources: list[Any] = field(default_factory=list)


def _opening_comments(text: str) -> str:
    """The comment lines a document's text opens with (in a dump: the command that printed it)."""
    out = []
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.lstrip().startswith("#"):
            break
        out.append(line)
    return "".join(out)


def _is_list(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("kind"), str) and data["kind"].endswith("List")


@dataclass(frozen=True)
class Sources:
    """The user's documents (or a variant of them) and the changes meshsim made, in order."""

    docs: tuple[TopDoc, ...]
    changes: tuple[str, ...] = ()

    @staticmethod
    def read(paths: Sequence[str | Path]) -> "Sources":
        docs = []
        for p in paths:
            text = file_text(p)
            chunks = document_texts(text) or {}
            docs += [TopDoc(str(p), d.index, d.data, text=chunks.get(d.index), comments=_opening_comments(
                chunks.get(d.index, ""))) for d in parse_documents(text, str(p))]
        return Sources(tuple(docs))

    def units(self) -> list[_Unit]:
        reading = Reading()
        out = []
        for t, top in enumerate(self.docs):
            listed = _is_list(top.data)
            for i, sub in enumerate(expand_lists(Doc(top.path, top.index, top.data))):
                data = sub.data if isinstance(sub.data, dict) else {}
                res = parse_resource(sub, reading)
                items = res if isinstance(res, list) else [res] if res is not None else []
                out.append(_Unit(t, i if listed else None, data.get("apiVersion"), data.get("kind"), items))
        return out

    @property
    def calico_api(self) -> str:
        """The Calico API version the files use (the first Calico document's), for what meshsim adds."""
        for top in self.docs:
            data = top.data
            items = data.get("items") if _is_list(data) else [data]
            for item in items if isinstance(items, list) else []:
                api = item.get("apiVersion") if isinstance(item, dict) else None
                if api in CALICO_API_VERSIONS:
                    return api
        return API

    def resource(self, key: Key) -> dict[str, Any] | None:
        """The mapping of one resource, complete (a List item gets the List's apiVersion and kind, as
        `expand_lists` gives them): what a timeline's `apply` carries."""
        for u in self.units():
            if any(key_of(r) == key for r in u.resources):
                data = self.docs[u.top].data
                if u.item is None:
                    return copy.deepcopy(data)
                item = dict(data["items"][u.item])
                item.setdefault("apiVersion", data.get("apiVersion"))
                if data["kind"] != "List":
                    item.setdefault("kind", data["kind"][: -len("List")])
                return copy.deepcopy(item)
        return None

    def text(self, header: str = "") -> str:
        """The documents as one YAML file, each under a comment naming its source and what meshsim changed; an
        unchanged document is its text as printed (comments included), a changed one is written anew."""
        return comment(header) + self.body

    @cached_property
    def body(self) -> str:
        parts = []
        for d in self.docs:
            lines = ["added by meshsim" if d.path == ADDED else f"from {d.path}, document {d.index}"]
            lines += [f"meshsim: {n}" for n in d.notes]
            parts.append(comment("\n".join(lines)) + (d.text if d.text is not None else d.comments + yaml_text(d.data)))
        return "---\n".join(parts)


def _status(key: Key, old: dict[Key, Any], new: dict[Key, Any]) -> str:
    if key not in old:
        return "same"  # read past or left out by the load: it stays so
    if key not in new:
        return "gone"
    return "same" if old[key] == new[key] else "changed"


def derive(sources: Sources, before: Scenario, after: Scenario) -> Sources:
    """`after` written as the documents of `sources` (which load as `before`), changed where the two differ."""
    old, new = model_resources(before), model_resources(after)
    api = sources.calico_api
    data = [top.data for top in sources.docs]
    copied: set[int] = set()

    def writable(t: int) -> Any:
        if t not in copied:
            data[t] = copy.deepcopy(data[t])
            copied.add(t)
        return data[t]

    drop_items: dict[int, set[int]] = {}
    drop_tops: set[int] = set()
    notes: dict[int, list[str]] = {}
    changes: list[str] = []
    appended: list[Any] = []
    seen: set[Key] = set()

    def note(t: int, text: str) -> None:
        notes.setdefault(t, []).append(text)
        changes.append(text)

    def remove(u: _Unit) -> None:
        if u.item is None:
            drop_tops.add(u.top)
        else:
            drop_items.setdefault(u.top, set()).add(u.item)

    for u in sources.units():
        keys = [key_of(r) for r in u.resources]
        seen.update(keys)
        status = {k: _status(k, old, new) for k in keys}
        if all(s == "same" for s in status.values()):
            continue
        if len(keys) > 1:  # a migrate export's IPAM part: rewritten as separate documents
            remove(u)
            note(u.top, f"IPAM state rewritten as separate documents ({', '.join(_describe(k) for k in keys if status[k] != 'same')} changed)")
            appended += [new[k] for k in keys if k in new]
            continue
        k = keys[0]
        shown = f"{u.kind} {k[1]}" if u.kind and k[1] else _describe(k)
        if u.kind == "Pod":  # a v1 Pod is named as kubectl names it, not as the endpoint meshsim made of it
            shown = f"Pod {u.resources[0].namespace}/{u.resources[0].pod}"
        if status[k] == "gone":
            remove(u)
            note(u.top, f"removed {shown}")
            continue
        doc = writable(u.top)
        target = doc if u.item is None else doc["items"][u.item]
        what = _patch(target, u, old[k], new[k], api)
        note(u.top, f"{shown}: {what}")
    for k, res in new.items():
        if k in seen or (k in old and old[k] == res and k != SCENARIO):
            continue
        appended.append(res)
        changes.append(f"added {_describe(k)}" if k != SCENARIO else "added the Scenario document")
    docs: list[TopDoc] = []
    for t, top in enumerate(sources.docs):
        if t in drop_tops:
            continue
        d = data[t]
        if t in drop_items:
            d = writable(t)
            d["items"] = [x for i, x in enumerate(d["items"]) if i not in drop_items[t]]
        docs.append(TopDoc(top.path, top.index, d, top.notes + tuple(notes.get(t, ())),
                           text=None if t in copied else top.text, comments=top.comments))
    for res in appended:
        docs.append(TopDoc(ADDED, 0, resource_dict(res, api), (f"added {_describe(key_of(res))}",)))
    return Sources(tuple(docs), sources.changes + tuple(changes))


# ----------------------------------------------------------------------------------------------
# Changing one document in place


def _mapping(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


def _put(mapping: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value


def _patch(target: dict[str, Any], u: _Unit, before: Any, after: Any, api: str) -> str:
    """Write `after` into `target` (which holds `before`); returns what changed, in Calico's field names."""
    if isinstance(after, Node) and isinstance(before, Node):
        return _patch_node(target, before, after, kube=u.api == CORE_API)
    if isinstance(after, BGPConfiguration) and isinstance(before, BGPConfiguration):
        spec, rendered = _mapping(target, "spec"), bgpconfig_dict(after)["spec"]
        changed = [key for key, (attr, _) in BGPCONFIG_SPEC.items()
                   if getattr(before, attr) != getattr(after, attr)
                   or (key in before.fields_set) != (key in after.fields_set)]
        for key in changed:
            _put(spec, key, rendered.get(key))
        return ", ".join(f"{key} {_show(rendered.get(key))}" for key in changed)
    if isinstance(after, BGPPeer) and isinstance(before, BGPPeer):
        spec, rendered = _mapping(target, "spec"), bgppeer_dict(after)["spec"]
        changed = [key for key, attrs in BGPPEER_SPEC.items()
                   if any(getattr(before, a) != getattr(after, a) for a in attrs)]
        for key in changed:
            _put(spec, key, rendered.get(key))
        return ", ".join(f"{key} {_show(rendered.get(key))}" for key in changed)
    if isinstance(after, ScenarioSpec):
        target.clear()
        target.update(resource_dict(after))
        return "rewritten (" + ", ".join(f for f in ("name", "hosts", "workloads", "timers", "events")
                                         if getattr(before, f) != getattr(after, f)) + ")"
    fresh = resource_dict(after, u.api if u.api in CALICO_API_VERSIONS else api)
    if fresh.get("kind") == u.kind and isinstance(target.get("metadata"), dict):
        fresh["metadata"] = {**target["metadata"], **fresh["metadata"]}
    target.clear()
    target.update(fresh)
    return "rewritten"


def _show(value: Any) -> str:
    if value is None:
        return "removed"
    return json.dumps(value, separators=(", ", ": ")) if isinstance(value, (dict, list, bool)) else str(value)


def _patch_node(target: dict[str, Any], before: Node, after: Node, *, kube: bool) -> str:
    """A Calico Node's spec.bgp, or a Kubernetes Node's projectcalico.org/* annotations (libcalico-go
    K8sNodeToCalico reads IPv4Address, ASNumber, RouteReflectorClusterID, IPv4IPIPTunnelAddr from them)."""
    meta = _mapping(target, "metadata")
    done: list[str] = []
    fields = (("address", "ipv4Address", ANNOTATION_IPV4, after.interface_address),
              ("asn", "asNumber", ANNOTATION_ASN, after.asn),
              ("rr_cluster_id", "routeReflectorClusterID", ANNOTATION_CLUSTER_ID, after.rr_cluster_id),
              ("ipip_tunnel_address", "ipv4IPIPTunnelAddr", ANNOTATION_TUNNEL, after.ipip_tunnel_address))
    for attr, spec_key, annotation, value in fields:
        if getattr(before, attr) == getattr(after, attr) and (attr != "address" or before.subnet == after.subnet):
            continue
        if kube:
            _put(_mapping(meta, "annotations"), annotation, None if value is None else str(value))
            done.append(f"annotation {annotation} {_show(value)}")
        else:
            bgp = _mapping(_mapping(target, "spec"), "bgp")
            _put(bgp, spec_key, None if value is None else value if isinstance(value, (int, str)) else str(value))
            done.append(f"{spec_key} {_show(value)}")
    old_labels, new_labels = before.label_map, after.label_map
    if old_labels != new_labels:
        labels = _mapping(meta, "labels")
        for k in old_labels.keys() - new_labels.keys():
            labels.pop(k, None)
            done.append(f"label {k} removed")
        for k, v in new_labels.items():
            if old_labels.get(k) != v:
                labels[k] = v
                done.append(f"label {k}={v}")
        if kube:
            _drop_calico_labels(meta, old_labels.keys() - new_labels.keys())
        if not labels:
            meta.pop("labels", None)
    return ", ".join(done)


def _drop_calico_labels(meta: dict[str, Any], gone: set[str]) -> None:
    """Labels removed from a Kubernetes Node also leave the projectcalico.org/labels annotation (the Calico
    labels it holds are merged under the Kubernetes ones)."""
    annotations = meta.get("annotations")
    if not gone or not isinstance(annotations, dict) or not annotations.get(ANNOTATION_LABELS):
        return
    labels = json.loads(annotations[ANNOTATION_LABELS])
    if gone & labels.keys():
        annotations[ANNOTATION_LABELS] = json.dumps({k: v for k, v in labels.items() if k not in gone},
                                                    separators=(",", ":"))


__all__ = ["Sources", "TopDoc", "derive", "key_of", "model_resources", "Key", "ADDED", "SCENARIO"]
