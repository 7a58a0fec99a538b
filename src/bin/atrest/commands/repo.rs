//! `atrest backup encrypt --repo`, `list`, `verify-chain`, `restore`, `prune`, `replicate`:
//! a thin shell over [`atrest::Repository`].

use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use atrest::{
    BackupContext, BackupError, BackupKind, BackupOptions, CatalogEntry, RepoError, RepoLocation, Repository,
    RestorePoint, Tenant,
};
use serde_json::json;

use super::summary;
use crate::args::{IoArgs, KeyArgs, RepoArgs, RepoCommand};
use crate::failure::{Doing, Failure};
use crate::keys;
use crate::producer::Producer;
use crate::stream::{Counting, Input, Output, Progress};

/// `ctx` with the sequence the tenant's chain in `repo` needs: 0 for a full backup, its
/// parent's plus one for an incremental (the newest entry of the parent snapshot). A
/// `--sequence` given must be that number, and an incremental's parent must be stored.
fn chain_context(
    repo: &Repository,
    tenant: &Tenant,
    ctx: &BackupContext,
    a: &EncryptArgs<'_>,
) -> Result<BackupContext, Failure> {
    let snapshot = ctx.snapshot_id();
    let needed = match (ctx.kind(), ctx.parent()) {
        (BackupKind::Incremental, Some(parent)) => {
            let entries = repo.list(tenant).doing(|| format!("reading the catalog of {}", a.location))?;
            let Some(p) = entries.iter().rev().find(|e| e.snapshot_id == parent) else {
                return Err(Failure::general(format!(
                    "the parent snapshot '{parent}' of '{snapshot}' is not in {} for tenant {}: store it first (an incremental without its parent cannot be restored)",
                    a.location,
                    tenant.id()
                )));
            };
            p.sequence.saturating_add(1)
        }
        // An incremental without a parent is refused when the stream is written.
        (BackupKind::Incremental, None) => return Ok(ctx.clone()),
        _ => 0,
    };
    match a.sequence {
        Some(s) if s != needed => Err(Failure::usage(format!(
            "--sequence {s} would break the chain: '{snapshot}' needs sequence {needed} in {}; leave --sequence out to have it set",
            a.location
        ))),
        _ => Ok(BackupContext::new(snapshot, ctx.parent(), ctx.kind(), needed)),
    }
}

/// Opens the repository at `location`.
fn open(location: &str) -> Result<Repository, Failure> {
    let loc = RepoLocation::parse(location).doing(|| format!("repository {location}"))?;
    Repository::open(&loc).doing(|| format!("opening the repository {location}"))
}

/// The repository and the tenant the flags name.
fn open_with_tenant(keys_args: &KeyArgs, r: &RepoArgs) -> Result<(Repository, Tenant), Failure> {
    let repo = open(&r.repo)?;
    let k = keys::keyring(keys_args)?;
    let t = k.tenant(&r.tenant).doing(|| format!("tenant '{}'", r.tenant))?;
    Ok((repo, t))
}

/// What `backup encrypt --repo` needs besides the tenant and context.
pub struct EncryptArgs<'a> {
    pub location: &'a str,
    /// The `--sequence` given, if any (else the chain's is used).
    pub sequence: Option<u64>,
    pub opts: BackupOptions,
    pub io: &'a IoArgs,
    pub producer: &'a [String],
    pub allow_empty: bool,
    pub json: bool,
}

