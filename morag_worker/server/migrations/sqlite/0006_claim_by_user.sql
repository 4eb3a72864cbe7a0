-- 0006: a claim reads only the queue it may take from. A user's worker key claims that
-- user's queued tasks of its types from this partial index (entries exist only while
-- a task is queued), so tasks of other types and other users waiting in the queue
-- cost it nothing. Before, the claim walked tasks_claim in priority order and
-- filtered out every queued task ahead of its own: behind 20,000 such tasks a claim
-- took 10-16 ms instead of under 1 ms (bench/fleet.py, docs/design.md). The index is
-- narrow so that PostgreSQL's planner prefers it (a wide one lost to tasks_type_state
-- on its size); the claim sorts the caller's own queued tasks. tasks_claim goes: with
-- it, the planner still chose that ordered walk (it cannot know the caller's tasks
-- sit behind the others), and every state change wrote it. A pool key's claim reads the queued tasks of its
-- types (tasks_type_state), every user's, all of which it may take.
CREATE INDEX tasks_ready_user ON tasks (user_id, task_type) WHERE state = 'queued';
DROP INDEX tasks_claim;
