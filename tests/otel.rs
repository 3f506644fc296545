//! Tracing a job from its submit to its outcome: the binary exports each attempt's span over
//! OTLP/HTTP to a receiver in this test (protobuf bodies decoded with the protocol's own
//! types), and the spans continue the trace the submit named in its `traceparent`, on both
//! stores, through the API, the library and SQL, and across a worker killed mid-job.

mod common;
mod serve_support;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use serde_json::{json, Value};
use skiplock::job::NewJob;
use skiplock::store::BatchOptions;
use skiplock::{Client, Error};
use tokio::process::{Child, Command};

use common::{bin, wait_until, Backend, TestStore};
use serve_support::serve_env;

// W3C's own example ids, and two more traces.
const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_B: &str = "0af7651916cd43dd8448eb211c80319c";
const TRACE_C: &str = "5e0c63257de34c92bf9efcd03927272e";
const PARENT: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str) -> String {
    format!("00-{trace}-{PARENT}-01")
}

/// One span as the receiver got it.
#[derive(Debug, Clone)]
struct Got {
    trace: String,
    parent: String,
    name: String,
    kind: i32,
    status: i32,
    status_message: String,
    service: String,
    attrs: HashMap<String, String>,
}

impl Got {
    fn attr(&self, key: &str) -> &str {
        self.attrs.get(key).map(String::as_str).unwrap_or("")
    }
}

// The protocol's enums, as numbers on the wire.
const KIND_CONSUMER: i32 = 5;
const STATUS_OK: i32 = 1;
const STATUS_ERROR: i32 = 2;

/// An OTLP/HTTP receiver on a free loopback port: `POST /v1/traces` with a protobuf body.
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            endpoint,
            spans,
            task,
        }
    }

    /// What a child `skiplock` needs to export here (batches sent every 100 ms).
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint.clone()),
            ("OTEL_SERVICE_NAME", "skt-worker".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ]
    }

    fn got(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of one job, once `n` of them have arrived, in attempt order.
    async fn job(&self, id: &str, n: usize) -> Vec<Got> {
        let arrived = wait_until(Duration::from_secs(30), || async {
            self.got().iter().filter(|s| s.attr("job.id") == id).count() >= n
        })
        .await;
        let mut spans: Vec<Got> = self
            .got()
            .into_iter()
            .filter(|s| s.attr("job.id") == id)
            .collect();
        assert!(arrived, "{n} spans of job {id}; got {spans:?}");
        spans.sort_by_key(|s| s.attr("job.attempt").parse::<i64>().unwrap());
        spans
    }
}

async fn receive(State(spans): State<Arc<Mutex<Vec<Got>>>>, body: Bytes) -> StatusCode {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut got = spans.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| find(&r.attributes, "service.name"))
            .unwrap_or_default();
        for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
            let status = s.status.clone().unwrap_or_default();
            got.push(Got {
                trace: hex(&s.trace_id),
                parent: hex(&s.parent_span_id),
                name: s.name.clone(),
                kind: s.kind,
                status: status.code,
                status_message: status.message,
                service: service.clone(),
                attrs: s
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(&kv.value)))
                    .collect(),
            });
        }
    }
    StatusCode::OK
}

