"""Network performance: SNMP devices and interfaces, counter maths, polling, latency views.

The pure parts (``counters``, ``devices``, ``interfaces``) take values and return values; the SNMP
I/O lives in ``snmp`` and ``poller`` only.
"""
