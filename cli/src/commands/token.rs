//! `wasmfleet token create|list|delete`: join tokens for new nodes, limited in time and
//! uses (like `kubeadm token` and `k3s token`), revoked by deleting them.
//!
//! `create` prints the token (the only time it is shown); an agent joins with it through
//! `--token`. `list` shows every token's id, time left, uses and description.

use std::io::Write;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::{Session, check_name};
use crate::args::{TokenArgs, TokenCommand, TokenCreateArgs};
use crate::output::age::human_duration;
use crate::output::table::Table;

const TOKENS_PATH: &str = "/apis/wasmfleet.dev/v1/jointokens";

/// Why a token command could not start.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// `--ttl` is not a duration.
    #[error("invalid --ttl {0:?}: expected a duration such as 30m, 2h or 7d, or 0 for never")]
    BadTtl(String),
}

/// Runs `wasmfleet token ...`.
pub async fn run(session: &Session, args: &TokenArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.command {
        TokenCommand::Create(create) => {
            let created = session
                .client
                .post(TOKENS_PATH, &create_body(create)?)
                .await?;
            let token = created["status"]["token"].as_str().unwrap_or_default();
            writeln!(out, "{token}")?;
        }
        TokenCommand::List => {
            let list = session.client.get(TOKENS_PATH).await?;
            let items = list["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            write!(out, "{}", table(items, Timestamp::now()).render())?;
        }
        TokenCommand::Delete { id } => {
            let path = format!("{TOKENS_PATH}/{}", check_name(id)?);
            session.client.delete(&path).await?;
            writeln!(out, "join token \"{id}\" deleted")?;
        }
    }
    Ok(())
}

/// The request body of `create`.
pub fn create_body(args: &TokenCreateArgs) -> Result<Value, TokenError> {
    let mut spec = json!({"description": args.description});
    if let Some(ttl) = &args.ttl {
        spec["ttlSeconds"] = parse_ttl(ttl)?.into();
    }
    if let Some(uses) = args.uses {
        spec["usages"] = uses.into();
    }
    Ok(json!({"apiVersion": "wasmfleet.dev/v1", "kind": "JoinToken", "spec": spec}))
}

/// `30m`, `2h`, `7d`, `1h30m` or `0` (never expires), in whole seconds.
pub fn parse_ttl(text: &str) -> Result<u64, TokenError> {
    let bad = || TokenError::BadTtl(text.to_owned());
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(0);
    }
    let duration = match trimmed.strip_suffix('d') {
        Some(days) => days
            .parse::<i64>()
            .ok()
            .and_then(|d| d.checked_mul(86_400))
            .map(SignedDuration::from_secs),
        None => trimmed.parse::<SignedDuration>().ok(),
    };
    duration
        .filter(|d| d.is_positive())
        .and_then(|d| u64::try_from(d.as_secs()).ok())
        .filter(|secs| *secs > 0)
        .ok_or_else(bad)
}

/// `ID  TTL  USES  DESCRIPTION`, like `kubeadm token list`.
pub fn table(items: &[Value], now: Timestamp) -> Table {
    let mut table = Table::new(&["ID", "TTL", "USES", "DESCRIPTION"]);
    for token in items {
        table.rows.push(vec![
            token["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            time_left(token, now),
            uses(token),
            token["spec"]["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ]);
    }
    table
}

fn time_left(token: &Value, now: Timestamp) -> String {
    let Some(expiration) = token["spec"]["expiration"].as_str() else {
        return "<forever>".to_owned();
    };
    match expiration.parse::<Timestamp>() {
        Ok(at) if at > now => human_duration(now.duration_until(at).as_secs()),
        Ok(_) => "<expired>".to_owned(),
        Err(_) => "<invalid>".to_owned(),
    }
}

fn uses(token: &Value) -> String {
    let used = token["status"]["used"].as_u64().unwrap_or(0);
    match token["spec"]["usages"].as_u64() {
        Some(max) => format!("{used}/{max}"),
        None => format!("{used}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_like_kubeadm_and_k3s_write_them() {
        assert_eq!(parse_ttl("30m").ok(), Some(1800));
        assert_eq!(parse_ttl("2h").ok(), Some(7200));
        assert_eq!(parse_ttl("1h30m").ok(), Some(5400));
        assert_eq!(parse_ttl("7d").ok(), Some(7 * 86_400));
        assert_eq!(parse_ttl("0").ok(), Some(0));
        for bad in ["", "soon", "-1h", "0s", "1x"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_list_shows_time_left_and_uses() {
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().expect("time");
        let items = [
            json!({"metadata": {"name": "abcdef"}, "spec": {"description": "barn", "expiration": "2026-12-06T14:00:00Z", "usages": 3}, "status": {"used": 1}}),
            json!({"metadata": {"name": "ghijkl"}, "spec": {"description": ""}, "status": {"used": 5}}),
            json!({"metadata": {"name": "mnopqr"}, "spec": {"expiration": "2026-12-06T11:00:00Z"}, "status": {"used": 0}}),
        ];
        let rendered = table(&items, now).render();
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["ID", "TTL", "USES", "DESCRIPTION"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["abcdef", "120m", "1/3", "barn"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["ghijkl", "<forever>", "5"]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["mnopqr", "<expired>", "0"]
        );
    }
}
