//! ServiceAccount tokens projected into pods (`projected.sources[].serviceAccountToken`),
//! the kubelet's token manager on the server's side.
//!
//! The server resolves a pod's volumes into the pod's retained desired message
//! (`fleet::config`), so a token file reaches the node like a ConfigMap's. Each token is
//! bound to its pod (the `kubernetes.io` pod name and uid claims), so the API refuses it
//! once the pod is gone (`api::auth`).
//!
//! Re-planning a node must not re-sign its tokens: ECDSA signatures are randomized, so
//! every plan would change the pod's message and republish it. [`PodTokens`] keeps each
//! issued token by pod uid, volume, audience and lifetime, and hands the same one out until
//! its refresh time ([`refresh_at`]: 80% of its lifetime, at most 24 hours, as the
//! kubelet). The desired publisher wakes up for the earliest refresh
//! ([`PodTokens::next_refresh`]) and re-plans the nodes whose tokens are due
//! ([`PodTokens::nodes_due`]). A refreshed token reaches the agent only in a newer desired
//! revision, so a token is not replaced in a pass whose revision is the one it was issued at
//! (the node's Lease renewals move the revision on; the refresh is tried again shortly).
//!
//! The tokens are kept in memory only: a restarted server issues every pod a new token once
//! (and republishes those pods once); the old ones stay valid until they expire.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::ServiceAccountTokenProjection;
use serde_json::Value;

use super::service_account_tokens::{
    self as tokens, Claims, KubernetesClaim, ObjectRef, TokenError, TokenSigner,
};

/// Refresh a token after this share of its lifetime (percent), as the kubelet does.
const REFRESH_PERCENT: i64 = 80;
/// Refresh a token at least this often (seconds), as the kubelet does.
const MAX_AGE: i64 = 24 * 3600;
/// How soon a refresh that could not happen is tried again (seconds).
const RETRY: i64 = 10;

/// One token a pod's projected volume asks for, with Kubernetes' defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenProjection {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's uid.
    pub pod_uid: String,
    /// The node the pod is bound to.
    pub node: String,
    /// The ServiceAccount the pod runs as.
    pub account: String,
    /// The volume holding the token file.
    pub volume: String,
    /// Who the token is for: `audience`, or the API server ([`tokens::ISSUER`]).
    pub audience: String,
    /// Its lifetime: `expirationSeconds` (default an hour), at most the longest lifetime
    /// the server issues (the API server caps a kubelet's request the same way).
    pub seconds: i64,
}

impl TokenProjection {
    /// The token `source` asks for in `volume` of the pod (`namespace`, `pod`, `pod_uid`)
    /// bound to `node`, running as `account`.
    pub fn new(
        (namespace, pod, pod_uid): (&str, &str, &str),
        (node, account, volume): (&str, &str, &str),
        source: &ServiceAccountTokenProjection,
    ) -> Self {
        let audience = source
            .audience
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or(tokens::ISSUER);
        let seconds = source
            .expiration_seconds
            .unwrap_or(tokens::DEFAULT_EXPIRATION)
            .clamp(tokens::MIN_EXPIRATION, tokens::MAX_EXPIRATION);
        TokenProjection {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            pod_uid: pod_uid.to_owned(),
            node: node.to_owned(),
            account: account.to_owned(),
            volume: volume.to_owned(),
            audience: audience.to_owned(),
            seconds,
        }
    }
}

/// When a token issued at `iat` and expiring at `exp` is to be replaced: once 80% of its
/// lifetime has passed, and at least daily.
pub fn refresh_at(iat: i64, exp: i64) -> i64 {
    let lifetime = exp.saturating_sub(iat).max(0);
    iat.saturating_add((lifetime * REFRESH_PERCENT / 100).min(MAX_AGE))
}

/// What is kept of one issued token.
#[derive(Debug, Clone)]
struct Issued {
    token: String,
    node: String,
    account_uid: String,
    /// The desired revision of the pass that issued it.
    revision: u64,
    /// When it is to be replaced.
    refresh_at: i64,
    /// When the publisher is to re-plan its pod's node (its refresh time, or a retry).
    wake_at: i64,
}

/// Issued tokens by pod uid, volume, audience and lifetime.
type Held = HashMap<(String, String, String, i64), Issued>;

/// The tokens issued to pods, reused until their refresh time; see the module docs.
pub struct PodTokens {
    signer: Arc<TokenSigner>,
    /// Locked only inside one call, never across an await (the publisher's pass is async).
    issued: Mutex<Held>,
}

/// The tokens are secrets: never in logs.
impl std::fmt::Debug for PodTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodTokens").finish_non_exhaustive()
    }
}

