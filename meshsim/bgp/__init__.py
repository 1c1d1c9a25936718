"""BGP as one Calico node's BIRD speaks it. Pure: events and `now` in, actions out; no sockets, no clock.

`types` (path attributes), `rib` (RIBs and BIRD's best path), `policy` (Calico's export filter and the
RFC 4271 / RFC 4456 rules), `speaker` (one node's RIBs and exports).
"""
