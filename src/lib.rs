//! secops: hands Kubernetes bootstrap Secrets over to Vault exactly once and keeps Vault the
//! single authority (RFC-SECOPS-0001). The outside is described in `docs/contract.md`; this
//! crate is laid out as an I/O-free `domain`, two thin adapters (`vault`, `kube`) and one
//! module per step command.

#![forbid(unsafe_code)]

pub mod audit;
pub mod cli;
pub mod clock;
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

use crate::error::{Error, ExitStatus};
use crate::output::Report;

/// Parse, validate, connect and run, print the result, and pick the exit code; nothing else
/// exits the process.
pub fn main_entry() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            let status = if error.use_stderr() {
                ExitStatus::Usage
            } else {
                ExitStatus::Ok // --help, --version
            };
            return ExitCode::from(status.code());
        }
    };
    logging::init(cli.output.log_format);
    let command = cli.command.name();
    let mut report = run(&cli).unwrap_or_else(|error| {
        tracing::error!(%error, exit_code = error.exit_status().code(), "{command} failed");
        Report::failure(command, &error)
    });
    if let Some(dir) = &cli.output.output_dir {
        if let Err(error) = output::write_output_dir(dir, &report) {
            tracing::error!(%error, "cannot write the output directory");
            report = Report::failure(command, &error);
        }
    }
    output::print(&report);
    ExitCode::from(report.status.code())
}

fn run(cli: &cli::Cli) -> Result<Report, Error> {
    // Every usage error is found here, before a runtime or a client exists.
    let mut invocation = cli.validate()?;
    let rotation_id = match &invocation.command {
        commands::CommandPlan::Rotate(plan) => Some(plan.rotation_id.clone()),
        _ => None,
    };
    audit::start(
        cli.command.name(),
        &invocation.vault.login,
        rotation_id,
        invocation.audit_file.take(),
    );
    // One TLS backend for both clients: ring (kube's default); vaultrs is built without a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Error::Internal(format!("cannot start the async runtime: {error}")))?;
    runtime.block_on(commands::run(invocation))
}
