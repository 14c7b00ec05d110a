//! The `applearner` command line: [`cli`] says what it accepts, [`commands`] holds one
//! module per command; here are logging and the exit code.

mod cli;
mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, EXIT_FAILED};

fn main() -> ExitCode {
    bound_malloc_arenas();
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("APPLEARNER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: pod logs and CI keep plain text.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .init();
    match commands::execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// glibc gives each thread that allocates an arena of its own (up to 8 per core), and keeps
/// what a stage freed in it for the next. With rayon's and tokio's threads, a whole run of
/// `configs/bitbrains.yaml` on 57 days peaked at 1.33 GB, against 0.93 GB with two arenas and
/// the same time (BENCHMARKS.md). `MALLOC_ARENA_MAX` still wins where a user sets it.
fn bound_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first in main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
