//! The repository commands as a cron job runs them: from `sh` (dash on Debian, no
//! pipefail), checking exit codes, `--json` output, restore into a command, prune dry runs,
//! the audit log, and what verify-chain prints after tampering.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::repo")]
mod common;

use common::repo::{Atrest, BIN};
use serde_json::Value;

const SCRIPT: &str = r#"
set -eu
A="$ATREST_BIN"
R=repo
code() { echo "$1=$2" >> codes; }
# A full backup in producer mode, two incrementals (stdin; ATREST_REPO), on simulated time.
ATREST_AUDIT_LOG=audit.log "$A" backup encrypt --repo "$R" --tenant acme --snapshot h0 --created 1000 -- printf 'a=1\n' > enc0.txt
printf 'b=2\n' | "$A" backup encrypt --repo "$R" --tenant acme --snapshot h1 --parent h0 --sequence 1 --created 4600 --json > enc1.json
# (No --sequence: the chain's, 2, is used.)
printf 'c=3\n' | ATREST_REPO="$R" "$A" backup encrypt --tenant acme --snapshot h2 --parent h1 --created 2026-11-27T00:00:00Z
"$A" backup list --repo "$R" --tenant acme --json > list.json
"$A" backup list --repo "$R" --tenant acme > list.txt
# A failing producer: its status, and no entry. An empty dump: refused.
set +e
"$A" backup encrypt --repo "$R" --tenant acme --snapshot bad -- sh -c 'printf x; exit 7' 2> bad.err; code producer $?
"$A" backup encrypt --repo "$R" --tenant acme --snapshot empty < /dev/null 2> empty.err; code empty $?
"$A" backup restore --repo "$R" --tenant acme -o out 2> usage.err; code usage $?
# A --sequence that breaks the chain, an incremental whose parent is not stored: refused
# before the producer runs.
"$A" backup encrypt --repo "$R" --tenant acme --snapshot h3 --parent h2 --sequence 7 -- sh -c 'touch ran; printf x' 2> seq.err; code sequence $?
"$A" backup encrypt --repo "$R" --tenant acme --snapshot h3 --parent gone -- sh -c 'touch ran; printf x' 2> parent.err; code parent $?
"$A" backup restore --repo "$R" --tenant acme --snapshot nope --exec cat 2> nope.err; code notfound $?
set -e
# The chain of h2 into a command, one run per stream, in apply order.
"$A" backup restore --repo "$R" --tenant acme --snapshot h2 \
  --exec 'printf "%s %s %s: " "$ATREST_SNAPSHOT" "$ATREST_KIND" "$ATREST_SEQUENCE" >> restored.txt; cat >> restored.txt'
