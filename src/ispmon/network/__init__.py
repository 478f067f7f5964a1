"""Network performance: SNMP devices and interfaces, counter maths, polling, latency views, the
seed's MetricsService.

The pure parts (``counters``, ``devices``, ``interfaces``, ``latency``) take values and return
values; the SNMP I/O lives in ``snmp`` and ``poller`` only.
"""
