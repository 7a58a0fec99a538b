//! `atrest`: manage keyrings and tenant keys, and encrypt, decrypt, verify and rewrap backup
//! streams from the command line.
//!
//! Exit status: 0 on success, 1 on failure, 2 on a usage error, 3 when data or a key does not
//! authenticate (tampered, truncated or mismatched input), 4 for an authentic backup of
//! another context, a producer's status in producer mode, 128 + n for signal n (130 for
//! SIGINT, 141 when stdout is a closed pipe). Every failure prints one line,
//! `atrest: error: ...`, on stderr. With `-o FILE` the output appears only on success.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

/// `println!` that ends the process quietly with status 141 (128 + SIGPIPE) when stdout is a
/// closed pipe (`atrest ... | head`), instead of panicking.
macro_rules! println {
    ($($t:tt)*) => { $crate::failure::say(format_args!($($t)*)) };
}

mod args;
mod audit;
mod commands;
mod failure;
mod keys;
mod producer;
mod repo_args;
mod stream;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::args::{Cli, Command};
use crate::failure::Failure;

fn run(cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Keygen { out } => commands::keyring::keygen(out),
        Command::Keyring { command } => commands::keyring::keyring(&cli.keys, command),
        Command::Tenant { command } => commands::keyring::tenant(&cli.keys, command),
        Command::Backup { command } => commands::backup::run(&cli.keys, command),
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    stream::delete_temporary_files_on_interrupt();
    if let Some(dest) = audit::destination(cli.keys.audit_log.as_ref())
        && let Err(f) = audit::AuditLog::open(&dest, audit::command_words(&matches)).and_then(audit::AuditLog::install)
    {
        eprintln!("atrest: error: {f}");
        return f.exit_code();
    }
    // Everything `run` owns (temporary output files in particular) is dropped before exiting.
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout pipe (`| head`) ends the command quietly, as for other tools.
        Err(f) if f.is_broken_pipe() => ExitCode::from(failure::BROKEN_PIPE_STATUS),
        Err(f) => {
            eprintln!("atrest: error: {f}");
            f.exit_code()
        }
    }
}
