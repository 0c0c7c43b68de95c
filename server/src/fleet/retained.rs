//! Retained tables every agent reads (the Services, the HTTP routes): one publisher loop
//! for all of them.
//!
//! A [`RetainedTable`] says which cached resources it is built from and builds its
//! message, purely, from the cache. The [`RetainedPublisher`] rebuilds it after changes to
//! those resources and publishes it, retained, when its content differs from what it last
//! sent, and again after every (re)connect. A table larger than one message is not sent
//! (the agents keep the last one) and says so in the log.

use std::sync::Arc;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::{MAX_MESSAGE_SIZE, Message, encode};

use super::publisher::passes;
use crate::informer::Cache;

/// A publisher of retained messages built from the cache, for [`run_passes`].
pub(super) trait Passes: Send {
    /// Forgets what was sent, so the next pass sends everything (after a reconnect).
    fn forget(&mut self);
    /// Builds what to send from the cache and sends what changed.
    fn pass(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

/// The loop of every cache-built retained publisher: a pass at start, a pass after each
/// batch of cache changes that touches `sources` (by [`passes`]' rule: within
/// milliseconds, and a burst costs one pass per few tens of milliseconds), and a full one
/// when `republish` is notified; until `shutdown`.
pub(super) async fn run_passes<P: Passes>(
    mut publisher: P,
    cache: &Cache,
    sources: &[&str],
    republish: &Notify,
    shutdown: CancellationToken,
) {
    let mut changes = cache.subscribe();
    let mut pending = passes();
    pending.change(Instant::now());
    loop {
        let due = pending.due();
        let changed = tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                pending.sent(Instant::now());
                while changes.try_recv().is_ok() {}
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = publisher.pass() => {}
                }
                false
            }
            () = republish.notified() => {
                publisher.forget();
                true
            }
            batch = changes.recv() => match batch {
                Ok(batch) => batch.relisted
                    || sources.iter().any(|r| batch.of(r).next().is_some()),
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => break,
            },
        };
        if changed {
            pending.change(Instant::now());
        }
    }
}

/// A table the server keeps retained on one topic.
pub trait RetainedTable: Send + 'static {
    /// What decides whether the table changed (the table without its revision).
    type Content: PartialEq + Send;
    /// Its topic.
    const TOPIC: &'static str;
    /// What it is, for logs (`table of Services`).
    const WHAT: &'static str;
    /// The cached resources it is built from.
    const SOURCES: &'static [&'static str];

    /// Builds it from the cache: its content and its message.
    fn build(&self, cache: &Cache) -> (Self::Content, Message);
}

/// Publishes one [`RetainedTable`]; see the module documentation.
pub struct RetainedPublisher<T: RetainedTable> {
    client: AsyncClient,
    cache: Cache,
    table: T,
    republish: Arc<Notify>,
    /// The content last published (`None`: nothing yet, or a reconnect since).
    published: Option<T::Content>,
}

impl<T: RetainedTable> RetainedPublisher<T> {
    /// A publisher that has published nothing yet.
    pub fn new(client: AsyncClient, cache: Cache, table: T) -> Self {
        Self {
            client,
            cache,
            table,
            republish: Arc::new(Notify::new()),
            published: None,
        }
    }

    /// Notifying this makes the next pass publish the table again (after a reconnect).
    pub fn republish_trigger(&self) -> Arc<Notify> {
        Arc::clone(&self.republish)
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let (cache, republish) = (self.cache.clone(), Arc::clone(&self.republish));
        run_passes(self, &cache, T::SOURCES, &republish, shutdown).await;
    }
}

impl<T: RetainedTable> Passes for RetainedPublisher<T> {
    fn forget(&mut self) {
        self.published = None;
    }

    /// Builds the table and publishes it if it changed.
    async fn pass(&mut self) {
        let (content, message) = self.table.build(&self.cache);
        if self.published.as_ref() == Some(&content) {
            return;
        }
        let payload = encode(&message);
        if payload.len() > MAX_MESSAGE_SIZE {
            tracing::error!(
                bytes = payload.len(),
                limit = MAX_MESSAGE_SIZE,
                "the {} is too large to send; agents keep the last one",
                T::WHAT
            );
            self.published = Some(content);
            return;
        }
        match self
            .client
            .publish(T::TOPIC, QoS::AtLeastOnce, true, payload)
            .await
        {
            Ok(()) => {
                tracing::debug!("{} published", T::WHAT);
                self.published = Some(content);
            }
            Err(err) => tracing::warn!(%err, "cannot publish the {}", T::WHAT),
        }
    }
}
