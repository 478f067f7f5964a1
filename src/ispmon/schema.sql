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

-- Alerting (schema version 2). ---------------------------------------------------------------------

-- Notification channels registered through the API (the config file's [channels] live in memory
-- and are re-read at start and reload). `urls` are apprise URLs: they hold credentials, so the API
-- never returns them (only apprise's privacy form).
CREATE TABLE IF NOT EXISTS alert_channels (
    name        text PRIMARY KEY,
    urls        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Alert rules and escalation policies created through the API (config-file ones live in memory).
CREATE TABLE IF NOT EXISTS alert_rules (
    id          text PRIMARY KEY,
    spec        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per alert: an outage, or a threshold breach, seen by one rule. It fires, may be
-- acknowledged, and resolves. `suppressed_by` says why nobody is paged for it right now
-- (maintenance:<window>, dependency:<parent>, self_connectivity); the alert is recorded anyway.
CREATE TABLE IF NOT EXISTS alerts (
    id                bigserial PRIMARY KEY,
    endpoint_id       text NOT NULL,
    rule_id           text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('outage', 'threshold')),
    outage_id         bigint,
    severity          text NOT NULL,
    state             text NOT NULL DEFAULT 'firing' CHECK (state IN ('firing', 'acknowledged', 'resolved')),
    title             text NOT NULL,
    message           text NOT NULL,
    details           jsonb NOT NULL DEFAULT '{}',
    suppressed_by     text,
    was_suppressed    boolean NOT NULL DEFAULT false,
    started_at        timestamptz NOT NULL,
    -- The escalation clock: steps are due `after_minutes` past this instant. NULL while suppressed.
    notify_from       timestamptz,
    escalation_policy text,
    last_step         integer NOT NULL DEFAULT -1,
    last_reminder     integer NOT NULL DEFAULT 0,
    last_notified_at  timestamptz,
    acknowledged_at   timestamptz,
    acknowledged_by   text,
    acknowledge_note  text,
    resolved_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- At most one open alert per rule and endpoint: a restart or a race never opens it twice.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open ON alerts (rule_id, endpoint_id) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS alerts_started ON alerts (started_at DESC);
CREATE INDEX IF NOT EXISTS alerts_endpoint ON alerts (endpoint_id, started_at DESC);

-- The outbox, and the seed's ServiceAlert records: every notification is written here (in the same
-- transaction as the alert change that caused it) before anything is sent. The sender delivers
-- pending rows with backoff; `idempotency_key` (alert event, channel, step) makes a second write of
-- the same notification a no-op. `delivered_targets` holds fingerprints of the channel's URLs that
-- already accepted it, so a retry after a partial failure does not send twice to the others.
CREATE TABLE IF NOT EXISTS notifications (
    id                 bigserial PRIMARY KEY,
    idempotency_key    text NOT NULL UNIQUE,
    alert_id           bigint REFERENCES alerts (id) ON DELETE CASCADE,
    outage_id          bigint,
    endpoint_id        text,
    event              text NOT NULL,
    step               integer NOT NULL DEFAULT 0,
    channel            text NOT NULL,
    notification_type  text NOT NULL DEFAULT 'other',
    title              text NOT NULL,
    body               text NOT NULL,
    short_body         text NOT NULL,
    state              text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead', 'cancelled')),
    attempts           integer NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    last_error         text,
    delivered_targets  jsonb NOT NULL DEFAULT '[]',
    created_at         timestamptz NOT NULL DEFAULT now(),
    sent_at            timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS notifications_alert ON notifications (alert_id);
CREATE INDEX IF NOT EXISTS notifications_created ON notifications (created_at DESC);

-- A child's outage while its parent is down (or while the monitoring host is cut off) is recorded
-- and marked here: "dependency:<parent id>" or "self_connectivity".
ALTER TABLE outages ADD COLUMN IF NOT EXISTS suppressed_by text;

-- Changes of the monitoring host's own connectivity (the self-connectivity guard).
CREATE TABLE IF NOT EXISTS connectivity_events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    isolated    boolean NOT NULL,
    canaries    jsonb NOT NULL DEFAULT '[]'
);

INSERT INTO schema_version (version, description)
VALUES (1, 'endpoints, daily status history partitions, outages, events, maintenance windows')
ON CONFLICT (version) DO NOTHING;

INSERT INTO schema_version (version, description)
VALUES (2, 'alerting: channels, rules, alerts, notification outbox, connectivity events')
ON CONFLICT (version) DO NOTHING;

-- Metrics (issue 11 §9): network_metrics, system_metrics, ispmon_ensure_daily_partitions. ---------

-- Metrics measured elsewhere (MetricsService, POST /metrics/...) and the daemon's own host. One
-- row per sample, partitioned by day (UTC) like status_history. Units: percentages 0-100,
-- latency in ms, load_average the 1-minute load average.
CREATE TABLE IF NOT EXISTS network_metrics (
    id              bigserial,
    recorded_at     timestamptz NOT NULL,
    host            text,
    interface       text NOT NULL,
    bandwidth_usage double precision,
    packet_loss     double precision,
    latency         double precision,
    PRIMARY KEY (recorded_at, id)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX IF NOT EXISTS network_metrics_interface ON network_metrics (interface, recorded_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS network_metrics_host ON network_metrics (host, recorded_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS network_metrics_default PARTITION OF network_metrics DEFAULT;

CREATE TABLE IF NOT EXISTS system_metrics (
    id              bigserial,
    recorded_at     timestamptz NOT NULL,
    host            text,
    cpu_usage       double precision,
    memory_usage    double precision,
    disk_usage      double precision,
    load_average    double precision,
    PRIMARY KEY (recorded_at, id)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX IF NOT EXISTS system_metrics_host ON system_metrics (host, recorded_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS system_metrics_default PARTITION OF system_metrics DEFAULT;

-- Daily partitions <parent>_YYYYMMDD of a table partitioned by a timestamptz range (with a
-- <parent>_default partition), from `from_day` for `days` days; returns how many it created.
CREATE OR REPLACE FUNCTION ispmon_ensure_daily_partitions(parent text, time_column text, from_day date, days integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date;
    created integer := 0;
    part text;
    low timestamptz;
    high timestamptz;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        d := from_day + i;
        part := parent || '_' || to_char(d, 'YYYYMMDD');
        low := d::timestamp AT TIME ZONE 'UTC';
        high := (d + 1)::timestamp AT TIME ZONE 'UTC';
        IF to_regclass(part) IS NULL THEN
            -- A default partition holding rows of that day would block the attach; move them.
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, parent);
            EXECUTE format(
                'WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                parent || '_default', time_column, low, time_column, high, part);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part, low, high);
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;
