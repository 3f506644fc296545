//! Trust for the `https://` endpoints of `http` processors: rustls (no OpenSSL) with the
//! system's root certificates.
//!
//! `SSL_CERT_FILE` (a PEM bundle) and `SSL_CERT_DIR` (directories of PEM files), when set,
//! replace the system's store, as they do for OpenSSL-based tools: that is how a deployment
//! trusts a private CA. The store is read once per process and checked when the first
//! `https` processor is built, at start-up: a missing or unreadable bundle, or one with no
//! usable certificate, is a configuration error there, instead of every job failing later
//! with "unknown issuer".

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};

use crate::error::{Error, Result};

/// The variables that replace the system's store (read by `rustls-native-certs`).
pub const CA_VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// The TLS client configuration every `https` processor shares.
pub fn client_config() -> Result<ClientConfig> {
    // Once per process: the store does not change under a running node, and a config file
    // with many https types should not parse the system's bundle once per type.
    static CONFIG: OnceLock<std::result::Result<ClientConfig, String>> = OnceLock::new();
    CONFIG.get_or_init(load).clone().map_err(Error::Config)
}

fn load() -> std::result::Result<ClientConfig, String> {
    let explicit: Vec<String> = CA_VARIABLES
        .iter()
        .filter_map(|v| std::env::var_os(v).map(|p| format!("{v}={p:?}")))
        .collect();
    let source = if explicit.is_empty() {
        "the system's certificate store".to_string()
    } else {
        explicit.join(" and ")
    };
    let found = rustls_native_certs::load_native_certs();
    if !found.errors.is_empty() {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        let errors = errors.join("; ");
        // A file the user named must be right. The system's store may hold a stray broken
        // link or an ancient certificate: what did load is still worth using.
        if !explicit.is_empty() {
            return Err(format!(
                "cannot load CA certificates from {source}: {errors}"
            ));
        }
        tracing::warn!(%errors, "some of the system's CA certificates could not be read");
    }
    // The file is how a deployment adds its CA, and a directory given beside it (often set
    // machine-wide) would hide a file that holds nothing: check the file on its own.
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        let own = rustls_native_certs::load_certs_from_paths(Some(Path::new(&file)), None);
        if own.errors.is_empty() && own.certs.is_empty() {
            return Err(format!(
                "no usable CA certificate in SSL_CERT_FILE={file:?}: expected PEM \
                 \"-----BEGIN CERTIFICATE-----\" blocks"
            ));
        }
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "no usable CA certificate in {source} ({ignored} unparsable): https endpoints \
             could not be verified; install the system's CA certificates (ca-certificates) \
             or set SSL_CERT_FILE to a PEM bundle"
        ));
    }
    tracing::debug!(added, ignored, %source, "loaded CA certificates for https");
    // ring, named explicitly: the process may have no default provider installed, and naming
    // one keeps a second crypto library (and its C build) out of the binary.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot configure TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
