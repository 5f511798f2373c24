//! The `rowlock` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use rowlock::cli::{Cli, Command};
use rowlock::startup::{self, Application};

fn main() -> ExitCode {
    let cli = Cli::parse();
    rowlock::telemetry::init();
    let outcome = match cli.command {
        Command::Serve(args) => actix_web::rt::System::new()
            .block_on(async { Application::build(args).await?.run_until_stopped().await })
            .map(|()| ExitCode::SUCCESS),
        Command::Migrate(args) => runtime().and_then(|rt| {
            rt.block_on(async {
                let (url, cluster) = startup::resolve_database(&args).await?;
                let applied = startup::migrate(&url).await?;
                println!("applied {applied} migration(s)");
                if let Some(cluster) = cluster {
                    tokio::task::spawn_blocking(move || cluster.stop()).await?;
                }
                Ok(ExitCode::SUCCESS)
            })
        }),
        Command::Hammer(args) => runtime().and_then(|rt| rt.block_on(rowlock::hammer::run(args))),
        Command::Bench(args) => runtime().and_then(|rt| rt.block_on(rowlock::bench::run(args))),
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("rowlock: {e:#}");
        ExitCode::FAILURE
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
