//! A headless Chromium driven over the DevTools protocol, for tests that must click: the
//! browser listens on a loopback port, and a page is driven through its WebSocket with
//! `Page.navigate`, `Runtime.evaluate` and real mouse events (`Input.dispatchMouseEvent`).
//!
//! The WebSocket client is the few lines the protocol needs (text frames, masked from the
//! client, unmasked from the server, fragments joined), so no crate is pulled in for it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser and the page it is driving. Killed when dropped.
pub struct Browser {
    _child: Child,
    ws: TcpStream,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium with its profile in `profile` and attaches to its first page.
    pub async fn start(profile: &Path) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run scripts/test (it installs Debian's chromium)"
        );
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,1000",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        // Chromium writes the port it picked into the profile.
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(s) = std::fs::read_to_string(&port_file) {
                if let Some(p) = s.lines().next().and_then(|l| l.trim().parse::<u16>().ok()) {
                    break p;
                }
            }
            assert!(Instant::now() < deadline, "chromium never opened its port");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let targets: Value = loop {
            let r = reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await;
            if let Ok(r) = r {
                break r.json().await.unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "chromium's target list never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let path = url.split_once(&format!("127.0.0.1:{port}")).unwrap().1;
        let ws = handshake(port, path).await;
        let mut b = Browser {
            _child: child,
            ws,
            next_id: 0,
        };
        b.call("Page.enable", json!({})).await;
        b
    }

    /// Sends a command and waits for its answer (events in between are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        send(&mut self.ws, msg.as_bytes()).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let raw = tokio::time::timeout(left, recv(&mut self.ws))
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"));
            let v: Value = serde_json::from_slice(&raw).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    pub async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// The value of a JavaScript expression in the page.
    pub async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is `true`; fails the test with the page's text otherwise.
    pub async fn wait_for(&mut self, expr: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.eval(&format!("!!({expr})")).await == json!(true) {
                return;
            }
            if Instant::now() >= deadline {
                let text = self.eval("document.body.innerText").await;
                panic!("timed out waiting for {expr}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the element `selector` names (empty when there is none).
    pub async fn text(&mut self, selector: &str) -> String {
        let sel = serde_json::to_string(selector).unwrap();
        let v = self
            .eval(&format!(
                "(document.querySelector({sel}) || {{textContent: ''}}).textContent"
            ))
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Clicks the middle of the element, as a mouse would: it must be on screen, enabled
    /// and not covered, or the click lands elsewhere and the test sees nothing happen.
    /// Waits for the element to be shown first: a hidden view keeps its elements in the DOM,
    /// and a click at a hidden element's (zero) position would hit nothing.
    pub async fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        self.wait_for(
            &format!("(e => e && e.getClientRects().length > 0)(document.querySelector({sel}))"),
            Duration::from_secs(20),
        )
        .await;
        let at = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ))
            .await;
        let at = at
            .as_array()
            .unwrap_or_else(|| panic!("no element {selector} to click"));
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// Types into a text field (replacing what it held).
    pub async fn fill(&mut self, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        self.eval(&format!("document.querySelector({sel}).value = ''"))
            .await;
        self.click(selector).await;
        self.call("Input.insertText", json!({ "text": text })).await;
    }
}

async fn handshake(port: u16, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: c2tpcGxvY2stdGVzdHMtMQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// One masked text frame (a client must mask what it sends).
async fn send(s: &mut TcpStream, payload: &[u8]) {
    let mut f = vec![0x81u8];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let mask: [u8; 4] = rand::random();
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&f).await.unwrap();
}

/// One whole message, its fragments joined. Control frames are skipped.
async fn recv(s: &mut TcpStream) -> Vec<u8> {
    let mut msg = Vec::new();
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.unwrap();
        let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
        let mut n = (h[1] & 0x7f) as u64;
        if n == 126 {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.unwrap();
            n = u16::from_be_bytes(b) as u64;
        } else if n == 127 {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.unwrap();
            n = u64::from_be_bytes(b);
        }
        let mut data = vec![0u8; n as usize];
        s.read_exact(&mut data).await.unwrap();
        assert_ne!(opcode, 0x8, "the browser closed the connection");
        if opcode >= 0x8 {
            continue; // ping or pong
        }
        msg.extend_from_slice(&data);
        if fin {
            return msg;
        }
    }
}
