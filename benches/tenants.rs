//! Cost per record as the number of tenants grows (issue 17: performance at scale).
//!
//! One process, 1 KiB seals through `keyring.tenant(id)?.seal_into(..)` (a handle per
//! operation, as a request handler does), tenants picked uniformly or Zipf-distributed
//! (s = 1) among N for N in 1, 1k, 10k, 100k, 1M, after every tenant was used once and the
//! picks twice (a server that has been running for a while; past the cache capacity, the
//! cache then holds the recent tenants). Each figure is reported against the single hot
//! tenant (a handle per operation too, and a handle kept) and against raw AES-256-GCM
//! sealing of the same 1 KiB (pre-keyed, RustCrypto), all measured in this run as medians
//! over interleaved rounds (except "x raw", against the raw figure measured once at the
//! start); "x raw-N" is against raw AES-256-GCM with one pre-keyed instance
//! per tenant picked the same way (the memory floor: past the CPU caches, every pick waits
//! on that key's state from memory, whatever the library around it does). Also: a cold
//! tenant's first seal (a tenant never seen) against raw HKDF-SHA256 (the `hkdf` crate:
//! extract + expand of a 32-byte key) and raw AES-256-GCM of 1 KiB, both in the same rounds,
//! and the resident memory per cached key. Prints the load average at the start and the end.
//!
//! `cargo bench -p atrest-benches --bench tenants` (add `--features aws-lc` for that
//! backend). Environment: `ATREST_TENANTS_MAX` (default 1000000) caps N;
//! `ATREST_TENANTS_ROUNDS` (default 7) rounds per figure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    missing_docs
)]

#[path = "pick.rs"]
mod pick;

use std::hint::black_box;
use std::time::Instant;

use atrest::aead::{AeadInOut, KeyInit};
use atrest::{Context, Keyring, LocalRootKey};

/// AES-256-GCM on an encryption-only key schedule: the per-tenant state atrest keeps.
type RawGcm = aes_gcm::AesGcm<aes::Aes256Enc, aes_gcm::aead::consts::U12>;

const OPS: usize = 20_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
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
    println!("tenants: load average {} at start; backend {}", pick::loadavg(), atrest::Backend::default());
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
        keyring.tenant("hot").unwrap().seal_into(&pt, &ctx, out).unwrap();
    };
    // Warm-up.
    for _ in 0..OPS {
        raw_seal();
        hot_seal(&mut out);
        out.clear();
        hot.seal_into(&pt, &ctx, &mut out).unwrap();
    }
    let (mut raws, mut hots, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        raws.push(per_op(|_| raw_seal()));
        hots.push(per_op(|_| hot_seal(&mut out)));
        kept.push(per_op(|_| {
            out.clear();
            hot.seal_into(&pt, &ctx, &mut out).unwrap();
        }));
    }
    let (raw_ns, hot_ns, kept_ns) = (median(raws), median(hots), median(kept));
    println!(
        "raw AES-256-GCM seal 1 KiB: {raw_ns:.0} ns; hot tenant, a handle per seal: {hot_ns:.0} ns ({:.2}x raw); \
         a handle kept: {kept_ns:.0} ns ({:.2}x raw)",
        hot_ns / raw_ns,
        kept_ns / raw_ns
    );
    println!(
        "{:>9} {:>8} {:>8} {:>7} {:>7} {:>9} {:>12} {:>9}",
        "tenants", "access", "ns/op", "x hot", "x raw", "x raw-N", "cached keys", "RSS MiB"
    );
    let mut warmed = 0;
    let mut memory = Vec::new();
    for n in [1usize, 1_000, 10_000, 100_000, 1_000_000].into_iter().filter(|n| *n <= max) {
        let ids: Vec<String> = (0..n).map(|i| format!("tenant-{i:07}")).collect();
        // The memory floor: raw AES-256-GCM, one pre-keyed instance (encryption-only key
        // schedule, as atrest keeps) per tenant, picked the same way. What no key cache can
        // beat: past the CPU caches each pick waits on the key's lines from memory.
        let raw_keys: Vec<RawGcm> = (0..n)
            .map(|i| {
                let mut k = [7u8; 32];
                k[..8].copy_from_slice(&(i as u64).to_le_bytes());
                RawGcm::new(&k.into())
            })
            .collect();
        let rss_before = (pick::rss(), keyring.cached_keys());
        // Every tenant used once (the ones of smaller N already were).
        for id in &ids[warmed.min(n)..] {
            black_box(keyring.tenant(id).unwrap().seal(&pt, &ctx).unwrap());
        }
        warmed = warmed.max(n);
        memory.push((rss_before, (pick::rss(), keyring.cached_keys())));
        for zipf in [false, true] {
            if n == 1 && zipf {
                continue;
            }
            let idx = pick::indices(n, zipf, OPS);
            // The ids in the order they are used, each in its own string allocated in that
            // order: a request handler has the id it just parsed at hand, it does not fetch
            // it from a table of 100,000 strings (which would add a wait on memory that the
            // raw floor does not pay).
            let picked: Vec<String> = idx.iter().map(|&i| ids[i].clone()).collect();
            for &i in idx.iter().chain(&idx) {
                black_box(keyring.tenant(&ids[i]).unwrap().seal(&pt, &ctx).unwrap());
            }
            let mut ratios_hot = Vec::new();
            let mut ratios_floor = Vec::new();
            let mut subject = Vec::new();
            for _ in 0..rounds {
                let h = per_op(|_| hot_seal(&mut out));
                let s = per_op(|k| {
                    out.clear();
                    keyring.tenant(&picked[k]).unwrap().seal_into(&pt, &ctx, &mut out).unwrap();
                });
                let f = per_op(|k| {
                    raw_buf.copy_from_slice(&pt);
                    let key = &raw_keys[idx[k]];
                    black_box(
                        key.encrypt_inout_detached(&[1u8; 12].into(), b"", raw_buf.as_mut_slice().into()).unwrap(),
                    );
                });
                ratios_hot.push(s / h);
                ratios_floor.push(s / f);
                subject.push(s);
            }
            let s = median(subject);
            println!(
                "{n:>9} {:>8} {s:>8.0} {:>7.2} {:>7.2} {:>9.2} {:>12} {:>9.1}",
                if zipf { "zipf" } else { "uniform" },
                median(ratios_hot),
                s / raw_ns,
                median(ratios_floor),
                keyring.cached_keys(),
                pick::rss() as f64 / f64::from(1u32 << 20),
            );
        }
    }
    // Resident memory per cached key, over the largest growth of the cache.
    if let Some(((r0, k0), (r1, k1))) = memory.iter().copied().filter(|(a, b)| b.1 > a.1).max_by_key(|(a, b)| b.1 - a.1)
    {
        println!(
            "resident memory per cached key: {:.0} B ({} keys added)",
            (r1 as f64 - r0 as f64) / (k1 - k0) as f64,
            k1 - k0
        );
    }

    cold(&keyring, &pt, &ctx, rounds, "cache full: each evicts a key");
    // On a keyring of its own, whose cache never fills (at most 5 x 20,000 tenants); last,
    // so that its memory does not hide the sweep's growth.
    let fresh = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    cold(&fresh, &pt, &ctx, rounds.min(5), "cache not full");
    drop(fresh);
    let fresh = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    cold(&fresh, &pt[..64], &ctx, rounds.min(5), "cache not full, 64 B");
    drop(fresh);
    println!("tenants: load average {} at end", pick::loadavg());
}

