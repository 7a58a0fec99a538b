//! Backup stream throughput against raw AES-256-GCM over the same bytes in 1 MiB messages
//! (the baseline, same group), on one thread and on all cores.
//!
//! `cargo bench --bench backup`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::hint::black_box;
use std::io::{self, Write};
use std::time::Duration;

use aes_gcm::Aes256Gcm;
use atrest::aead::{AeadInOut, KeyInit};
use atrest::{BackupContext, BackupOptions, BackupReader, BackupWriter, Keyring, LocalRootKey, encrypt_backup};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const TOTAL: usize = 64 << 20;
const CHUNK: usize = 1 << 20;

/// Counts bytes and drops them, like a fast disk.
struct Sink(u64);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn backup(c: &mut Criterion) {
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let ctx = BackupContext::full("bench");
    let pt: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let all = rayon::current_num_threads();

    let mut group = c.benchmark_group(format!("backup/{}MiB", TOTAL >> 20));
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));

    // Baseline: pre-keyed AES-256-GCM over the same bytes in 1 MiB messages, one thread.
    let raw = Aes256Gcm::new(&[7u8; 32].into());
    let aad = [0u8; 32];
    let mut buf = pt.clone();
    let mut tags = Vec::with_capacity(TOTAL / CHUNK);
    group.bench_function("raw_aes256gcm_encrypt", |b| {
        b.iter(|| {
            tags.clear();
            for (i, m) in buf.chunks_mut(CHUNK).enumerate() {
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
                tags.push(raw.encrypt_inout_detached(&nonce.into(), &aad, m.into()).unwrap());
            }
            black_box(&tags);
        })
    });
    let mut ct = pt.clone();
    let fixed_tags: Vec<_> = ct
        .chunks_mut(CHUNK)
        .enumerate()
        .map(|(i, m)| {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            raw.encrypt_inout_detached(&nonce.into(), &aad, m.into()).unwrap()
        })
        .collect();
    group.bench_function("raw_aes256gcm_decrypt", |b| {
        b.iter(|| {
            buf.copy_from_slice(&ct);
            for ((i, m), tag) in buf.chunks_mut(CHUNK).enumerate().zip(&fixed_tags) {
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
                raw.decrypt_inout_detached(&nonce.into(), &aad, m.into(), tag).unwrap();
            }
        })
    });

    let stream = encrypt_backup(&tenant, &ctx, &pt, BackupOptions::default()).unwrap();
    for threads in [1, all] {
        let opts = BackupOptions::default().chunk_size(CHUNK).threads(threads);
        group.bench_function(BenchmarkId::new("writer_encrypt", format!("{threads}t")), |b| {
            b.iter(|| {
                let mut w = BackupWriter::new(&tenant, &ctx, opts, Sink(0)).unwrap();
                w.write_all(black_box(&pt)).unwrap();
                black_box(w.finish().unwrap().0)
            })
        });
        group.bench_function(BenchmarkId::new("one_shot_encrypt", format!("{threads}t")), |b| {
            b.iter(|| black_box(encrypt_backup(&tenant, &ctx, black_box(&pt), opts).unwrap().len()))
        });
        group.bench_function(BenchmarkId::new("reader_decrypt", format!("{threads}t")), |b| {
            b.iter(|| {
                let mut r = BackupReader::with_options(
                    &tenant,
                    &ctx,
                    black_box(&stream[..]),
                    BackupOptions::default().threads(threads),
                )
                .unwrap();
                black_box(io::copy(&mut r, &mut Sink(0)).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, backup);
criterion_main!(benches);