/// Why a pod gets no token (the message its containers wait with).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodTokenError {
    /// The pod's ServiceAccount does not exist.
    #[error("failed to fetch token: serviceaccount \"{0}\" not found")]
    NoAccount(String),
    /// Signing failed.
    #[error("failed to fetch token: {0}")]
    Signing(#[from] TokenError),
}

impl PodTokens {
    /// Tokens signed by `signer`.
    pub fn new(signer: Arc<TokenSigner>) -> Self {
        PodTokens {
            signer,
            issued: Mutex::new(HashMap::new()),
        }
    }

    fn issued(&self) -> std::sync::MutexGuard<'_, Held> {
        // Every operation leaves the map consistent: a poisoned lock is still usable.
        self.issued.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The token for `projection` in a pass at `revision` and `now` (seconds): the one
    /// issued before while it is not due for refresh (nor issued for an account since
    /// deleted and created again), else a new one for `account` (its ServiceAccount,
    /// `None` when it does not exist). A token that cannot be refreshed (the account is
    /// gone, or the revision has not moved on) is kept and tried again shortly, as the
    /// kubelet keeps a token it fails to renew.
    pub fn token(
        &self,
        projection: &TokenProjection,
        account: Option<&Value>,
        (now, revision): (i64, u64),
    ) -> Result<String, PodTokenError> {
        let key = (
            projection.pod_uid.clone(),
            projection.volume.clone(),
            projection.audience.clone(),
            projection.seconds,
        );
        let account_uid = account.map(|a| a["metadata"]["uid"].as_str().unwrap_or_default());
        let mut issued = self.issued();
        if let Some(held) = issued.get_mut(&key) {
            let same_account = account_uid.is_none_or(|uid| uid == held.account_uid);
            let stuck = account.is_none() || held.revision >= revision;
            if same_account && now < held.refresh_at {
                return Ok(held.token.clone());
            }
            if stuck {
                held.wake_at = now + RETRY;
                return Ok(held.token.clone());
            }
        }
        let Some(account) = account else {
            return Err(PodTokenError::NoAccount(projection.account.clone()));
        };
        let claims = claims_for(projection, account, now);
        let token = self.signer.mint(&claims)?;
        let refresh_at = refresh_at(claims.iat, claims.exp);
        issued.insert(
            key,
            Issued {
                token: token.clone(),
                node: projection.node.clone(),
                account_uid: claims.kubernetes.serviceaccount.uid,
                revision,
                refresh_at,
                wake_at: refresh_at,
            },
        );
        Ok(token)
    }

    /// When the publisher is to wake up next (seconds since the epoch): the earliest
    /// refresh (or retry) of a held token.
    pub fn next_refresh(&self) -> Option<i64> {
        self.issued().values().map(|held| held.wake_at).min()
    }

    /// The nodes holding a token due for refresh at `now`, to re-plan. Each due token is
    /// looked at again after a retry interval at the latest, so a pass that does not
    /// reach it (its pod cannot be configured) costs no busy loop.
    pub fn nodes_due(&self, now: i64) -> BTreeSet<String> {
        let mut issued = self.issued();
        let due = issued.values_mut().filter(|held| held.wake_at <= now);
        due.map(|held| {
            held.wake_at = now + RETRY;
            held.node.clone()
        })
        .collect()
    }

    /// Forgets the tokens of `node`'s pods that are not in `pods` (uids): they left it.
    pub fn keep_only(&self, node: &str, pods: &BTreeSet<&str>) {
        self.issued()
            .retain(|(uid, ..), held| held.node != node || pods.contains(uid.as_str()));
    }
}

