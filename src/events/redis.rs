//! Status events between nodes over Redis pub/sub. Each publish carries one batch of events as
//! a JSON array on `{prefix}:events` (one round trip however busy the node); subscribers split
//! batches back into single events.
//!
//! Pub/sub delivers to whoever is subscribed at that moment and keeps nothing: a subscriber
//! that is disconnected misses events, never jobs. The subscription reconnects by itself.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use redis::aio::{ConnectionManager, PubSubStream};
use redis::{AsyncCommands, Client};
use tracing::{debug, info, warn};

use super::{Event, EventBus};
use crate::error::{Error, Result};
use crate::redis_conn::open;

/// Time allowed to open a connection or get a reply: a Redis that does not answer is down.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between attempts to re-subscribe after losing Redis.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(500);

/// Events through Redis pub/sub, heard by every node and every `skiplock watch`.
#[derive(Clone)]
pub struct RedisBus {
    client: Client,
    /// Publishing connection; reconnects by itself.
    conn: ConnectionManager,
    channel: String,
}

impl RedisBus {
    /// Connects now, so a wrong URL fails at start-up.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let (client, conn) = open(url, prefix).await?;
        Ok(RedisBus {
            client,
            conn,
            channel: format!("{prefix}:events"),
        })
    }

    /// The pub/sub channel: `{prefix}:events`.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

/// Opens a connection and subscribes; returns once Redis has confirmed the subscription, so
/// nothing published after this returns is missed.
async fn subscribed(client: &Client, channel: &str) -> Result<PubSubStream> {
    let mut ps = tokio::time::timeout(TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| Error::Queue("timed out connecting to Redis".into()))??;
    ps.subscribe(channel).await?;
    Ok(ps.into_on_message())
}

/// The subscriber's state between events.
struct Sub {
    client: Client,
    channel: String,
    /// `None` while Redis is unreachable.
    stream: Option<PubSubStream>,
    /// Events of the last batch not yet handed out.
    pending: VecDeque<Event>,
}

impl Sub {
    async fn next(mut self) -> Option<(Event, Sub)> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some((e, self));
            }
            match self.stream.as_mut() {
                Some(s) => match s.next().await {
                    Some(msg) => {
                        let payload: Vec<u8> = msg.get_payload().unwrap_or_default();
                        match serde_json::from_slice::<Vec<Event>>(&payload) {
                            Ok(batch) => self.pending.extend(batch),
                            // Someone else's message on our channel: not ours to act on.
                            Err(e) => debug!(error = %e, "skipping a malformed event batch"),
                        }
                    }
                    None => {
                        warn!("lost the Redis event subscription; resubscribing");
                        self.stream = None;
                    }
                },
                None => match subscribed(&self.client, &self.channel).await {
                    Ok(s) => {
                        info!("event subscription restored");
                        self.stream = Some(s);
                    }
                    Err(_) => tokio::time::sleep(RESUBSCRIBE_PAUSE).await,
                },
            }
        }
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, events: Vec<Event>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let payload = serde_json::to_vec(&events)
            .map_err(|e| Error::Invalid(format!("cannot encode events: {e}")))?;
        let mut conn = self.conn.clone();
        let _receivers: i64 = conn.publish(&self.channel, payload).await?;
        Ok(())
    }

    async fn subscribe(&self) -> Result<BoxStream<'static, Event>> {
        let stream = subscribed(&self.client, &self.channel).await?;
        let sub = Sub {
            client: self.client.clone(),
            channel: self.channel.clone(),
            stream: Some(stream),
            pending: VecDeque::new(),
        };
        Ok(futures::stream::unfold(sub, Sub::next).boxed())
    }
}
