"""DDL of the command side's tables (the write model) in the shared SQLite file.

Table constraints back every invariant the handlers check inside the serialised
write transaction, so a bug cannot silently break them: edges and unique claims
have primary keys, counters cannot go negative, schema versions are unique.
Times are integer microseconds since the epoch (UTC) so they order correctly.
"""

from __future__ import annotations

from infrastructure.persistence.sqlite.event_log import EVENT_LOG_DDL

WRITE_MODEL_DDL = """
CREATE TABLE IF NOT EXISTS schemas (
    graph       TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    body        TEXT    NOT NULL,
    applied_at  INTEGER NOT NULL,
    PRIMARY KEY (graph, version)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS nodes (
    graph       TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    properties  TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    PRIMARY KEY (graph, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nodes_by_type ON nodes (graph, type, deleted);

CREATE TABLE IF NOT EXISTS edges (
    graph       TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    properties  TEXT    NOT NULL,
    create_time INTEGER NOT NULL,
    PRIMARY KEY (graph, source, type, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_in ON edges (graph, target, type, source);
-- Nothing reads edges by time (listings sort a node's own edges): the index only cost
-- a random write and ~25 bytes per edge. Files made before keep paying until opened.
DROP INDEX IF EXISTS edges_by_time;

CREATE TABLE IF NOT EXISTS edge_counters (
    graph       TEXT    NOT NULL,
    node        TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    direction   TEXT    NOT NULL CHECK (direction IN ('OUT', 'IN')),
    count       INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (graph, node, type, direction)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edge_counters_by_type ON edge_counters (graph, type, direction);

-- Invariant 3 under concurrent writers: every transaction that adds an edge of an
-- acyclic type bumps its (graph, edge type) row, conditional on the version it read
-- before its cycle check. No row: version 0.
CREATE TABLE IF NOT EXISTS topology_versions (
    graph       TEXT    NOT NULL,
    edge_type   TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    PRIMARY KEY (graph, edge_type)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS unique_claims (
    graph       TEXT    NOT NULL,
    node_type   TEXT    NOT NULL,
    property    TEXT    NOT NULL,
    value       TEXT    NOT NULL,  -- JSON of the encoded value: 1 and "1" differ
    node_id     TEXT    NOT NULL,
    PRIMARY KEY (graph, node_type, property, value)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS idempotency (
    graph       TEXT    NOT NULL,
    request_id  TEXT    NOT NULL,
    operation   TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    response    BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (graph, request_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency (created_at);

CREATE TABLE IF NOT EXISTS cascade_jobs (
    graph         TEXT    NOT NULL,
    node_id       TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    trace_context TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (graph, node_id)
);
"""

DDL = WRITE_MODEL_DDL + EVENT_LOG_DDL
