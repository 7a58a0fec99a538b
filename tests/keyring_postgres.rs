//! The PostgreSQL keyring store against a real server (Debian's PostgreSQL, started per test
//! on 127.0.0.1, stopped on drop; the tests fail, never skip, without it): propagation to
//! worker processes within the bound, a fleet of six workers changing one keyring at once
//! (no lost update, no seal under a disabled version beyond the bound, every record opens),
//! a server stopped mid-run, rollback and substitution, heartbeats in `status`.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::child; the rest of the shared kit is unused here")]
mod common;
#[path = "common/fleet.rs"]
mod fleet;
#[path = "common/postgres.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use atrest::{
    Context, DEFAULT_STALENESS, KeyState, Keyring, KeyringError, KeyringLocation, KeyringOptions, LocalRootKey,
    MasterVersion, OpenError, SealError, record_info,
};
use fleet::{Event, Spec};
use pg::PgServer;

/// The worker role: does nothing unless started by a test as a worker process.
#[test]
fn fleet_child() {
    fleet::child_main();
}

fn root(path: &Path) -> LocalRootKey {
    LocalRootKey::from_file(path).unwrap()
}

fn new_root(dir: &Path) -> PathBuf {
    let p = dir.join("root.key");
    LocalRootKey::generate_file(&p).unwrap();
    p
}

fn loc(url: &str) -> KeyringLocation {
    KeyringLocation::parse(url)
}

/// A fresh server, a temp dir with a root key, and the URL of keyring `name` in `table`.
struct Setup {
    server: PgServer,
    dir: tempfile::TempDir,
    root_path: PathBuf,
    url: String,
}

/// `None` (the test does not run) only without PostgreSQL and without
/// `ATREST_REQUIRE_POSTGRES=1`, which `scripts/test` sets.
fn setup(table: &str, name: &str) -> Option<Setup> {
    let server = PgServer::start("the PostgreSQL keyring store tests")?;
    let dir = tempfile::tempdir().unwrap();
    let root_path = new_root(dir.path());
    let url = keyring_url(&server, table, name);
    Some(Setup { server, dir, root_path, url })
}

fn keyring_url(server: &PgServer, table: &str, name: &str) -> String {
    format!("{}?table={table}&keyring={name}", server.url("postgres"))
}

#[test]
fn postgres_changes_reach_every_process_within_the_bound() {
    let Some(Setup { server: _server, dir, root_path, url }) = setup("atrest_keyrings", "prop") else {
        return;
    };
    Keyring::create_at(&loc(&url), root(&root_path), KeyringOptions::default()).unwrap();
    let latencies = fleet::propagation(&url, dir.path(), &root_path, DEFAULT_STALENESS);
    fleet::report("postgres store", &latencies, DEFAULT_STALENESS);
}

