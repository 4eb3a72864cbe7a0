-- 0005: what the dashboard (/ui) reads and writes.
-- task_attempts: one row per lease, opened by the claim and closed when the attempt ends
-- (result, failure, expiry, release, cancel), so a task's history survives its retries.
-- A lease's token names it: a released task may be leased again under the same attempt
-- number, never under the same token. Leases taken before this migration have no row.
-- The table is its primary key alone: closing a task's open attempt
-- finds it by the key's first column, and each index is one more page per commit.
-- workers.status: the compact report a supervisor sends with its heartbeats (children,
-- models, quarantine), as JSON; NULL until one arrives (older supervisors send none).
-- ui_sessions: dashboard sign-ins; only a SHA-256 of the cookie's token is stored.
-- Indexes on tasks for the dashboard's newest-first lists (everyone's for admins; one
-- user's: tasks_user_created, which extends and replaces tasks_user), its tasks-ended-
-- per-minute chart, and the queue depth by type and state that the overview and
-- /metrics count (an index-only scan instead of the whole table). bench/
-- dashboard_queries.py measures what each saves; docs/operations.md, Dashboard, what
-- they cost a task.

CREATE TABLE task_attempts (
    task_id TEXT NOT NULL,
    lease_token TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT,
    instance_id TEXT,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    outcome TEXT,
    error TEXT,
    timings TEXT,
    PRIMARY KEY (task_id, lease_token)
);
ALTER TABLE workers ADD COLUMN status TEXT;
ALTER TABLE workers ADD COLUMN status_at DOUBLE PRECISION;
CREATE TABLE ui_sessions (
    session_hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
CREATE INDEX tasks_created ON tasks (created_at, task_id);
CREATE INDEX tasks_user_created ON tasks (user_id, created_at, task_id);
DROP INDEX tasks_user;
CREATE INDEX tasks_finished ON tasks (finished_at);
CREATE INDEX tasks_type_state ON tasks (task_type, state);
