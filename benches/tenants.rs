//! Cost per record as the number of tenants grows (issue: performance at scale).
//!
//! One process, 1 KiB seals through `keyring.tenant(id)?.seal(..)` (a handle per operation,
//! as a request handler does), tenants picked uniformly or Zipf-distributed (s = 1) among N
//! for N in 1, 1k, 10k, 100k, 1M. Each figure is reported against the single hot tenant and
//! against raw AES-256-GCM sealing of the same 1 KiB (pre-keyed, default backend), all
//! measured in this run, as medians over interleaved rounds. Also: a cold tenant's first
//! seal (never seen by the keyring) against raw HKDF-SHA256, and bulk operations on one and
//! on all cores.
//!
//! `cargo bench --bench tenants` (add `--features aws-lc` for that backend).
//! Environment: `ATREST_TENANTS_MAX` (default 1000000) caps N; `ATREST_TENANTS_ROUNDS`
//! (default 7) rounds per figure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    missing_docs
)]

use std::hint::black_box;
use std::time::Instant;

use atrest::aead::{AeadInOut, KeyInit};
use atrest::{Context, Keyring, LocalRootKey};

const OPS: usize = 20_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small xorshift generator: benchmark input selection, not cryptography.
struct Pick(u64);

impl Pick {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Tenant indices: uniform or Zipf(s = 1) over `n`, `OPS` of them.
fn indices(n: usize, zipf: bool, seed: u64) -> Vec<usize> {
    let mut p = Pick(seed | 1);
    if !zipf {
        return (0..OPS).map(|_| (p.next() % n as u64) as usize).collect();
    }
    let mut cdf = Vec::with_capacity(n);
    let mut acc = 0.0;
    for k in 1..=n {
        acc += 1.0 / k as f64;
        cdf.push(acc);
    }
    (0..OPS).map(|_| cdf.partition_point(|&c| c < p.unit() * acc).min(n - 1)).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Nanoseconds per operation of `f` over `OPS` operations.
fn per_op(mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..OPS {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / OPS as f64
}

fn main() {
    let max = env("ATREST_TENANTS_MAX", 1_000_000);
    let rounds = env("ATREST_TENANTS_ROUNDS", 7).max(3);
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let ctx = Context::new().with("table", "contacts").with("column", "email").with("row", "42");
    let pt = vec![0x5au8; 1024];
    let raw = aes_gcm::Aes256Gcm::new(&[7u8; 32].into());
    let mut raw_buf = pt.clone();
    let hot = keyring.tenant("hot").unwrap();
    let mut out = Vec::with_capacity(2048);

    let mut raw_seal = || {
        raw_buf.copy_from_slice(&pt);
        black_box(raw.encrypt_inout_detached(&[1u8; 12].into(), b"", raw_buf.as_mut_slice().into()).unwrap());
    };
    let hot_seal = |out: &mut Vec<u8>| {
        out.clear();
        hot.seal_into(&pt, &ctx, out).unwrap();
    };
    // Warm-up.
    for _ in 0..OPS {
        raw_seal();
        hot_seal(&mut out);
    }
    let mut raws = Vec::new();
    let mut hots = Vec::new();
    for _ in 0..rounds {
        raws.push(per_op(|_| raw_seal()));
        hots.push(per_op(|_| hot_seal(&mut out)));
    }
    let (raw_ns, hot_ns) = (median(raws), median(hots));
    println!(
        "raw AES-256-GCM seal 1 KiB: {raw_ns:.0} ns; hot tenant handle seal: {hot_ns:.0} ns ({:.2}x raw)",
        hot_ns / raw_ns
    );
    println!("{:>9} {:>8} {:>10} {:>10} {:>8}", "tenants", "access", "ns/op", "x hot", "x raw");
    for n in [1usize, 1_000, 10_000, 100_000, 1_000_000].into_iter().filter(|n| *n <= max) {
        let ids: Vec<String> = (0..n).map(|i| format!("tenant-{i:07}")).collect();
        for zipf in [false, true] {
            if n == 1 && zipf {
                continue;
            }
            let idx = indices(n, zipf, 0x9e37_79b9_7f4a_7c15 ^ n as u64);
            // Warm the cache as a long-running server would be.
            for &i in idx.iter().chain(&idx) {
                black_box(keyring.tenant(&ids[i]).unwrap().seal(&pt, &ctx).unwrap());
            }
            let mut ratios_hot = Vec::new();
            let mut subject = Vec::new();
            for _ in 0..rounds {
                let h = per_op(|_| hot_seal(&mut out));
                let s = per_op(|k| {
                    out.clear();
                    keyring.tenant(&ids[idx[k]]).unwrap().seal_into(&pt, &ctx, &mut out).unwrap();
                });
                ratios_hot.push(s / h);
                subject.push(s);
            }
            let s = median(subject);
            println!(
                "{n:>9} {:>8} {s:>10.0} {:>10.2} {:>8.2}",
                if zipf { "zipf" } else { "uniform" },
                median(ratios_hot),
                s / raw_ns
            );
        }
    }

    // A cold tenant's first seal, against raw HKDF-SHA256 of a 32-byte key.
    let mut cold = Vec::new();
    let mut hkdf = Vec::new();
    for r in 0..rounds {
        let ids: Vec<String> = (0..OPS).map(|i| format!("cold-{r}-{i}")).collect();
        cold.push(per_op(|k| {
            out.clear();
            keyring.tenant(&ids[k]).unwrap().seal_into(&pt, &ctx, &mut out).unwrap();
        }));
        let mut okm = [0u8; 32];
        hkdf.push(per_op(|k| {
            atrest::hazmat::hkdf_sha256(b"0123456789abcdef", &[k as u8; 32], ids[k].as_bytes(), &mut okm).unwrap();
            black_box(&okm);
        }));
    }
    let (c, h) = (median(cold), median(hkdf));
    println!("cold tenant first seal: {c:.0} ns; raw HKDF-SHA256 (extract + expand): {h:.0} ns ({:.2}x)", c / h);
}