#[test]
fn postgres_fleet_of_six_changing_at_once_loses_nothing() {
    let Some(Setup { server: _server, dir, root_path, url }) = setup("fleet", "main") else {
        return;
    };
    let keyring = Keyring::create_at(&loc(&url), root(&root_path), KeyringOptions::default()).unwrap();
    let bound = DEFAULT_STALENESS;
    let specs: Vec<Spec> = (0..6)
        .map(|id| Spec {
            id,
            location: url.clone(),
            root: root_path.clone(),
            out: dir.path().join(format!("w{id}.log")),
            stop: dir.path().join(format!("w{id}.stop")),
            tenants: vec![format!("w{id}a"), "shared".into(), format!("w{id}v")],
            staleness_ms: 1000,
            handoff: None,
            changes: true,
            victim: Some(format!("w{id}v")),
        })
        .collect();
    let workers = fleet::start(&specs);
    // This process disables every version that stopped being primary, as an operator would.
    let (mut disabled, mut ok_changes) = (Vec::<(u64, u16)>::new(), 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(1500));
        keyring.reload().unwrap();
        let st = keyring.status();
        for m in st.masters.iter().filter(|m| m.state == KeyState::Enabled) {
            if keyring.set_state(m.version, KeyState::Disabled).is_ok() {
                ok_changes += 1;
                disabled.push((fleet::now_ns(), m.version.get()));
            }
        }
    }
    fleet::stop(&specs, workers);

    let logs: Vec<Vec<Event>> = specs.iter().map(|s| fleet::read_log(&s.out)).collect();
    let mut by_workers = 0;
    for (s, events) in specs.iter().zip(&logs) {
        let logged = events.iter().filter(|e| matches!(e, Event::Change { ok: true })).count() as u64;
        let Some(Event::End { ok_changes: end }) = events.last() else { panic!("worker {} has no END", s.id) };
        assert_eq!(logged, *end);
        by_workers += end;
    }
    let total = ok_changes + by_workers;
    let fresh = Keyring::open_at(&loc(&url), root(&root_path), KeyringOptions::default()).unwrap();
    let st = fresh.status();
    println!(
        "fleet: {} changes by 6 workers + {ok_changes} disables here, final revision {}, {} versions",
        by_workers,
        st.revision,
        st.masters.len()
    );
    assert!(by_workers >= 30, "the workers made too few changes ({by_workers}) for the test to mean much");
    assert!(!disabled.is_empty(), "no version was disabled");
    assert_eq!(st.revision, total, "lost update: final revision != successful changes");

    // No seal under a version later than the bound (+ slack) after it was disabled.
    let slack = Duration::from_millis(1000);
    let mut late = Vec::new();
    for (s, events) in specs.iter().zip(&logs) {
        for e in events {
            if let Event::Seal { t, master, .. } = e {
                for (td, v) in &disabled {
                    if master == v && *t > td + u64::try_from((bound + slack).as_nanos()).unwrap() {
                        late.push((s.id, *v, Duration::from_nanos(t - td)));
                    }
                }
            }
        }
    }
    assert!(late.is_empty(), "sealed under a disabled version beyond the bound: {late:?}");

    // Every record of a tenant that was not shredded opens (versions enabled again).
    for (_, v) in &disabled {
        fresh.set_state(MasterVersion::new(*v), KeyState::Enabled).unwrap();
    }
    let shredded: Vec<String> =
        fresh.status().tenants.into_iter().filter(|t| t.shred.is_some()).map(|t| t.id).collect();
    let (mut opened, mut skipped) = (0, 0);
    for (s, events) in specs.iter().zip(&logs) {
        for e in events {
            if let Event::Record { tenant, n, sealed } = e {
                if shredded.contains(tenant) {
                    skipped += 1;
                    continue;
                }
                let r = fresh.tenant(tenant).unwrap().open(sealed, &fleet::ctx(s.id, *n));
                assert!(r.is_ok(), "worker {} record {n} of {tenant} does not open: {}", s.id, fleet::open_kind(&r));
                opened += 1;
            }
        }
    }
    println!("fleet: {opened} records open, {skipped} of shredded tenants skipped, shredded: {shredded:?}");
    assert!(opened > 1000 && !shredded.is_empty());
}

