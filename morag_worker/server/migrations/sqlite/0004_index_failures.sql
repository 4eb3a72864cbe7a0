-- 0004: the indexer isolates a result it cannot index. Each failed attempt is counted
-- with its error and the row waits (index_next_at) before the next; after the limit
-- the row is marked failed (index_failed_at) and skipped until an operator retries it,
-- so the rows behind it are indexed. The partial index keeps the indexer's look for
-- work off the full table.

ALTER TABLE tasks ADD COLUMN index_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN index_error TEXT;
ALTER TABLE tasks ADD COLUMN index_next_at REAL;
ALTER TABLE tasks ADD COLUMN index_failed_at REAL;
CREATE INDEX tasks_unindexed ON tasks (finished_at)
    WHERE state = 'completed' AND indexed_at IS NULL;
