//! The OTLP exporter, set up the standard way: by the `OTEL_*` variables every OpenTelemetry
//! SDK reads, so that a deployment configures skiplock as it configures its other services.
//!
//! Spans go out over OTLP/HTTP with protobuf bodies (`http/protobuf`, the specification's
//! default) from a batch processor on its own thread, through reqwest's blocking client with
//! the same trust store as `https` processors (`SSL_CERT_FILE`, `SSL_CERT_DIR`).

use std::time::Duration;

use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

use crate::error::{Error, Result};

/// The one protocol this build speaks.
const PROTOCOL: &str = "http/protobuf";

/// How long one export may take: the specification's default `OTEL_EXPORTER_OTLP_TIMEOUT`.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A variable's value, with an empty one counted as unset (as an empty URL is elsewhere).
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether the environment asks for traces: `OTEL_TRACES_EXPORTER=otlp`, or, with that
/// variable unset, an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). `OTEL_SDK_DISABLED=true` and
/// `OTEL_TRACES_EXPORTER=none` turn it off. An exporter or protocol this build does not have
/// is an error, not silence: the operator asked for traces and would get none.
pub fn wanted() -> Result<bool> {
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    let wanted = match var("OTEL_TRACES_EXPORTER") {
        None => {
            var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        }
        Some(list) => {
            let mut otlp = false;
            for name in list.split(',').map(str::trim) {
                match name {
                    "otlp" => otlp = true,
                    "none" => {}
                    other => {
                        return Err(Error::Config(format!(
                            "OTEL_TRACES_EXPORTER={list:?}: this build exports traces only \
                             over `otlp` ({other:?} is not available); use otlp or none"
                        )))
                    }
                }
            }
            otlp
        }
    };
    if wanted {
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(p) = var(name) {
                if p.trim() != PROTOCOL {
                    return Err(Error::Config(format!(
                        "{name}={p:?}: this build sends OTLP as {PROTOCOL} only"
                    )));
                }
                break;
            }
        }
    }
    Ok(wanted)
}

/// The variables naming the collector: the traces' own, else the base one (`/v1/traces` is
/// appended to it).
const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Longest endpoint accepted.
const MAX_ENDPOINT_LEN: usize = 2048;

/// Checks the endpoints the environment names, and says whether one is `https`. The
/// exporter would fall back to `localhost:4318` on a value it cannot use: checked here, such
/// a value is a start-up error instead of traces sent somewhere else.
fn check_endpoints() -> Result<bool> {
    let mut https = false;
    for name in ENDPOINT_VARIABLES {
        let Some(value) = var(name) else { continue };
        let shown: String = value.chars().take(200).collect();
        let bad = |why: &str| {
            Err(Error::Config(format!(
                "{name}={shown:?} is not an OTLP endpoint ({why}): give an http:// or \
                 https:// URL"
            )))
        };
        // Far past any collector's address: a value pasted wrong, not an endpoint.
        if value.len() > MAX_ENDPOINT_LEN {
            return bad(&format!("longer than {MAX_ENDPOINT_LEN} bytes"));
        }
        // The URL parser drops tabs and newlines silently; a header smuggled that way is not
        // an address.
        if value.chars().any(|c| c.is_control() || c == ' ') {
            return bad("it contains spaces or control characters");
        }
        match url::Url::parse(value.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                https |= u.scheme() == "https";
            }
            Ok(_) => return bad("not http or https, or no host"),
            Err(e) => return bad(&e.to_string()),
        }
    }
    Ok(https)
}

/// The tracer provider the environment asks for (see [`wanted`]), or `None`. The endpoint,
/// headers, timeout, sampler and batching come from the standard variables; the service is
/// named `skiplock` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names it.
/// Shut the provider down before the process exits, to send what it still holds.
pub fn provider_from_env() -> Result<Option<SdkTracerProvider>> {
    if !wanted()? {
        return Ok(None);
    }
    let tls = if check_endpoints()? {
        Some(crate::processor::tls_client_config()?)
    } else {
        None
    };
    // reqwest's blocking client runs its own runtime, which must not be made (or dropped)
    // on an async runtime's thread: build it on a thread of its own.
    let client = std::thread::spawn(move || {
        let mut builder = reqwest::blocking::Client::builder().timeout(EXPORT_TIMEOUT);
        if let Some(tls) = tls {
            builder = builder.use_preconfigured_tls(tls);
        }
        builder.build()
    })
    .join()
    .map_err(|_| Error::Config("cannot start the OTLP client".into()))?
    .map_err(|e| Error::Config(format!("cannot build the OTLP client: {e}")))?;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(client)
        .build()
        .map_err(|e| Error::Config(format!("cannot set up the OTLP exporter: {e}")))?;
    let named = var("OTEL_SERVICE_NAME").is_some()
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| {
            a.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    let mut resource = Resource::builder();
    if !named {
        resource = resource.with_service_name("skiplock");
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}
