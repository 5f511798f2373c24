//! `rowlock hammer`: the load tool that proves no update was lost.

use std::process::ExitCode;

use clap::Args;

/// Options of `rowlock hammer`.
#[derive(Debug, Clone, Args)]
pub struct HammerArgs {
    /// Base URL of the rowlock to hammer.
    #[arg(long, env = "ROWLOCK_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
}

/// Runs the load and the verification.
pub async fn run(_args: HammerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("hammer is not built yet")
}
