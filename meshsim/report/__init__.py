"""What users read: convergence figures (`metrics`), calicoctl-style tables (`calicoctl`), the run
report (`markdown`: report.md and its plots), and `meshsim compare`'s answer: growth models and fits
(`scaling`, pure), the verdict from the runs (`verdict`), its pages (`comparison`, `comparison_plots`)."""
