//! A batch's jobs written with `COPY … FROM STDIN (FORMAT binary)` instead of an
//! `INSERT … SELECT FROM UNNEST(…)` per chunk: the server takes the rows as they are (no
//! array to take apart, no expression per row) and writes them a page at a time, one WAL
//! record for many rows. The jobs table's statement triggers (the `NOTIFY`, the count deltas)
//! fire for each `COPY` as for an `INSERT`, with the same transition table.
//!
//! Every column is sent except those left to their defaults: `run_at` when the batch names
//! no time (the server's `now()`, as for every other insert: a client clock ahead of the
//! server's would otherwise hold the jobs back), and `traceparent` when there is none.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{Error, Result};

/// What every row of the batch shares.
pub(super) struct BatchRows<'a> {
    pub job_type: &'a str,
    pub max_attempts: i32,
    pub run_at: Option<chrono::DateTime<chrono::Utc>>,
    pub priority: i16,
    pub batch_id: Uuid,
    pub queue: &'a str,
    pub traceparent: Option<&'a str>,
}

/// PostgreSQL's epoch (2000-01-01 UTC) in Unix microseconds.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The binary format's signature, flags and header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// jsonb's binary form: a version byte, then the text.
const JSONB_VERSION: u8 = 1;

impl BatchRows<'_> {
    /// The `COPY` statement for `table` (already qualified).
    pub fn statement(&self, table: &str) -> String {
        let mut cols = String::from("id, type, target, max_attempts, priority, batch_id, queue");
        if self.run_at.is_some() {
            cols.push_str(", run_at");
        }
        if self.traceparent.is_some() {
            cols.push_str(", traceparent");
        }
        format!("COPY {table} ({cols}) FROM STDIN (FORMAT binary)")
    }

    /// The binary `COPY` data for these jobs: header, one tuple per job, trailer.
    pub fn encode(&self, ids: &[Uuid], targets: &[serde_json::Value]) -> Result<Vec<u8>> {
        let fields: i16 =
            7 + i16::from(self.run_at.is_some()) + i16::from(self.traceparent.is_some());
        let mut out = Vec::with_capacity(HEADER.len() + ids.len() * 96 + 2);
        out.extend_from_slice(HEADER);
        let mut target = Vec::with_capacity(64);
        for (id, t) in ids.iter().zip(targets) {
            out.extend_from_slice(&fields.to_be_bytes());
            field(&mut out, id.as_bytes());
            field(&mut out, self.job_type.as_bytes());
            target.clear();
            target.push(JSONB_VERSION);
            serde_json::to_writer(&mut target, t)
                .map_err(|e| Error::Invalid(format!("target is not JSON: {e}")))?;
            field(&mut out, &target);
            field(&mut out, &self.max_attempts.to_be_bytes());
            field(&mut out, &self.priority.to_be_bytes());
            field(&mut out, self.batch_id.as_bytes());
            field(&mut out, self.queue.as_bytes());
            if let Some(at) = self.run_at {
                let micros = at.timestamp_micros() - PG_EPOCH_MICROS;
                field(&mut out, &micros.to_be_bytes());
            }
            if let Some(tp) = self.traceparent {
                field(&mut out, tp.as_bytes());
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        Ok(out)
    }

    /// Writes the jobs into `table` on `conn` (inside the caller's transaction).
    pub async fn copy(
        &self,
        conn: &mut PgConnection,
        table: &str,
        ids: &[Uuid],
        targets: &[serde_json::Value],
    ) -> Result<()> {
        let data = self.encode(ids, targets)?;
        let mut copy = conn.copy_in_raw(&self.statement(table)).await?;
        if let Err(e) = copy.send(data).await {
            // Ends the COPY so the connection can be used (and the transaction rolled back).
            let _ = copy.abort(e.to_string()).await;
            return Err(e.into());
        }
        copy.finish().await?;
        Ok(())
    }
}

/// One field: its length, then its bytes.
fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(run_at: bool, traceparent: bool) -> BatchRows<'static> {
        BatchRows {
            job_type: "t",
            max_attempts: 3,
            run_at: run_at.then(|| chrono::DateTime::from_timestamp(946_684_801, 0).unwrap()),
            priority: -2,
            batch_id: Uuid::nil(),
            queue: "q",
            traceparent: traceparent.then_some("00-x"),
        }
    }

    #[test]
    fn columns_left_to_their_defaults_are_not_sent() {
        assert_eq!(
            rows(false, false).statement("s.jobs"),
            "COPY s.jobs (id, type, target, max_attempts, priority, batch_id, queue) \
             FROM STDIN (FORMAT binary)"
        );
        assert!(rows(true, true)
            .statement("s.jobs")
            .contains("queue, run_at, traceparent)"));
    }

    #[test]
    fn a_tuple_is_its_field_count_then_each_length_and_bytes() {
        let data = rows(true, false)
            .encode(&[Uuid::nil()], &[serde_json::json!({"a": 1})])
            .unwrap();
        assert!(data.starts_with(b"PGCOPY\n\xff\r\n\0"));
        assert!(data.ends_with(&[0xff, 0xff]));
        let tuple = &data[HEADER.len()..data.len() - 2];
        assert_eq!(&tuple[..2], &8i16.to_be_bytes());
        // id: 16 bytes; type "t"; target: version byte + {"a":1}
        assert_eq!(&tuple[2..6], &16i32.to_be_bytes());
        assert_eq!(&tuple[22..27], &[0, 0, 0, 1, b't']);
        assert_eq!(&tuple[27..31], &8i32.to_be_bytes());
        assert_eq!(&tuple[31..39], b"\x01{\"a\":1}");
        // run_at one second after PostgreSQL's epoch, last field
        assert_eq!(&tuple[tuple.len() - 8..], &1_000_000i64.to_be_bytes());
    }
}
