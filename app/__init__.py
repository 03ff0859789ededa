"""The application: launcher (the one place that wires the actor tree), the run
and scenario jobs, summary, invariants, report, resume, control endpoint and
metrics, the inspect and audit commands, the benchmark suite."""
