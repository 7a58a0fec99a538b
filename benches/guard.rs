//! The hot-path guard: measures atrest against the raw AES-256-GCM baseline of the same
//! backend *in the same run*, and fails (exit code 1) when a ratio crosses its bound.
//!
//! `scripts/bench-guard` runs it (`cargo bench --bench guard [--features aws-lc]`).
//!
//! Only ratios are checked, never absolute times, and each ratio is the median over rounds
//! in which the baseline and the subject run back to back (interleaved), so a machine that
//! is slow or loaded for a while slows both sides of a pair alike. The bounds are loose
//! enough for a loaded two-core CI machine; they catch a hot path that starts to allocate
//! per chunk, copy twice, re-key per message, or take a system call per record.
//!
//! Environment: `ATREST_GUARD_ROUNDS` (default 15) rounds per check.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    missing_docs
)]

use std::hint::black_box;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use aes_gcm::Aes256Gcm;
use atrest::Backend;
use atrest::aead::{AeadInOut, KeyInit};
use atrest::{BackupContext, BackupOptions, BackupReader, BackupWriter, Context, Keyring, LocalRootKey, Tenant};

/// Backup data per measurement (32 chunks of 1 MiB): large enough that the fixed cost of a
/// stream (key unwrap, two batch buffers) does not dominate.
const BACKUP_BYTES: usize = 32 << 20;
const CHUNK: usize = 1 << 20;

/// How a ratio is compared with its bound.
#[derive(Clone, Copy)]
enum Bound {
    /// Throughput relative to the baseline must be at least this.
    AtLeast(f64),
    /// Time relative to the baseline must be at most this.
    AtMost(f64),
    /// Printed, not checked (scaling with threads means little on a loaded machine).
    Info,
}

struct Check {
    name: String,
    ratio: f64,
    bound: Bound,
    unit: &'static str,
}

impl Check {
    fn ok(&self) -> bool {
        match self.bound {
            Bound::AtLeast(b) => self.ratio >= b,
            Bound::AtMost(b) => self.ratio <= b,
            Bound::Info => true,
        }
    }
}

