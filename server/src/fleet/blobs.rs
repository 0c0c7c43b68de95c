//! Answers module chunk requests, one `BlobReply` per chunk, and artifact requests (which
//! may compile first), each from a task of its own so that neither holds up the dispatcher.

use std::collections::BTreeSet;

use rumqttc::{AsyncClient, QoS};
use wasmfleet_protocol::artifact::{ArtifactOffer, ArtifactOutcome, ArtifactRequest};
use wasmfleet_protocol::blob::{BlobBody, BlobReply, BlobRequest, chunk_count};
use wasmfleet_protocol::names::validate_digest_hex;
use wasmfleet_protocol::topic::{self, Down};
use wasmfleet_protocol::{Message, encode};

use crate::artifacts::Artifacts;
use crate::modules::ModuleStore;

/// The chunk indices to send: the requested ones that exist (deduplicated, in order), or
/// all of them when none are named.
pub fn chunks_to_send(requested: &[u32], total: u32) -> Vec<u32> {
    if requested.is_empty() {
        return (0..total).collect();
    }
    let wanted: BTreeSet<u32> = requested.iter().copied().filter(|&i| i < total).collect();
    wanted.into_iter().collect()
}

/// Sends the requested chunks of a module to `node`, or `NotFound`.
pub(super) async fn answer(
    client: AsyncClient,
    modules: ModuleStore,
    node: String,
    request: BlobRequest,
) {
    let topic = topic::down(&node, Down::Blob);
    let size = if validate_digest_hex(&request.digest).is_ok() {
        modules.size(&request.digest)
    } else {
        Ok(None)
    };
    let size = match size {
        Ok(Some(size)) => size,
        Ok(None) => {
            tracing::warn!(%node, digest = %request.digest, "node asked for an unknown module");
            send(&client, &topic, &request.digest, BlobBody::NotFound).await;
            return;
        }
        Err(err) => {
            tracing::error!(%node, digest = %request.digest, %err, "cannot read module");
            return;
        }
    };
    let indices = chunks_to_send(&request.chunks, chunk_count(size));
    tracing::debug!(%node, digest = %request.digest, chunks = indices.len(), "sending module chunks");
    for index in indices {
        let chunk = match modules.chunk(&request.digest, index) {
            Ok(Some(chunk)) => chunk,
            Ok(None) => continue,
            Err(err) => {
                tracing::error!(%node, digest = %request.digest, index, %err, "cannot read module chunk");
                return;
            }
        };
        let body = BlobBody::Chunk {
            index: chunk.index,
            total: chunk.total,
            size: chunk.size,
            data: chunk.data,
        };
        if !send(&client, &topic, &request.digest, body).await {
            return;
        }
    }
}

/// Answers an artifact request with an `ArtifactOffer` on the node's blob topic.
pub(super) async fn offer_artifact(
    client: AsyncClient,
    artifacts: Option<Artifacts>,
    node: String,
    request: ArtifactRequest,
) {
    let outcome = match artifacts {
        Some(artifacts) => {
            let request = request.clone();
            tokio::task::spawn_blocking(move || artifacts.offer(&request))
                .await
                .unwrap_or_else(|err| {
                    ArtifactOutcome::Unavailable(format!("compile task failed: {err}"))
                })
        }
        None => ArtifactOutcome::Unavailable("this server does not precompile modules".into()),
    };
    if let ArtifactOutcome::Unavailable(why) = &outcome {
        tracing::info!(%node, module = %request.module_digest, target = %request.target, %why, "no artifact for a node");
    }
    let payload = encode(&Message::ArtifactOffer(ArtifactOffer { request, outcome }));
    let topic = topic::down(&node, Down::Blob);
    if let Err(err) = client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
    {
        tracing::warn!(%err, "cannot publish an artifact offer; the fleet link is stopping");
    }
}

async fn send(client: &AsyncClient, topic: &str, digest: &str, body: BlobBody) -> bool {
    let payload = encode(&Message::BlobReply(BlobReply {
        digest: digest.to_owned(),
        body,
    }));
    match client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
    {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(%err, "cannot publish a module chunk; the fleet link is stopping");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_request_means_every_chunk() {
        assert_eq!(chunks_to_send(&[], 3), vec![0, 1, 2]);
    }

    #[test]
    fn requested_chunks_are_deduplicated_ordered_and_bounded() {
        assert_eq!(chunks_to_send(&[2, 0, 2, 9], 3), vec![0, 2]);
    }
}
