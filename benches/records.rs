//! Record seal/open against raw pre-keyed AES-256-GCM (the baseline, same group), and
//! tenant key derivation cold and cached.
//!
//! `cargo bench --bench records`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::Aes256Gcm;
use atrest::aead::{AeadInOut, KeyInit};
use atrest::{Context, Keyring, LocalRootKey};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [usize; 3] = [64, 1024, 16 * 1024];

fn records(c: &mut Criterion) {
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let ctx = Context::new().with("table", "contacts").with("column", "email").with("row", "12345");
    let raw = Aes256Gcm::new(&[7u8; 32].into());
    let aad = [0u8; 48];
    let mut counter = 0u64;

    for size in SIZES {
        let mut group = c.benchmark_group(format!("records/{size}B"));
        group.throughput(Throughput::Bytes(size as u64));
        let pt = vec![0x5au8; size];

        // Baseline: pre-keyed AES-256-GCM, in place, counter nonce, a 48-byte AAD.
        let mut buf = pt.clone();
        group.bench_function(BenchmarkId::new("raw_aes256gcm_seal", size), |b| {
            b.iter(|| {
                counter += 1;
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&counter.to_le_bytes());
                let tag = raw.encrypt_inout_detached(&nonce.into(), &aad, buf.as_mut_slice().into()).unwrap();
                black_box(tag);
            })
        });

        let mut out = Vec::with_capacity(size + 64);
        group.bench_function(BenchmarkId::new("atrest_seal_into", size), |b| {
            b.iter(|| {
                out.clear();
                tenant.seal_into(black_box(&pt), &ctx, &mut out).unwrap();
            })
        });
        group.bench_function(BenchmarkId::new("atrest_seal", size), |b| {
            b.iter(|| black_box(tenant.seal(black_box(&pt), &ctx).unwrap()))
        });

        let sealed = tenant.seal(&pt, &ctx).unwrap();
        let ct = raw.encrypt_inout_detached(&[1u8; 12].into(), &aad, buf.as_mut_slice().into()).unwrap();
        let ct_bytes = buf.clone();
        group.bench_function(BenchmarkId::new("raw_aes256gcm_open", size), |b| {
            b.iter(|| {
                buf.copy_from_slice(&ct_bytes);
                raw.decrypt_inout_detached(&[1u8; 12].into(), &aad, buf.as_mut_slice().into(), &ct).unwrap();
            })
        });
        group.bench_function(BenchmarkId::new("atrest_open_into", size), |b| {
            b.iter(|| {
                out.clear();
                tenant.open_into(black_box(&sealed), &ctx, &mut out).unwrap();
            })
        });
        group.finish();
    }

    let mut group = c.benchmark_group("tenant_keys");
    let n = AtomicU64::new(0);
    group.bench_function("derive_cold", |b| {
        b.iter(|| {
            let id = format!("tenant-{}", n.fetch_add(1, Ordering::Relaxed));
            black_box(keyring.tenant(&id).unwrap().preload().unwrap())
        })
    });
    group.bench_function("cached", |b| b.iter(|| black_box(keyring.tenant("acme").unwrap().preload().unwrap())));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = records
}
criterion_main!(benches);
