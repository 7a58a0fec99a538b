//! Command-line syntax of the repository commands (`atrest backup list|verify-chain|restore|
//! prune|replicate`, flattened into `atrest backup`) and their time arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Backup repository operations.
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// List a tenant's backups in a repository (authentic catalog entries, oldest first).
    List {
        /// The repository.
        #[command(flatten)]
        repo: RepoArgs,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Verify a tenant's catalog and every stream it keeps; name each problem (exit 3 if any).
    VerifyChain {
        /// The repository.
        #[command(flatten)]
        repo: RepoArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup and the chain it needs, in apply order (full, then incrementals); each
    /// stream is authenticated whole before any of its bytes are released.
    Restore {
        /// The repository.
        #[command(flatten)]
        repo: RepoArgs,
        /// The snapshot to restore.
        #[arg(long, value_name = "ID", required_unless_present = "at", conflicts_with = "at")]
        snapshot: Option<String>,
        /// Restore the newest backup created at or before TIME (RFC 3339 or unix seconds).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        at: Option<u64>,
        /// Write one file per stream into DIR (NNN-<snapshot>.out; never over an existing file).
        #[arg(long, short, value_name = "DIR", required_unless_present = "exec", conflicts_with = "exec")]
        output: Option<PathBuf>,
        /// Run `sh -c CMD` once per stream with its plaintext on stdin (ATREST_SNAPSHOT,
        /// ATREST_KIND, ATREST_SEQUENCE set); a non-zero exit stops the restore.
        #[arg(long, value_name = "CMD")]
        exec: Option<String>,
        /// Print one JSON line per stream restored.
        #[arg(long)]
        json: bool,
    },
    /// Remove a tenant's backups older than a window, keeping every backup a kept one needs.
    Prune {
        /// The repository.
        #[command(flatten)]
        repo: RepoArgs,
        /// The window: 7d, 36h, 90m (backups created earlier are removed unless needed).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        keep_within: u64,
        /// The time the window ends (RFC 3339 or unix seconds; default: now).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        now: Option<u64>,
        /// Report what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove streams no entry names (interrupted backups). Only while no backup of
        /// the tenant is running.
        #[arg(long)]
        remove_orphans: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy a tenant's backups that another repository lacks, then verify it there.
    Replicate {
        /// The source repository.
        #[command(flatten)]
        repo: RepoArgs,
        /// The destination repository (a directory or s3://bucket/prefix).
        #[arg(long, value_name = "LOCATION")]
        to: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A repository and a tenant in it.
#[derive(Debug, Args)]
pub struct RepoArgs {
    /// The repository: a directory or s3://bucket/prefix.
    #[arg(long, env = "ATREST_REPO", value_name = "LOCATION")]
    pub repo: String,
    /// Tenant id.
    #[arg(long, value_name = "ID")]
    pub tenant: String,
}

/// Parses a time: unix seconds or RFC 3339 (`2026-11-27T14:00:00Z`).
pub fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| format!("'{s}' is not a time (unix seconds or RFC 3339, e.g. 2026-11-27T14:00:00Z)"))
}

/// Parses a duration in seconds: `7d`, `36h`, `90m`, `1w 2d`.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    humantime::parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|e| format!("'{s}' is not a duration (e.g. 7d, 36h): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1795737600"), Ok(1_795_737_600));
        assert_eq!(parse_time("2026-11-27T00:00:00Z"), Ok(1_795_737_600));
        assert_eq!(parse_time("2026-11-27T01:30:00Z"), Ok(1_795_743_000));
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration("7d"), Ok(7 * 86400));
        assert_eq!(parse_duration("36h"), Ok(36 * 3600));
        assert!(parse_duration("7").is_err());
    }
}
