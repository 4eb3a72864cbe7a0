-- Named queries for SQLite. Each starts with "-- name: NAME"; postgres.sql has the same names.
-- Parameters use the :name style; the PostgreSQL loader rewrites them to %(name)s.

-- ---- schema versions (server/migrate.py) ------------------------------------------------

-- name: schema_table_exists
-- Whether the version table exists (no: an empty database or one of 0.1.0).
SELECT 1 AS ok FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations';

-- name: release_tables_exist
-- Whether release 0.1.0's tables exist (an unversioned database to adopt).
SELECT 1 AS ok FROM sqlite_master WHERE type = 'table' AND name = 'tasks';

-- name: create_schema_table
-- The version table itself, made before any migration is looked at.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL,
    server_version TEXT NOT NULL
);

-- name: schema_versions
-- Every applied migration, oldest first.
SELECT version, name, applied_at, server_version FROM schema_migrations ORDER BY version;

-- name: schema_version_applied
-- Whether one migration is recorded (re-read inside its transaction).
SELECT 1 AS ok FROM schema_migrations WHERE version = :version;

-- name: record_migration
-- Record a migration, in the transaction that applied it.
INSERT INTO schema_migrations (version, name, applied_at, server_version)
VALUES (:version, :name, :applied_at, :server_version);

-- name: count_keys
-- How many keys exist (also the health check's database ping).
SELECT count(*) AS n FROM api_keys;

-- name: insert_key
-- A new key; only its hash is stored.
INSERT INTO api_keys (key_id, prefix, key_hash, user_id, role, pool, name, created_at, expires_at)
VALUES (:key_id, :prefix, :key_hash, :user_id, :role, :pool, :name, :created_at, :expires_at);

-- name: get_key
-- One key by id, for verifying a presented key.
SELECT * FROM api_keys WHERE key_id = :key_id;

-- name: list_keys
-- Every key, oldest first (admins).
SELECT * FROM api_keys ORDER BY created_at;

-- name: revoke_key
-- Revoke a key once; revoking again changes nothing.
UPDATE api_keys SET revoked_at = :now WHERE key_id = :key_id AND revoked_at IS NULL;

-- name: count_active_admins
-- Usable admin keys: the last one may not be revoked.
SELECT count(*) AS n FROM api_keys
WHERE role = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :now);

-- name: touch_key
-- When a key was last used (written at most once a minute per key).
UPDATE api_keys SET last_used_at = :now WHERE key_id = :key_id;

-- name: insert_task
-- A new task, queued and available now.
INSERT INTO tasks (task_id, user_id, task_type, state, priority, parameters, max_attempts,
                   timeout_seconds, created_at, available_at)
VALUES (:task_id, :user_id, :task_type, 'queued', :priority, :parameters, :max_attempts,
        :timeout_seconds, :now, :now);

-- name: insert_task_file
-- One input file of a task, in upload order.
INSERT INTO task_files (task_id, position, file_id, name, size)
VALUES (:task_id, :position, :file_id, :name, :size);

-- name: get_task
-- One task with everything it holds.
SELECT * FROM tasks WHERE task_id = :task_id;

-- name: files_of_tasks
-- The input files of several tasks at once (one query per page or claim).
SELECT * FROM task_files WHERE task_id IN (SELECT value FROM json_each(:task_ids))
ORDER BY task_id, position;

