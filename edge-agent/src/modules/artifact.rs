//! Fetching a module precompiled by the server for this agent's engine: ask, wait for the
//! offer, check the server's signature against the cluster CA, then pull the artifact blob
//! like a module (chunks, sha256 check against the signed digest).
//!
//! Precompiled code is native code, so nothing reaches the caller unless the signature
//! verifies. Everything else that goes wrong (no CA to verify with, no offer, the server
//! cannot compile) is an [`ArtifactError`]: the caller then compiles locally.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use wasmfleet_protocol::Message;
use wasmfleet_protocol::artifact::{
    ArtifactOffer, ArtifactOutcome, ArtifactRequest, VerifyError, verify,
};
use wasmfleet_protocol::node::EngineInfo;
use wasmfleet_protocol::pod::ModuleRef;
use wasmfleet_protocol::topic::Up;

use super::{FetchError, ModuleFetcher};

/// How long to wait for the server's offer (it may be compiling a large module).
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(120);

/// How often an unanswered request is repeated (it may have been lost with a connection).
const ASK_AGAIN: Duration = Duration::from_secs(15);

/// Why no precompiled artifact is available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    /// The agent has no CA certificate, so it could not verify an artifact.
    #[error("no cluster CA to verify precompiled artifacts with (the agent uses plain mqtt://)")]
    NoCa,
    /// The server said it cannot provide one.
    #[error("the server has no artifact: {0}")]
    Unavailable(String),
    /// No offer arrived in time.
    #[error("no artifact offer within {0:?}")]
    Timeout(Duration),
    /// The offer's signature is not the cluster CA's.
    #[error("refused a precompiled artifact: {0}")]
    Refused(#[from] VerifyError),
    /// Pulling the artifact blob failed.
    #[error("cannot fetch the artifact: {0}")]
    Fetch(#[from] FetchError),
}

type OfferKey = (String, String, String);

/// Requests waiting for their offer.
#[derive(Default)]
pub(super) struct Offers {
    waiting: std::sync::Mutex<HashMap<OfferKey, watch::Sender<Option<ArtifactOutcome>>>>,
}

fn key(request: &ArtifactRequest) -> OfferKey {
    (
        request.module_digest.clone(),
        request.target.clone(),
        request.wasmtime_version.clone(),
    )
}

impl Offers {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<OfferKey, watch::Sender<Option<ArtifactOutcome>>>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ModuleFetcher {
    /// Hands the server's offer to the fetch waiting for it (offers nobody asked for are
    /// dropped).
    pub fn deliver_offer(&self, offer: ArtifactOffer) {
        match self.inner.offers.lock().get(&key(&offer.request)) {
            Some(waiter) => {
                waiter.send_replace(Some(offer.outcome));
            }
            None => {
                tracing::debug!(module = %offer.request.module_digest, "artifact offer nobody waits for; dropped")
            }
        }
    }

    /// The path of a verified artifact of `module` for `engine`, pulled from the server.
    pub async fn fetch_artifact(
        &self,
        module: &ModuleRef,
        engine: &EngineInfo,
    ) -> Result<PathBuf, ArtifactError> {
        let ca = self.inner.artifact_ca.clone().ok_or(ArtifactError::NoCa)?;
        let request = ArtifactRequest {
            module_digest: module.digest.clone(),
            target: engine.target.clone(),
            wasmtime_version: engine.wasmtime_version.clone(),
        };
        let outcome = self.ask(&request).await;
        self.inner.offers.lock().remove(&key(&request));
        match outcome? {
            ArtifactOutcome::Ready {
                artifact,
                signature,
            } => {
                // Verify before downloading: an unsigned offer costs no bandwidth.
                verify(&ca, &request, &artifact.digest, &signature)?;
                Ok(self.fetch(&artifact).await?)
            }
            ArtifactOutcome::Unavailable(why) => Err(ArtifactError::Unavailable(why)),
        }
    }

    /// Sends the request (again every [`ASK_AGAIN`]) until an offer arrives.
    async fn ask(&self, request: &ArtifactRequest) -> Result<ArtifactOutcome, ArtifactError> {
        let mut offer = {
            let mut waiting = self.inner.offers.lock();
            waiting
                .entry(key(request))
                .or_insert_with(|| watch::channel(None).0)
                .subscribe()
        };
        let message = Message::ArtifactRequest(request.clone());
        let deadline = tokio::time::Instant::now() + OFFER_TIMEOUT;
        loop {
            if self.inner.uplink.session().connected
                && let Err(err) = self.inner.uplink.try_send(Up::BlobRequest, &message)
            {
                tracing::debug!(%err, "cannot ask for an artifact now; asking again later");
            }
            let wait =
                ASK_AGAIN.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let answered = tokio::select! {
                () = self.inner.shutdown.cancelled() => return Err(FetchError::ShuttingDown.into()),
                answered = tokio::time::timeout(wait, offer.wait_for(Option::is_some)) => answered,
            };
            match answered {
                Ok(Ok(outcome)) => {
                    return outcome.clone().ok_or(ArtifactError::Timeout(OFFER_TIMEOUT));
                }
                Ok(Err(_)) => return Err(FetchError::ShuttingDown.into()),
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(ArtifactError::Timeout(OFFER_TIMEOUT));
                }
                Err(_) => continue,
            }
        }
    }
}
