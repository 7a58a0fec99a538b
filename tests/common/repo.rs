//! Backup repositories driven through the `atrest` binary (feature `cli`): a root key and a
//! keyring in a temp dir ([`Atrest`]), and the backup policy end to end ([`policy`]), written
//! against a location string so that the same run covers a directory and `s3://` storage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::child::run_piped;

use serde_json::Value;

/// The `atrest` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_atrest");

/// A temp dir with a root key and a keyring, and `atrest` run against them.
pub struct Atrest {
    pub dir: tempfile::TempDir,
    /// More variables for every command (an S3 endpoint and its credentials).
    pub env: Vec<(String, String)>,
}

impl Atrest {
    /// A root key and a keyring, ready.
    pub fn new() -> Self {
        let a = Self { dir: tempfile::tempdir().unwrap(), env: Vec::new() };
        let key = a.path("root.key");
        check(&a.run(&["keygen", "--out", key.to_str().unwrap()], b""), "keygen");
        check(&a.run(&["keyring", "init"], b""), "keyring init");
        a
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `atrest` with only the key settings, the PATH and the AWS_* variables (for `s3://`).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ATREST_ROOT_KEY_FILE", self.path("root.key"))
            .env("ATREST_KEYRING", self.path("keyring.atrk"));
        for (k, v) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                c.env(k, v);
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs with `input` on stdin.
    pub fn run(&self, args: &[&str], input: &[u8]) -> Output {
        run_piped(self.cmd().args(args), input)
    }

    /// `atrest backup CMD --repo REPO --tenant acme EXTRA... --json`, which must succeed:
    /// its JSON output.
    pub fn acme(&self, cmd: &str, repo: &str, extra: &[&str]) -> Value {
        let mut args = vec!["backup", cmd, "--repo", repo, "--tenant", "acme"];
        args.extend(extra);
        args.push("--json");
        serde_json::from_str(&self.ok(&args, b"")).unwrap()
    }

    /// Runs, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str], input: &[u8]) -> String {
        check(&self.run(args, input), &format!("atrest {args:?}"))
    }
}

