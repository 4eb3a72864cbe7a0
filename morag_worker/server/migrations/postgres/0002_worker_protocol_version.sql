-- 0002: workers record the protocol version they registered with (release 0.1.0's
-- workers sent none: version 1), so operators see which workers need upgrading before
-- a server drops an old version.

ALTER TABLE workers ADD COLUMN protocol_version INTEGER NOT NULL DEFAULT 1;
