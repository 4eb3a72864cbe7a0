-- 0003: leases belong to a supervisor instance, not to a worker id. Each registration
-- issues an instance id; a claim records it, and an unregister releases only that
-- instance's leases (two supervisors under one id no longer release each other's).
-- Rows of release 0.1.0 keep an empty instance id and NULL lease instances, which mean
-- "any instance of this key" as before.

ALTER TABLE workers ADD COLUMN instance_id TEXT NOT NULL DEFAULT '';
ALTER TABLE workers ADD COLUMN pid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN lease_instance_id TEXT;
