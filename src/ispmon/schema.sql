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

-- Network performance (schema version 3). ---------------------------------------------------------

-- SNMP devices. `spec` holds the whole validated definition (DeviceSpec as JSON, secrets included:
-- the API shows it redacted); the columns beside it are what the poller learnt last.
CREATE TABLE IF NOT EXISTS devices (
    id                 text PRIMARY KEY,
    name               text NOT NULL,
    address            text NOT NULL,
    tags               text[] NOT NULL DEFAULT '{}',
    is_active          boolean NOT NULL DEFAULT true,
    spec               jsonb NOT NULL,
    source             text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'config')),
    sys_name           text,
    sys_descr          text,
    sys_object_id      text,
    sys_uptime         bigint,
    reachable          boolean,
    last_error         text,
    last_poll_at       timestamptz,
    last_discovery_at  timestamptz,
    unreachable_since  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- A device's interfaces, keyed by (device, ifName): ifIndex is a column, so a port renumbered after
-- a reboot keeps its id and its history. `selected`: the device's interface selection polls it.
-- `present`: the last discovery saw it (a removed line card's ports stay, with their history).
CREATE TABLE IF NOT EXISTS interfaces (
    id              bigserial PRIMARY KEY,
    device_id       text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    key             text NOT NULL,
    if_index        integer NOT NULL,
    name            text NOT NULL DEFAULT '',
    descr           text NOT NULL DEFAULT '',
    alias           text NOT NULL DEFAULT '',
    if_type         integer,
    speed_bps       bigint,
    high_speed_mbps bigint,
    admin_status    text,
    oper_status     text,
    last_change     bigint,
    selected        boolean NOT NULL DEFAULT true,
    present         boolean NOT NULL DEFAULT true,
    last_sample     jsonb,
    last_sample_at  timestamptz,
    -- Set by an interface_down event (oper not up while admin up), cleared by interface_up.
    down_since      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, key)
);

