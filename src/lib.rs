//! secops: hands Kubernetes bootstrap Secrets over to Vault exactly once and keeps Vault the
//! single authority (RFC-SECOPS-0001). The outside is fixed by `CONTRACT.md`; this crate is
//! laid out as an I/O-free `domain`, two thin adapters (`vault`, `kube`) and one module per
//! step command.

pub mod cli;
pub mod commands;
pub mod domain;
pub mod error;
pub mod kube;
pub mod logging;
pub mod output;
pub mod retry;
pub mod secret;
pub mod vault;

use std::process::ExitCode;

use clap::Parser as _;

/// Parse, run, print the result, and pick the exit code; nothing else exits the process.
pub fn main_entry() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                error::exit::USAGE as u8
            } else {
                0
            });
        }
    };
    logging::init(cli.output.log_format);
    // One TLS backend for both clients: ring (kube's default); vaultrs is built without a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let command = cli.command.name();
    let output_dir = cli.output.output_dir.clone();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let report = output::Report::failure(
                command,
                &error::Error::Internal(format!("cannot start the async runtime: {error}")),
            );
            output::print(&report);
            return ExitCode::from(report.exit_code as u8);
        }
    };
    let mut report = runtime
        .block_on(commands::run(cli))
        .unwrap_or_else(|error| {
            tracing::error!(%error, exit_code = error.exit_code(), "{command} failed");
            output::Report::failure(command, &error)
        });
    if let Some(dir) = output_dir {
        if let Err(error) = output::write_output_dir(&dir, &report) {
            tracing::error!(%error, "cannot write the output directory");
            report = output::Report::failure(command, &error);
        }
    }
    output::print(&report);
    ExitCode::from(report.exit_code as u8)
}
