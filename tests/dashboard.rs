//! The dashboard in a real browser: headless Chromium loads `/` from a running
//! `skiplock serve`, its JavaScript polls the API with the token, and the DOM it builds must
//! show the batch's counts. Needs `/usr/bin/chromium` (scripts/test installs it).

mod common;
#[path = "serve_support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use common::{wait_until, Backend, TestStore};
use support::serve;

const TOKEN: &str = "dashboard-token-0123456789";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The DOM after the page's scripts ran for `budget_ms` of virtual time.
async fn dump_dom(url: &str, profile: &Path, budget_ms: u32) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/test (it installs Debian's chromium) or apt-get install chromium"
    );
    let out = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("chromium finished")
        .expect("chromium ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Dumps until `ready` holds (the first poll may race the page's first fetch).
async fn dom_when(url: &str, profile: &Path, ready: impl Fn(&str) -> bool) -> String {
    let mut dom = String::new();
    for budget in [3000, 6000, 10000] {
        dom = dump_dom(url, profile, budget).await;
        if ready(&dom) {
            break;
        }
    }
    dom
}

#[tokio::test]
async fn the_dashboard_shows_a_batch_in_a_real_browser() {
    let db = TestStore::new(Backend::Postgres).await;
    let server = serve(&db, &["--api-token", TOKEN]).await;
    let http = reqwest::Client::new();
    // A hostile batch name: the page must show it as text, never run it.
    let name = r#"<img src=x onerror="document.title='pwned'">"#;
    let body = json!({"type": "noop", "targets": [1, 2, 3], "name": name});
    let b: Value = http
        .post(format!("{}/api/v1/batches", server.base))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = b["id"].as_str().unwrap().to_string();
    let finished = wait_until(Duration::from_secs(20), || async {
        let b: Value = http
            .get(format!("{}/api/v1/batches/{id}", server.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        b["succeeded"] == 3
    })
    .await;
    assert!(finished);
    // A job no node can run: shown, with its queue, type and why, not failed.
    let res = http
        .post(format!("{}/api/v1/jobs", server.base))
        .bearer_auth(TOKEN)
        .json(&json!({"type": "resize", "target": {}, "queue": "media"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    let dir = tempfile::tempdir().unwrap();
    // The token travels in the fragment, which the page moves to localStorage.
    let url = format!("{}/#token={TOKEN}", server.base);
    let dom = dom_when(&url, &dir.path().join("with-token"), |d| {
        d.contains("data-loaded=\"1\"")
    })
    .await;
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page loaded the status:\n{dom}"
    );
    let row = format!(
        "data-batch=\"{id}\" data-succeeded=\"3\" data-failed=\"0\" data-pending=\"0\" data-total=\"3\""
    );
    assert!(dom.contains(&row), "the batch's counts are shown:\n{dom}");
    assert!(dom.contains("100% done"));
    assert!(dom.contains("data-type=\"noop\""), "counts by type");
    assert!(dom.contains("data-node="), "the server's node is listed");
    assert!(
        dom.contains("data-queue=\"media\" data-type=\"resize\""),
        "the job no node can run is listed:\n{dom}"
    );
    assert!(dom.contains("no node has a processor for the type"));
    assert!(
        dom.contains(">default=4<"),
        "the node's queues are shown:\n{dom}"
    );
    assert!(
        dom.contains("<polyline"),
        "the throughput sparkline is drawn"
    );
    assert!(dom.contains("&lt;img src=x"), "the name is shown as text");
    assert!(!dom.contains("<img"), "the name never became markup");
    assert!(dom.contains("<title>skiplock</title>"));

    // Without a token the page asks for one instead of showing data.
    let dom = dom_when(
        &format!("{}/", server.base),
        &dir.path().join("none"),
        |d| d.contains("token needed"),
    )
    .await;
    assert!(dom.contains("token needed"), "{dom}");
    assert!(!dom.contains(&id));
    // A wrong token is refused, not shown data.
    let url = format!("{}/#token=wrong", server.base);
    let dom = dom_when(&url, &dir.path().join("wrong"), |d| {
        d.contains("token refused")
    })
    .await;
    assert!(dom.contains("token refused"), "{dom}");
    assert!(!dom.contains(&id));
    server.terminate(Duration::from_secs(15)).await;
}
