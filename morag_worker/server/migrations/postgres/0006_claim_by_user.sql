-- 0006: a claim reads only the queue it may take from. A user's worker key claims that
-- user's queued tasks of its types through tasks_ready_user (entries exist only while
-- a task is queued), so tasks of other types and other users waiting in the queue
-- cost it nothing. Before, every claim walked tasks_claim in priority order and
-- filtered out each queued task ahead of its own: behind 20,000 such tasks a claim
-- took 10-16 ms instead of under 1 ms (bench/fleet.py, docs/design.md). The index is
-- narrow so that PostgreSQL's planner prefers it (a wide one lost to tasks_type_state
-- on its size), and the user's claim orders by an expression no index provides, so the
-- planner cannot fall back to the ordered walk (it cannot know the caller's tasks sit
-- behind the others); it sorts the caller's own queued tasks instead.
-- A pool key may take every user's tasks: its claim walks tasks_ready in claim order,
-- as it walked tasks_claim, which this partial index replaces (entries only while
-- queued: fewer writes than an index over every task and state).
CREATE INDEX tasks_ready_user ON tasks (user_id, task_type) WHERE state = 'queued';
CREATE INDEX tasks_ready ON tasks (priority DESC, available_at, created_at) WHERE state = 'queued';
DROP INDEX tasks_claim;
