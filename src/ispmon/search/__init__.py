"""Elasticsearch and Kibana: the feed from PostgreSQL, index templates, and Kibana saved objects."""
