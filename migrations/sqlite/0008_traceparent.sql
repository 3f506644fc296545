-- Tracing: the W3C trace context a job's submit was made in (`traceparent`), so that each
-- attempt's span continues that trace. NULL for a job nobody traced. The check holds it to
-- the one form the workers read: `00-<32 hex>-<16 hex>-<2 hex>`, lowercase, neither id all
-- zeros (55 characters; GLOB's classes stand in for a regular expression).
ALTER TABLE jobs ADD COLUMN traceparent TEXT CHECK (
    traceparent IS NULL OR (
        length(traceparent) = 55
        AND substr(traceparent, 1, 3) = '00-'
        AND substr(traceparent, 36, 1) = '-'
        AND substr(traceparent, 53, 1) = '-'
        AND substr(traceparent, 4, 32) NOT GLOB '*[^0-9a-f]*'
        AND substr(traceparent, 37, 16) NOT GLOB '*[^0-9a-f]*'
        AND substr(traceparent, 54, 2) NOT GLOB '*[^0-9a-f]*'
        AND substr(traceparent, 4, 32) <> '00000000000000000000000000000000'
        AND substr(traceparent, 37, 16) <> '0000000000000000'
    )
);
