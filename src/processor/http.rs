//! Config-defined `http` types: POST the job's target as JSON to a URL; any 2xx is success.
//! A failure records the response's status and a bounded excerpt of its body, so that
//! `last_error` says what the other side answered without storing a whole error page.
//! `https://` endpoints are verified against the system's roots (see `tls.rs`).

use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue};

use super::{tls, ProcessError, Processor};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::store::JobTx;

/// Most bytes of a failed response's body kept in the job's error.
pub const MAX_EXCERPT: usize = 512;

pub struct HttpProcessor {
    url: reqwest::Url,
    client: reqwest::Client,
}

impl HttpProcessor {
    /// Checks the URL at start-up: a typo must fail before any job runs.
    pub fn new(url: &str) -> Result<Self> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| Error::Config(format!("http url {url:?} is not a URL: {e}")))?;
        let https = match parsed.scheme() {
            "http" => false,
            "https" => true,
            s => {
                return Err(Error::Config(format!(
                    "http url must be http://… or https://…, not {s}:"
                )))
            }
        };
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(Error::Config(format!("http url {url:?} has no host")));
        }
        // Redirects are failures, not detours: a POST silently turned into a GET elsewhere
        // would report success for work that was never done.
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("skiplock/", env!("CARGO_PKG_VERSION")));
        // Only an https endpoint needs trusted roots: a plain-http deployment must not fail
        // to start on a machine without a CA bundle.
        if https {
            builder = builder.use_preconfigured_tls(tls::client_config()?);
        }
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpProcessor {
            url: parsed,
            client,
        })
    }
}

#[async_trait]
impl Processor for HttpProcessor {
    async fn process(&self, job: &Job, _tx: &mut JobTx<'_>) -> Result<(), ProcessError> {
        // The job's identity travels in headers so that the body is exactly the target, and
        // the receiver can deduplicate retries by job ID.
        let headers = [
            ("x-skiplock-job-id", job.id.to_string()),
            ("x-skiplock-job-type", job.job_type.clone()),
            ("x-skiplock-attempt", (job.attempts + 1).to_string()),
        ];
        let mut req = self.client.post(self.url.clone()).json(&job.target);
        for (k, v) in headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                req = req.header(HeaderName::from_static(k), v);
            }
        }
        let mut res = req.send().await.map_err(|e| {
            ProcessError::retry(format!("POST {} failed: {}", self.url, causes(&e)))
        })?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let excerpt = read_excerpt(&mut res).await;
        let message = format!("POST {} answered {status}: {excerpt}", self.url);
        // A 4xx says the request itself is wrong: retrying the same target will not help,
        // except for timeouts and rate limits, which are about timing.
        let permanent = status.is_client_error()
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
        Err(if permanent {
            ProcessError::fatal(message)
        } else {
            ProcessError::retry(message)
        })
    }
}

/// An error with its causes: reqwest's own message only says "error sending request", while
/// what went wrong (connection refused, "invalid peer certificate: UnknownIssuer") is in its
/// sources.
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Layers often repeat the message they wrap.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The first [`MAX_EXCERPT`] bytes of the body, read chunk by chunk so that a huge or endless
/// error page is never held in memory.
async fn read_excerpt(res: &mut reqwest::Response) -> String {
    let mut buf = Vec::new();
    let mut more = false;
    while let Ok(Some(chunk)) = res.chunk().await {
        let room = MAX_EXCERPT - buf.len();
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            more = true;
            break;
        }
        buf.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&buf);
    let text = text.trim();
    match (text.is_empty(), more) {
        (true, _) => "(empty body)".to_string(),
        (false, true) => format!("{text}…"),
        (false, false) => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_at_start_up() {
        assert!(HttpProcessor::new("http://127.0.0.1:9000/hook").is_ok());
        for bad in [
            "",
            "not a url",
            "ftp://x/y",
            "file:///etc/passwd",
            "https://",
        ] {
            assert!(HttpProcessor::new(bad).is_err(), "accepted {bad:?}");
        }
    }
}
