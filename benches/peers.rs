//! atrest next to its peers, all in one run over the same bytes, so that ratios between them
//! are meaningful even on a shared machine (absolute numbers from different runs are not).
//!
//! `cargo bench --features aws-lc --bench peers` (about two minutes; `-- <filter>` for less).
//! `age` is a dependency of the bench crate (`benches/Cargo.toml`), not of atrest.
//!
//! Backups, 64 MiB of the same plaintext, in 1 MiB chunks / messages:
//!
//! - `raw_rustcrypto_*`, `raw_aws_lc_*`: the baselines, pre-keyed AES-256-GCM of each
//!   backend, 1 MiB messages, one thread. `_encrypt` seals the buffer in place (the hardware
//!   limit: no copy at all); `_encrypt/<n>t` does the same on all threads (how far the
//!   machine scales at all); `_decrypt` copies each ciphertext message into a reused buffer
//!   and opens it there, the least a decryptor reading from an `io::Read` does.
//! - `atrest_encrypt/<backend>/<threads>`: [`BackupWriter`] fed by one `write_all` of the
//!   whole buffer (the writer encrypts straight from it), output to a sink.
//! - `atrest_decrypt/<backend>/<threads>`: [`BackupReader::copy_to`] a sink, the stream read
//!   from memory.
//! - `age_encrypt_x25519` / `age_decrypt_x25519`: the `age` crate (rage) to one X25519
//!   recipient, the same plaintext, output to a sink (ChaCha20-Poly1305 in 64 KiB chunks,
//!   one thread: age has no parallel mode).
//!
//! A Tink-style streaming AEAD is not measured: the only Rust implementation,
//! `tink-streaming-aead` (project-oak/tink-rust), is a port that is "not an officially
//! supported Google product", whose last release (0.3.0, 2024-11-28) was a dependency bump,
//! which still builds on `aes-gcm` 0.10 / `aes` 0.8 (two RustCrypto generations old) and
//! brings about 90 crates (prost, a global key-manager registry). We do not count that as
//! maintained, and its one-thread AES-GCM-HKDF segments would measure `aes-gcm` 0.10 more
//! than the construction.
//!
//! Records, 64 B and 1 KiB: `atrest_seal_into` / `atrest_open_into` against the same
//! backend's pre-keyed AES-256-GCM (`raw_*`), in place, with a 48-byte AAD. The record
//! backend is the build's default (AWS-LC here); `benches/records.rs` without features
//! measures the RustCrypto backend the same way.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::time::Duration;

use aes_gcm::Aes256Gcm;
use atrest::Backend;
use atrest::aead::{AeadInOut, KeyInit};
use atrest::{BackupContext, BackupOptions, BackupReader, BackupWriter, Context, Keyring, LocalRootKey};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;

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

fn nonce(i: usize) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&(i as u64).to_be_bytes());
    n
}

