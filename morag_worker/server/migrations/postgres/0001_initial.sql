-- 0001 initial: the schema of release 0.1.0, which created its tables at every start
-- with CREATE TABLE IF NOT EXISTS and recorded no version. On a database written by that
-- release every statement here is a no-op, so applying this migration adopts it as it is.

CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    pool BOOLEAN NOT NULL DEFAULT FALSE,
    name TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION,
    last_used_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    task_type TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    parameters TEXT NOT NULL DEFAULT '{}',
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    timeout_seconds DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    available_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    lease_token TEXT,
    lease_expires_at DOUBLE PRECISION,
    lease_key_id TEXT,
    worker_id TEXT,
    progress DOUBLE PRECISION,
    stage TEXT,
    last_error TEXT,
    result TEXT,
    result_hash TEXT,
    timings TEXT,
    indexed_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS tasks_claim ON tasks (state, priority DESC, available_at);
CREATE INDEX IF NOT EXISTS tasks_user ON tasks (user_id, created_at);
CREATE INDEX IF NOT EXISTS tasks_lease ON tasks (state, lease_expires_at);
CREATE TABLE IF NOT EXISTS task_files (
    task_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    file_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (task_id, position)
);
CREATE INDEX IF NOT EXISTS task_files_file ON task_files (file_id);
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    host TEXT NOT NULL,
    worker_type TEXT NOT NULL,
    task_types TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    devices TEXT NOT NULL,
    version TEXT NOT NULL,
    registered_at DOUBLE PRECISION NOT NULL,
    last_seen_at DOUBLE PRECISION NOT NULL
);