-- name: list_tasks
-- Everyone's tasks (an admin's list), newest first, one page. Keyset paging on
-- (created_at, task_id): a page costs the same however deep it is, and tasks submitted
-- meanwhile do not shift the later pages. The index tasks_created is walked backwards
-- and the filters are checked on the way. :pattern is a LIKE pattern (wildcards in the
-- search text escaped with a backslash) for the URL parameter and the input files'
-- names; :text matches a task id.
SELECT * FROM tasks WHERE TRUE
  AND (:state IS NULL OR state = :state)
  AND (:task_type IS NULL OR task_type = :task_type)
  AND (:created_after IS NULL OR created_at >= :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
  AND (:pattern IS NULL OR task_id = :text
       OR lower(coalesce(json_extract(parameters, '$.url'), '')) LIKE lower(:pattern) ESCAPE '\'
       OR EXISTS (SELECT 1 FROM task_files f WHERE f.task_id = tasks.task_id
                  AND lower(f.name) LIKE lower(:pattern) ESCAPE '\'))
  AND (:before_at IS NULL OR created_at < :before_at
       OR (created_at = :before_at AND task_id < :before_id))
ORDER BY created_at DESC, task_id DESC LIMIT :limit;

-- name: list_tasks_of_user
-- One user's tasks, the same way, on the index tasks_user_created (a separate query:
-- "all users OR this user" in one statement would keep either index from being used).
SELECT * FROM tasks WHERE user_id = :user_id
  AND (:state IS NULL OR state = :state)
  AND (:task_type IS NULL OR task_type = :task_type)
  AND (:created_after IS NULL OR created_at >= :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
  AND (:pattern IS NULL OR task_id = :text
       OR lower(coalesce(json_extract(parameters, '$.url'), '')) LIKE lower(:pattern) ESCAPE '\'
       OR EXISTS (SELECT 1 FROM task_files f WHERE f.task_id = tasks.task_id
                  AND lower(f.name) LIKE lower(:pattern) ESCAPE '\'))
  AND (:before_at IS NULL OR created_at < :before_at
       OR (created_at = :before_at AND task_id < :before_id))
ORDER BY created_at DESC, task_id DESC LIMIT :limit;

-- name: reclaim_expired
-- Expired leases go back to the queue with a jittered exponential backoff, or die when
-- their attempts are spent. The jitter keeps a burst of expiries from re-leasing in step.
UPDATE tasks SET
    state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END,
    finished_at = CASE WHEN attempt >= max_attempts THEN :now ELSE NULL END,
    available_at = :now + min(:backoff_cap_s, :backoff_base_s * (1 << min(attempt, 30)))
                   * (0.5 + (abs(random()) % 1000) / 1000.0),
    last_error = :lease_error,
    lease_expires_at = NULL, worker_id = NULL, lease_key_id = NULL, lease_instance_id = NULL,
    progress = NULL, stage = NULL
WHERE state = 'leased' AND lease_expires_at < :now
RETURNING task_id, state;

-- name: claim
-- One statement: pick the best available tasks this key may serve and lease them, each
-- with a fresh random token. SQLite serialises writers, so two claims never overlap.
-- This one is a user's worker key's: tasks_ready_user holds each user's queued tasks
-- by type, so queued tasks of other users and types are never read. -priority (the
-- same order as priority DESC) keeps the planner off tasks_ready (migration 0006).
UPDATE tasks SET
    state = 'leased',
    lease_token = lower(hex(randomblob(16))),
    lease_expires_at = :now + :lease_ttl_s,
    lease_key_id = :key_id,
    lease_instance_id = :instance_id,
    worker_id = :worker_id,
    attempt = attempt + 1,
    started_at = :now,
    progress = NULL, stage = NULL
WHERE task_id IN (
    SELECT task_id FROM tasks
    WHERE state = 'queued' AND available_at <= :now
      AND user_id = :user_id AND task_type IN (SELECT value FROM json_each(:task_types))
    ORDER BY -priority, available_at, created_at
    LIMIT :limit
)
RETURNING *;

-- name: claim_pool
-- The claim of a pool key (every user's tasks): the queued tasks of its types, walked
-- in claim order through tasks_ready, named: SQLite's planner, without statistics,
-- would rather sort every queued task through an index on state alone.
UPDATE tasks SET
    state = 'leased',
    lease_token = lower(hex(randomblob(16))),
    lease_expires_at = :now + :lease_ttl_s,
    lease_key_id = :key_id,
    lease_instance_id = :instance_id,
    worker_id = :worker_id,
    attempt = attempt + 1,
    started_at = :now,
    progress = NULL, stage = NULL
WHERE task_id IN (
    SELECT task_id FROM tasks INDEXED BY tasks_ready
    WHERE state = 'queued' AND available_at <= :now
      AND task_type IN (SELECT value FROM json_each(:task_types))
    ORDER BY priority DESC, available_at, created_at
    LIMIT :limit
)
RETURNING *;

-- name: next_due
-- When the next task this caller could claim becomes available (a retry's backoff ends):
-- its long-poll sleeps until then. Only future, claimable tasks count: tasks of other
-- types or users must not wake it, and expired leases wake it through the reaper.
SELECT min(available_at) AS next_available FROM tasks
WHERE state = 'queued' AND available_at > :now
  AND user_id = :user_id AND task_type IN (SELECT value FROM json_each(:task_types));

-- name: next_due_pool
-- The same for a pool key: any user's tasks of its types.
SELECT min(available_at) AS next_available FROM tasks
WHERE state = 'queued' AND available_at > :now
  AND task_type IN (SELECT value FROM json_each(:task_types));

-- name: renew
-- Extend a lease the caller still holds (fenced by token and key); progress rides along.
UPDATE tasks SET lease_expires_at = :expires, progress = coalesce(:progress, progress),
                 stage = coalesce(:stage, stage)
WHERE task_id = :task_id AND lease_token = :lease_token AND state = 'leased'
  AND lease_key_id = :key_id
RETURNING task_id, lease_expires_at;

-- name: lease_state
-- A task's state, token and result hash: tells a repeated result from a lost lease.
SELECT state, lease_token, result_hash FROM tasks WHERE task_id = :task_id;

-- name: complete
-- Store a result, fenced: only the current lease holder completes a task.
UPDATE tasks SET state = 'completed', result = :result, result_hash = :result_hash,
                 timings = :timings, finished_at = :now, lease_expires_at = NULL,
                 progress = 1.0, stage = 'done'
WHERE task_id = :task_id AND lease_token = :lease_token AND state = 'leased'
  AND lease_key_id = :key_id
RETURNING task_id;

-- name: fail
-- A failure: retryable ones go back with backoff while attempts remain, else dead;
-- non-retryable ones fail at once.
UPDATE tasks SET
    state = CASE WHEN NOT :retryable THEN 'failed'
                 WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END,
    finished_at = CASE WHEN :retryable AND attempt < max_attempts THEN NULL ELSE :now END,
    available_at = :now + min(:backoff_cap_s, :backoff_base_s * (1 << min(attempt, 30)))
                   * (0.5 + (abs(random()) % 1000) / 1000.0),
    last_error = :error, result_hash = :result_hash, timings = :timings,
    lease_expires_at = NULL, worker_id = NULL, lease_key_id = NULL, lease_instance_id = NULL,
    progress = NULL, stage = NULL
WHERE task_id = :task_id AND lease_token = :lease_token AND state = 'leased'
  AND lease_key_id = :key_id
RETURNING task_id, state;

-- name: release
-- Give a task back unstarted: queued again with no attempt counted (fenced).
UPDATE tasks SET state = 'queued', attempt = attempt - 1, available_at = :now,
                 lease_token = NULL, lease_expires_at = NULL, lease_key_id = NULL,
                 lease_instance_id = NULL, worker_id = NULL, progress = NULL, stage = NULL
WHERE task_id = :task_id AND lease_token = :lease_token AND state = 'leased'
  AND lease_key_id = :key_id
RETURNING task_id;

-- name: release_worker
-- Give back every lease of a worker instance (unregister); without an instance, the key's under that id.
UPDATE tasks SET state = 'queued', attempt = attempt - 1, available_at = :now,
                 lease_token = NULL, lease_expires_at = NULL, lease_key_id = NULL,
                 lease_instance_id = NULL, worker_id = NULL, progress = NULL, stage = NULL
WHERE worker_id = :worker_id AND lease_key_id = :key_id AND state = 'leased'
  AND (:instance_id = '' OR lease_instance_id = :instance_id)
RETURNING task_id;

-- name: cancel
-- Cancel a task that has not ended; its worker hears of it at the next heartbeat.
UPDATE tasks SET state = 'cancelled', finished_at = :now
WHERE task_id = :task_id AND state IN ('queued', 'leased')
RETURNING task_id;

-- name: file_leased_by
-- Whether a worker key holds a lease on a task that uses the file.
SELECT 1 AS ok FROM task_files f JOIN tasks t ON t.task_id = f.task_id
WHERE f.file_id = :file_id AND t.state = 'leased' AND t.lease_key_id = :key_id LIMIT 1;

-- name: file_owned_by
-- Whether the file belongs to a task of the user.
SELECT 1 AS ok FROM task_files f JOIN tasks t ON t.task_id = f.task_id
WHERE f.file_id = :file_id AND t.user_id = :user_id LIMIT 1;

-- name: referenced_files
-- Of the given stored files, those some task refers to (the sweep removes the others).
SELECT DISTINCT file_id FROM task_files WHERE file_id IN (SELECT value FROM json_each(:file_ids));

-- name: upsert_worker
-- Register a worker: a new row, or the same id taken over by a new instance (which
-- starts without a status report: the previous one described other children).
INSERT INTO workers (worker_id, key_id, user_id, host, worker_type, task_types, capacity,
                     devices, version, protocol_version, instance_id, pid, registered_at,
                     last_seen_at)
VALUES (:worker_id, :key_id, :user_id, :host, :worker_type, :task_types, :capacity,
        :devices, :version, :protocol_version, :instance_id, :pid, :now, :now)
ON CONFLICT (worker_id) DO UPDATE SET key_id = excluded.key_id, user_id = excluded.user_id,
    host = excluded.host, worker_type = excluded.worker_type,
    task_types = excluded.task_types, capacity = excluded.capacity,
    devices = excluded.devices, version = excluded.version,
    protocol_version = excluded.protocol_version, instance_id = excluded.instance_id,
    pid = excluded.pid,
    registered_at = excluded.registered_at, last_seen_at = excluded.last_seen_at,
    status = NULL, status_at = NULL;

-- name: get_worker
-- One worker row (types, owner, current instance and when it was last seen).
SELECT * FROM workers WHERE worker_id = :worker_id;

-- name: touch_worker
-- When a worker last called (written at most every few seconds per worker).
UPDATE workers SET last_seen_at = :now WHERE worker_id = :worker_id;

-- name: delete_worker
-- Only the instance that registered the row removes it; without an instance (the seed's
-- clients, release 0.1.0), the key that owns it.
DELETE FROM workers WHERE worker_id = :worker_id AND key_id = :key_id
  AND (:instance_id = '' OR instance_id = :instance_id);

-- name: expire_instance_leases
-- A dead predecessor's leases: expired now, so the reaper returns them to the queue.
UPDATE tasks SET lease_expires_at = :now
WHERE state = 'leased' AND lease_instance_id = :instance_id;

-- name: list_workers
-- The workers a caller may see (an admin: all; a user: its own and pool workers), each
-- with the tasks it holds now and whether its key is a pool key.
SELECT w.*, coalesce(k.pool, 0) AS pool,
       (SELECT count(*) FROM tasks t
        WHERE t.worker_id = w.worker_id AND t.state = 'leased') AS running
FROM workers w LEFT JOIN api_keys k ON k.key_id = w.key_id
WHERE (:all_users OR w.user_id = :user_id OR coalesce(k.pool, 0))
ORDER BY w.worker_id;

-- name: queue_counts
-- Tasks per type and state, for the metrics.
SELECT task_type, state, count(*) AS n FROM tasks GROUP BY task_type, state;

-- name: workers_online
-- Workers that called since a moment, for the metrics.
SELECT count(*) AS n FROM workers WHERE last_seen_at >= :since;

-- name: unindexed
-- Completed results due for indexing, oldest first (the indexer's work list), without
-- rows waiting out a backoff after a failed attempt or marked failed (those wait for an
-- operator's retry).
SELECT task_id, user_id, task_type, result, index_attempts FROM tasks
WHERE state = 'completed' AND indexed_at IS NULL AND index_failed_at IS NULL
  AND (index_next_at IS NULL OR index_next_at <= :now)
ORDER BY finished_at LIMIT :limit;

-- name: mark_indexed
-- A result's chunks are stored: the indexer will not look at it again.
UPDATE tasks SET indexed_at = :now, index_error = NULL, index_next_at = NULL
WHERE task_id = :task_id;

-- name: index_attempt_failed
-- One more failed attempt with its error and the time of the next; the row is marked
-- failed once it reaches the limit.
UPDATE tasks SET
    index_attempts = index_attempts + 1,
    index_error = :error,
    index_next_at = :next_at,
    index_failed_at = CASE WHEN index_attempts + 1 >= :max_attempts THEN :now ELSE NULL END
WHERE task_id = :task_id AND indexed_at IS NULL
RETURNING index_attempts, index_failed_at;

-- name: retry_index
-- An operator's retry of one result not yet indexed: fresh attempts, due now.
UPDATE tasks SET index_attempts = 0, index_error = NULL, index_next_at = NULL,
                 index_failed_at = NULL
WHERE task_id = :task_id AND state = 'completed' AND indexed_at IS NULL
RETURNING task_id;

-- name: retry_index_failed
-- An operator's retry of every result marked failed for indexing.
UPDATE tasks SET index_attempts = 0, index_error = NULL, index_next_at = NULL,
                 index_failed_at = NULL
WHERE state = 'completed' AND indexed_at IS NULL AND index_failed_at IS NOT NULL
RETURNING task_id;

-- name: reindex_all
-- Rebuild: every completed result is indexed again by the indexer (point ids are
-- deterministic, so points already stored are overwritten, never duplicated).
UPDATE tasks SET indexed_at = NULL, index_attempts = 0, index_error = NULL,
                 index_next_at = NULL, index_failed_at = NULL
WHERE state = 'completed';

-- name: index_failures
-- Results marked failed for indexing, with their last error (oldest first).
SELECT task_id, user_id, task_type, index_attempts, index_error, index_failed_at FROM tasks
WHERE state = 'completed' AND indexed_at IS NULL AND index_failed_at IS NOT NULL
ORDER BY index_failed_at LIMIT :limit;

-- name: index_counts
-- Results waiting for indexing and results given up on (the index status and metric).
SELECT
  (SELECT count(*) FROM tasks WHERE state = 'completed' AND indexed_at IS NULL
     AND index_failed_at IS NULL) AS pending,
  (SELECT count(*) FROM tasks WHERE state = 'completed' AND indexed_at IS NULL
     AND index_failed_at IS NOT NULL) AS failed;

-- name: notify
-- Waking other replicas needs PostgreSQL's NOTIFY; one SQLite server has none to wake.
SELECT 1;

-- ---- attempts: one row per lease (server/attempts.py) ------------------------------------

-- name: open_attempts
-- The leases a claim just made, in the claim's transaction (by primary key: the ids
-- come from the claim itself); the token names each one.
INSERT INTO task_attempts (task_id, lease_token, attempt, worker_id, instance_id, started_at)
SELECT task_id, lease_token, attempt, worker_id, lease_instance_id, started_at FROM tasks
WHERE task_id IN (SELECT value FROM json_each(:task_ids));

-- name: close_attempt
-- A result or a failure ends the lease it was sent with.
UPDATE task_attempts SET finished_at = :now, outcome = :outcome, error = :error,
                         timings = :timings
WHERE task_id = :task_id AND lease_token = :lease_token AND finished_at IS NULL;

-- name: close_open_attempts
-- Expiry, release, cancel: a task has at most one open attempt, its current lease.
UPDATE task_attempts SET finished_at = :now, outcome = :outcome, error = :error
WHERE task_id IN (SELECT value FROM json_each(:task_ids)) AND finished_at IS NULL;

-- name: attempts_of_task
-- every attempt at one task, in the order they started (dashboard task page)
SELECT attempt, worker_id, started_at, finished_at, outcome, error, timings
FROM task_attempts WHERE task_id = :task_id ORDER BY started_at, attempt;

-- name: retry
-- A failed or dead task back to the queue as if new: attempts from zero, no error, no
-- lease (its history stays in task_attempts). Fenced on the states a retry may leave.
UPDATE tasks SET state = 'queued', attempt = 0, available_at = :now, started_at = NULL,
    finished_at = NULL, last_error = NULL, result_hash = NULL, timings = NULL,
    lease_token = NULL, lease_expires_at = NULL, lease_key_id = NULL,
    lease_instance_id = NULL, worker_id = NULL, progress = NULL, stage = NULL
WHERE task_id = :task_id AND state IN ('failed', 'dead')
RETURNING task_id;

-- ---- workers' status reports (server/workers.py) -------------------------------------------

-- name: store_worker_status
-- Only the instance that holds the worker id (or, without one, its key) reports for it.
UPDATE workers SET status = :status, status_at = :now
WHERE worker_id = :worker_id AND key_id = :key_id
  AND (:instance_id = '' OR instance_id = :instance_id);

-- ---- dashboard sessions (server/sessions.py) -----------------------------------------------

-- name: insert_session
-- a dashboard login: store the session's hash, never the cookie itself
INSERT INTO ui_sessions (session_hash, key_id, created_at, expires_at)
VALUES (:session_hash, :key_id, :now, :expires_at);

-- name: get_session
-- the key behind a dashboard session cookie, while the session lasts
SELECT key_id, expires_at FROM ui_sessions
WHERE session_hash = :session_hash AND expires_at > :now;

-- name: delete_session
-- log out: forget one dashboard session
DELETE FROM ui_sessions WHERE session_hash = :session_hash;

-- name: delete_expired_sessions
-- sweep: forget dashboard sessions past their expiry
DELETE FROM ui_sessions WHERE expires_at <= :now;

-- ---- dashboard overview (server/overview.py) -----------------------------------------------

-- name: ui_queue_counts
-- dashboard overview: tasks by type and state, every user
SELECT task_type, state, count(*) AS n FROM tasks
GROUP BY task_type, state;

-- name: ui_queue_counts_of_user
-- dashboard overview: tasks by type and state, one user's only
SELECT task_type, state, count(*) AS n FROM tasks
WHERE user_id = :user_id
GROUP BY task_type, state;

-- name: ui_finished_per_bucket
-- Tasks that ended in [since, until), per bucket of bucket_s seconds from since; failed
-- and dead count as failed. Served by the index on finished_at.
SELECT CAST((finished_at - :since) / :bucket_s AS INTEGER) AS bucket,
       CASE WHEN state = 'completed' THEN 'completed' ELSE 'failed' END AS outcome,
       count(*) AS n
FROM tasks
WHERE finished_at >= :since AND finished_at < :until
  AND state IN ('completed', 'failed', 'dead')
GROUP BY bucket, outcome;

-- name: ui_finished_per_bucket_of_user
-- The same for one user's tasks.
SELECT CAST((finished_at - :since) / :bucket_s AS INTEGER) AS bucket,
       CASE WHEN state = 'completed' THEN 'completed' ELSE 'failed' END AS outcome,
       count(*) AS n
FROM tasks
WHERE finished_at >= :since AND finished_at < :until
  AND state IN ('completed', 'failed', 'dead')
  AND user_id = :user_id
GROUP BY bucket, outcome;

-- name: ui_oldest_queued
-- dashboard overview: the task waiting longest, every user
SELECT task_id, task_type, user_id, created_at, available_at FROM tasks
WHERE state = 'queued'
ORDER BY created_at, task_id LIMIT 1;

-- name: ui_oldest_queued_of_user
-- dashboard overview: the task waiting longest, one user's only
SELECT task_id, task_type, user_id, created_at, available_at FROM tasks
WHERE state = 'queued' AND user_id = :user_id
ORDER BY created_at, task_id LIMIT 1;