/// A cold tenant's first seal (a tenant never seen), against raw HKDF-SHA256 (extract +
/// expand of a 32-byte key) and raw AES-256-GCM of 1 KiB, medians of ratios paired round by
/// round (this shared VM's speed drifts by tens of percent from one minute to the next).
/// The goal of 2 us was set on a machine where raw AES-256-GCM of 1 KiB took 420 ns:
/// 4.8x that.
fn cold(keyring: &Keyring, pt: &[u8], ctx: &Context, rounds: usize, what: &str) {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut out = Vec::with_capacity(2048);
    let raw = aes_gcm::Aes256Gcm::new(&[7u8; 32].into());
    let kib = [0x5au8; 1024];
    let mut raw_buf = kib;
    let (mut cold, mut hkdf, mut aead, mut x_hkdf, mut x_aead) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let ids: Vec<String> = (0..OPS).map(|i| format!("cold-{run}-{r}-{i}")).collect();
        let c = per_op(|k| {
            out.clear();
            keyring.tenant(&ids[k]).unwrap().seal_into(pt, ctx, &mut out).unwrap();
        });
        let mut okm = [0u8; 32];
        let h = per_op(|k| {
            let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"0123456789abcdef"), &[k as u8; 32]);
            hk.expand(ids[k].as_bytes(), &mut okm).unwrap();
            black_box(&okm);
        });
        let a = per_op(|_| {
            raw_buf.copy_from_slice(&kib);
            black_box(raw.encrypt_inout_detached(&[1u8; 12].into(), b"", raw_buf.as_mut_slice().into()).unwrap());
        });
        cold.push(c);
        hkdf.push(h);
        aead.push(a);
        x_hkdf.push(c / h);
        x_aead.push(c / a);
    }
    let (c, h, a, xa) = (median(cold), median(hkdf), median(aead), median(x_aead));
    println!(
        "cold tenant first seal ({what}): {c:.0} ns; raw HKDF-SHA256 (extract + expand): {h:.0} ns ({:.2}x); \
         raw AES-256-GCM 1 KiB: {a:.0} ns ({xa:.2}x; the 2 us goal is 4.76x on the issue's machine, \
         {} on this one now)",
        median(x_hkdf),
        if xa <= 2000.0 / 420.0 { "met" } else { "not met" }
    );
}
