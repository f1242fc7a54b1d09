-- Reference inventory schema. Applied on every start; every statement is idempotent.

CREATE TABLE IF NOT EXISTS items (
    sku   TEXT PRIMARY KEY,
    gtin  TEXT NOT NULL UNIQUE,
    name  TEXT NOT NULL,
    unit  TEXT NOT NULL DEFAULT 'each',
    -- The storage class the item needs; moves into another storage zone are refused.
    zone  TEXT NOT NULL CHECK (zone IN ('DRY', 'CHL', 'FRZ', 'BULK'))
);

CREATE TABLE IF NOT EXISTS confusables (
    sku       TEXT NOT NULL REFERENCES items(sku),
    other_sku TEXT NOT NULL REFERENCES items(sku),
    reason    TEXT NOT NULL CHECK (reason IN ('similar_sku', 'similar_name')),
    PRIMARY KEY (sku, other_sku)
);

CREATE TABLE IF NOT EXISTS locations (
    code         TEXT PRIMARY KEY,
    zone         TEXT NOT NULL CHECK (zone IN ('DRY', 'CHL', 'FRZ', 'BULK', 'QA-HOLD')),
    spoken       TEXT NOT NULL,
    -- What the worker reads off the bin label; never returned by the API.
    check_digits TEXT NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS stock (
    location TEXT NOT NULL REFERENCES locations(code),
    sku      TEXT NOT NULL REFERENCES items(sku),
    quantity INTEGER NOT NULL CHECK (quantity >= 0),
    version  INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (location, sku)
);
CREATE INDEX IF NOT EXISTS stock_by_sku ON stock (sku);

CREATE TABLE IF NOT EXISTS pick_tasks (
    id              TEXT PRIMARY KEY,
    seq             INTEGER NOT NULL UNIQUE,
    sku             TEXT NOT NULL REFERENCES items(sku),
    location        TEXT NOT NULL REFERENCES locations(code),
    quantity        INTEGER NOT NULL CHECK (quantity > 0),
    picked_quantity INTEGER,
    status          TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'picked', 'short')),
    completed_at    TEXT,
    completed_by    TEXT
);
CREATE INDEX IF NOT EXISTS pick_tasks_open ON pick_tasks (status, seq);

CREATE TABLE IF NOT EXISTS damage_reports (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    sku           TEXT NOT NULL REFERENCES items(sku),
    location      TEXT NOT NULL REFERENCES locations(code),
    hold_location TEXT NOT NULL REFERENCES locations(code),
    quantity      INTEGER NOT NULL CHECK (quantity > 0),
    damage        TEXT NOT NULL,
    note          TEXT NOT NULL DEFAULT '',
    device_id     TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS handoffs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    reason     TEXT NOT NULL,
    summary    TEXT NOT NULL,
    sku        TEXT,
    location   TEXT,
    device_id  TEXT NOT NULL,
    operator   TEXT,
    session_id TEXT,
    status     TEXT NOT NULL DEFAULT 'open',
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              TEXT NOT NULL,
    action          TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    operator        TEXT,
    session_id      TEXT,
    call_id         TEXT,
    idempotency_key TEXT,
    sku             TEXT,
    ref             TEXT,
    -- JSON objects {location: quantity}; one row per operation, however many bins it touched.
    before          TEXT NOT NULL,
    after           TEXT NOT NULL,
    delta           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_sku ON audit_log (sku);

-- The audit log is append-only: no code path, and no stray SQL, may rewrite history.
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Who may sign on to a device (badge or spoken operator number); see operators.py.
CREATE TABLE IF NOT EXISTS operators (
    id     TEXT PRIMARY KEY,
    name   TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE IF NOT EXISTS devices (
    device_id    TEXT PRIMARY KEY,
    -- sha256 of the bearer token; the token itself is never stored.
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);

CREATE TABLE IF NOT EXISTS idempotency (
    device_id   TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('in_progress', 'done')),
    lease       TEXT,
    lease_until REAL,
    status_code INTEGER,
    body        TEXT,
    created_at  REAL NOT NULL,
    PRIMARY KEY (device_id, key)
);

-- Wrong check digits in a row per device and location, and the lockout they caused.
CREATE TABLE IF NOT EXISTS check_digit_attempts (
    device_id    TEXT NOT NULL,
    location     TEXT NOT NULL,
    failures     INTEGER NOT NULL,
    locked_until REAL,
    PRIMARY KEY (device_id, location)
);
