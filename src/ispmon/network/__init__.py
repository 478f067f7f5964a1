"""Network performance: SNMP devices and interfaces, counter maths, latency views, the seed's MetricsService."""