/// `atrest backup encrypt --repo L`: the stream goes into the repository as it is encrypted;
/// the entry is appended only if the producer exited 0 and the input was not empty.
pub fn encrypt(tenant: &Tenant, ctx: &BackupContext, a: &EncryptArgs<'_>) -> Result<(), Failure> {
    let repo = open(a.location)?;
    // Before the producer runs: an entry that breaks its chain could never be taken back.
    let ctx = &chain_context(&repo, tenant, ctx, a)?;
    let mut child = Producer::spawn(a.producer)?;
    let input = match child.as_mut() {
        Some(p) => p.input()?,
        None => Input::open(a.io.input.as_deref())?,
    };
    let in_name = input.name.clone();
    let total = input.len;
    let mut src = Counting::new(input, Progress::new("encrypting", total));
    let mut refusal: Option<Failure> = None;
    let stored = repo.store_backup_if(tenant, ctx, a.opts, &mut src, |n| {
        if let Some(p) = child.take()
            && let Err(f) = p.wait()
        {
            refusal = Some(f);
            return false;
        }
        if n == 0 && !a.allow_empty {
            refusal = Some(Failure::general(format!(
                "{in_name} was empty: refusing to store an empty backup (a failed dump is often empty; pass --allow-empty if it is meant to be)"
            )));
            return false;
        }
        true
    });
    let read_failed = src.failed();
    src.finish();
    // A producer that failed makes the backup fail, whatever happened to the stream.
    if let Some(p) = child {
        p.wait()?;
    }
    let stored = match stored {
        Ok(s) => s,
        Err(_) if refusal.is_some() => return Err(refusal.unwrap_or_else(|| Failure::general("refused"))),
        Err(RepoError::Backup(BackupError::Io(e))) if read_failed => {
            return Err(e).doing(|| format!("reading {in_name}"));
        }
        Err(e) => return Err(e).doing(|| format!("storing the backup in {}", a.location)),
    };
    let e = &stored.entry;
    let mut v = summary::backup("encrypt", a.location, None, tenant.id().as_str(), ctx, stored.plaintext_bytes);
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("repo".into(), a.location.into());
        m.insert("index".into(), e.index.into());
        m.insert("object".into(), e.object.clone().into());
        m.insert("stream_bytes".into(), e.size.into());
        m.insert("entry_hash".into(), e.entry_hash.clone().into());
        m.insert("created".into(), e.created.into());
    }
    summary::emit(&v, a.json, false);
    Ok(())
}

/// `atrest backup list|verify-chain|restore|prune|replicate`.
pub fn run(keys_args: &KeyArgs, cmd: &RepoCommand) -> Result<(), Failure> {
    match cmd {
        RepoCommand::List { repo, json } => {
            let (r, t) = open_with_tenant(keys_args, repo)?;
            let entries = r.list(&t).doing(|| format!("listing {}", r.name()))?;
            if *json {
                println!("{}", serde_json::to_string(&entries).doing(|| "formatting the list".into())?);
            } else {
                for e in &entries {
                    println!("{}", line(e));
                }
            }
            Ok(())
        }
        RepoCommand::VerifyChain { repo, json } => {
            let (r, t) = open_with_tenant(keys_args, repo)?;
            let report = r.verify_chain(&t).doing(|| format!("verifying {}", r.name()))?;
            if *json {
                println!("{}", serde_json::to_string(&report).doing(|| "formatting the report".into())?);
            } else {
                for p in &report.problems {
                    println!("{}: {p}", r.name());
                }
                println!(
                    "{}: tenant {}: {} entries, {} streams verified ({} bytes), head {}",
                    r.name(),
                    report.tenant,
                    report.entries,
                    report.streams_verified,
                    report.bytes_verified,
                    report.head.as_deref().map_or("none".into(), |h| format!("{} {h}", report.head_index.unwrap_or(0)))
                );
            }
            problems_fail(&report)
        }
        RepoCommand::Restore { repo, snapshot, at, output, exec, json } => {
            let (r, t) = open_with_tenant(keys_args, repo)?;
            let point = match (snapshot, at) {
                (Some(s), _) => RestorePoint::Snapshot(s.clone()),
                (None, Some(t)) => RestorePoint::At(*t),
                (None, None) => return Err(Failure::usage("restore needs --snapshot or --at")),
            };
            if let Some(dir) = output {
                std::fs::create_dir_all(dir).doing(|| format!("creating {}", dir.display()))?;
            }
            let mut n = 0usize;
            r.restore(&t, &point, |e, plain| {
                n += 1;
                let bytes = match (output, exec) {
                    (Some(dir), _) => to_file(dir, n, e, plain)?,
                    (None, Some(cmd)) => to_command(cmd, e, plain)?,
                    (None, None) => return Err(io::Error::other("no destination")),
                };
                let v = json!({"command": "restore", "file": r.name(), "snapshot_id": e.snapshot_id, "kind": e.kind,
                    "sequence": e.sequence, "index": e.index, "plaintext_bytes": bytes});
                summary::emit(&v, *json, false);
                Ok(())
            })
            .doing(|| format!("restoring from {}", r.name()))?;
            Ok(())
        }
        RepoCommand::Prune { repo, keep_within, now, dry_run, remove_orphans, json } => {
            let (r, t) = open_with_tenant(keys_args, repo)?;
            let now = match now {
                Some(n) => *n,
                None => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            };
            let report = r.prune(&t, *keep_within, now, *dry_run).doing(|| format!("pruning {}", r.name()))?;
            let orphans = if *remove_orphans && !*dry_run {
                r.remove_orphans(&t).doing(|| format!("removing orphans in {}", r.name()))?
            } else {
                Vec::new()
            };
            if *json {
                let mut v = serde_json::to_value(&report).doing(|| "formatting the report".into())?;
                if let serde_json::Value::Object(m) = &mut v {
                    m.insert("orphans_removed".into(), orphans.into());
                }
                println!("{v}");
            } else {
                let verb = if *dry_run { "would remove" } else { "removed" };
                for e in &report.removed {
                    println!("{verb} {}", line(e));
                }
                println!(
                    "{}: {verb} {} backups, kept {} (from entry {}), cutoff {}",
                    r.name(),
                    report.removed.len(),
                    report.kept.len(),
                    report.first_kept,
                    time(report.cutoff)
                );
                for o in &orphans {
                    println!("removed orphan {o}");
                }
            }
            Ok(())
        }
        RepoCommand::Replicate { repo, to, json } => {
            let (r, t) = open_with_tenant(keys_args, repo)?;
            let dest = open(to)?;
            let report = r.replicate(&t, &dest).doing(|| format!("replicating {} to {to}", r.name()))?;
            if *json {
                println!("{}", serde_json::to_string(&report).doing(|| "formatting the report".into())?);
            } else {
                for p in &report.verify.problems {
                    println!("{to}: {p}");
                }
                println!(
                    "{} -> {to}: copied {} objects ({} bytes), removed {} pruned, {} streams verified there",
                    r.name(),
                    report.copied,
                    report.bytes,
                    report.removed,
                    report.verify.streams_verified
                );
            }
            problems_fail(&report.verify)
        }
    }
}

