"""Real BIRD as a node's engine: confd's configuration rendered (pure) and the daemon supervised."""
