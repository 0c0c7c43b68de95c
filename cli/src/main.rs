//! `wasmfleet`: parses the command line and hands it to [`wasmfleet_cli::run`].
//!
//! Exit codes: 0 on success, 1 when the command failed (the reason is on stderr),
//! 2 for usage errors (from clap).

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = wasmfleet_cli::args::Cli::parse();
    let env = wasmfleet_cli::Environment::from_process();
    let mut out = std::io::stdout().lock();
    let result = wasmfleet_cli::run(cli, &env, &mut out).await;
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(report) = wasmfleet_cli::error_report(&err) {
                eprintln!("{report}");
            }
            ExitCode::FAILURE
        }
    }
}