-- One row per interface per poll (rates between two readings), partitioned by day (UTC) like
-- status_history: retention drops whole partitions. No foreign key: history outlives a deleted
-- device until retention removes it.
CREATE TABLE IF NOT EXISTS interface_metrics (
    interface_id    bigint NOT NULL,
    at              timestamptz NOT NULL,
    interval_s      real NOT NULL,
    in_bps          double precision,
    out_bps         double precision,
    in_pps          double precision,
    out_pps         double precision,
    in_util_pct     real,
    out_util_pct    real,
    in_errors_ps    real,
    out_errors_ps   real,
    in_discards_ps  real,
    out_discards_ps real,
    in_octets       bigint,
    out_octets      bigint
) PARTITION BY RANGE (at);
-- State changes of devices and interfaces: interface_down / interface_up (with duration_s),
-- device_unreachable / device_reachable. One row per change, never one per poll.
CREATE TABLE IF NOT EXISTS network_events (
    id           bigserial PRIMARY KEY,
    device_id    text NOT NULL,
    interface_id bigint,
    at           timestamptz NOT NULL,
    kind         text NOT NULL,
    data         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS network_events_device ON network_events (device_id, at DESC);

CREATE INDEX IF NOT EXISTS interface_metrics_interface_time ON interface_metrics (interface_id, at);
CREATE TABLE IF NOT EXISTS interface_metrics_default PARTITION OF interface_metrics DEFAULT;

-- Daily partitions of `tbl` (partitioned on `col`) from `from_day` for `days` days, moving rows of
-- those days out of `<tbl>_default` first; returns how many it created.
CREATE OR REPLACE FUNCTION ispmon_ensure_daily_partitions(tbl text, col text, from_day date, days integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date;
    created integer := 0;
    part text;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        d := from_day + i;
        part := tbl || '_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, tbl);
            EXECUTE format(
                'WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                tbl || '_default', col, (d::timestamp AT TIME ZONE 'UTC'), col,
                ((d + 1)::timestamp AT TIME ZONE 'UTC'), part);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                tbl, part, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;

INSERT INTO schema_version (version, description)
VALUES (1, 'endpoints, daily status history partitions, outages, events, maintenance windows')
ON CONFLICT (version) DO NOTHING;

INSERT INTO schema_version (version, description)
VALUES (2, 'alerting: channels, rules, alerts, notification outbox, connectivity events')
ON CONFLICT (version) DO NOTHING;

INSERT INTO schema_version (version, description)
VALUES (3, 'network: SNMP devices, interfaces, daily interface metric partitions')
ON CONFLICT (version) DO NOTHING;
-- ===== Customer usage (issue 12): customers, NAS clients, RADIUS accounting, sessions =====
-- Customers' definitions are JSON (validated by ispmon.usage.customers); their identities are
-- rows of their own, so an accounting record finds its customer by index and a User-Name or
-- prefix belongs to one customer only.
CREATE TABLE IF NOT EXISTS customers (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    spec        jsonb NOT NULL,
    source      text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'config')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS customer_usernames (
    username     text PRIMARY KEY,
    customer_id  text NOT NULL REFERENCES customers (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS customer_usernames_customer ON customer_usernames (customer_id);
CREATE TABLE IF NOT EXISTS customer_prefixes (
    prefix       cidr PRIMARY KEY,
    customer_id  text NOT NULL REFERENCES customers (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS customer_prefixes_customer ON customer_prefixes (customer_id);
CREATE INDEX IF NOT EXISTS customer_prefixes_range ON customer_prefixes USING gist (prefix inet_ops);

-- NAS clients: the secret is kept to verify and sign packets; the API never returns it.
CREATE TABLE IF NOT EXISTS nas_clients (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    address     cidr NOT NULL,
    secret      text NOT NULL,
    coa_port    integer NOT NULL DEFAULT 3799,
    source      text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'config')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per accounting session (NAS, Acct-Session-Id). Counters are numeric(20): with
-- Gigawords they reach 2^64 - 1, beyond bigint. customer_id has no foreign key: deleting a
-- customer keeps the history of what was used.
CREATE TABLE IF NOT EXISTS radius_sessions (
    id                bigserial PRIMARY KEY,
    nas_id            text NOT NULL,
    session_key       text NOT NULL,
    customer_id       text,
    username          text,
    framed_ip         inet,
    calling_station   text,
    started_at        timestamptz NOT NULL,
    last_at           timestamptz NOT NULL,
    closed_at         timestamptz,
    terminate_cause   text,
    in_octets         numeric(20, 0) NOT NULL DEFAULT 0,
    out_octets        numeric(20, 0) NOT NULL DEFAULT 0,
    session_time      bigint NOT NULL DEFAULT 0,
    interim_interval  integer,
    records           integer NOT NULL DEFAULT 0,
    UNIQUE (nas_id, session_key)
) WITH (fillfactor = 80);
-- No index on what an interim changes (last_at, counters): every interim updates its session, and
-- that update stays HOT (no index writes) where the page has room, which fillfactor leaves.
CREATE INDEX IF NOT EXISTS radius_sessions_customer ON radius_sessions (customer_id, started_at DESC);

-- Every Accounting-Request answered, once: the unique key is RFC 5080 2.2.2's duplicate test
-- (client, source port, Identifier, request authenticator), so a retransmission, also one after
-- a restart, is answered again and counted never twice. delta_* is what the record added.
CREATE TABLE IF NOT EXISTS acct_records (
    id             bigserial PRIMARY KEY,
    received_at    timestamptz NOT NULL,
    event_at       timestamptz NOT NULL,
    nas_id         text NOT NULL,
    source_port    integer NOT NULL,
    identifier     smallint NOT NULL,
    authenticator  bytea NOT NULL,
    status         text NOT NULL,
    session_key    text,
    session_id     bigint,
    customer_id    text,
    in_octets      numeric(20, 0) NOT NULL DEFAULT 0,
    out_octets     numeric(20, 0) NOT NULL DEFAULT 0,
    session_time   bigint,
    delta_in       numeric(20, 0) NOT NULL DEFAULT 0,
    delta_out      numeric(20, 0) NOT NULL DEFAULT 0,
    UNIQUE (nas_id, source_port, identifier, authenticator)
);
CREATE INDEX IF NOT EXISTS acct_records_customer ON acct_records (customer_id, event_at) WHERE customer_id IS NOT NULL;

INSERT INTO schema_version (version, description)
VALUES (4, 'usage: customers, NAS clients, RADIUS accounting records and sessions')
ON CONFLICT (version) DO NOTHING;
-- Metrics (issue 11 §9): network_metrics, system_metrics. ------------------------------------------

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

-- Their daily partitions are made by ispmon_ensure_daily_partitions (defined with interface_metrics).

INSERT INTO schema_version (version, description)
VALUES (5, 'metrics: network and system metrics measured elsewhere (daily partitions)')
ON CONFLICT (version) DO NOTHING;
-- Batches the results writer committed (store/writer.py): each COPY commits in one transaction
-- with its batch's row here, so a batch retried after a lost acknowledgement (the connection
-- dropped after COMMIT reached the server) is recognised and not copied twice. Rows older than a
-- day are pruned by the writer: a retry comes within seconds, never a day later.
CREATE TABLE IF NOT EXISTS write_batches (
    batch_id    uuid PRIMARY KEY,
    table_name  text NOT NULL,
    rows        integer NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS write_batches_written_at ON write_batches (written_at);

INSERT INTO schema_version (version, description)
VALUES (6, 'write_batches: idempotent results batches (a retry after a lost COMMIT ack)')
ON CONFLICT (version) DO NOTHING;

-- ===== Usage rollups, quota crossings and the enforcement audit trail (issue 12 §5, §6) =====
-- Octets per customer and hour, day and month, in the customer's time zone (the step's start, as
-- date_trunc in that zone gives it). Written in the same transaction as the accounting records
-- they sum, from the rows that INSERT actually added: a retransmission adds no record and so
-- nothing here, and a crash loses records and their rollup together, never one without the other.
CREATE TABLE IF NOT EXISTS usage_rollups (
    customer_id  text NOT NULL,
    step         text NOT NULL CHECK (step IN ('hour', 'day', 'month')),
    start        timestamptz NOT NULL,
    bytes_in     numeric(30, 0) NOT NULL DEFAULT 0,
    bytes_out    numeric(30, 0) NOT NULL DEFAULT 0,
    PRIMARY KEY (customer_id, step, start)
);
-- Once only: the rollups of the records stored before this version (records stored later are
-- rolled up by their commit).
INSERT INTO usage_rollups (customer_id, step, start, bytes_in, bytes_out)
SELECT r.customer_id, s.step, date_trunc(s.step, r.event_at, coalesce(c.spec->>'timezone', 'UTC')),
       sum(r.delta_in), sum(r.delta_out)
FROM acct_records r LEFT JOIN customers c ON c.id = r.customer_id
CROSS JOIN (VALUES ('hour'), ('day'), ('month')) AS s(step)
WHERE r.customer_id IS NOT NULL AND r.delta_in + r.delta_out > 0
  AND NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 8)
GROUP BY 1, 2, 3
ON CONFLICT DO NOTHING;

-- A threshold crossed, once per customer, period and threshold (the primary key is the "once").
CREATE TABLE IF NOT EXISTS quota_crossings (
    customer_id   text NOT NULL,
    period_start  timestamptz NOT NULL,
    threshold     integer NOT NULL,
    crossed_at    timestamptz NOT NULL DEFAULT now(),
    used_bytes    numeric(30, 0) NOT NULL,
    quota_bytes   bigint NOT NULL,
    PRIMARY KEY (customer_id, period_start, threshold)
);

-- The audit trail of enforcement: one row per action and target, written (state 'pending')
-- BEFORE it is sent, so a crash mid-send resends it with the same idempotency key at the next
-- start (at least once, never silently twice) and never forgets it.
CREATE TABLE IF NOT EXISTS enforcements (
    id               bigserial PRIMARY KEY,
    customer_id      text NOT NULL,
    period_start     timestamptz NOT NULL,
    threshold        integer NOT NULL,
    action           text NOT NULL CHECK (action IN ('notify', 'webhook', 'coa', 'disconnect', 'lift')),
    target           text NOT NULL,
    nas_id           text,
    session_key      text,
    idempotency_key  text NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sent', 'acked', 'nak', 'timeout', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    detail           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, period_start, threshold, action, target)
);
CREATE INDEX IF NOT EXISTS enforcements_customer ON enforcements (customer_id, id DESC);
CREATE INDEX IF NOT EXISTS enforcements_pending ON enforcements (id) WHERE state = 'pending';

INSERT INTO schema_version (version, description)
VALUES (8, 'usage: rollups per customer, quota crossings, the enforcement audit trail')
ON CONFLICT (version) DO NOTHING;

-- Enforcement outcome `unsent`: a pending row that can no longer be sent (its NAS was deleted, or
-- for a CoA its customer), set terminal with the reason in detail instead of pending for ever.
-- The constraint is replaced only while it lacks the value, so re-running the file does nothing.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'enforcements'::regclass AND conname = 'enforcements_state_check'
          AND pg_get_constraintdef(oid) LIKE '%unsent%'
    ) THEN
        ALTER TABLE enforcements DROP CONSTRAINT IF EXISTS enforcements_state_check;
        ALTER TABLE enforcements ADD CONSTRAINT enforcements_state_check
            CHECK (state IN ('pending', 'sent', 'acked', 'nak', 'timeout', 'failed', 'unsent'));
    END IF;
END $$;
-- The incremental quota pass looks at customers created or changed since its last pass.
CREATE INDEX IF NOT EXISTS customers_updated_at ON customers (updated_at);

INSERT INTO schema_version (version, description)
VALUES (10, 'usage: enforcement outcome unsent; customers by updated_at (the incremental quota pass)')
ON CONFLICT (version) DO NOTHING;

-- Traffic analysis (issue 13): declared flow exporters and 1-minute flow aggregates. A flushed
-- batch is recorded in flow_batches in the same transaction as its rows, so a retried flush of
-- the same batch adds nothing.
CREATE TABLE IF NOT EXISTS flow_exporters (
    id          text PRIMARY KEY,
    address     inet NOT NULL UNIQUE,
    name        text NOT NULL DEFAULT '',
    sampling    integer CHECK (sampling IS NULL OR sampling >= 1),
    device_id   text,
    source      text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'config'))
);

CREATE TABLE IF NOT EXISTS flow_batches (
    batch_id    uuid PRIMARY KEY,
    written_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS flow_aggregates (
    at            timestamptz NOT NULL,
    exporter_id   text NOT NULL,
    in_if         integer NOT NULL,
    out_if        integer NOT NULL,
    src_prefix    text NOT NULL,
    dst_prefix    text NOT NULL,
    src_customer  text,
    dst_customer  text,
    proto         smallint NOT NULL,
    port          integer NOT NULL,
    bytes         bigint NOT NULL,
    packets       bigint NOT NULL,
    flows         bigint NOT NULL
) PARTITION BY RANGE (at);
CREATE INDEX IF NOT EXISTS flow_aggregates_at ON flow_aggregates (at);
CREATE INDEX IF NOT EXISTS flow_aggregates_src_customer ON flow_aggregates (src_customer, at) WHERE src_customer IS NOT NULL;
CREATE INDEX IF NOT EXISTS flow_aggregates_dst_customer ON flow_aggregates (dst_customer, at) WHERE dst_customer IS NOT NULL;
CREATE TABLE IF NOT EXISTS flow_aggregates_default PARTITION OF flow_aggregates DEFAULT;
-- Daily partitions by ispmon_ensure_daily_partitions('flow_aggregates', 'at', ...).

INSERT INTO schema_version (version, description)
VALUES (9, 'flows: exporters, 1-minute flow aggregates (daily partitions), flushed batches')
ON CONFLICT (version) DO NOTHING;

-- Interface rollups (issue 11 §5): 5-minute, 1-hour and 1-day buckets of interface_metrics. -------
-- One row per (step, interface, bucket start); per rate: min, interval-weighted avg, max and the
-- 95th percentile (nearest rank) of the finer values. Written by ispmon.store.rollups in the same
-- transaction that moves interface_rollup_progress, so a bucket is replaced, never added twice,
-- and a crash mid-rollup leaves the previous state. Retention per step (DELETE: rollups are small).
CREATE TABLE IF NOT EXISTS interface_rollups (
    step_s          integer NOT NULL CHECK (step_s IN (300, 3600, 86400)),
    interface_id    bigint NOT NULL,
    bucket          timestamptz NOT NULL,
    samples         integer NOT NULL,
    seconds         double precision NOT NULL,
    in_octets       numeric(24, 0),
    out_octets      numeric(24, 0),
    in_bps_min           double precision,
    in_bps_avg           double precision,
    in_bps_max           double precision,
    in_bps_p95           double precision,
    out_bps_min          double precision,
    out_bps_avg          double precision,
    out_bps_max          double precision,
    out_bps_p95          double precision,
    in_pps_min           double precision,
    in_pps_avg           double precision,
    in_pps_max           double precision,
    in_pps_p95           double precision,
    out_pps_min          double precision,
    out_pps_avg          double precision,
    out_pps_max          double precision,
    out_pps_p95          double precision,
    in_util_pct_min      double precision,
    in_util_pct_avg      double precision,
    in_util_pct_max      double precision,
    in_util_pct_p95      double precision,
    out_util_pct_min     double precision,
    out_util_pct_avg     double precision,
    out_util_pct_max     double precision,
    out_util_pct_p95     double precision,
    in_errors_ps_min     double precision,
    in_errors_ps_avg     double precision,
    in_errors_ps_max     double precision,
    in_errors_ps_p95     double precision,
    out_errors_ps_min    double precision,
    out_errors_ps_avg    double precision,
    out_errors_ps_max    double precision,
    out_errors_ps_p95    double precision,
    in_discards_ps_min   double precision,
    in_discards_ps_avg   double precision,
    in_discards_ps_max   double precision,
    in_discards_ps_p95   double precision,
    out_discards_ps_min  double precision,
    out_discards_ps_avg  double precision,
    out_discards_ps_max  double precision,
    out_discards_ps_p95  double precision,
    PRIMARY KEY (step_s, interface_id, bucket)
);
-- How far each step is rolled up: every bucket starting before done_until is final.
CREATE TABLE IF NOT EXISTS interface_rollup_progress (
    step_s      integer PRIMARY KEY,
    done_until  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO schema_version (version, description)
VALUES (7, 'network: interface rollups (5 minutes, 1 hour, 1 day) and their progress')
ON CONFLICT (version) DO NOTHING;

-- ===== Accounting at interim rates (issue 12, speed) =====
-- Every answered Accounting-Request writes a record, its session and its customer's three rollup
-- rows, so index only what is read: nothing reads records by session_id (sessions are read from
-- radius_sessions), so that index is dropped. A rollup row is updated by every record of its
-- customer's hour, day and month: with room left in its page the update is HOT (no index write).
DROP INDEX IF EXISTS acct_records_session;
ALTER TABLE usage_rollups SET (fillfactor = 70);

INSERT INTO schema_version (version, description)
VALUES (11, 'usage: leaner accounting writes (no records-by-session index, HOT rollup updates)')
ON CONFLICT (version) DO NOTHING;

-- Raw flow records (issue 13 §2), kept only when FLOW_RAW_HOURS > 0, for troubleshooting: written
-- in batches (COPY) recorded in flow_batches in the same transaction, like the aggregates, and
-- kept in hourly partitions by the flow's end that are dropped whole once past FLOW_RAW_HOURS.
CREATE SEQUENCE IF NOT EXISTS flow_records_id_seq;
CREATE TABLE IF NOT EXISTS flow_records (
    id           bigint NOT NULL DEFAULT nextval('flow_records_id_seq'),
    at           timestamptz NOT NULL,
    exporter_id  text NOT NULL,
    in_if        integer NOT NULL,
    out_if       integer NOT NULL,
    src_addr     inet NOT NULL,
    dst_addr     inet NOT NULL,
    proto        smallint NOT NULL,
    src_port     integer NOT NULL,
    dst_port     integer NOT NULL,
    bytes        bigint NOT NULL,
    packets      bigint NOT NULL
) PARTITION BY RANGE (at);
CREATE INDEX IF NOT EXISTS flow_records_at ON flow_records (at, id);
CREATE TABLE IF NOT EXISTS flow_records_default PARTITION OF flow_records DEFAULT;

-- Hourly partitions tbl_YYYYMMDDHH (UTC) for `hours` hours from the hour of `from_at`; rows of
-- those hours already in the default partition move into them. Returns how many it created.
CREATE OR REPLACE FUNCTION ispmon_ensure_hourly_partitions(tbl text, col text, from_at timestamptz, hours integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    h timestamptz;
    created integer := 0;
    part text;
BEGIN
    FOR i IN 0 .. hours - 1 LOOP
        h := date_trunc('hour', from_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + make_interval(hours => i);
        part := tbl || '_' || to_char(h AT TIME ZONE 'UTC', 'YYYYMMDDHH24');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, tbl);
            EXECUTE format(
                'WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                tbl || '_default', col, h, col, h + interval '1 hour', part);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                tbl, part, h, h + interval '1 hour');
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;

INSERT INTO schema_version (version, description)
VALUES (12, 'flows: raw flow records kept for FLOW_RAW_HOURS (hourly partitions)')
ON CONFLICT (version) DO NOTHING;

-- ===== Endpoint rollups, reports and scheduled reports (issue 15 §1-3) =====
-- Status history per endpoint in 1-hour, 1-day and 1-week (from Monday) buckets (UTC), kept ROLLUP_RETENTION_DAYS while
-- raw history keeps CLEANUP_RETENTION_DAYS. Checks by status; downtime_s: seconds of the bucket
-- inside an outage of the endpoint and outside its maintenance; maintenance_s: seconds inside a
-- maintenance window that applies to it; outages: outages that started in the bucket. Response
-- times as a histogram (rt_bins: log-spaced bin numbers, ascending; rt_counts: checks per bin; see
-- ispmon.reports.histogram) so the p50/p95/p99 of a day or a year merge from the hours exactly up to
-- the bin width. Written by ispmon.store.endpoint_rollups in the same transaction that moves
-- endpoint_rollup_progress: a bucket is replaced, never added to twice.
CREATE TABLE IF NOT EXISTS endpoint_rollups (
    step_s         integer NOT NULL CHECK (step_s IN (3600, 86400, 604800)),
    endpoint_id    text NOT NULL,
    bucket         timestamptz NOT NULL,
    checks         integer NOT NULL DEFAULT 0,
    up             integer NOT NULL DEFAULT 0,
    degraded       integer NOT NULL DEFAULT 0,
    down           integer NOT NULL DEFAULT 0,
    maintenance    integer NOT NULL DEFAULT 0,
    unknown        integer NOT NULL DEFAULT 0,
    downtime_s     double precision NOT NULL DEFAULT 0,
    maintenance_s  double precision NOT NULL DEFAULT 0,
    outages        integer NOT NULL DEFAULT 0,
    rt_count       integer NOT NULL DEFAULT 0,
    rt_sum_ms      double precision NOT NULL DEFAULT 0,
    rt_bins        smallint[] NOT NULL DEFAULT '{}',
    rt_counts      integer[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (step_s, endpoint_id, bucket)
);
CREATE INDEX IF NOT EXISTS endpoint_rollups_bucket ON endpoint_rollups (step_s, bucket);
-- done_until: every bucket before it is final. dirty_from (days, weeks): the earliest finer bucket
-- rewritten since this step's last run, so the days and weeks above late rows are rolled up again.
CREATE TABLE IF NOT EXISTS endpoint_rollup_progress (
    step_s      integer PRIMARY KEY,
    done_until  timestamptz NOT NULL,
    dirty_from  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A scheduled report's periods: one row per (schedule, period start), written in the same
-- transaction as its notifications, so a period is sent once even across restarts and by one of
-- several agents. The report itself is kept here for the outbox to attach (pruned with the rows).
CREATE TABLE IF NOT EXISTS report_runs (
    schedule_id   text NOT NULL,
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    kind          text NOT NULL,
    format        text NOT NULL,
    file_name     text NOT NULL,
    media_type    text NOT NULL,
    content       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, period_start)
);
-- A notification carrying a report: the sender attaches report_runs' content.
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS report_schedule text;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS report_period timestamptz;

INSERT INTO schema_version (version, description)
VALUES (14, 'reports: endpoint rollups (1 hour, 1 day, 1 week) and their progress, scheduled report runs')
ON CONFLICT (version) DO NOTHING;

-- Cheaper accounting commits (issue 12, speed). The commit hands PostgreSQL its sessions and
-- records as one array of a composite type per kind instead of one array per column: asyncpg
-- checks every element of every array parameter for nesting (several isinstance calls each),
-- which was a third of the client's CPU per record; an array of rows costs that once per row.
-- Counters travel as text (exact; cast to numeric in the statement). Created only when missing:
-- agents running while another migrates keep the type (and the codec they cached for it).
DO $$
BEGIN
    IF to_regtype('acct_commit_key') IS NULL THEN
        CREATE TYPE acct_commit_key AS (
            nas_id text, session_key text, source_port integer, identifier smallint, authenticator bytea);
    END IF;
    IF to_regtype('acct_commit_session') IS NULL THEN
        CREATE TYPE acct_commit_session AS (
            nas_id text, session_key text, customer_id text, username text, framed_ip inet,
            calling_station text, started_at timestamptz, last_at timestamptz, closed_at timestamptz,
            terminate_cause text, in_octets text, out_octets text, session_time bigint,
            interim_interval integer, records integer, id bigint);
    END IF;
    IF to_regtype('acct_commit_record') IS NULL THEN
        CREATE TYPE acct_commit_record AS (
            received_at timestamptz, event_at timestamptz, nas_id text, source_port integer,
            identifier smallint, authenticator bytea, status text, session_key text, in_octets text,
            out_octets text, session_time bigint, session_id bigint, customer_id text, delta_in text,
            delta_out text);
    END IF;
END $$;

-- Monthly rollups are no longer written: a month is the sum of its days (read from the daily
-- rows, grouped by the month they start in), which the commit writes anyway. Every commit wrote
-- the same octets to the month's row as to the day's, so the rows already there are exactly the
-- sums of their days and can go; each later commit upserts two rows per customer, not three.
-- Once only (the version row is written below): later starts do not scan the rollups.
DELETE FROM usage_rollups WHERE step = 'month' AND NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 16);

INSERT INTO schema_version (version, description)
VALUES (16, 'usage: accounting commits pass rows (composite types); months derived from the daily rollups')
ON CONFLICT (version) DO NOTHING;

-- Dashboard views (web/views.py): charts an operator composed and saved, shared by everyone who
-- opens the dashboard. `spec` is the validated ViewSpec (series, filters, step, kind) as JSON.
CREATE TABLE IF NOT EXISTS dashboard_views (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    pinned      boolean NOT NULL DEFAULT false,
    spec        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO schema_version (version, description)
VALUES (15, 'web: dashboard views (custom visualisations)')
ON CONFLICT (version) DO NOTHING;

-- ===== Elasticsearch feed (issue 14) =====
-- One cursor per index family. Rows are selected by the transaction that wrote them (xmin) in the
-- window [watermark, window_end): every transaction below a snapshot's xmin has finished, so that
-- window's rows are final and none is skipped by a late commit, whatever its id (a bigserial id
-- is assigned at insert, not at commit). after_key: where a window being drained stopped (a
-- restart resumes there). scan_floor_*: a lower bound on the id / time of rows not yet sent,
-- only to keep the scan short (search/cursor.py says why it is safe).
CREATE TABLE IF NOT EXISTS search_cursors (
    family           text PRIMARY KEY,
    watermark        xid8 NOT NULL,
    window_end       xid8,
    after_key        jsonb,
    scan_floor_id    bigint NOT NULL DEFAULT 0,
    scan_floor_at    timestamptz NOT NULL DEFAULT '-infinity',
    watermark_at     timestamptz NOT NULL DEFAULT now(),
    sent             bigint NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Documents Elasticsearch refused for good (a mapping error): kept with the reason, retried on
-- request (POST /search/dead-letters/{id}/retry); they never hold the cursor back.
CREATE TABLE IF NOT EXISTS search_dead_letters (
    id          bigserial PRIMARY KEY,
    family      text NOT NULL,
    index_name  text NOT NULL,
    doc_id      text NOT NULL,
    document    jsonb NOT NULL,
    status      integer NOT NULL,
    error_type  text,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retries     integer NOT NULL DEFAULT 0,
    last_retry_at timestamptz,
    UNIQUE (family, doc_id)
);

-- The system-log lines (LoggingService and the daemon's own events) the feed sends to
-- <prefix>-system-logs-*; pruned after CLEANUP_RETENTION_DAYS.
CREATE TABLE IF NOT EXISTS system_logs (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL,
    level   text NOT NULL,
    logger  text,
    event   text NOT NULL,
    data    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS system_logs_at ON system_logs (at);

-- The feed's scans by time: interface rates (no id) and hourly usage rollups (updated in place).
CREATE INDEX IF NOT EXISTS interface_metrics_at ON interface_metrics (at);
CREATE INDEX IF NOT EXISTS usage_rollups_hour_start ON usage_rollups (start) WHERE step = 'hour';
CREATE INDEX IF NOT EXISTS network_metrics_id ON network_metrics (id);

INSERT INTO schema_version (version, description)
VALUES (13, 'search: Elasticsearch feed cursors, dead letters, system log lines')
ON CONFLICT (version) DO NOTHING;

-- Several agents, one PostgreSQL (schema version 17). ---------------------------------------------
-- Each agent's row, written at start and on every heartbeat (times are the database's clock, so
-- agents on hosts with skewed clocks agree). An agent is live from joined_at plus a settle time
-- until last_heartbeat plus AGENT_DEAD_AFTER, or until a clean stop sets stopped_at.
CREATE TABLE IF NOT EXISTS agents (
    id             text PRIMARY KEY,
    location       text NOT NULL,
    version        text NOT NULL,
    host           text NOT NULL,
    pid            integer NOT NULL,
    api_url        text,
    joined_at      timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL,
    stopped_at     timestamptz,
    stats          jsonb NOT NULL DEFAULT '{}'
);

-- Work that runs on one agent at a time (paging, the Elasticsearch sync, retention, scheduled
-- reports): a lease per name, renewed by its holder, taken over once it has expired. The epoch
-- grows at every change of holder, so a holder can tell its lease was lost in between.
CREATE TABLE IF NOT EXISTS agent_leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    epoch       bigint NOT NULL DEFAULT 1,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- Configuration changes made through one agent (API, reload), for the others: each is also a
-- NOTIFY; this table is the backstop when a notification was missed (an agent re-reads what is
-- newer than the last id it applied). Pruned with the history.
CREATE TABLE IF NOT EXISTS config_changes (
    id      bigserial PRIMARY KEY,
    kind    text NOT NULL,
    key     text,
    origin  text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);

-- Which agent and location produced a check, and opened an outage; the locations that saw an outage.
ALTER TABLE status_history ADD COLUMN IF NOT EXISTS agent_id text;
ALTER TABLE status_history ADD COLUMN IF NOT EXISTS location text;
ALTER TABLE outages ADD COLUMN IF NOT EXISTS agent_id text;
ALTER TABLE outages ADD COLUMN IF NOT EXISTS location text;
ALTER TABLE outages ADD COLUMN IF NOT EXISTS locations jsonb;

-- Each location's verdict on an endpoint probed from several (confirm_locations): its status as
-- that location's owner last saw it, and since when it has been verified DOWN there.
CREATE TABLE IF NOT EXISTS endpoint_locations (
    endpoint_id text NOT NULL,
    location    text NOT NULL,
    status      text NOT NULL,
    down_since  timestamptz,
    agent_id    text,
    checked_at  timestamptz NOT NULL,
    PRIMARY KEY (endpoint_id, location)
);

INSERT INTO schema_version (version, description)
VALUES (17, 'agents: registry, leases, configuration changes, check and outage origins, location verdicts')
ON CONFLICT (version) DO NOTHING;

-- Flow collectors on several agents (issue 16 §6; version 18, to be renumbered at merge): what one
-- agent learned of an exporter's observation domain (its templates, the options records that date
-- relative times and give the sampling rate), so that another agent it fails over to decodes its
-- data at once instead of holding it until the exporter sends its templates again.
CREATE TABLE IF NOT EXISTS flow_domains (
    exporter_id text NOT NULL REFERENCES flow_exporters (id) ON DELETE CASCADE,
    domain      bigint NOT NULL,
    templates   jsonb NOT NULL DEFAULT '{}',  -- template id -> [fields, options template]
    options     jsonb NOT NULL DEFAULT '{}',  -- "init_ms", "sampling" (the options record)
    agent_id    text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exporter_id, domain)
);

-- Which agents hear each exporter (upserted at each flush that had its packets): an exporter heard
-- by two agents without a break for a while sends to both (for redundancy), which doubles its
-- figures; the agents warn (an exporter must have one ispmon agent as its destination at a time).
CREATE TABLE IF NOT EXISTS flow_exporter_agents (
    exporter_id text NOT NULL REFERENCES flow_exporters (id) ON DELETE CASCADE,
    agent_id    text NOT NULL,
    since       timestamptz NOT NULL,  -- heard without a break since
    last_heard  timestamptz NOT NULL,
    PRIMARY KEY (exporter_id, agent_id)
);

INSERT INTO schema_version (version, description)
VALUES (18, 'flows: exporters'' templates and options per observation domain shared between agents; the agents that hear each exporter')
ON CONFLICT (version) DO NOTHING;

-- Search: documents to delete from Elasticsearch (issue 14 §6; version 19, to be renumbered at
-- merge). A maintenance window deleted here (through the API or a config reload) must leave the
-- index too: its deletion is recorded in the transaction that deletes the row (a trigger, so no
-- path can forget it), the feed sends the delete and removes the record once Elasticsearch has
-- answered, so a delete survives Elasticsearch being away and a restart before it was sent. A
-- window created again under the same id takes its record back (its document is sent anew).
CREATE TABLE IF NOT EXISTS search_deletions (
    family     text NOT NULL,  -- a family of one index (templates.FAMILIES, daily = False)
    doc_id     text NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (family, doc_id)
);

CREATE OR REPLACE FUNCTION ispmon_search_window_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO search_deletions (family, doc_id) VALUES ('maintenance_windows', OLD.id)
        ON CONFLICT (family, doc_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at;
        RETURN OLD;
    END IF;
    DELETE FROM search_deletions WHERE family = 'maintenance_windows' AND doc_id = NEW.id;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER maintenance_windows_search_deletion
    AFTER INSERT OR DELETE ON maintenance_windows
    FOR EACH ROW EXECUTE FUNCTION ispmon_search_window_deletion();

INSERT INTO schema_version (version, description)
VALUES (19, 'search: deleted maintenance windows recorded for the feed to delete their documents')
ON CONFLICT (version) DO NOTHING;

-- One configuration for every agent (schema version 20). -------------------------------------------
-- Every change to a configuration table records one `config_changes` row per kind and transaction,
-- and NOTIFYs `ispmon_config` with its id, both in the writer's transaction: a change is announced
-- if and only if it commits, whoever wrote it (an agent's API, a config-file sync, the CLI, psql).
-- `key` is the changed row's id while the transaction changed one row of the kind, NULL ("re-read
-- the whole kind") once it changed more: a bulk upsert of 10,000 customers is one change, not
-- 10,000. `origin` is the writing session's `ispmon.agent_id` setting (the daemon sets it on its
-- connections), 'external' when unset. Row-level triggers, so that a statement that changes no row
-- (a config sync finding a row as the file has it) costs nothing: statement-level ones cost a
-- function call and a query per statement, which tripled the time of syncing an unchanged file of
-- 5,000 endpoints. The transaction's row for a kind is remembered in a transaction-local setting as
-- 'id|key' (one key so far) or 'id' (the whole kind), so only the first row of a transaction
-- inserts and only the first with another key updates. TG_ARGV: the kind, the key column.
CREATE OR REPLACE FUNCTION ispmon_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text := TG_ARGV[0];
    setting text := 'ispmon.config_change_' || TG_ARGV[0];
    row_key text;
    remembered text;
    change_id bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_key := to_jsonb(OLD) ->> TG_ARGV[1];
    ELSE
        row_key := to_jsonb(NEW) ->> TG_ARGV[1];
    END IF;
    remembered := nullif(current_setting(setting, true), '');
    IF remembered IS NULL THEN
        INSERT INTO config_changes (kind, key, origin)
        VALUES (kind, row_key, coalesce(nullif(current_setting('ispmon.agent_id', true), ''), 'external'))
        RETURNING id INTO change_id;
        PERFORM set_config(setting, change_id::text || '|' || row_key, true);
        PERFORM pg_notify('ispmon_config', change_id::text);
    ELSIF position('|' IN remembered) > 0
          AND substr(remembered, position('|' IN remembered) + 1) IS DISTINCT FROM row_key THEN
        change_id := split_part(remembered, '|', 1)::bigint;
        UPDATE config_changes SET key = NULL WHERE id = change_id;
        PERFORM set_config(setting, change_id::text, true);
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('endpoints', 'endpoints', 'id'),
        ('maintenance_windows', 'maintenance', 'id'),
        ('alert_channels', 'alert_channels', 'name'),
        ('alert_rules', 'alert_rules', 'id'),
        ('customers', 'customers', 'id'),
        ('nas_clients', 'nas_clients', 'id'),
        ('flow_exporters', 'flow_exporters', 'id'),
        ('devices', 'devices', 'id')
    ) AS v (tbl, kind, keycol)
    LOOP
        -- Created once: re-creating them at every start would lock these tables each time.
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_trigger
                               WHERE tgrelid = t.tbl::regclass AND tgname = 'ispmon_config_change');
        IF t.tbl = 'devices' THEN
            -- A poll writes its results (reachable, last_poll_at, sys_*) into the row: not a change.
            EXECUTE 'CREATE TRIGGER ispmon_config_change AFTER INSERT OR DELETE ON devices FOR EACH ROW
                     EXECUTE FUNCTION ispmon_config_changed(''devices'', ''id'')';
            EXECUTE 'CREATE TRIGGER ispmon_config_change_update AFTER UPDATE ON devices FOR EACH ROW
                     WHEN ((OLD.name, OLD.address, OLD.tags, OLD.is_active, OLD.spec, OLD.source)
                           IS DISTINCT FROM (NEW.name, NEW.address, NEW.tags, NEW.is_active, NEW.spec, NEW.source))
                     EXECUTE FUNCTION ispmon_config_changed(''devices'', ''id'')';
        ELSE
            EXECUTE format(
                'CREATE TRIGGER ispmon_config_change AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW
                 EXECUTE FUNCTION ispmon_config_changed(%L, %L)', t.tbl, t.kind, t.keycol);
        END IF;
    END LOOP;
END
$$;

INSERT INTO schema_version (version, description)
VALUES (20, 'configuration changes recorded and announced by triggers on the configuration tables')
ON CONFLICT (version) DO NOTHING;
