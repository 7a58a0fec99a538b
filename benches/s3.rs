//! Uploading a backup to S3-compatible storage: the same plaintext through
//! `S3Store::put_new` as is (the baseline) and encrypted on the way (a `BackupWriter` on one
//! thread feeding `put_new` through a pipe), interleaved in the same run against the same
//! server. Prints the time of each, and the ratio encrypted / plain.
//!
//! Needs a server: `scripts/s3-bench` starts SeaweedFS and runs this. By hand, with the
//! AWS_* variables of any server and a bucket that exists:
//! `ATREST_S3_BENCH_BUCKET=b cargo bench --features s3 --bench s3`.
//! ATREST_S3_BENCH_MIB (default `64,256`) and ATREST_S3_BENCH_ROUNDS (default 3) set the sizes
//! and the rounds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation, missing_docs)]

use std::io::Write as _;
use std::time::{Duration, Instant};

use atrest::{BackupContext, BackupOptions, BackupWriter, Keyring, LocalRootKey, ObjectStore, S3Store, Tenant};

fn main() {
    // `cargo bench` passes `--bench`; a filter or `--list` from the harness means nothing here.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Ok(bucket) = std::env::var("ATREST_S3_BENCH_BUCKET") else {
        eprintln!("s3 bench: set ATREST_S3_BENCH_BUCKET and the AWS_* variables, or run scripts/s3-bench");
        return;
    };
    let sizes: Vec<usize> = std::env::var("ATREST_S3_BENCH_MIB")
        .unwrap_or_else(|_| "64,256".into())
        .split(',')
        .map(|s| s.trim().parse().expect("ATREST_S3_BENCH_MIB: sizes in MiB, comma-separated"))
        .collect();
    let rounds: usize = std::env::var("ATREST_S3_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let prefix = format!("bench-{}", std::process::id());
    let store = S3Store::from_env(&bucket, &prefix).unwrap();
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let tenant = keyring.tenant("acme").unwrap();

    println!("s3 upload: S3Store::put_new of N MiB, plain vs encrypted on the way (BackupWriter -> pipe -> put_new)");
    println!(
        "{:>8} {:>5} {:>12} {:>12} {:>10} {:>10} {:>7}",
        "MiB", "round", "plain s", "encrypted s", "plain MiB/s", "enc MiB/s", "ratio"
    );
    for mib in sizes {
        let pt: Vec<u8> = (0..mib << 20).map(|i| (i % 251) as u8).collect();
        let mut ratios = Vec::new();
        for round in 0..rounds {
            // Alternate which goes first, so that neither always meets a warmer server.
            let (plain, enc) = if round % 2 == 0 {
                let p = upload_plain(&store, &pt, &format!("{mib}/{round}/plain"));
                (p, upload_encrypted(&store, &tenant, &pt, &format!("{mib}/{round}/enc")))
            } else {
                let e = upload_encrypted(&store, &tenant, &pt, &format!("{mib}/{round}/enc"));
                (upload_plain(&store, &pt, &format!("{mib}/{round}/plain")), e)
            };
            let ratio = enc.as_secs_f64() / plain.as_secs_f64();
            ratios.push(ratio);
            let rate = |d: Duration| mib as f64 / d.as_secs_f64();
            println!(
                "{mib:>8} {round:>5} {:>12.3} {:>12.3} {:>10.1} {:>10.1} {ratio:>7.3}",
                plain.as_secs_f64(),
                enc.as_secs_f64(),
                rate(plain),
                rate(enc)
            );
        }
        ratios.sort_by(f64::total_cmp);
        println!("{mib:>8} median ratio encrypted/plain: {:.3}", ratios[ratios.len() / 2]);
    }
}

fn upload_plain(store: &S3Store, pt: &[u8], key: &str) -> Duration {
    let start = Instant::now();
    store.put_new(key, &mut &pt[..]).unwrap();
    let took = start.elapsed();
    store.delete(key).unwrap();
    took
}

/// The backup writer encrypts on its own thread into a pipe; `put_new` reads the other end.
fn upload_encrypted(store: &S3Store, tenant: &Tenant, pt: &[u8], key: &str) -> Duration {
    let ctx = BackupContext::full("bench");
    let start = Instant::now();
    let (mut reader, writer) = std::io::pipe().unwrap();
    let stored = std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let mut w = BackupWriter::new(tenant, &ctx, BackupOptions::default(), writer).unwrap();
            w.write_all(pt).unwrap();
            drop(w.finish().unwrap());
        });
        let stored = store.put_new(key, &mut reader).unwrap();
        producer.join().unwrap();
        stored
    });
    let took = start.elapsed();
    assert!(stored > pt.len() as u64);
    store.delete(key).unwrap();
    took
}
