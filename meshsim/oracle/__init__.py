"""What every node's table should be, computed from the model alone (independent of the speaker). Pure.

`expected` (route propagation through the peerings and the expected tables), `trace` (a packet's path).
"""
