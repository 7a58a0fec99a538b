//! Keyring stores off the hot path: sealing 1 KiB through a handle whose keyring lives in
//! PostgreSQL against one whose keyring lives in a file, in the same run (interleaved, median
//! of paired ratios, like benches/guard.rs), and the cost of opening a keyring from each.
//!
//! Starts a throwaway PostgreSQL (Debian's binaries, 127.0.0.1) as the tests do:
//! `cargo bench --features postgres --bench keyring`. Goal: ratio <= 1.05 (the watcher checks
//! the store in the background, never per record); the process fails above 1.15.
//! `ATREST_GUARD_ROUNDS` (default 15) rounds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

#[path = "../tests/common/postgres.rs"]
mod pg;

use std::hint::black_box;
use std::time::{Duration, Instant};

use atrest::{Context, Keyring, KeyringLocation, KeyringOptions, LocalRootKey, Tenant};

const SEALS: usize = 20_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn seal_loop(t: &Tenant, ctx: &Context, data: &[u8]) -> Duration {
    let start = Instant::now();
    let mut out = Vec::with_capacity(data.len() + 64);
    for _ in 0..SEALS {
        out.clear();
        t.seal_into(black_box(data), ctx, &mut out).unwrap();
        black_box(&out);
    }
    start.elapsed()
}

fn main() {
    let rounds = std::env::var("ATREST_GUARD_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(15usize).max(3);
    let server =
        pg::PgServer::start("the keyring bench").expect("the keyring bench needs PostgreSQL's server binaries");
    let dir = tempfile::tempdir().unwrap();
    let root_path = dir.path().join("root.key");
    LocalRootKey::generate_file(&root_path).unwrap();
    let root = || LocalRootKey::from_file(&root_path).unwrap();
    let file = KeyringLocation::File(dir.path().join("keyring.atrk"));
    let pg = KeyringLocation::parse(&format!("{}?keyring=bench", server.url("postgres")));
    let opts = KeyringOptions::default();
    let kf = Keyring::create_at(&file, root(), opts.clone()).unwrap();
    let kp = Keyring::create_at(&pg, root(), opts.clone()).unwrap();
    let (tf, tp) = (kf.tenant("acme").unwrap(), kp.tenant("acme").unwrap());
    let ctx = Context::new().with("table", "contacts").with("row", "42");
    let data = vec![0x5a; 1024];
    seal_loop(&tf, &ctx, &data);
    seal_loop(&tp, &ctx, &data);
    let mut ratios = Vec::new();
    let mut per_seal = Vec::new();
    for r in 0..rounds {
        let (f, p) = if r % 2 == 0 {
            let f = seal_loop(&tf, &ctx, &data);
            (f, seal_loop(&tp, &ctx, &data))
        } else {
            let p = seal_loop(&tp, &ctx, &data);
            (seal_loop(&tf, &ctx, &data), p)
        };
        ratios.push(p.as_secs_f64() / f.as_secs_f64());
        per_seal.push(f.as_secs_f64() / SEALS as f64 * 1e9);
    }
    let ratio = median(ratios);
    println!(
        "seal 1 KiB: postgres-store handle / file-store handle = {ratio:.3} (file: {:.0} ns/seal, {rounds} rounds of {SEALS})",
        median(per_seal)
    );

    let mut open_file = Vec::new();
    let mut open_pg = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        drop(black_box(Keyring::open_at(&file, root(), opts.clone()).unwrap()));
        open_file.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        drop(black_box(Keyring::open_at(&pg, root(), opts.clone()).unwrap()));
        open_pg.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!(
        "keyring open (incl. root key file read): file {:.0} us, postgres {:.0} us (new connection included)",
        median(open_file),
        median(open_pg)
    );
    if ratio > 1.15 {
        eprintln!("FAIL: a PostgreSQL-store handle seals {ratio:.3}x slower than a file-store handle (bound 1.15)");
        std::process::exit(1);
    }
}