# A command that fails stops the restore after its first stream.
set +e
"$A" backup restore --repo "$R" --tenant acme --at 5000 --exec 'cat >> partial.txt; exit 3' 2> exec.err; code exec $?
set -e
# With ATREST_REPO set, an explicit output file still gets the stream.
printf 'd=4\n' | ATREST_REPO="$R" "$A" backup encrypt --tenant acme --snapshot file-only -o file-only.atrb
# One file per stream; never over existing files.
"$A" backup restore --repo "$R" --tenant acme --at 4600 -o files
set +e
"$A" backup restore --repo "$R" --tenant acme --at 4600 -o files 2> clobber.err; code clobber $?
set -e
# A dry run keeps the full backup and the incremental a kept backup needs, though older.
"$A" backup prune --repo "$R" --tenant acme --keep-within 1h --now 1795737700 --dry-run --json > dry.json
"$A" backup verify-chain --repo "$R" --tenant acme > verify-ok.txt
# Cut a stream short: verify-chain names it and exits 3.
f=$(ls "$R"/tenants/61636d65/streams/* | head -n 1)
head -c 100 "$f" > cut && cat cut > "$f"
set +e
"$A" backup verify-chain --repo "$R" --tenant acme > verify-bad.txt 2> verify-bad.err; code verify $?
set -e
echo done > finished
"#;

#[test]
fn repository_commands_from_sh() {
    let a = Atrest::new();
    // The environment atrest gets elsewhere in the kit (key settings, PATH), and `sh`.
    let mut sh = std::process::Command::new("sh");
    sh.current_dir(a.dir.path()).arg("-c").arg(SCRIPT).env_clear();
    for (k, v) in a.cmd().get_envs() {
        if let Some(v) = v {
            sh.env(k, v);
        }
    }
    let out = sh.env("ATREST_BIN", BIN).output().unwrap();
    let read = |f: &str| std::fs::read_to_string(a.path(f)).unwrap_or_else(|e| panic!("{f}: {e}; {out:?}"));
    assert_eq!(read("finished"), "done\n", "{out:?}");

    assert_eq!(
        read("codes"),
        "producer=7\nempty=1\nusage=2\nsequence=2\nparent=1\nnotfound=1\nexec=1\nclobber=1\nverify=3\n"
    );
    assert!(
        read("seq.err").contains("--sequence 7 would break the chain: 'h3' needs sequence 3"),
        "{}",
        read("seq.err")
    );
    assert!(read("parent.err").contains("the parent snapshot 'gone' of 'h3' is not in repo"), "{}", read("parent.err"));
    assert!(!a.path("ran").exists(), "a refused backup ran its producer");
    assert!(read("bad.err").contains("the producer sh exited with status 7"), "{}", read("bad.err"));
    assert!(read("empty.err").contains("refusing to store an empty backup"), "{}", read("empty.err"));
    assert!(read("nope.err").contains("no backup of tenant 'acme' named 'nope'"), "{}", read("nope.err"));
    assert!(read("exec.err").contains("exited with status 3"), "{}", read("exec.err"));

    let list: Value = serde_json::from_str(&read("list.json")).unwrap();
    let snaps: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["snapshot_id"].as_str().unwrap()).collect();
    assert_eq!(snaps, ["h0", "h1", "h2"]);
    assert_eq!(list[1]["parent"], "h0");
    assert_eq!(list[1]["kind"], "incremental");
    assert_eq!(list[2]["created"], 1_795_737_600u64);
    assert_eq!(read("list.txt").lines().count(), 3);
    assert!(a.path("file-only.atrb").is_file(), "an explicit -o wins over ATREST_REPO");
    let enc1: Value = serde_json::from_str(&read("enc1.json")).unwrap();
    assert_eq!((enc1["index"].as_u64(), enc1["created"].as_u64()), (Some(1), Some(4600)));
    assert!(read("enc0.txt").starts_with("atrest: encrypt repo: "), "{}", read("enc0.txt"));

    assert_eq!(read("restored.txt"), "h0 full 0: a=1\nh1 incremental 1: b=2\nh2 incremental 2: c=3\n");
    assert_eq!(read("partial.txt"), "a=1\n", "the failing command stopped the restore");
    assert_eq!(read("files/001-h0.out"), "a=1\n");
    assert_eq!(read("files/002-h1.out"), "b=2\n");
    assert_eq!(common::repo::sorted_files(&a.path("files")).len(), 2);

    let dry: Value = serde_json::from_str(&read("dry.json")).unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["removed"], Value::Array(vec![]), "{dry}");
    assert_eq!(dry["kept"].as_array().unwrap().len(), 3, "{dry}");

    assert!(read("verify-ok.txt").contains("3 entries, 3 streams verified"), "{}", read("verify-ok.txt"));
    let bad = read("verify-bad.txt");
    assert!(bad.contains("is truncated (100 of"), "{bad}");
    assert!(read("verify-bad.err").contains("1 problem(s) found"), "{}", read("verify-bad.err"));
    let audit = read("audit.log");
    assert!(audit.contains("repo.backup.stored") && audit.contains("\"snapshot\":\"h0\""), "{audit}");
}
