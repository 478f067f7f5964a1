"""Service availability: endpoints, the scheduler and monitor, the outage state machine, severity, maintenance.

The probes this domain runs live in the sibling package ``ispmon.probes``: the network domain's
latency and loss checks use the same ICMP probe, so probes belong to neither domain.
"""
