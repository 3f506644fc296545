-- What skiplock asks of autovacuum, table by table. A job queue is churn: every completed
-- job leaves a dead row version in `jobs`, every chunk an appended intent record, every
-- statement a count delta, every heartbeat a node row version. PostgreSQL's defaults wait
-- for a fifth of a table to be dead before vacuuming it (two million rows of a ten-million-row
-- history) and pace the work for tables that change rarely. These settings vacuum the queue's
-- tables early and at full speed; they change nothing when autovacuum is off (see the
-- README's performance section, and `skiplock status`, which warns when it is).
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE intents SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE count_deltas SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE counts SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE nodes SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200,
    autovacuum_vacuum_cost_delay = 0
);
