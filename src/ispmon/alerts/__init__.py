"""Alerting: rules, escalation, messages, the outbox sender and the engine that ties them to outages."""