#[test]
fn postgres_stopped_mid_run_serves_then_refuses_then_recovers() {
    let Some(Setup { mut server, dir: _dir, root_path, url }) = setup("atrest_keyrings", "default") else {
        return;
    };
    Keyring::create_at(&loc(&url), root(&root_path), KeyringOptions::default()).unwrap();
    let max_unavailable = Duration::from_secs(2);
    let staleness = Duration::from_millis(200);
    let opts = KeyringOptions::default().staleness(staleness).max_unavailable(max_unavailable);
    let k = Keyring::open_at(&loc(&url), root(&root_path), opts).unwrap();
    let acme = k.tenant("acme").unwrap();
    let ctx = Context::new().with("row", "1");
    let rec = acme.seal(b"hello", &ctx).unwrap();

    let stopped = Instant::now();
    server.stop();
    std::thread::sleep(Duration::from_millis(600));
    let t = Instant::now();
    acme.seal(b"still", &ctx).unwrap();
    assert_eq!(acme.open(&rec, &ctx).unwrap(), b"hello");
    assert!(t.elapsed() < Duration::from_millis(100), "the hot path waited on the stopped server");
    let t = Instant::now();
    assert!(matches!(k.reload(), Err(KeyringError::Store { .. })));
    assert!(t.elapsed() < Duration::from_secs(6), "a stopped server made reload hang");

    let refused_after = loop {
        match acme.seal(b"x", &ctx) {
            Err(SealError::KeyringUnavailable) => break stopped.elapsed(),
            Ok(_) => assert!(stopped.elapsed() < max_unavailable + Duration::from_secs(3), "never refused"),
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The last successful check may precede the stop by one interval (staleness / 2).
    assert!(
        refused_after + staleness / 2 >= max_unavailable,
        "refused after {refused_after:?}, before max_unavailable"
    );
    assert!(matches!(acme.open(&rec, &ctx), Err(OpenError::KeyringUnavailable)));

    server.resume();
    let resumed = Instant::now();
    while acme.seal(b"x", &ctx).is_err() {
        assert!(resumed.elapsed() < Duration::from_secs(10), "never recovered after the restart");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "stopped server: refused after {refused_after:?} (limit {max_unavailable:?}), recovered {:?} after restart",
        resumed.elapsed()
    );
    assert_eq!(acme.open(&rec, &ctx).unwrap(), b"hello");
    assert_eq!(k.rotate().unwrap(), MasterVersion::new(2));
}

#[test]
fn postgres_rollback_substitution_and_existing_rows_are_refused() {
    let Some(Setup { server, dir, root_path, url }) = setup("kr", "main") else {
        return;
    };
    let anchor = dir.path().join("anchor");
    let opts = KeyringOptions::default().staleness(Duration::from_millis(100)).revision_anchor(&anchor);
    let k = Keyring::create_at(&loc(&url), root(&root_path), opts.clone()).unwrap();
    assert!(matches!(
        Keyring::create_at(&loc(&url), root(&root_path), KeyringOptions::default()),
        Err(KeyringError::AlreadyExists(_))
    ));
    let missing =
        Keyring::open_at(&loc(&keyring_url(&server, "kr", "nope")), root(&root_path), KeyringOptions::default());
    assert!(
        matches!(&missing, Err(KeyringError::Store { reason, .. }) if reason.contains("no keyring named")),
        "{missing:?}"
    );
    let mut db = postgres::Client::connect(&server.conn_str("postgres"), postgres::NoTls).unwrap();
    let old = db.query_one("SELECT revision, document FROM kr WHERE name = 'main'", &[]).unwrap();
    let (old_rev, old_doc): (i64, Vec<u8>) = (old.get(0), old.get(1));
    assert_eq!(k.rotate().unwrap(), MasterVersion::new(2));

    db.execute("UPDATE kr SET revision = $1, document = $2 WHERE name = 'main'", &[&old_rev, &old_doc]).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(k.primary(), MasterVersion::new(2), "the running handle keeps its newer state");
    let acme = k.tenant("acme").unwrap();
    let sealed = acme.seal(b"x", &Context::new()).unwrap();
    assert_eq!(record_info(&sealed).unwrap().key_version.master, MasterVersion::new(2));
    assert!(matches!(k.reload(), Err(KeyringError::RolledBack { seen: 1, offered: 0 })));
    assert!(matches!(k.rotate(), Err(KeyringError::RolledBack { .. })));
    let fresh = Keyring::open_at(&loc(&url), root(&root_path), opts.clone());
    assert!(matches!(fresh, Err(KeyringError::RolledBack { seen: 1, offered: 0 })), "{fresh:?}");

    Keyring::create_at(&loc(&keyring_url(&server, "kr", "other")), root(&root_path), KeyringOptions::default())
        .unwrap();
    db.execute(
        "UPDATE kr SET revision = 7, document = (SELECT document FROM kr WHERE name = 'other') WHERE name = 'main'",
        &[],
    )
    .unwrap();
    assert!(matches!(k.reload(), Err(KeyringError::Substituted { .. })));
    assert!(matches!(Keyring::open_at(&loc(&url), root(&root_path), opts), Err(KeyringError::Substituted { .. })));
    assert_eq!(k.primary(), MasterVersion::new(2));
}

#[test]
fn postgres_status_shows_each_live_handle_and_its_revision() {
    let Some(Setup { server: _server, dir, root_path, url }) = setup("atrest_keyrings", "default") else {
        return;
    };
    let opts = KeyringOptions::default().staleness(Duration::from_millis(200));
    let k1 = Keyring::create_at(&loc(&url), root(&root_path), opts.clone()).unwrap();
    let k2 = Keyring::open_at(&loc(&url), root(&root_path), opts).unwrap();
    let wait_for = |what: &str, f: &dyn Fn(&atrest::KeyringStatus) -> bool| {
        let t = Instant::now();
        loop {
            let st = k1.status();
            if f(&st) {
                return st;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "{what}: {:?}", st.handles);
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let st = wait_for("two handles at revision 0", &|st| {
        st.handles.len() == 2 && st.handles.iter().all(|h| h.revision == 0)
    });
    assert!(st.handles.iter().all(|h| h.pid == std::process::id() && !h.stale && h.host != "unknown"));
    k2.rotate().unwrap();
    wait_for("both at revision 1", &|st| st.handles.iter().filter(|h| h.revision == 1).count() == 2);
    drop(k2);
    wait_for("the dropped handle is gone", &|st| st.handles.len() == 1);
    let file = Keyring::create(&dir.path().join("k.atrk"), root(&root_path)).unwrap();
    assert!(file.status().handles.is_empty());
}

/// The CLI takes a `postgres://` URL wherever it takes a keyring file, and `keyring migrate`
/// moves a keyring between a database and a file, never over an existing keyring.
#[cfg(feature = "cli")]
#[test]
fn cli_keyring_in_postgres_and_migrate() {
    let Some(Setup { server, dir, root_path, url }) = setup("cli_keyrings", "prod") else {
        return;
    };
    let file = dir.path().join("copy.atrk");
    let atrest = |keyring: &str, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_atrest"))
            .env_remove("ATREST_ROOT_KEY")
            .env("ATREST_ROOT_KEY_FILE", &root_path)
            .env("ATREST_KEYRING", keyring)
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, out) = atrest(&url, &["keyring", "init"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(atrest(&url, &["keyring", "rotate"]).0, Some(0));
    let (code, out) = atrest(&url, &["keyring", "status"]);
    assert!(code == Some(0) && out.contains("revision   1") && out.contains("cli_keyrings"), "{out}");
    let (code, out) = atrest(&url, &["keyring", "migrate", "--to", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = atrest(file.to_str().unwrap(), &["keyring", "status", "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((st["revision"].as_u64(), st["primary"].as_u64()), (Some(1), Some(2)), "{out}");
    // Never over an existing keyring, in either direction.
    let (code, out) = atrest(&url, &["keyring", "migrate", "--to", file.to_str().unwrap()]);
    assert_ne!(code, Some(0), "{out}");
    let (code, out) = atrest(file.to_str().unwrap(), &["keyring", "migrate", "--to", &url]);
    assert!(code != Some(0) && out.contains("already exists"), "{out}");
    let other = keyring_url(&server, "cli_keyrings", "copy");
    assert_eq!(atrest(file.to_str().unwrap(), &["keyring", "migrate", "--to", &other]).0, Some(0));
    let (code, out) = atrest(&other, &["keyring", "status", "--json"]);
    assert!(code == Some(0) && out.contains(&format!("\"id\": {}", st["id"])), "{out}");
}
