//! `wasmfleet logs POD [-c C] [-f] [--tail N]`: copies the `log` subresource to stdout as
//! the chunks arrive, flushing each, so `-f` shows lines as the pod prints them.

use std::io::{ErrorKind, Write};

use futures::StreamExt as _;

use super::{Session, check_name};
use crate::args::LogsArgs;

/// Runs `logs`. A closed stdout (`| head`) ends it quietly.
pub async fn run(session: &Session, args: &LogsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = pod_log_path(&session.namespace, check_name(&args.pod)?);
    let stream = session.client.get_stream(&path, &query(args)).await?;
    futures::pin_mut!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        match out.write_all(&chunk).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::BrokenPipe => return Ok(()),
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Path of a pod's `log` subresource (a fixed core path, as kubectl uses it).
pub fn pod_log_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{name}/log")
}

/// The query parameters of the log request, as kubectl sends them.
pub fn query(args: &LogsArgs) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(container) = &args.container {
        query.push(("container", container.clone()));
    }
    if args.follow {
        query.push(("follow", "true".to_owned()));
    }
    if let Some(tail) = args.tail {
        query.push(("tailLines", tail.to_string()));
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_path_is_the_pods_subresource() {
        assert_eq!(
            pod_log_path("default", "p"),
            "/api/v1/namespaces/default/pods/p/log"
        );
    }

    #[test]
    fn only_given_options_become_query_parameters() {
        let mut args = LogsArgs {
            pod: "p".into(),
            container: None,
            follow: false,
            tail: None,
        };
        assert!(query(&args).is_empty());
        args.container = Some("main".into());
        args.follow = true;
        args.tail = Some(5);
        assert_eq!(
            query(&args),
            [
                ("container", "main".to_owned()),
                ("follow", "true".to_owned()),
                ("tailLines", "5".to_owned())
            ]
        );
    }
}
