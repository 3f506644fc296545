//! `http` processors over HTTPS, as a deployment runs them: a real `skiplock worker` whose
//! `SSL_CERT_FILE` names a CA made at test time, posting to local TLS endpoints. One endpoint
//! has a certificate from that CA, one from a CA nobody trusts, one from the trusted CA but
//! for another name. A CA bundle that is missing or garbage stops the worker at start-up.

mod common;

use std::convert::Infallible;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use skiplock::queue::memory::MemoryQueue;
use skiplock::{Client, NewJob};
use tokio_rustls::TlsAcceptor;

use common::{wait_until, Backend, TestStore};

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A server certificate for `names`, signed by `ca`, with its chain.
fn leaf(ca: &Ca, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut p = CertificateParams::new(names).unwrap();
    p.extended_key_usages
        .push(ExtendedKeyUsagePurpose::ServerAuth);
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    let key = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
    (vec![cert.der().clone(), ca.der().clone()], key)
}

/// A local HTTPS endpoint counting the POSTs that reach `/hook`.
struct Endpoint {
    url: String,
    hits: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn endpoint(
    (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
) -> Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: Request<Incoming>| {
                    if req.method() == Method::POST && req.uri().path() == "/hook" {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    async { Ok::<_, Infallible>(Response::new(String::new())) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Endpoint {
        url: format!("https://{addr}/hook"),
        hits,
        server,
    }
}

/// `skiplock ARGS` with `SSL_CERT_FILE` set (or removed), as a deployment starts it.
fn skiplock(ts: &TestStore, cert_file: Option<&Path>, args: &[&str]) -> Command {
    let mut c = Command::new(common::bin());
    c.args(ts.cli_args())
        .args(args)
        .env("SKIPLOCK_LOG", "info")
        .env_remove("SKIPLOCK_CONFIG")
        .env_remove("SSL_CERT_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match cert_file {
        Some(f) => c.env("SSL_CERT_FILE", f),
        None => c.env_remove("SSL_CERT_FILE"),
    };
    c
}

/// Runs a command that should stop by itself; kills it (and fails) if it does not.
fn finishes(mut c: Command, within: Duration) -> Output {
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_trusts_the_configured_ca_and_names_what_is_wrong_with_other_certificates() {
    let ts = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let trusted = ca("skiplock test CA");
    let stranger = ca("nobody trusts this CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, trusted.pem()).unwrap();

    let good = endpoint(leaf(&trusted, &["127.0.0.1", "localhost"])).await;
    let unknown = endpoint(leaf(&stranger, &["127.0.0.1", "localhost"])).await;
    let misnamed = endpoint(leaf(&trusted, &["elsewhere.invalid"])).await;
    let config = dir.path().join("skiplock.toml");
    std::fs::write(
        &config,
        format!(
            "[types.good]\nhttp = {{ url = '{}' }}\n\
             [types.unknown]\nhttp = {{ url = '{}' }}\n\
             [types.misnamed]\nhttp = {{ url = '{}' }}\n",
            good.url, unknown.url, misnamed.url
        ),
    )
    .unwrap();

    let client = Client::new(ts.store.clone(), Arc::new(MemoryQueue::default()));
    let jobs: Vec<NewJob> = ["good", "unknown", "misnamed"]
        .iter()
        .map(|t| NewJob::new(*t, json!({"n": 1})).max_attempts(1))
        .collect();
    let ids = client.submit_many(&jobs).await.unwrap();

    let config = config.to_str().unwrap();
    let mut worker = skiplock(
        &ts,
        Some(&ca_file),
        &["--config", config, "worker", "--reconcile-ms", "100"],
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let finished = wait_until(Duration::from_secs(30), || async {
        ts.counts().await.pending == 0
    })
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let _ = worker.wait();
    assert!(finished, "the jobs did not finish");

    let job = |i: usize| {
        let store = ts.store.clone();
        let id = ids[i];
        async move { store.job(id).await.unwrap().unwrap() }
    };
    let ok = job(0).await;
    assert_eq!(ok.status.as_str(), "succeeded", "{:?}", ok.last_error);
    assert_eq!(
        good.hits.load(Ordering::SeqCst),
        1,
        "delivered exactly once"
    );

    let refused = job(1).await;
    let error = refused.last_error.clone().unwrap_or_default();
    assert_eq!(refused.status.as_str(), "failed");
    assert!(
        error.contains("invalid peer certificate") && error.contains("UnknownIssuer"),
        "the error names the certificate problem: {error}"
    );
    assert_eq!(unknown.hits.load(Ordering::SeqCst), 0);

    let wrong_name = job(2).await;
    let error = wrong_name.last_error.clone().unwrap_or_default();
    assert_eq!(wrong_name.status.as_str(), "failed");
    assert!(error.contains("not valid for name"), "{error}");
    assert_eq!(misnamed.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_missing_or_garbage_ca_bundle_is_refused_at_start_up() {
    let ts = TestStore::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skiplock.toml");
    std::fs::write(
        &config,
        "[types.notify]\nhttp = { url = 'https://127.0.0.1:1/hook' }\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();

    // A CA directory with good certificates beside the file (often set machine-wide) must
    // not hide a bad file.
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("ca.pem"), ca("machine-wide CA").pem()).unwrap();
    for (bundle, why) in [
        (&missing, "No such file"),
        (&garbage, "no usable CA certificate"),
        (&empty, "no usable CA certificate"),
        (&broken, "cannot load CA certificates"),
    ] {
        let mut worker = skiplock(&ts, Some(bundle), &["--config", config, "worker"]);
        worker.env("SSL_CERT_DIR", &certs);
        let out = finishes(worker, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bundle:?} was accepted");
        assert!(
            stderr.contains("SSL_CERT_FILE")
                && stderr.contains("[types.notify]")
                && stderr.contains(why),
            "{bundle:?}: {stderr}"
        );
    }
}
