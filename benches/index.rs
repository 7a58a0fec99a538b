//! One blind index value against raw HMAC-SHA256 of the same bytes (the baseline: a
//! pre-keyed HMAC state cloned per value, the least any HMAC-based index must do), and a
//! lookup over two key versions. Ends with the paired ratio (goal: at most 1.5).
//!
//! `cargo bench --bench index`   (`ATREST_INDEX_ROUNDS`: rounds of the paired ratio, default 15)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use atrest::{BlindIndex, Keyring, LocalRootKey, Tenant, Transform};
use criterion::{Criterion, criterion_group};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A typical indexed value: an email address (one SHA-256 block with its length prefix).
const VALUE: &[u8] = b"alice.example@example.com";

struct Setup {
    keyring: Keyring,
    tenant: Tenant,
    identity: BlindIndex,
    lowercase: BlindIndex,
    raw: Hmac<Sha256>,
}

fn setup() -> Setup {
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let identity = BlindIndex::builder("contacts.email").bits(32).build().unwrap();
    let lowercase = BlindIndex::builder("contacts.email_ci").bits(32).field(Transform::LowercaseTrim).build().unwrap();
    let raw = <Hmac<Sha256> as KeyInit>::new_from_slice(&[7u8; 32]).unwrap();
    Setup { keyring, tenant, identity, lowercase, raw }
}

fn raw_hmac(raw: &Hmac<Sha256>, value: &[u8]) -> [u8; 32] {
    let mut mac = raw.clone();
    mac.update(value);
    mac.finalize().into_bytes().into()
}

fn index(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("index");
    group.bench_function("raw_hmac_sha256", |b| b.iter(|| black_box(raw_hmac(&s.raw, black_box(VALUE)))));
    group.bench_function("raw_hmac_sha256_keyed_per_value", |b| {
        b.iter(|| {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[7u8; 32]).unwrap();
            mac.update(black_box(VALUE));
            black_box(mac.finalize().into_bytes())
        })
    });
    group.bench_function("blind_index", |b| {
        b.iter(|| black_box(s.tenant.blind_index(&s.identity, &[black_box(VALUE)])))
    });
    group.bench_function("blind_index_lowercase_trim", |b| {
        b.iter(|| black_box(s.tenant.blind_index(&s.lowercase, &[black_box(VALUE)])))
    });
    s.keyring.rotate().unwrap();
    group.bench_function("blind_index_lookup_2_versions", |b| {
        b.iter(|| black_box(s.tenant.blind_index_lookup(&s.identity, &[black_box(VALUE)])))
    });
    group.finish();
}

fn time(iters: u32, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed()
}

/// Median over rounds of (index time / raw time), the two timed back to back.
fn paired_ratio() {
    let s = setup();
    let rounds: usize = std::env::var("ATREST_INDEX_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(15).max(3);
    let iters = 200_000;
    let raw = || {
        black_box(raw_hmac(&s.raw, black_box(VALUE)));
    };
    let idx = || {
        black_box(s.tenant.blind_index(&s.identity, &[black_box(VALUE)]).unwrap());
    };
    time(iters, raw);
    time(iters, idx);
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|r| {
            let (a, b) = if r % 2 == 0 {
                (time(iters, raw), time(iters, idx))
            } else {
                (time(iters, idx), time(iters, raw)).rev()
            };
            b.as_secs_f64() / a.as_secs_f64()
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(iters);
    println!(
        "\nblind index value / raw HMAC-SHA256 of the same {} bytes: {:.2}x (median of {rounds} paired rounds; goal <= 1.5)\n\
         last round: raw {:.0} ns, index {:.0} ns per value",
        VALUE.len(),
        ratios[ratios.len() / 2],
        per(time(iters, raw)),
        per(time(iters, idx)),
    );
}

trait Rev {
    fn rev(self) -> Self;
}

impl Rev for (Duration, Duration) {
    fn rev(self) -> Self {
        (self.1, self.0)
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = index
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    paired_ratio();
}