fn find(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(&kv.value))
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Posts `body` to the API with a `traceparent` header (or none).
async fn post(base: &str, path: &str, tp: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body);
    if let Some(tp) = tp {
        req = req.header("traceparent", tp);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trace_runs_from_the_submit_to_every_attempt_outcome() {
    let receiver = Receiver::start().await;
    let db = TestStore::new(Backend::Postgres).await;
    let env = receiver.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = serve_env(&db, &[], &env).await;
    let base = server.base.clone();

    let tp_a = traceparent(TRACE_A);
    let (code, ok) = post(
        &base,
        "/api/v1/jobs",
        Some(&tp_a),
        json!({"type": "noop", "target": {}}),
    )
    .await;
    assert_eq!(code, 201, "{ok}");
    assert_eq!(ok["traceparent"], tp_a, "the job keeps its trace");
    let (code, failing) = post(
        &base,
        "/api/v1/jobs",
        Some(&traceparent(TRACE_B)),
        json!({"type": "fail", "target": {"message": "boom"}, "max_attempts": 2}),
    )
    .await;
    assert_eq!(code, 201, "{failing}");
    let (code, batch) = post(
        &base,
        "/api/v1/batches",
        Some(&traceparent(TRACE_C)),
        json!({"type": "noop", "targets": [1, 2]}),
    )
    .await;
    assert_eq!(code, 201, "{batch}");
    let (code, untraced) = post(
        &base,
        "/api/v1/jobs",
        None,
        json!({"type": "noop", "target": {}}),
    )
    .await;
    assert_eq!(code, 201, "{untraced}");
    assert!(untraced.get("traceparent").is_none(), "{untraced}");

    // The successful job: one span, a child of the submit's span, with what happened.
    let spans = receiver.job(ok["id"].as_str().unwrap(), 1).await;
    let s = &spans[0];
    assert_eq!((s.trace.as_str(), s.parent.as_str()), (TRACE_A, PARENT));
    assert_eq!(s.name, "job noop");
    assert_eq!(s.kind, KIND_CONSUMER);
    assert_eq!(s.service, "skt-worker");
    assert_eq!(s.attr("job.type"), "noop");
    assert_eq!(s.attr("job.attempt"), "1");
    assert_eq!(s.attr("job.outcome"), "succeeded");
    assert_eq!(s.status, STATUS_OK);

    // The failing job: each attempt in the same trace, the retry then the failure.
    let spans = receiver.job(failing["id"].as_str().unwrap(), 2).await;
    assert_eq!(spans.len(), 2, "{spans:?}");
    for (s, (attempt, outcome)) in spans.iter().zip([("1", "retry"), ("2", "failed")]) {
        assert_eq!((s.trace.as_str(), s.parent.as_str()), (TRACE_B, PARENT));
        assert_eq!(
            (s.attr("job.attempt"), s.attr("job.outcome")),
            (attempt, outcome)
        );
        assert_eq!(s.status, STATUS_ERROR);
        assert!(s.status_message.contains("boom"), "{s:?}");
    }

    // Every job of the batch continues the batch's trace.
    let jobs: Value = reqwest::get(format!(
        "{base}/api/v1/jobs?batch={}",
        batch["id"].as_str().unwrap()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let ids: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    for id in ids {
        let s = &receiver.job(id, 1).await[0];
        assert_eq!((s.trace.as_str(), s.parent.as_str()), (TRACE_C, PARENT));
    }

    // A job submitted outside any trace starts one of its own.
    let s = &receiver.job(untraced["id"].as_str().unwrap(), 1).await[0];
    assert!(![TRACE_A, TRACE_B, TRACE_C].contains(&s.trace.as_str()));
    assert_eq!(s.trace.len(), 32);
    assert!(s.parent.is_empty(), "a root span: {s:?}");
    assert!(server.terminate(Duration::from_secs(30)).await.success());
}

/// The `traceparent` header is checked before anything is stored: a wrong, empty, huge,
/// repeated or hostile value is a 400 naming it, on both submit routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_traceparent_header_is_refused_and_nothing_is_stored() {
    let db = TestStore::new(Backend::Sqlite).await;
    let server = serve_env(&db, &[], &[]).await;
    let huge = format!("00-{}", "a".repeat(16 * 1024));
    let bad = [
        "",
        "nope",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'; DROP TABLE jobs; --",
        huge.as_str(),
    ];
    let job = json!({"type": "noop", "target": {}});
    let batch = json!({"type": "noop", "targets": [1]});
    for tp in bad {
        for (path, body) in [("/api/v1/jobs", &job), ("/api/v1/batches", &batch)] {
            let (code, e) = post(&server.base, path, Some(tp), body.clone()).await;
            let shown: String = tp.chars().take(40).collect();
            assert_eq!(code, 400, "{path} {shown}: {e}");
            assert!(
                e["error"].as_str().unwrap().contains("traceparent"),
                "{path} {shown}: {e}"
            );
        }
    }
    let twice = reqwest::Client::new()
        .post(format!("{}/api/v1/jobs", server.base))
        .header("traceparent", traceparent(TRACE_A))
        .header("traceparent", traceparent(TRACE_B))
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400);
    let e: Value = twice.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("more than one"),
        "{e}"
    );

    let c = db.counts().await;
    assert_eq!(c.pending + c.succeeded + c.failed, 0, "nothing was stored");
    assert!(server.terminate(Duration::from_secs(30)).await.success());
}

