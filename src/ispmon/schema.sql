-- ispmon database schema. Applied idempotently at start and by `ispmon migrate`; every statement
-- is safe to run again. The schema version row says which revision of this file was applied.

CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    description text NOT NULL
);

-- Monitored endpoints. `spec` holds the whole validated definition (EndpointSpec as JSON); the
-- columns beside it are what queries filter and join on.
CREATE TABLE IF NOT EXISTS endpoints (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    protocol    text NOT NULL,
    url         text NOT NULL,
    criticality text NOT NULL DEFAULT 'medium',
    tags        text[] NOT NULL DEFAULT '{}',
    is_active   boolean NOT NULL DEFAULT true,
    spec        jsonb NOT NULL,
    -- 'config' rows are owned by the config file (re-synced at start); 'api' rows by the REST API.
    source      text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'config')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every check result, partitioned by day (UTC) so retention is a cheap DROP of whole partitions.
-- No foreign key to endpoints: history outlives a deleted endpoint until retention removes it.
CREATE TABLE IF NOT EXISTS status_history (
    id               bigserial,
    endpoint_id      text NOT NULL,
    checked_at       timestamptz NOT NULL,
    status           text NOT NULL,
    response_time_ms real,
    error_kind       text,
    error            text,
    attempts         smallint NOT NULL DEFAULT 1,
    details          jsonb,
    PRIMARY KEY (checked_at, id)
) PARTITION BY RANGE (checked_at);

CREATE INDEX IF NOT EXISTS status_history_endpoint_time ON status_history (endpoint_id, checked_at DESC);
-- The ES sync (a later issue) reads by id from a cursor.
CREATE INDEX IF NOT EXISTS status_history_id ON status_history (id);

-- Rows outside every daily partition (clock jumps, a partition not made yet) land here instead of
-- failing the whole batch.
CREATE TABLE IF NOT EXISTS status_history_default PARTITION OF status_history DEFAULT;

-- Creates the daily partitions from `from_day` for `days` days; returns how many it created.
CREATE OR REPLACE FUNCTION ispmon_ensure_status_partitions(from_day date, days integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date;
    created integer := 0;
    part text;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        d := from_day + i;
        part := 'status_history_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            -- A default partition holding rows of that day would block the attach; move them.
            EXECUTE format('CREATE TABLE %I (LIKE status_history INCLUDING DEFAULTS)', part);
            EXECUTE format(
                'WITH moved AS (DELETE FROM status_history_default WHERE checked_at >= %L AND checked_at < %L RETURNING *) '
                'INSERT INTO %I SELECT * FROM moved',
                (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'), part);
            EXECUTE format('ALTER TABLE status_history ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                part, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;

-- Outages: one row per declared outage. At most one open outage per endpoint, enforced here, so a
-- restart or a race can never open the same outage twice.
CREATE TABLE IF NOT EXISTS outages (
    id               bigserial PRIMARY KEY,
    endpoint_id      text NOT NULL,
    started_at       timestamptz NOT NULL,
    declared_at      timestamptz NOT NULL,
    resolved_at      timestamptz,
    duration_seconds double precision,
    status           text NOT NULL,
    severity         text NOT NULL,
    error_kind       text,
    error            text,
    failures         integer NOT NULL DEFAULT 0,
    verified         boolean NOT NULL DEFAULT false,
    flapping         boolean NOT NULL DEFAULT false,
    resolution       text CHECK (resolution IN ('auto', 'manual')),
    resolution_notes text,
    resolved_by      text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS outages_one_open ON outages (endpoint_id) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS outages_started ON outages (started_at DESC);
CREATE INDEX IF NOT EXISTS outages_endpoint ON outages (endpoint_id, started_at DESC);

-- State changes and outage lifecycle events (declared, escalated, resolved, flapping, false alarms).
CREATE TABLE IF NOT EXISTS endpoint_events (
    id          bigserial PRIMARY KEY,
    endpoint_id text NOT NULL,
    at          timestamptz NOT NULL,
    kind        text NOT NULL,
    outage_id   bigint,
    data        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS endpoint_events_endpoint ON endpoint_events (endpoint_id, at DESC);

-- Maintenance windows: one-off (starts_at/ends_at) or recurring (rrule + duration in a time zone).
CREATE TABLE IF NOT EXISTS maintenance_windows (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    spec        jsonb NOT NULL,
    source      text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'config')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO schema_version (version, description)
VALUES (1, 'endpoints, daily status history partitions, outages, events, maintenance windows')
ON CONFLICT (version) DO NOTHING;
