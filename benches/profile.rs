//! One scenario per process, for instruction counts under `valgrind --tool=callgrind`
//! (repeatable on a loaded, shared machine, where wall time is not): the measured loop runs
//! inside `measure`, which `scripts/callgrind-ratios` selects with `--toggle-collect`, so
//! set-up (warming a cache of 100,000 tenants) is not counted.
//!
//! `profile <scenario> [ops]`, scenarios:
//! - `raw-aead`: pre-keyed AES-256-GCM sealing 1 KiB in place (RustCrypto, or AWS-LC with
//!   `--features aws-lc` and `raw-aead-awslc`); `raw-aead-64`: 64 bytes.
//! - `raw-hkdf`: HKDF-SHA256 extract + expand of a 32-byte key; `raw-expand`: the expand
//!   alone from a keyed state (what a cold tenant needs, the master's extract being done
//!   once when the keyring loads).
//! - `hot`: `keyring.tenant("hot")?.seal_into(..)` of 1 KiB (a handle per operation);
//!   `hot-handle`: the same handle reused; `hot-64`: 64 bytes; `open-1k` / `open-64`: open.
//! - `uniform-<n>`: tenants picked uniformly among n, all cached first; `zipf-<n>`: Zipf.
//! - `cold`: a tenant never seen before, its first seal; `cold-full`: the same with the
//!   cache full (each evicts a key); `cold-reused`: the same after an
//!   earlier keyring cached as many tenants and was dropped (memory reused, no page faults).
//!
//! Each prints the number of operations; the script divides the counted instructions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    missing_docs
)]

#[path = "pick.rs"]
mod pick;

use std::hint::black_box;

use atrest::aead::{AeadInOut, KeyInit};
use atrest::{Context, Keyring, LocalRootKey};