fn rounds() -> usize {
    std::env::var("ATREST_GUARD_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(15).max(3)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Median over rounds of `subject time / baseline time`, the two timed back to back (in
/// alternating order) in each round, after one warm-up of each.
fn paired(mut baseline: impl FnMut(), mut subject: impl FnMut()) -> f64 {
    baseline();
    subject();
    let ratios = (0..rounds())
        .map(|r| {
            let (b, s) = if r % 2 == 0 {
                let b = time(&mut baseline);
                (b, time(&mut subject))
            } else {
                let s = time(&mut subject);
                (time(&mut baseline), s)
            };
            s.as_secs_f64() / b.as_secs_f64()
        })
        .collect();
    median(ratios)
}

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

/// Pre-keyed AES-256-GCM of one backend: the baseline.
enum Raw {
    RustCrypto(Box<Aes256Gcm>),
    #[cfg(feature = "aws-lc")]
    AwsLc(aws_lc_rs::aead::LessSafeKey),
}

impl Raw {
    fn new(backend: Backend) -> Self {
        match backend {
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc => Raw::AwsLc(aws_lc_rs::aead::LessSafeKey::new(
                aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &[7; 32]).unwrap(),
            )),
            _ => Raw::RustCrypto(Box::new(Aes256Gcm::new(&[7u8; 32].into()))),
        }
    }

    fn seal(&self, n: [u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        match self {
            Raw::RustCrypto(g) => g.encrypt_inout_detached(&n.into(), aad, buf.into()).unwrap().into(),
            #[cfg(feature = "aws-lc")]
            Raw::AwsLc(k) => {
                let n = aws_lc_rs::aead::Nonce::assume_unique_for_key(n);
                let tag = k.seal_in_place_separate_tag(n, aws_lc_rs::aead::Aad::from(aad), buf).unwrap();
                tag.as_ref().try_into().unwrap()
            }
        }
    }

    /// Opens in place (the ciphertext must be genuine: RustCrypto skips decryption when the
    /// tag does not verify, which would make the baseline too fast).
    fn open(&self, n: [u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) {
        match self {
            Raw::RustCrypto(g) => g.decrypt_inout_detached(&n.into(), aad, buf.into(), tag.into()).unwrap(),
            #[cfg(feature = "aws-lc")]
            Raw::AwsLc(k) => {
                let n = aws_lc_rs::aead::Nonce::assume_unique_for_key(n);
                k.open_in_place_separate_tag(n, aws_lc_rs::aead::Aad::from(aad), tag, buf).unwrap();
            }
        }
    }
}

fn backup_checks(tenant: &Tenant, checks: &mut Vec<Check>) {
    let ctx = BackupContext::full("guard");
    let pt: Vec<u8> = (0..BACKUP_BYTES).map(|i| (i % 251) as u8).collect();
    let mut buf = pt.clone();
    let aad = [0u8; 32];
    for backend in Backend::available().iter().copied() {
        let raw = Raw::new(backend);
        let opts = BackupOptions::default().chunk_size(CHUNK).threads(1).backend(backend);
        let r = paired(
            || {
                for (i, m) in buf.chunks_mut(CHUNK).enumerate() {
                    black_box(raw.seal(nonce(i), &aad, m));
                }
            },
            || {
                let mut w = BackupWriter::new(tenant, &ctx, opts, Sink(0)).unwrap();
                w.write_all(black_box(&pt)).unwrap();
                black_box(w.finish().unwrap().0);
            },
        );
        checks.push(Check {
            name: format!("backup encrypt, 1 thread, {backend}"),
            ratio: 1.0 / r,
            bound: Bound::AtLeast(0.6),
            unit: "x raw throughput",
        });

        // Decrypt baseline: each ciphertext message copied into a reused buffer and opened
        // there (what reading from an `io::Read` costs at least: the read is the copy).
        let stream = atrest::encrypt_backup(tenant, &ctx, &pt, opts).unwrap();
        let mut msg = vec![0u8; CHUNK];
        let mut cts = pt.clone();
        let tags: Vec<[u8; 16]> = cts.chunks_mut(CHUNK).enumerate().map(|(i, c)| raw.seal(nonce(i), &aad, c)).collect();
        let r = paired(
            || {
                for ((i, m), tag) in cts.chunks(CHUNK).enumerate().zip(&tags) {
                    msg.copy_from_slice(m);
                    raw.open(nonce(i), &aad, &mut msg, tag);
                }
            },
            || {
                let mut r = BackupReader::with_options(tenant, &ctx, black_box(&stream[..]), opts).unwrap();
                black_box(r.copy_to(Sink(0)).unwrap());
            },
        );
        checks.push(Check {
            name: format!("backup decrypt, 1 thread, {backend}"),
            ratio: 1.0 / r,
            bound: Bound::AtLeast(0.5),
            unit: "x raw throughput",
        });
    }
}

/// Thread scaling, raw and atrest, each as a paired ratio (1 thread against all threads).
fn scaling_info(tenant: &Tenant, checks: &mut Vec<Check>) {
    use rayon::prelude::*;
    let all = rayon::current_num_threads();
    if all < 2 {
        return;
    }
    let ctx = BackupContext::full("guard");
    let pt: Vec<u8> = (0..BACKUP_BYTES).map(|i| (i % 253) as u8).collect();
    let mut buf = pt.clone();
    let aad = [0u8; 32];
    for backend in Backend::available().iter().copied() {
        let raw = Raw::new(backend);
        let cell = std::cell::RefCell::new(&mut buf);
        let r = paired(
            || {
                for (i, m) in cell.borrow_mut().chunks_mut(CHUNK).enumerate() {
                    black_box(raw.seal(nonce(i), &aad, m));
                }
            },
            || {
                cell.borrow_mut().par_chunks_mut(CHUNK).enumerate().for_each(|(i, m)| {
                    black_box(raw.seal(nonce(i), &aad, m));
                });
            },
        );
        let name = format!("raw {all} threads / 1 thread, {backend}");
        checks.push(Check { name, ratio: 1.0 / r, bound: Bound::Info, unit: "x throughput" });
        let (ctx, pt) = (&ctx, &pt);
        let encrypt = |threads: usize| {
            let opts = BackupOptions::default().chunk_size(CHUNK).threads(threads).backend(backend);
            move || {
                let mut w = BackupWriter::new(tenant, ctx, opts, Sink(0)).unwrap();
                w.write_all(black_box(pt)).unwrap();
                black_box(w.finish().unwrap().0);
            }
        };
        let r = paired(encrypt(1), encrypt(0));
        let name = format!("backup encrypt {all} threads / 1 thread, {backend}");
        checks.push(Check { name, ratio: 1.0 / r, bound: Bound::Info, unit: "x throughput" });
    }
}

/// atrest with default options (all threads, the build's default backend) against the
/// `age` crate encrypting the same bytes to one X25519 recipient (one thread).
fn age_info(tenant: &Tenant, checks: &mut Vec<Check>) {
    let ctx = BackupContext::full("guard");
    let pt: Vec<u8> = (0..BACKUP_BYTES).map(|i| (i % 247) as u8).collect();
    let recipient = age::x25519::Identity::generate().to_public();
    let r = paired(
        || {
            let e = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient)).unwrap();
            let mut w = e.wrap_output(Sink(0)).unwrap();
            w.write_all(black_box(&pt)).unwrap();
            black_box(w.finish().unwrap().0);
        },
        || {
            let mut w = BackupWriter::new(tenant, &ctx, BackupOptions::default(), Sink(0)).unwrap();
            w.write_all(black_box(&pt)).unwrap();
            black_box(w.finish().unwrap().0);
        },
    );
    let name = format!("backup encrypt (defaults, {}) / age", Backend::default());
    checks.push(Check { name, ratio: 1.0 / r, bound: Bound::Info, unit: "x throughput" });
}

fn record_checks(tenant: &Tenant, checks: &mut Vec<Check>) {
    const N: usize = 4000;
    let ctx = Context::new().with("table", "contacts").with("column", "email").with("row", "12345");
    let raw = Raw::new(Backend::default());
    // The usual baseline authenticates 48 bytes; a record authenticates its header, the
    // tenant id and the context (length-prefixed): the second baseline
    // authenticates as many bytes, so its ratio is what atrest adds beyond the data it binds.
    let record_aad = vec![0u8; 4 + 16 + 6 + 4 + tenant.id().as_str().len() + ctx.canonical_bytes().len()];
    for (size, bound) in [(64usize, 4.0), (1024, 2.5)] {
        let pt = vec![0x5au8; size];
        let mut buf = pt.clone();
        let mut out = Vec::with_capacity(size + 64);
        let mut counter = 0usize;
        for (aad, bound, label) in
            [(&[0u8; 48][..], Bound::AtMost(bound), ""), (&record_aad, Bound::Info, ", same AAD length")]
        {
            let r = paired(
                || {
                    for _ in 0..N {
                        counter += 1;
                        black_box(raw.seal(nonce(counter), aad, &mut buf));
                    }
                },
                || {
                    for _ in 0..N {
                        out.clear();
                        tenant.seal_into(black_box(&pt), &ctx, &mut out).unwrap();
                    }
                },
            );
            let name = format!("record seal {size} B ({}{label})", Backend::default());
            checks.push(Check { name, ratio: r, bound, unit: "x raw time" });
        }

        // Both sides copy the ciphertext into a buffer and open it there.
        let sealed = tenant.seal(&pt, &ctx).unwrap();
        for (aad, bound, label) in
            [(&[0u8; 48][..], Bound::AtMost(bound), ""), (&record_aad, Bound::Info, ", same AAD length")]
        {
            let mut ct = pt.clone();
            let tag = raw.seal(nonce(0), aad, &mut ct);
            let r = paired(
                || {
                    for _ in 0..N {
                        buf.copy_from_slice(&ct);
                        raw.open(nonce(0), aad, &mut buf, &tag);
                    }
                },
                || {
                    for _ in 0..N {
                        out.clear();
                        tenant.open_into(black_box(&sealed), &ctx, &mut out).unwrap();
                    }
                },
            );
            let name = format!("record open {size} B ({}{label})", Backend::default());
            checks.push(Check { name, ratio: r, bound, unit: "x raw time" });
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported (the guard is small).
    let started = Instant::now();
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let mut checks = Vec::new();
    record_checks(&tenant, &mut checks);
    backup_checks(&tenant, &mut checks);
    scaling_info(&tenant, &mut checks);
    age_info(&tenant, &mut checks);

    println!("atrest bench guard ({} rounds per check, medians of paired ratios)", rounds());
    let mut failed = 0;
    for c in &checks {
        let bound = match c.bound {
            Bound::AtLeast(b) => format!("(bound >= {b:.2})"),
            Bound::AtMost(b) => format!("(bound <= {b:.2})"),
            Bound::Info => "(not checked)".to_owned(),
        };
        let verdict = if c.ok() { "ok" } else { "FAIL" };
        println!("  {:<50} {:>6.2} {:<20} {bound:<16} {verdict}", c.name, c.ratio, c.unit);
        failed += usize::from(!c.ok());
    }
    println!("guard took {:.1} s", started.elapsed().as_secs_f64());
    if failed > 0 {
        eprintln!("bench guard: {failed} ratio(s) crossed their bounds");
        std::process::exit(1);
    }
}
