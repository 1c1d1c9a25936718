"""Load-time benchmark: a generated calicoctl dump with 2,000 WorkloadEndpoints, read and built into a Cluster.

    .venv/bin/python benchmarks/load_dump.py                      # 2,000 endpoints on 20 nodes, median of 5 runs
    .venv/bin/python benchmarks/load_dump.py --endpoints 5000 --repeat 3

The dump is what `calicoctl get nodes,ippools,bgpconfigs -o yaml` and `calicoctl get wep -A -o yaml` print for such
a cluster (lists, full metadata, status blocks), so every field the loader sees is one a real dump carries. Prints
one table: the YAML read (libyaml C loader vs the pure-Python loader: `yamldoc.use_loader`, in the CLI
`MESHSIM_YAML_LOADER=python`), the whole
`load_scenario`, and `Cluster.build`, each as a median, with the ratio of the pure-Python path to the C path.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _uid(*parts: object) -> str:
    h = hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def generate_dump(endpoints: int = 2000, nodes: int = 20, *, pool: str = "10.244.0.0/16") -> str:
    """A calicoctl dump: IPPoolList, NodeList (with status), BGPConfigurationList, FelixConfigurationList,
    and a WorkloadEndpointList with `endpoints` pods spread over `nodes` nodes, each node's pods in its own /24
    of the pool (blocks of /26, so a node with many pods holds several blocks)."""
    import ipaddress

    net = ipaddress.IPv4Network(pool)
    out = ["apiVersion: projectcalico.org/v3\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: IPPool\n"
           "  metadata:\n    creationTimestamp: \"2024-05-02T10:11:12Z\"\n    name: default-ipv4-ippool\n"
           f"    resourceVersion: \"801\"\n    uid: {_uid('pool')}\n  spec:\n    allowedUses:\n    - Workload\n"
           f"    - Tunnel\n    blockSize: 26\n    cidr: {pool}\n    ipipMode: Always\n    natOutgoing: true\n"
           "    nodeSelector: all()\n    vxlanMode: Never\nkind: IPPoolList\nmetadata:\n  resourceVersion: \"9001\"\n"]
    node_items = []
    for i in range(nodes):
        name = f"worker-{i + 1:03d}"
        node_items.append(
            "- apiVersion: projectcalico.org/v3\n  kind: Node\n  metadata:\n    annotations:\n"
            "      projectcalico.org/kube-labels: '{\"kubernetes.io/arch\":\"amd64\",\"kubernetes.io/hostname\":\""
            f"{name}\",\"kubernetes.io/os\":\"linux\"}}'\n    creationTimestamp: \"2024-05-02T10:00:00Z\"\n"
            f"    labels:\n      beta.kubernetes.io/arch: amd64\n      kubernetes.io/hostname: {name}\n"
            f"      kubernetes.io/os: linux\n    name: {name}\n    resourceVersion: \"{1000 + i}\"\n"
            f"    uid: {_uid('node', i)}\n  spec:\n    addresses:\n    - address: 192.168.{i // 200}.{i % 200 + 10}/16\n"
            f"      type: CalicoNodeIP\n    - address: 192.168.{i // 200}.{i % 200 + 10}\n      type: InternalIP\n"
            f"    bgp:\n      ipv4Address: 192.168.{i // 200}.{i % 200 + 10}/16\n"
            f"      ipv4IPIPTunnelAddr: {net.network_address + (i << 8) + 1}\n"
            f"    orchRefs:\n    - nodeName: {name}\n      orchestrator: k8s\n  status:\n    podCIDRs:\n"
            f"    - 10.85.{i}.0/24\n")
    out.append("apiVersion: projectcalico.org/v3\nitems:\n" + "".join(node_items)
               + "kind: NodeList\nmetadata:\n  resourceVersion: \"9002\"\n")
    out.append("apiVersion: projectcalico.org/v3\nitems:\n- apiVersion: projectcalico.org/v3\n"
               "  kind: BGPConfiguration\n  metadata:\n    creationTimestamp: \"2024-05-02T10:00:00Z\"\n"
               f"    name: default\n    resourceVersion: \"777\"\n    uid: {_uid('bgp')}\n  spec:\n"
               "    asNumber: 64512\n    logSeverityScreen: Info\n    nodeToNodeMeshEnabled: true\n"
               "    nodeMeshMaxRestartTime: 2m0s\n    serviceClusterIPs:\n    - cidr: 10.96.0.0/12\n"
               "kind: BGPConfigurationList\nmetadata:\n  resourceVersion: \"9003\"\n")
    out.append("apiVersion: projectcalico.org/v3\nitems:\n- apiVersion: projectcalico.org/v3\n"
               "  kind: FelixConfiguration\n  metadata:\n    name: default\n    resourceVersion: \"778\"\n"
               f"    uid: {_uid('felix')}\n  spec:\n    bpfEnabled: false\n    floatingIPs: Disabled\n"
               "    logSeverityScreen: Info\n    reportingInterval: 0s\nkind: FelixConfigurationList\n"
               "metadata:\n  resourceVersion: \"9004\"\n")
    weps = []
    for k in range(endpoints):
        i = k % nodes
        j = k // nodes
        name = f"worker-{i + 1:03d}"
        pod = f"web-{k // 50:04d}-{hashlib.sha1(str(k).encode()).hexdigest()[:5]}"
        ip = net.network_address + (i << 8) + 2 + j
        if j > 250:
            raise ValueError("too many endpoints per node for this generator (max 251)")
        iface = "cali" + hashlib.sha1(f"default.{pod}".encode()).hexdigest()[:11]
        weps.append(
            "- apiVersion: projectcalico.org/v3\n  kind: WorkloadEndpoint\n  metadata:\n"
            "    creationTimestamp: \"2024-05-02T10:20:00Z\"\n    generateName: web-\n    labels:\n"
            "      app: web\n      pod-template-hash: 7d4b9c8f6\n      projectcalico.org/namespace: default\n"
            "      projectcalico.org/orchestrator: k8s\n      projectcalico.org/serviceaccount: default\n"
            f"    name: {name}-k8s-{pod.replace('-', '--')}-eth0\n    namespace: default\n"
            f"    resourceVersion: \"{20000 + k}\"\n    uid: {_uid('wep', k)}\n  spec:\n"
            f"    containerID: {hashlib.sha256(str(k).encode()).hexdigest()}\n    endpoint: eth0\n"
            f"    interfaceName: {iface}\n    ipNetworks:\n    - {ip}/32\n    node: {name}\n    orchestrator: k8s\n"
            f"    pod: {pod}\n    ports:\n    - name: http\n      port: 8080\n      protocol: TCP\n"
            "    profiles:\n    - kns.default\n    - ksa.default.default\n    serviceAccountName: default\n")
    out.append("apiVersion: projectcalico.org/v3\nitems:\n" + "".join(weps)
               + "kind: WorkloadEndpointList\nmetadata:\n  resourceVersion: \"9005\"\n")
    return "---\n".join(out)


def _time(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from meshsim.model import yamldoc
    from meshsim.model.cluster import Cluster
    from meshsim.model.resources import load_scenario

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dump.yaml"
        path.write_text(generate_dump(args.endpoints, args.nodes))
        size = path.stat().st_size
        rows = []
        for loader in ("python", "c"):
            yamldoc.use_loader(loader)
            read = _time(lambda: yamldoc.read_documents(path), args.repeat)
            load = _time(lambda: load_scenario([path]), args.repeat)
            scenario = load_scenario([path])
            build = _time(lambda: Cluster.build(scenario), args.repeat)
            rows.append((loader, read, load, build))
        yamldoc.use_loader("c")
    print(f"dump: {args.endpoints} WorkloadEndpoints on {args.nodes} nodes, {size / 1e6:.1f} MB; "
          f"median of {args.repeat} runs")
    print(f"{'loader':<10}{'read YAML':>12}{'load_scenario':>16}{'Cluster.build':>16}{'total':>10}")
    base = rows[-1]
    for loader, read, load, build in rows:
        name = {"python": "pure-Py", "c": "libyaml"}[loader]
        print(f"{name:<10}{read:>11.3f}s{load:>15.3f}s{build:>15.3f}s{load + build:>9.3f}s")
    ratio = (rows[0][2] + rows[0][3]) / max(base[2] + base[3], 1e-9)
    print(f"pure-Python / libyaml (load + build): x{ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
