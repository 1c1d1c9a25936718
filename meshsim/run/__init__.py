"""Driving a running cluster: the harness, observation, timeline steps, `meshsim run` and `compare`."""
