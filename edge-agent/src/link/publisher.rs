//! The task that feeds the rumqttc client: session setup first, then the uplink queue.
//!
//! When a session starts it subscribes to the node's down topics and the server's state,
//! then publishes the retained birth, before anything queued; it births again when asked
//! (the server restarted). Messages queued while no session is up are dropped: all of them
//! are periodic or regenerated at the next session start.

use bytes::Bytes;
use rumqttc::{AsyncClient, QoS, SubscribeFilter};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::node::{NodeInfo, NodeState};
use wasmfleet_protocol::topic::{self, Up};
use wasmfleet_protocol::{Message, encode};

use super::uplink::{Outgoing, Session};

pub(super) struct Publisher {
    pub(super) client: AsyncClient,
    pub(super) node: String,
    pub(super) info: NodeInfo,
    pub(super) queue: mpsc::Receiver<Outgoing>,
    pub(super) session: watch::Receiver<Session>,
    /// Bumped when the node must be born again (a new server epoch).
    pub(super) rebirth: watch::Receiver<u64>,
    /// Bumped when the node's down topics must be subscribed again (a replay of the
    /// retained desired state, see [`super::resync`]).
    pub(super) resubscribe: watch::Receiver<u64>,
    /// Ends the task gracefully: flush the queue, publish "offline", disconnect.
    pub(super) stop: CancellationToken,
}

impl Publisher {
    pub(super) async fn run(mut self) {
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                changed = self.session.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let session = *self.session.borrow_and_update();
                    if session.connected {
                        self.start_session(session.epoch).await;
                    }
                }
                changed = self.rebirth.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.rebirth.borrow_and_update();
                    let session = *self.session.borrow();
                    if session.connected {
                        tracing::info!(epoch = session.epoch, "server restarted; publishing the birth again");
                        self.birth(session.epoch).await;
                    }
                }
                changed = self.resubscribe.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.resubscribe.borrow_and_update();
                    if self.session.borrow().connected {
                        self.subscribe(false).await;
                    }
                }
                outgoing = self.queue.recv() => match outgoing {
                    Some(outgoing) => self.publish(outgoing).await,
                    None => return,
                },
            }
        }
        self.finish().await;
    }

    async fn start_session(&self, epoch: u64) {
        self.subscribe(true).await;
        self.birth(epoch).await;
    }

    /// Subscribes to the node's down topics (and, with `server_state`, to the server's
    /// state and the table of Services). Subscribing again to a filter already held makes the broker send its
    /// retained messages again (MQTT 3.1.1 §3.8.4), which is how a replay is asked for.
    async fn subscribe(&self, server_state: bool) {
        let mut filters = vec![SubscribeFilter::new(
            topic::node_down_filter(&self.node),
            QoS::AtLeastOnce,
        )];
        if server_state {
            for shared in [
                topic::SERVER_STATE,
                topic::SERVICES,
                topic::ROUTES,
                topic::PEERS,
            ] {
                filters.push(SubscribeFilter::new(shared.to_owned(), QoS::AtLeastOnce));
            }
        }
        if let Err(err) = self.client.subscribe_many(filters).await {
            tracing::warn!(%err, "cannot subscribe");
        }
    }

    async fn birth(&self, epoch: u64) {
        let birth = Message::NodeState(NodeState {
            epoch,
            online: true,
            info: Some(self.info.clone()),
        });
        self.send_state(&birth).await;
    }

    async fn send_state(&self, state: &Message) {
        let topic = topic::up(&self.node, Up::State);
        let payload = Bytes::from(encode(state));
        if let Err(err) = self
            .client
            .publish_bytes(topic, QoS::AtLeastOnce, true, payload)
            .await
        {
            tracing::warn!(%err, "cannot publish the node state");
        }
    }

    async fn publish(&self, outgoing: Outgoing) {
        if !self.session.borrow().connected {
            tracing::trace!(topic = %outgoing.topic, "not connected; dropped");
            return;
        }
        let Outgoing {
            topic,
            qos,
            retain,
            payload,
        } = outgoing;
        if let Err(err) = self.client.publish_bytes(topic, qos, retain, payload).await {
            tracing::warn!(%err, "cannot publish");
        }
    }

    /// Sends what is still queued, says goodbye and disconnects. A graceful disconnect does
    /// not fire the will, so the "offline" state is published explicitly.
    async fn finish(mut self) {
        while let Ok(outgoing) = self.queue.try_recv() {
            self.publish(outgoing).await;
        }
        let session = *self.session.borrow();
        if !session.connected {
            return;
        }
        let offline = Message::NodeState(NodeState {
            epoch: session.epoch,
            online: false,
            info: None,
        });
        self.send_state(&offline).await;
        if let Err(err) = self.client.disconnect().await {
            tracing::debug!(%err, "cannot queue the disconnect");
        }
    }
}
