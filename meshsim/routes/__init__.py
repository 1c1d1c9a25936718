"""A node's route table as Felix and BIRD's kernel protocol program it. Pure: no I/O, no clock.

`routetable` (routes, `ip route` / `route -n` rendering, diffs), `felix` (the desired table from local
workloads and learned BGP routes, per ipipMode).
"""