/// Exit 3 when a verification found problems other than warnings.
fn problems_fail(report: &atrest::ChainReport) -> Result<(), Failure> {
    let bad = report.problems.iter().filter(|p| !p.is_warning()).count();
    if bad == 0 {
        return Ok(());
    }
    Err(Failure::authentication(format!("tenant {}: {bad} problem(s) found (listed above)", report.tenant)))
}

/// One backup as a line of text.
fn line(e: &CatalogEntry) -> String {
    format!(
        "{:>6}  {}  {:<11}  {:>4}  {}  {}  {} bytes",
        e.index,
        time(e.created),
        e.kind.name(),
        e.sequence,
        e.snapshot_id,
        e.parent.as_deref().unwrap_or("-"),
        e.size
    )
}

/// Unix seconds as RFC 3339 (UTC).
fn time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// Writes one restored stream to `DIR/NNN-<snapshot>.out`, never over an existing file.
fn to_file(dir: &Path, n: usize, e: &CatalogEntry, plain: &mut dyn Read) -> io::Result<u64> {
    let safe: String =
        e.snapshot_id.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    let path = dir.join(format!("{n:03}-{safe}.out"));
    let mut out = Output::create(Some(&path), false).map_err(|f| io::Error::other(f.to_string()))?;
    let bytes = io::copy(plain, &mut out)?;
    out.commit().map_err(|f| io::Error::other(f.to_string()))?;
    Ok(bytes)
}

/// Runs `sh -c CMD` with the stream's plaintext on its stdin; a non-zero exit is an error.
fn to_command(cmd: &str, e: &CatalogEntry, plain: &mut dyn Read) -> io::Result<u64> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("ATREST_SNAPSHOT", &e.snapshot_id)
        .env("ATREST_KIND", e.kind.name())
        .env("ATREST_SEQUENCE", e.sequence.to_string())
        .stdin(Stdio::piped())
        .spawn()?;
    let copied = match child.stdin.take() {
        Some(mut stdin) => io::copy(plain, &mut stdin),
        None => Err(io::Error::other("the command has no stdin")),
    };
    let status = child.wait()?;
    if !status.success() {
        let how =
            status.code().map_or_else(|| "was killed by a signal".to_owned(), |c| format!("exited with status {c}"));
        return Err(io::Error::other(format!("the command `{cmd}` {how}")));
    }
    match copied {
        Ok(n) => Ok(n),
        // The command stopped reading and succeeded: its choice.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(err) => Err(err),
    }
}
