//! The open-files limit: every hollow agent holds one socket, so 10,000 agents need more
//! than the usual soft limit of 1,024.

/// File descriptors the process needs besides the agents' sockets.
const SPARE: u64 = 256;

/// Why the simulator cannot hold `agents` connections.
#[derive(Debug, thiserror::Error)]
#[error(
    "{agents} agents need about {needed} open files, but the hard limit is {hard}: raise it \
     (ulimit -Hn, or LimitNOFILE= for a systemd unit) or run fewer agents"
)]
pub struct TooFewFiles {
    agents: u64,
    needed: u64,
    hard: u64,
}

/// Raises the soft open-files limit to what `agents` connections need (up to the hard
/// limit); fails when the hard limit is too low.
#[cfg(unix)]
#[allow(unsafe_code)] // getrlimit/setrlimit on a local struct; see the SAFETY notes
pub fn raise_open_files(agents: u64) -> Result<(), TooFewFiles> {
    let needed = agents + SPARE;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, exclusively borrowed rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!("cannot read the open-files limit; leaving it as it is");
        return Ok(());
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 here, not on every target
    let (soft, hard) = (limit.rlim_cur as u64, limit.rlim_max as u64);
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        return Err(TooFewFiles {
            agents,
            needed,
            hard,
        });
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above; the new soft limit does not exceed the hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        tracing::warn!(soft, needed, "cannot raise the open-files limit");
    }
    Ok(())
}

/// Elsewhere the limit is left alone.
#[cfg(not(unix))]
pub fn raise_open_files(_agents: u64) -> Result<(), TooFewFiles> {
    Ok(())
}
