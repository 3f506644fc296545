-- Lease mode: a job of a lease-mode type is claimed in a short transaction that marks it
-- `running` (its node in node_id, its lease deadline here, the attempt charged) and commits;
-- its processor then runs with no transaction open, and a short fenced transaction records
-- the outcome. Nodes extend their leases with their heartbeats; an expired lease is rescued.
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')) NOT VALID;
ALTER TABLE jobs VALIDATE CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS lease_until timestamptz;
-- Rescue finds expired leases here; as small as the number of jobs running right now.
CREATE INDEX IF NOT EXISTS jobs_lease_idx ON jobs (lease_until) WHERE status = 'running';
