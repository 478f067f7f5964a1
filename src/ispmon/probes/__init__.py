"""Protocol probes: one module per protocol, one signature, one lookup table (`PROBES`)."""

from ispmon.probes.base import PROBES, ProbeContext, ProbeFn, run_check

__all__ = ["PROBES", "ProbeContext", "ProbeFn", "run_check"]