/// The measured loop: the only function whose instructions are counted. Also prints its
/// wall time per operation to standard error (for a quick look outside valgrind; the
/// benches measure wall time properly).
#[inline(never)]
fn measure(ops: usize, mut f: impl FnMut(usize)) {
    let start = std::time::Instant::now();
    for i in 0..ops {
        f(i);
    }
    eprintln!("{:.0} ns/op", start.elapsed().as_nanos() as f64 / ops.max(1) as f64);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let scenario = args.first().cloned().unwrap_or_else(|| "hot".into());
    let ops: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(2000);
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let ctx = Context::new().with("table", "contacts").with("column", "email").with("row", "42");
    let size = if scenario.ends_with("-64") { 64 } else { 1024 };
    let pt = vec![0x5au8; size];
    let mut out = Vec::with_capacity(2048);
    let mut buf = pt.clone();
    match scenario.as_str() {
        "raw-aead" | "raw-aead-64" => {
            let raw = aes_gcm::Aes256Gcm::new(&[7u8; 32].into());
            measure(ops, |i| {
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
                black_box(raw.encrypt_inout_detached(&nonce.into(), &[0u8; 48], buf.as_mut_slice().into()).unwrap());
            });
        }
        #[cfg(feature = "aws-lc")]
        "raw-aead-awslc" | "raw-aead-awslc-64" => {
            use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
            let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
            measure(ops, |i| {
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
                let n = Nonce::assume_unique_for_key(nonce);
                let tag = raw.seal_in_place_separate_tag(n, Aad::from(&[0u8; 48]), &mut buf).unwrap();
                black_box(tag.as_ref());
            });
        }
        "raw-hkdf" => {
            let mut okm = [0u8; 32];
            measure(ops, |i| {
                let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"0123456789abcdef"), &[i as u8; 32]);
                hk.expand(b"atrest/v1/tenant/tenant-0000042/records", &mut okm).unwrap();
                black_box(&okm);
            });
        }
        "raw-expand" => {
            use hmac::Mac;
            let keyed = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(&[3u8; 32]).unwrap();
            measure(ops, |i| {
                let mut mac = keyed.clone();
                mac.update(b"atrest/v1/tenant/tenant-0000042/records");
                mac.update(&[i as u8, 1]);
                black_box(mac.finalize().into_bytes());
            });
        }
        "hot" | "hot-64" => {
            keyring.tenant("hot").unwrap().seal(&pt, &ctx).unwrap();
            measure(ops, |_| {
                out.clear();
                keyring.tenant("hot").unwrap().seal_into(&pt, &ctx, &mut out).unwrap();
            });
        }
        "hot-handle" | "hot-handle-64" => {
            let t = keyring.tenant("hot").unwrap();
            t.seal(&pt, &ctx).unwrap();
            measure(ops, |_| {
                out.clear();
                t.seal_into(&pt, &ctx, &mut out).unwrap();
            });
        }
        "open-1k" | "open-64" => {
            let t = keyring.tenant("hot").unwrap();
            let sealed = t.seal(&pt, &ctx).unwrap();
            measure(ops, |_| {
                out.clear();
                t.open_into(&sealed, &ctx, &mut out).unwrap();
            });
        }
        "cold" => {
            let ids: Vec<String> = (0..ops).map(|i| format!("cold-{i:07}")).collect();
            keyring.tenant("warm").unwrap().seal(&pt, &ctx).unwrap();
            measure(ops, |i| {
                out.clear();
                keyring.tenant(&ids[i]).unwrap().seal_into(&pt, &ctx, &mut out).unwrap();
            });
        }
        "cold-full" => {
            // As `cold`, with the cache full: each first seal evicts a key.
            // Until every shard is full (ids do not spread exactly evenly over the shards).
            let mut i = 0;
            while keyring.cached_keys() < atrest::DEFAULT_CACHE_CAPACITY && i < 2 * atrest::DEFAULT_CACHE_CAPACITY {
                keyring.tenant(&format!("fill-{i:07}")).unwrap().seal_into(&pt, &ctx, &mut out).unwrap();
                out.clear();
                i += 1;
            }
            let ids: Vec<String> = (0..ops).map(|i| format!("cold-{i:07}")).collect();
            measure(ops, |i| {
                out.clear();
                keyring.tenant(&ids[i]).unwrap().seal_into(&pt, &ctx, &mut out).unwrap();
            });
        }
        "cold-reused" => {
            // As `cold`, on a keyring made after another one cached as many tenants and was
            // dropped: the new keys reuse freed memory instead of faulting in fresh pages.
            let ids: Vec<String> = (0..ops).map(|i| format!("cold-{i:07}")).collect();
            let first = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
            for id in &ids {
                first.tenant(id).unwrap().seal_into(&pt, &ctx, &mut out).unwrap();
                out.clear();
            }
            drop(first);
            keyring.tenant("warm").unwrap().seal(&pt, &ctx).unwrap();
            measure(ops, |i| {
                out.clear();
                keyring.tenant(&ids[i]).unwrap().seal_into(&pt, &ctx, &mut out).unwrap();
            });
        }
        s if s.starts_with("uniform-") || s.starts_with("zipf-") => {
            let (kind, n) = s.split_once('-').unwrap();
            let n: usize = n.parse().unwrap();
            let ids: Vec<String> = (0..n).map(|i| format!("tenant-{i:07}")).collect();
            for id in &ids {
                keyring.tenant(id).unwrap().seal(&pt, &ctx).unwrap();
            }
            let idx = pick::indices(n, kind == "zipf", ops);
            // The ids in the order of use (a handler has the id it parsed at hand).
            let picked: Vec<String> = idx.iter().map(|&i| ids[i].clone()).collect();
            measure(ops, |k| {
                out.clear();
                keyring.tenant(&picked[k]).unwrap().seal_into(&pt, &ctx, &mut out).unwrap();
            });
        }
        other => panic!("unknown scenario {other}"),
    }
    black_box(&out);
    println!("{scenario} ops={ops}");
}