/// Panics with the output of a command that failed; returns its stdout.
pub fn check(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The simulated start: 2026-11-20T00:00:00Z.
pub const BASE: u64 = 1_795_132_800;
/// Rows in the simulated database.
const ROWS: u64 = 20;

/// The snapshot id of day `d`, hour `h`.
pub fn snapshot(d: u64, h: u64) -> String {
    format!("day{d}-{h:02}")
}

/// When the backup of day `d`, hour `h` runs: five past the hour.
pub fn created(d: u64, h: u64) -> u64 {
    BASE + d * 86_400 + h * 3_600 + 300
}

/// The database after global hour `g`: row `g % ROWS` changes every hour.
pub fn state_at(g: u64) -> BTreeMap<u64, String> {
    let mut s: BTreeMap<u64, String> = (0..ROWS).map(|r| (r, "initial".to_owned())).collect();
    for k in 0..=g {
        s.insert(k % ROWS, format!("value-{k}"));
    }
    s
}

/// A full dump: every row.
fn full_dump(g: u64) -> String {
    state_at(g).iter().map(|(r, v)| format!("{r}={v}\n")).collect()
}

/// An incremental dump: the row that changed in hour `g`.
fn incremental_dump(g: u64) -> String {
    format!("{}=value-{g}\n", g % ROWS)
}

/// Applies dumps in order (a full, then incrementals) to an empty database.
pub fn apply(dumps: &[String]) -> BTreeMap<u64, String> {
    let mut s = BTreeMap::new();
    for d in dumps {
        for line in d.lines() {
            let (r, v) = line.split_once('=').unwrap();
            s.insert(r.parse().unwrap(), v.to_owned());
        }
    }
    s
}

/// The policy, end to end, on simulated time: `days` days of one full backup at 00:05 and
/// 23 hourly incrementals into `repo`; replicate to `replica`; prune to 7 days (dry run
/// first, with a window starting mid-day, so a kept incremental's full backup and its
/// predecessors must be kept although older); replicate again (the replica follows the
/// prune); verify-chain at both; restore at a chosen hour from the replica and apply the
/// chain: the data of that hour.
pub fn policy(a: &Atrest, repo: &str, replica: &str, days: u64) {
    for d in 0..days {
        for h in 0..24 {
            let g = d * 24 + h;
            let (snap, t) = (snapshot(d, h), created(d, h).to_string());
            let mut args = vec!["backup", "encrypt", "--repo", repo, "--tenant", "acme", "--snapshot", &snap];
            let (parent, seq) = (snapshot(d, h.saturating_sub(1)), h.to_string());
            let data = if h == 0 {
                full_dump(g)
            } else {
                args.extend(["--parent", &parent, "--sequence", &seq]);
                incremental_dump(g)
            };
            args.extend(["--created", &t, "--json"]);
            let out: Value = serde_json::from_str(&a.ok(&args, data.as_bytes())).unwrap();
            assert_eq!(out["index"], g, "{out}");
            assert_eq!(out["created"], created(d, h), "{out}");
        }
    }
    let list = |r: &str| a.acme("list", r, &[]).as_array().unwrap().clone();
    assert_eq!(list(repo).len() as u64, days * 24);
    verify_clean(a, repo);

    let rep = a.acme("replicate", repo, &["--to", replica]);
    assert_eq!(rep["copied"], days * 24 * 2, "{rep}");
    assert_eq!(rep["verify"]["streams_verified"], days * 24, "{rep}");

    // The window ends at the start of day `days`; a dry run with the end five hours later
    // keeps day 1's full backup and hours 1..4 (needed by 05:05 onwards) though older.
    let end = BASE + days * 86_400;
    let dry = a.acme("prune", repo, &["--keep-within", "7d", "--now", &(end + 5 * 3_600).to_string(), "--dry-run"]);
    let removed = dry["removed"].as_array().unwrap();
    assert_eq!(removed.len() as u64, (days - 7) * 24, "{dry}");
    assert_eq!(dry["kept"][0]["snapshot_id"], snapshot(days - 7, 0));
    assert_eq!(dry["cutoff"], end + 5 * 3_600 - 7 * 86_400);
    assert_eq!(list(repo).len() as u64, days * 24, "a dry run changes nothing");

    let pruned = a.acme("prune", repo, &["--keep-within", "7d", "--now", &end.to_string()]);
    assert_eq!(pruned["removed"].as_array().unwrap().len() as u64, (days - 7) * 24, "{pruned}");
    let kept = list(repo);
    let names: Vec<String> = kept.iter().map(|e| e["snapshot_id"].as_str().unwrap().to_owned()).collect();
    let window: Vec<String> = (days - 7..days).flat_map(|d| (0..24).map(move |h| snapshot(d, h))).collect();
    assert_eq!(names, window, "prune keeps exactly the 7-day window");
    verify_clean(a, repo);

    let rep = a.acme("replicate", repo, &["--to", replica]);
    assert_eq!(rep["copied"], 1, "only the prune entry is new: {rep}");
    assert_eq!(rep["removed"], (days - 7) * 24, "{rep}");
    assert_eq!(list(replica), kept, "the replica lists what the source lists");
    verify_clean(a, replica);

    // Restore 14:30 on the day before last from the replica, one file per stream.
    let (d, h) = (days - 2, 14);
    let out = a.path(&format!("restore-{}", replica.replace(|c: char| !c.is_ascii_alphanumeric(), "_")));
    let at = humantime_at(created(d, h) + 25 * 60);
    a.ok(&["backup", "restore", "--repo", replica, "--tenant", "acme", "--at", &at, "-o", out.to_str().unwrap()], b"");
    let files = sorted_files(&out);
    assert_eq!(files.len() as u64, h + 1, "{files:?}");
    let dumps: Vec<String> = files.iter().map(|f| std::fs::read_to_string(out.join(f)).unwrap()).collect();
    assert_eq!(apply(&dumps), state_at(d * 24 + h), "restore at {at} reproduces that hour's data");
}

/// verify-chain passes with no problem at all (not even a warning).
pub fn verify_clean(a: &Atrest, repo: &str) {
    let v = a.acme("verify-chain", repo, &[]);
    assert_eq!(v["problems"], Value::Array(vec![]), "{v}");
}

/// An RFC 3339 time for unix seconds (UTC), as an operator would type it.
fn humantime_at(secs: u64) -> String {
    let out = Command::new("date").args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The file names in `dir`, sorted.
pub fn sorted_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}
