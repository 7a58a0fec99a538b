//! kill -9 during `atrest backup encrypt --repo` at many points (start-up, while the stream
//! is uploaded, between the stream and its catalog entry, after): the repository always
//! verifies afterwards (an interrupted backup leaves at most an orphan stream, a warning),
//! no partial object is ever visible, and the next backup appends after what is there.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses common::repo, common::child and common::data only")]
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::repo::Atrest;
use common::{child, data};
use serde_json::Value;

const ROUNDS: u64 = 24;

#[test]
fn kill_during_encrypt_repo() {
    let a = Atrest::new();
    let input = a.path("dump.bin");
    std::fs::write(&input, data::pseudo_random(1 << 20, 3)).unwrap();
    let repo = a.path("repo");
    let repo = repo.to_str().unwrap();
    let encrypt = |snap: &str| {
        let mut c = a.cmd();
        c.args(["backup", "encrypt", "--repo", repo, "--tenant", "acme", "--snapshot", snap, "--chunk-size", "64K"])
            .args(["-i", input.to_str().unwrap()])
            .stdin(Stdio::null());
        c
    };
    // How long one run takes here: the kills are spread over twice that (a run being
    // killed is slower than a quiet one on a loaded machine).
    let start = Instant::now();
    common::repo::check(&encrypt("first").output().unwrap(), "a complete run");
    let span = u64::try_from(start.elapsed().as_micros()).unwrap() * 2;
    let (mut complete, mut orphans) = (1u64, 0usize);
    for i in 0..ROUNDS {
        // Evenly through the run, plus a prime stride so that rounds do not hit one phase.
        let delay = Duration::from_micros(span * i / ROUNDS + (i * 7_919) % 5_000);
        child::kill_after(child::spawn_quiet(&mut encrypt(&format!("killed-{i}"))), delay);
        let v = verify(&a, repo);
        let problems = v["problems"].as_array().unwrap();
        assert!(problems.iter().all(|p| p["problem"] == "orphan"), "round {i} (kill after {delay:?}): {v}");
        orphans = problems.len();
        complete = v["entries"].as_u64().unwrap();
        assert_eq!(v["streams_verified"], complete, "{v}");
    }
    // Early kills left nothing or an orphan; the late ones let the backup complete.
    assert!(complete > 1 && complete <= ROUNDS + 1, "{complete}");
    eprintln!("{ROUNDS} kills: {} backups complete, {orphans} orphan streams", complete - 1);
    // A kill between the stream and its entry is a window of microseconds: make sure an
    // orphan is there (a stream no entry names), a warning that prune can remove.
    let streams = a.path("repo/tenants/61636d65/streams");
    let any = std::fs::read_dir(&streams).unwrap().next().unwrap().unwrap().path();
    std::fs::copy(&any, streams.join("00000000000000000000000000000000.atrb")).unwrap();
    let v = verify(&a, repo);
    assert_eq!(v["problems"].as_array().unwrap().len(), orphans + 1, "{v}");
    let orphans = orphans + 1;
    // Killed uploads' temporary files count as dead once a minute old (a younger one may be a
    // live writer's that is not locked yet): age them, so the next put into the directory sweeps.
    let killed_temps = child::leftovers(&streams, ".tmp");
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(120);
    for t in &killed_temps {
        std::fs::File::options().write(true).open(streams.join(t)).unwrap().set_modified(long_ago).unwrap();
    }
    eprintln!("{} temporary files of killed uploads", killed_temps.len());
    // Nothing half-written is visible, and the next backup appends after the last entry.
    common::repo::check(&encrypt("after").output().unwrap(), "a run after the kills");
    let v = verify(&a, repo);
    assert_eq!(v["entries"].as_u64().unwrap(), complete + 1, "{v}");
    let pruned = a.acme("prune", repo, &["--keep-within", "1000d", "--remove-orphans"]);
    assert_eq!(pruned["orphans_removed"].as_array().unwrap().len(), orphans, "{pruned}");
    assert_eq!(verify(&a, repo)["problems"], Value::Array(vec![]));
    // Temporary files of killed uploads were swept by later puts into the same directory.
    let temps: Vec<_> = child::leftovers(&streams, ".tmp");
    assert!(temps.is_empty(), "{temps:?}");
}

/// `verify-chain --json`, which must exit 0 (warnings allowed).
fn verify(a: &Atrest, repo: &str) -> Value {
    a.acme("verify-chain", repo, &[])
}
