"""What users read: convergence figures (`metrics`), calicoctl-style tables (`calicoctl`), and the run
report (`markdown`: report.md and its plots)."""
