//! Bulk rewrap on one and on all cores (issue: performance at scale).
//!
//! Seals N records (default 1,000,000 values of 100 bytes, one tenant, a context per row),
//! rotates the keyring, then rewraps them all with `Tenant::rewrap_batch` in a rayon pool of
//! 1 thread and of every core, against raw AES-256-GCM open + seal of the same records
//! (pre-keyed, default RustCrypto backend; the same thread counts). Each rewrap run starts
//! from a fresh copy of the old records. Prints records per second, the all-core speed-up
//! of each and the ratio to raw, and the load average (the machine may be shared).
//!
//! `cargo bench --bench bulk`; `ATREST_BULK_RECORDS` (default 1000000) sets N.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::cast_precision_loss, missing_docs)]

#[path = "pick.rs"]
mod pick;

use std::hint::black_box;
use std::time::Instant;

use aes_gcm::aead::{AeadInOut, KeyInit};
use atrest::{Context, Keyring, LocalRootKey};
use rayon::prelude::*;

fn main() {
    let n: usize = std::env::var("ATREST_BULK_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("bulk rewrap: {n} records of 100 B, {cores} cores available, load average {}", pick::loadavg());
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let t = keyring.tenant("acme").unwrap();
    let ctxs: Vec<Context> =
        (0..n).map(|i| Context::new().with("table", "contacts").with("row", i.to_string())).collect();
    let value = [0x5au8; 100];
    let mut old = Vec::with_capacity(n);
    t.seal_batch(ctxs.iter().map(|c| (&value[..], c)), |_, r| old.push(r.unwrap()));
    keyring.rotate().unwrap();

    // Raw: AES-256-GCM open + seal of a 100-byte record with its tag, per record.
    let k1 = aes_gcm::Aes256Gcm::new(&[1u8; 32].into());
    let k2 = aes_gcm::Aes256Gcm::new(&[2u8; 32].into());
    let raw_records: Vec<(Vec<u8>, [u8; 16])> = (0..n)
        .map(|i| {
            let mut b = value.to_vec();
            let tag = k1.encrypt_inout_detached(&[0u8; 12].into(), &i.to_le_bytes(), b.as_mut_slice().into()).unwrap();
            (b, tag.into())
        })
        .collect();
    let raw_one = |i: usize, (b, tag): &mut (Vec<u8>, [u8; 16])| {
        k1.decrypt_inout_detached(&[0u8; 12].into(), &i.to_le_bytes(), b.as_mut_slice().into(), (&*tag).into())
            .unwrap();
        *tag = k2.encrypt_inout_detached(&[1u8; 12].into(), &i.to_le_bytes(), b.as_mut_slice().into()).unwrap().into();
    };

    let mut rows = Vec::new();
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut records = old.clone();
        let start = Instant::now();
        let report = pool.install(|| t.rewrap_batch(records.iter_mut().zip(&ctxs), |_| ()));
        let atrest_s = start.elapsed().as_secs_f64();
        assert_eq!(report.rewrapped, n);
        black_box(&records);
        let mut raw = raw_records.clone();
        let start = Instant::now();
        pool.install(|| raw.par_iter_mut().enumerate().for_each(|(i, r)| raw_one(i, r)));
        let raw_s = start.elapsed().as_secs_f64();
        // Undo for the next run: reseal under k1 is not needed, the records are only timed.
        black_box(&raw);
        rows.push((threads, n as f64 / atrest_s, n as f64 / raw_s, pick::loadavg()));
    }
    println!("{:>8} {:>14} {:>14} {:>9} {:>16}", "threads", "atrest rec/s", "raw rec/s", "time/raw", "load average");
    for (threads, a, r, load) in &rows {
        println!("{threads:>8} {a:>14.0} {r:>14.0} {:>9.2} {load:>16}", r / a);
    }
    if let [(_, a1, r1, _), (_, an, rn, _)] = rows[..] {
        println!("all-core speed-up: atrest {:.2}x, raw {:.2}x (on {cores} cores)", an / a1, rn / r1);
    }
    println!("bulk: load average {} at end", pick::loadavg());
}
