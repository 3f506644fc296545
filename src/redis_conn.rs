//! Opening Redis: one place for the queue and the event bus, so both validate the prefix, time
//! out and reconnect the same way.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Client;

use crate::error::{Error, Result};

/// Time allowed to open a connection: a Redis that does not answer counts as down.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for a non-blocking command's reply.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Validates the prefix, opens a client and a reconnecting connection, so a wrong URL or a
/// Redis that is down fails at start-up.
pub(crate) async fn open(url: &str, prefix: &str) -> Result<(Client, ConnectionManager)> {
    validate_prefix(prefix)?;
    let client = Client::open(url).map_err(|e| Error::Config(format!("invalid Redis URL: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT)
        // Few, quick reconnect attempts per call: while Redis is down a call should fail
        // within seconds (the runner pauses and retries), not hang.
        .set_number_of_retries(2)
        .set_factor(100)
        .set_max_delay(1_000);
    let conn = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(|source| Error::Redis {
            doing: "connecting",
            source,
        })?;
    Ok((client, conn))
}

/// Prefixes name keys and channels: plain characters only, so they cannot collide with
/// another deployment's by accident or carry anything odd into a key.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 128
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid Redis prefix {prefix:?}: use letters, digits, '_', '-', ':' or '.' (at most 128)"
        )))
    }
}
