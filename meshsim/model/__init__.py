"""The Calico datastore as meshsim models it. Pure: no I/O beyond reading scenario files, no clock.

`resources` (Calico v3 resources and the Scenario document, loaded by `yamldoc`), `selectors`, `ipam`
(pools, blocks, affinity, borrowing), `cluster` (the datastore: nodes, pods, what each node originates),
`peering` (what confd computes: the BGP peers of each node), `timeline` (validated events),
`generate` (generated clusters for benchmarks and `compare`).
"""
