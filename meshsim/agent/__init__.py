"""One node's agent: the HTTP API, its state and counters, the kernel dataplane, around a BGP engine."""

API_PORT = 9179  # every node's control API (meshsim's own; Calico has none): the one definition