/// The library's insert paths keep a job's trace, take the current span's when the job names
/// none, and refuse a malformed one; the stores' own check refuses what gets past them.
async fn every_insert_path_keeps_the_trace(backend: Backend) {
    use opentelemetry::trace::TracerProvider as _;
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    let ts = TestStore::new(backend).await;
    let queue = Arc::new(skiplock::queue::memory::MemoryQueue::default());
    let client = Client::new(ts.store.clone(), queue);
    let tp = traceparent(TRACE_A);
    let stored = |id| {
        let store = ts.store.clone();
        async move { store.job(id).await.unwrap().unwrap().traceparent }
    };

    let id = client
        .submit(NewJob::new("noop", json!(1)).traceparent(tp.clone()))
        .await
        .unwrap();
    assert_eq!(stored(id).await, Some(tp.clone()));
    let id = client.submit(NewJob::new("noop", json!(2))).await.unwrap();
    assert_eq!(stored(id).await, None, "no span, no trace");
    let sub = client
        .submit_batch(
            "noop",
            vec![json!(1), json!(2)],
            BatchOptions {
                traceparent: Some(traceparent(TRACE_B)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for id in sub.ids {
        assert_eq!(stored(id).await, Some(traceparent(TRACE_B)));
    }

    // Inside a span that OpenTelemetry records, a job takes that span's trace.
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);
    let span = tracing::info_span!("checkout");
    let id = client
        .submit(NewJob::new("noop", json!(3)))
        .instrument(span.clone())
        .await
        .unwrap();
    let inherited = stored(id).await.expect("the span's trace");
    skiplock::job::validate_traceparent(&inherited).unwrap();
    let sub = client
        .submit_batch("noop", vec![json!(4)], BatchOptions::default())
        .instrument(span.clone())
        .await
        .unwrap();
    let batch_tp = stored(sub.ids[0]).await.expect("the batch takes it too");
    assert_eq!(batch_tp[..35], inherited[..35], "one trace id");
    // A job's own trace wins over the span's.
    let id = client
        .submit(NewJob::new("noop", json!(5)).traceparent(tp.clone()))
        .instrument(span)
        .await
        .unwrap();
    assert_eq!(stored(id).await, Some(tp.clone()));

    let before = ts.counts().await.pending;
    for bad in [
        "",
        "x",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
    ] {
        let e = client
            .submit(NewJob::new("noop", json!(6)).traceparent(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Invalid(m) if m.contains("traceparent")),
            "{e}"
        );
        let e = client
            .submit_batch(
                "noop",
                vec![json!(7)],
                BatchOptions {
                    traceparent: Some(bad.into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Invalid(m) if m.contains("traceparent")),
            "{e}"
        );
    }
    assert_eq!(ts.counts().await.pending, before, "nothing was stored");

    // Past the library, the table's check holds the same rule.
    assert!(raw_insert(&ts, &tp).await.is_ok(), "a valid one is kept");
    let bad = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
    let e = raw_insert(&ts, bad).await.unwrap_err();
    assert!(e.to_string().to_lowercase().contains("check"), "{e}");
}

/// Inserts a job with `traceparent` by plain SQL, past every check of the library.
async fn raw_insert(ts: &TestStore, traceparent: &str) -> Result<(), sqlx::Error> {
    let id = uuid::Uuid::now_v7();
    match ts.backend {
        Backend::Postgres => sqlx::query(&format!(
            "INSERT INTO {}.jobs (id, type, target, max_attempts, traceparent) \
             VALUES ($1, 'noop', '{{}}', 1, $2)",
            ts.schema
        ))
        .bind(id)
        .bind(traceparent)
        .execute(ts.pg.as_ref().unwrap())
        .await
        .map(drop),
        Backend::Sqlite => {
            sqlx::query("INSERT INTO jobs (id, type, target, max_attempts, traceparent) VALUES ($1, 'noop', '{}', 1, $2)")
                .bind(id.to_string())
                .bind(traceparent)
                .execute(ts.sqlite.as_ref().unwrap())
                .await
                .map(drop)
        }
    }
}

for_each_backend!(every_insert_path_keeps_the_trace);

/// SQL callers (`add_job`, `add_jobs`, plain INSERTs) name the trace with the session
/// setting `skiplock.traceparent`; a malformed one fails the insert.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_inserts_take_the_sessions_traceparent() {
    let ts = TestStore::new(Backend::Postgres).await;
    let pg = ts.pg.clone().unwrap();
    let s = &ts.schema;
    let tp = traceparent(TRACE_C);
    let mut tx = pg.begin().await.unwrap();
    sqlx::query("SELECT set_config('skiplock.traceparent', $1, true)")
        .bind(&tp)
        .execute(&mut *tx)
        .await
        .unwrap();
    let one: uuid::Uuid = sqlx::query_scalar(&format!("SELECT {s}.add_job('noop', '{{}}')"))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let many: Vec<uuid::Uuid> = sqlx::query_scalar(&format!(
        "SELECT {s}.add_jobs('noop', ARRAY['1', '2']::jsonb[])"
    ))
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    for id in std::iter::once(one).chain(many) {
        let job = ts.store.job(id).await.unwrap().unwrap();
        assert_eq!(job.traceparent.as_deref(), Some(tp.as_str()));
    }

    // Outside the transaction that set it, the setting is gone.
    let plain: uuid::Uuid = sqlx::query_scalar(&format!("SELECT {s}.add_job('noop', '{{}}')"))
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(
        ts.store.job(plain).await.unwrap().unwrap().traceparent,
        None
    );

    let mut tx = pg.begin().await.unwrap();
    sqlx::query("SET LOCAL skiplock.traceparent = 'not-a-trace'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let e = sqlx::query_scalar::<_, uuid::Uuid>(&format!("SELECT {s}.add_job('noop', '{{}}')"))
        .fetch_one(&mut *tx)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("jobs_traceparent_check"), "{e}");
}

/// A `skiplock worker` on the test's schema, exporting to `receiver` when given.
fn worker(ts: &TestStore, env: &[(&'static str, String)]) -> Child {
    Command::new(bin())
        .args(ts.cli_args())
        .args(["worker", "--concurrency", "2", "--heartbeat-ms", "200"])
        .args(["--reconcile-ms", "200", "--node-timeout-ms", "2000"])
        .env("SKIPLOCK_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn skiplock worker")
}

/// A worker SIGKILLed while its job runs loses the attempt, not the trace: the attempt that
/// runs the job after the rescue continues the trace its submit named.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_attempt_after_a_killed_worker_continues_the_trace() {
    let receiver = Receiver::start().await;
    let ts = TestStore::new(Backend::Postgres).await;
    let tp = traceparent(TRACE_B);
    // `sleep` runs in lease mode: `running` in the table while its processor runs.
    let ids = ts
        .store
        .insert_jobs(&[NewJob::new("sleep", json!({"ms": 3000})).traceparent(tp.clone())])
        .await
        .unwrap();
    let id = ids[0];

    let mut first = worker(&ts, &receiver.env());
    let running = wait_until(Duration::from_secs(30), || async {
        ts.counts().await.running == 1
    })
    .await;
    assert!(running, "the first worker took the job");
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    assert_eq!(
        ts.counts().await.running,
        1,
        "the killed worker's lease is left"
    );

    let mut second = worker(&ts, &receiver.env());
    let done = wait_until(Duration::from_secs(60), || async {
        ts.counts().await.succeeded == 1
    })
    .await;
    assert!(done, "the job ran again after its lease expired");
    let job = ts.store.job(id).await.unwrap().unwrap();
    assert_eq!(
        job.traceparent.as_deref(),
        Some(tp.as_str()),
        "kept across the rescue"
    );

    let pid = second.id().unwrap().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(second.wait().await.unwrap().success());
    // The killed attempt sent nothing; the second is in the submit's trace.
    let spans = receiver.job(&id.to_string(), 1).await;
    let last = spans.last().unwrap();
    assert_eq!(
        (last.trace.as_str(), last.parent.as_str()),
        (TRACE_B, PARENT)
    );
    assert_eq!(last.attr("job.attempt"), "2");
    assert_eq!(last.attr("job.outcome"), "succeeded");
}

/// `skiplock migrate` on a fresh SQLite file with `env`: (success, stderr).
fn migrate_with(env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let out = std::process::Command::new(bin())
        .args(["--database-url", &url, "migrate"])
        .env("SKIPLOCK_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `OTEL_*` variables: what this build cannot do is refused at start-up, naming the
/// variable; what turns tracing off does; an unreachable collector costs no command.
#[test]
fn the_otel_variables_are_checked_at_start_up() {
    let closed = "http://127.0.0.1:1";
    for (env, named) in [
        (
            vec![("OTEL_TRACES_EXPORTER", "zipkin")],
            "OTEL_TRACES_EXPORTER",
        ),
        (
            vec![("OTEL_TRACES_EXPORTER", "otlp,console")],
            "OTEL_TRACES_EXPORTER",
        ),
        (
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", closed),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            vec![(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:1/\r\nX-Evil: 1",
            )],
            "OTLP",
        ),
    ] {
        let (ok, e) = migrate_with(&env);
        assert!(!ok, "{env:?} accepted");
        assert!(e.contains(named), "{env:?}: {e}");
    }
    let huge = format!("http://{}.example/", "a".repeat(100_000));
    let (ok, e) = migrate_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &huge)]);
    assert!(
        !ok && e.contains("OTLP") && e.len() < 100_000,
        "{}",
        e.len()
    );

    for env in [
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "")],
        vec![
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", closed),
        ],
        vec![
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
        ],
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", closed)],
        vec![
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", closed),
        ],
    ] {
        let (ok, e) = migrate_with(&env);
        assert!(ok, "{env:?}: {e}");
    }
}