/// The claims of a token for `projection`, bound to its pod, issued at `now`.
fn claims_for(projection: &TokenProjection, account: &Value, now: i64) -> Claims {
    let kubernetes = KubernetesClaim {
        namespace: projection.namespace.clone(),
        serviceaccount: ObjectRef {
            name: projection.account.clone(),
            uid: account["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        },
        pod: Some(ObjectRef {
            name: projection.pod.clone(),
            uid: projection.pod_uid.clone(),
        }),
    };
    let audiences = vec![projection.audience.clone()];
    Claims::new(kubernetes, audiences, now, projection.seconds)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn projection(source: ServiceAccountTokenProjection) -> TokenProjection {
        TokenProjection::new(
            ("shop", "web-1", "pod-1"),
            ("pi-1", "robot", "tok"),
            &source,
        )
    }

    fn tokens() -> PodTokens {
        let key = TokenSigner::generate().unwrap();
        PodTokens::new(Arc::new(TokenSigner::from_pkcs8(&key).unwrap()))
    }

    fn account(uid: &str) -> Value {
        json!({"metadata": {"name": "robot", "namespace": "shop", "uid": uid}})
    }

    #[test]
    fn a_projection_defaults_to_the_api_audience_and_an_hour() {
        let plain = projection(ServiceAccountTokenProjection {
            path: "token".into(),
            ..Default::default()
        });
        assert_eq!(
            (plain.audience.as_str(), plain.seconds),
            (tokens::ISSUER, 3600)
        );
        let asked = projection(ServiceAccountTokenProjection {
            path: "token".into(),
            audience: Some("vault".into()),
            expiration_seconds: Some(7200),
        });
        assert_eq!((asked.audience.as_str(), asked.seconds), ("vault", 7200));
        let long = projection(ServiceAccountTokenProjection {
            expiration_seconds: Some(1 << 31),
            ..Default::default()
        });
        assert_eq!(long.seconds, tokens::MAX_EXPIRATION);
    }

    #[test]
    fn a_token_is_refreshed_after_80_percent_of_its_life_and_at_least_daily() {
        assert_eq!(refresh_at(1000, 4600), 1000 + 2880);
        assert_eq!(refresh_at(1000, 1600), 1000 + 480);
        assert_eq!(refresh_at(0, 48 * 3600), 24 * 3600);
    }

    #[test]
    fn the_same_token_is_handed_out_until_its_refresh_time() {
        let tokens = tokens();
        let projection = projection(ServiceAccountTokenProjection {
            path: "token".into(),
            expiration_seconds: Some(600),
            ..Default::default()
        });
        let sa = account("sa-1");
        let first = tokens.token(&projection, Some(&sa), (1000, 5)).unwrap();
        let again = tokens.token(&projection, Some(&sa), (1479, 9)).unwrap();
        assert_eq!(first, again, "re-planning reuses the token");
        assert_eq!(tokens.next_refresh(), Some(1480));
        assert!(tokens.nodes_due(1479).is_empty());
        assert_eq!(tokens.nodes_due(1480), BTreeSet::from(["pi-1".to_owned()]));
        assert_eq!(tokens.next_refresh(), Some(1480 + RETRY), "no busy loop");
        let refreshed = tokens.token(&projection, Some(&sa), (1480, 10)).unwrap();
        assert_ne!(first, refreshed);
        assert_eq!(tokens.next_refresh(), Some(1480 + 480));
        let claims = tokens
            .signer
            .verify(&refreshed, tokens::ISSUER, 1481)
            .unwrap();
        assert_eq!((claims.iat, claims.exp), (1480, 2080));
        let pod = claims.kubernetes.pod.unwrap();
        assert_eq!((pod.name.as_str(), pod.uid.as_str()), ("web-1", "pod-1"));
        assert_eq!(claims.sub, "system:serviceaccount:shop:robot");
    }

    #[test]
    fn a_refresh_waits_for_a_newer_revision_and_for_the_account() {
        let tokens = tokens();
        let projection = projection(ServiceAccountTokenProjection::default());
        let sa = account("sa-1");
        let first = tokens.token(&projection, Some(&sa), (0, 5)).unwrap();
        // Due, but the revision has not moved on: the agent would not take a new one.
        assert_eq!(
            tokens.token(&projection, Some(&sa), (2880, 5)),
            Ok(first.clone())
        );
        assert_eq!(tokens.next_refresh(), Some(2880 + RETRY));
        // Due, and the account is gone: the old token stays (the API refuses it anyway).
        assert_eq!(
            tokens.token(&projection, None, (2900, 6)),
            Ok(first.clone())
        );
        // A new account of the same name gets a token at once.
        let renewed = tokens.token(&projection, Some(&account("sa-2")), (2901, 7));
        assert!(renewed.is_ok_and(|t| t != first));
        // A pod whose account never existed gets none.
        let other = TokenProjection {
            pod_uid: "pod-2".into(),
            ..projection
        };
        assert_eq!(
            tokens
                .token(&other, None, (3000, 8))
                .unwrap_err()
                .to_string(),
            "failed to fetch token: serviceaccount \"robot\" not found"
        );
    }

    #[test]
    fn tokens_of_pods_that_left_the_node_are_forgotten() {
        let tokens = tokens();
        let sa = account("sa-1");
        let projection = projection(ServiceAccountTokenProjection::default());
        tokens.token(&projection, Some(&sa), (0, 1)).unwrap();
        tokens.keep_only("pi-2", &BTreeSet::new());
        assert!(tokens.next_refresh().is_some(), "another node's pods stay");
        tokens.keep_only("pi-1", &BTreeSet::from(["pod-1"]));
        assert!(tokens.next_refresh().is_some());
        tokens.keep_only("pi-1", &BTreeSet::new());
        assert_eq!(tokens.next_refresh(), None);
    }
}
