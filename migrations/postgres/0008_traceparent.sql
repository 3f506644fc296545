-- Tracing: the W3C trace context a job's submit was made in (`traceparent`), so that each
-- attempt's span continues that trace. NULL for a job nobody traced.
--
-- Every insert path fills it: the library from the current span (feature `otel`), the API from
-- the request's `traceparent` header, and SQL from the session's `skiplock.traceparent`
-- setting, which this default reads, so `add_job()`, `add_jobs()` and plain INSERTs need no
-- argument of their own:
--
--   BEGIN;
--   SET LOCAL skiplock.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
--   SELECT skiplock.add_job('send_invoice', '{"invoice": 42}');
--   COMMIT;
--
-- The check holds every path to the one form the workers read (version 00, lowercase hex,
-- neither id all zeros). The default is stable, so existing rows are not rewritten.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS traceparent text
    DEFAULT NULLIF(current_setting('skiplock.traceparent', true), '')
    CONSTRAINT jobs_traceparent_check CHECK (
        traceparent ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
        AND substr(traceparent, 4, 32) <> repeat('0', 32)
        AND substr(traceparent, 37, 16) <> repeat('0', 16)
    );