fn backups(c: &mut Criterion) {
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let ctx = BackupContext::full("bench");
    let pt: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let all = rayon::current_num_threads();
    let aad = [0u8; 32];

    let mut group = c.benchmark_group("peers/backup_64MiB");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));

    // Raw baselines, in place, one thread.
    let mut buf = pt.clone();
    let rc = Aes256Gcm::new(&[7u8; 32].into());
    let lc = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    group.bench_function("raw_rustcrypto_encrypt", |b| {
        b.iter(|| {
            for (i, m) in buf.chunks_mut(CHUNK).enumerate() {
                black_box(rc.encrypt_inout_detached(&nonce(i).into(), &aad, m.into()).unwrap());
            }
        })
    });
    group.bench_function("raw_aws_lc_encrypt", |b| {
        b.iter(|| {
            for (i, m) in buf.chunks_mut(CHUNK).enumerate() {
                let _ = black_box(
                    lc.seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce(i)), Aad::from(aad), m).unwrap(),
                );
            }
        })
    });
    // The same on all threads (rayon over the messages): how far the hardware scales.
    group.bench_function(BenchmarkId::new("raw_rustcrypto_encrypt", format!("{all}t")), |b| {
        b.iter(|| {
            buf.par_chunks_mut(CHUNK).enumerate().for_each(|(i, m)| {
                black_box(rc.encrypt_inout_detached(&nonce(i).into(), &aad, m.into()).unwrap());
            })
        })
    });
    group.bench_function(BenchmarkId::new("raw_aws_lc_encrypt", format!("{all}t")), |b| {
        b.iter(|| {
            buf.par_chunks_mut(CHUNK).enumerate().for_each(|(i, m)| {
                let n = Nonce::assume_unique_for_key(nonce(i));
                let _ = black_box(lc.seal_in_place_separate_tag(n, Aad::from(aad), m).unwrap());
            })
        })
    });
    // Decrypt baselines: each 1 MiB ciphertext message copied into a reused buffer and
    // opened there, the least any decryptor reading from an `io::Read` does (the read is the
    // copy).
    let mut ct = pt.clone();
    let tags: Vec<_> = ct
        .chunks_mut(CHUNK)
        .enumerate()
        .map(|(i, m)| rc.encrypt_inout_detached(&nonce(i).into(), &aad, m.into()).unwrap())
        .collect();
    let mut msg = vec![0u8; CHUNK];
    group.bench_function("raw_rustcrypto_decrypt", |b| {
        b.iter(|| {
            for ((i, m), tag) in ct.chunks(CHUNK).enumerate().zip(&tags) {
                msg.copy_from_slice(m);
                rc.decrypt_inout_detached(&nonce(i).into(), &aad, msg.as_mut_slice().into(), tag).unwrap();
            }
        })
    });
    group.bench_function("raw_aws_lc_decrypt", |b| {
        b.iter(|| {
            for ((i, m), tag) in ct.chunks(CHUNK).enumerate().zip(&tags) {
                msg.copy_from_slice(m);
                let n = Nonce::assume_unique_for_key(nonce(i));
                lc.open_in_place_separate_tag(n, Aad::from(aad), tag, &mut msg).unwrap();
            }
        })
    });
    drop(ct);
    drop(buf);

    let stream = atrest::encrypt_backup(&tenant, &ctx, &pt, BackupOptions::default().chunk_size(CHUNK)).unwrap();
    for backend in [Backend::RustCrypto, Backend::AwsLc] {
        for threads in [1, all] {
            let opts = BackupOptions::default().chunk_size(CHUNK).threads(threads).backend(backend);
            let id = format!("{backend}/{threads}t");
            group.bench_function(BenchmarkId::new("atrest_encrypt", &id), |b| {
                b.iter(|| {
                    let mut w = BackupWriter::new(&tenant, &ctx, opts, Sink(0)).unwrap();
                    w.write_all(black_box(&pt)).unwrap();
                    black_box(w.finish().unwrap().0)
                })
            });
            group.bench_function(BenchmarkId::new("atrest_decrypt", &id), |b| {
                b.iter(|| {
                    let mut r = BackupReader::with_options(&tenant, &ctx, black_box(&stream[..]), opts).unwrap();
                    black_box(r.copy_to(Sink(0)).unwrap())
                })
            });
        }
    }
    drop(stream);

    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    group.bench_function("age_encrypt_x25519", |b| {
        b.iter(|| {
            let e = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient)).unwrap();
            let mut w = e.wrap_output(Sink(0)).unwrap();
            w.write_all(black_box(&pt)).unwrap();
            black_box(w.finish().unwrap().0)
        })
    });
    let mut aged = Vec::with_capacity(TOTAL + (1 << 20));
    let e = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient)).unwrap();
    let mut w = e.wrap_output(&mut aged).unwrap();
    w.write_all(&pt).unwrap();
    w.finish().unwrap();
    group.bench_function("age_decrypt_x25519", |b| {
        b.iter(|| {
            let d = age::Decryptor::new_buffered(black_box(&aged[..])).unwrap();
            let mut r = d.decrypt(std::iter::once(&identity as &dyn age::Identity)).unwrap();
            // age's reader hands out 64 KiB chunks; read them into one reused buffer.
            let mut chunk = vec![0u8; 64 << 10];
            let mut n = 0u64;
            loop {
                let k = r.read(&mut chunk).unwrap();
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            black_box(n)
        })
    });
    group.finish();
}

fn records(c: &mut Criterion) {
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let ctx = Context::new().with("table", "contacts").with("column", "email").with("row", "12345");
    let lc = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let aad = [0u8; 48];
    for size in [64usize, 1024] {
        let mut group = c.benchmark_group(format!("peers/records_{size}B"));
        group.throughput(Throughput::Bytes(size as u64));
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(2));
        let pt = vec![0x5au8; size];
        let mut buf = pt.clone();
        let mut counter = 0u64;
        group.bench_function("raw_aws_lc_seal", |b| {
            b.iter(|| {
                counter += 1;
                let mut n = [0u8; 12];
                n[..8].copy_from_slice(&counter.to_le_bytes());
                black_box(
                    lc.seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::from(aad), &mut buf).unwrap(),
                )
            })
        });
        let mut out = Vec::with_capacity(size + 64);
        group.bench_function("atrest_seal_into", |b| {
            b.iter(|| {
                out.clear();
                tenant.seal_into(black_box(&pt), &ctx, &mut out).unwrap();
            })
        });
        let tag =
            lc.seal_in_place_separate_tag(Nonce::assume_unique_for_key([1; 12]), Aad::from(aad), &mut buf).unwrap();
        let ct = buf.clone();
        group.bench_function("raw_aws_lc_open", |b| {
            b.iter(|| {
                buf.copy_from_slice(&ct);
                let n = Nonce::assume_unique_for_key([1; 12]);
                black_box(lc.open_in_place_separate_tag(n, Aad::from(aad), tag.as_ref(), &mut buf).unwrap());
            })
        });
        let sealed = tenant.seal(&pt, &ctx).unwrap();
        group.bench_function("atrest_open_into", |b| {
            b.iter(|| {
                out.clear();
                tenant.open_into(black_box(&sealed), &ctx, &mut out).unwrap();
            })
        });
        group.finish();
    }
}

criterion_group!(benches, backups, records);
criterion_main!(benches);
