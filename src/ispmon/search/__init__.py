"""The Elasticsearch feed: index templates and ILM (templates, setup), the sync from PostgreSQL
(cursors, documents, bulk), the system-log capture, and its status."""
