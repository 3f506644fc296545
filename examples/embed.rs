//! Embedding skiplock in your own service: a typed processor that writes to your tables in
//! the job's transaction, and jobs enqueued in the same transaction as your own rows.
//!
//! Run against a local PostgreSQL:
//! `cargo run --example embed -- postgres://postgres@127.0.0.1:5432/test`

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use skiplock::processor::Mode;
use skiplock::queue::memory::MemoryQueue;
use skiplock::store::postgres::PgStore;
use skiplock::{
    Client, Job, JobTx, NewJob, Node, ProcessError, Registry, Store, TypeOptions, Typed,
    TypedProcessor,
};

/// The job's target, checked before the processor runs: a target that does not fit ends the
/// job `failed` with the reason, without retries.
#[derive(Deserialize)]
struct Invoice {
    invoice: i64,
}

struct RecalcInvoice;

#[async_trait]
impl TypedProcessor for RecalcInvoice {
    type Target = Invoice;

    async fn process(
        &self,
        _job: &Job,
        t: Invoice,
        tx: &mut JobTx<'_>,
    ) -> Result<(), ProcessError> {
        // Runs inside the job's transaction, behind its savepoint: this write commits together
        // with the job's `succeeded`, or rolls back if anything below fails.
        let conn = tx.postgres().await?;
        let n = sqlx::query("UPDATE app_invoices SET total = total + 1 WHERE id = $1")
            .bind(t.invoice)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(ProcessError::fatal(format!(
                "invoice {} does not exist",
                t.invoice
            )));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    let store = Arc::new(PgStore::connect(&url, "skiplock_example", 20).await?);
    store.migrate().await?;
    let pool = store.pool().clone();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS app_invoices (id bigint PRIMARY KEY, total bigint NOT NULL)",
    )
    .execute(&pool)
    .await?;
    sqlx::query("INSERT INTO app_invoices VALUES (1, 0) ON CONFLICT DO NOTHING")
        .execute(&pool)
        .await?;

    let mut registry = Registry::with_builtins();
    registry.register(
        "recalc_invoice",
        Typed(RecalcInvoice),
        TypeOptions {
            max_attempts: 5,
            timeout: Duration::from_secs(10),
            backoff: Duration::from_secs(1),
            mode: Mode::Tx, // it writes to our tables: in the job's transaction
        },
    )?;
    let queue = Arc::new(MemoryQueue::default());
    let worker = Node::builder(store.clone(), queue.clone())
        .registry(registry)
        .concurrency(8)
        .start()
        .await?;
    let client = Client::new(store.clone(), queue);

    // Your row and its job commit together; after the commit, hand the IDs to the queue.
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE app_invoices SET total = 0 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    let ids = client
        .enqueue_in(
            &mut tx,
            &[NewJob::new(
                "recalc_invoice",
                serde_json::json!({"invoice": 1}),
            )],
        )
        .await?;
    tx.commit().await?;
    client.notify(&ids).await;

    loop {
        let job = store.job(ids[0]).await?.expect("committed");
        if job.status.is_finished() {
            println!("job {} {}", job.id, job.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
