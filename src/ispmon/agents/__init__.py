"""Several agents on one PostgreSQL: the agent registry and heartbeat, endpoint ownership
(rendezvous hashing over a location's live agents), the elected singleton work, configuration
changes that reach every agent, and outages confirmed from more than one location."""
