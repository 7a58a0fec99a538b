//! Property tests of sealed records through the public API: round trips for any plaintext
//! and context in both record suites, and rejection of every modification (bit flips,
//! truncation, extension, other tenant, other context, other key version), of arbitrary
//! bytes, with the buffer-reusing variants agreeing with the one-shot calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::{Arc, LazyLock};

use atrest::{
    Context, KeyVersion, Keyring, KeyringError, LocalRootKey, MasterVersion, OpenError, RECORD_OVERHEAD, RecordSuite,
    RootKey, RootKeyProvider, SealError, Suite, Tenant, record_info,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;

const ROOT: [u8; 32] = *b"records_props test root key 0001";

fn root() -> Arc<dyn RootKeyProvider> {
    Arc::new(LocalRootKey::new(RootKey::from_bytes(ROOT)))
}

/// `V1`: a keyring with master v1 only. `V2`: the same keyring (same id and v1 key), then
/// rotated once: v1 enabled, v2 primary. Records sealed by `V1` open in `V2`.
static V1: LazyLock<Keyring> =
    LazyLock::new(|| Keyring::in_memory(LocalRootKey::new(RootKey::from_bytes(ROOT))).unwrap());
static V2: LazyLock<Keyring> = LazyLock::new(|| {
    let k = Keyring::from_bytes(&V1.to_bytes().unwrap(), root()).unwrap();
    assert_eq!(k.rotate().unwrap(), MasterVersion::new(2));
    k
});

/// Moderate case counts (the whole file runs in seconds in debug builds); failing inputs
/// are saved beside this file as `records_props.proptest-regressions`, to be committed.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

const SUITES: [Suite; 2] = [Suite::XAes256Gcm, Suite::XChaCha20Poly1305];

fn tenant(k: &Keyring, id: &str, suite: Suite) -> Tenant {
    k.tenant(id).unwrap().with_suite(RecordSuite::from_suite(suite).unwrap())
}

type Pairs = Vec<(String, Vec<u8>)>;

fn ctx(pairs: &Pairs) -> Context {
    Context::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

fn pairs() -> impl Strategy<Value = Pairs> {
    let key = proptest::collection::vec(any::<char>(), 0..8).prop_map(|c| c.into_iter().collect::<String>());
    proptest::collection::vec((key, proptest::collection::vec(any::<u8>(), 0..24)), 0..4)
}

fn plaintext() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..4096)
}

fn tenant_id() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,20}"
}

/// Contexts that differ from `p` but are "close": reordered, one pair dropped or added, a
/// byte moved between a key and its value, a value byte changed.
fn other_contexts(p: &Pairs) -> Vec<Context> {
    let mut out: Vec<Pairs> = Vec::new();
    if p.len() >= 2 {
        let mut r = p.clone();
        r.swap(0, 1);
        out.push(r);
        let mut rev = p.clone();
        rev.reverse();
        out.push(rev);
    }
    for i in 0..p.len() {
        let mut d = p.clone();
        d.remove(i);
        out.push(d);
        let mut v = p.clone();
        v[i].1.push(0);
        out.push(v);
        if let Some(b) = p[i].1.first() {
            let mut c = p.clone();
            c[i].1[0] = b.wrapping_add(1);
            out.push(c);
        }
        // Move the key's last character into the front of the value: same concatenation.
        let mut m = p.clone();
        if let Some(ch) = m[i].0.pop() {
            let mut moved = ch.to_string().into_bytes();
            moved.extend_from_slice(&m[i].1);
            m[i].1 = moved;
            out.push(m);
        }
    }
    let mut more = p.clone();
    more.push((String::new(), Vec::new()));
    out.push(more);
    let base = ctx(p);
    out.iter().map(ctx).filter(|c| c.canonical_bytes() != base.canonical_bytes()).collect()
}

fn assert_auth_err(r: Result<Vec<u8>, OpenError>, what: &str) {
    assert!(matches!(r, Err(OpenError::Authentication)), "{what}: {r:?}");
}

/// The error a single bit flip must produce: the version byte is a format error, anything
/// else (suite, key version, nonce, ciphertext, tag) is an authentication failure (the
/// flipped master versions and generations do not exist in `V2`, or exist and mismatch).
fn check_flip(t: &Tenant, sealed: &[u8], c: &Context, bit: usize) {
    let mut bad = sealed.to_vec();
    bad[bit / 8] ^= 1 << (bit % 8);
    let r = t.open(&bad, c);
    if bit / 8 == 0 {
        assert!(matches!(r, Err(OpenError::UnsupportedFormat(v)) if v == bad[0]), "bit {bit}: {r:?}");
    } else {
        assert!(matches!(r, Err(OpenError::Authentication)), "bit {bit}: {r:?}");
    }
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn round_trip_any_plaintext_and_context(pt in plaintext(), p in pairs(), id in tenant_id()) {
        let c = ctx(&p);
        for suite in SUITES {
            let t = tenant(&V2, &id, suite);
            let sealed = t.seal(&pt, &c).unwrap();
            prop_assert_eq!(sealed.len(), pt.len() + 46);
            prop_assert_eq!(RECORD_OVERHEAD, 46);
            let info = record_info(&sealed).unwrap();
            prop_assert_eq!(info.suite, suite);
            prop_assert_eq!(info.key_version, KeyVersion { master: MasterVersion::new(2), generation: 0 });
            prop_assert_eq!(info.plaintext_len, pt.len());
            prop_assert_eq!(t.open(&sealed, &c).unwrap(), pt.clone());
            // Opening follows the header, not the handle's sealing suite.
            let other_suite = tenant(&V2, &id, SUITES[usize::from(suite == Suite::XAes256Gcm)]);
            prop_assert_eq!(other_suite.open(&sealed, &c).unwrap(), pt.clone());
            // Two seals of the same input differ (fresh nonces).
            prop_assert_ne!(t.seal(&pt, &c).unwrap(), sealed);
        }
    }

    #[test]
    fn any_single_bit_flip_is_rejected(pt in proptest::collection::vec(any::<u8>(), 0..512), p in pairs(), at in any::<Index>()) {
        let c = ctx(&p);
        for suite in SUITES {
            let t = tenant(&V2, "acme", suite);
            let sealed = t.seal(&pt, &c).unwrap();
            check_flip(&t, &sealed, &c, at.index(sealed.len() * 8));
        }
    }

    #[test]
    fn any_truncation_or_extension_is_rejected(
        pt in proptest::collection::vec(any::<u8>(), 0..512),
        cut in any::<Index>(),
        tail in proptest::collection::vec(any::<u8>(), 1..64),
        head in proptest::collection::vec(any::<u8>(), 1..8),
    ) {
        let c = Context::new().with("k", "v");
        for suite in SUITES {
            let t = tenant(&V2, "acme", suite);
            let sealed = t.seal(&pt, &c).unwrap();
            let n = cut.index(sealed.len());
            assert_auth_err(t.open(&sealed[..n], &c), "truncated");
            assert_auth_err(t.open(&[sealed.as_slice(), &tail].concat(), &c), "extended");
            prop_assert!(t.open(&[head.as_slice(), &sealed].concat(), &c).is_err());
        }
    }

    #[test]
    fn other_tenant_or_context_is_rejected(pt in proptest::collection::vec(any::<u8>(), 0..256), p in pairs(), a in tenant_id(), b in tenant_id()) {
        prop_assume!(a != b);
        let c = ctx(&p);
        let others = other_contexts(&p);
        for suite in SUITES {
            let ta = tenant(&V2, &a, suite);
            let sealed = ta.seal(&pt, &c).unwrap();
            assert_auth_err(tenant(&V2, &b, suite).open(&sealed, &c), "other tenant");
            for o in &others {
                assert_auth_err(ta.open(&sealed, o), "other context");
            }
        }
    }

    #[test]
    fn other_key_version_is_rejected(pt in proptest::collection::vec(any::<u8>(), 0..256), p in pairs()) {
        let c = ctx(&p);
        for suite in SUITES {
            // Sealed under v1 before the rotation; opens after it.
            let sealed = tenant(&V1, "acme", suite).seal(&pt, &c).unwrap();
            prop_assert_eq!(record_info(&sealed).unwrap().key_version.master, MasterVersion::new(1));
            let t2 = tenant(&V2, "acme", suite);
            prop_assert_eq!(t2.open(&sealed, &c).unwrap(), pt.clone());
            // Re-labelled to name v2 (exists, primary), v3 (does not exist), generation 1.
            for (offset, value) in [(2usize, 2u16), (2, 3), (2, 0), (4, 1)] {
                let mut bad = sealed.clone();
                bad[offset..offset + 2].copy_from_slice(&value.to_be_bytes());
                assert_auth_err(t2.open(&bad, &c), "relabelled key version");
            }
            // And a v2 record re-labelled to name v1.
            let mut bad = t2.seal(&pt, &c).unwrap();
            bad[2..4].copy_from_slice(&1u16.to_be_bytes());
            assert_auth_err(t2.open(&bad, &c), "v2 record relabelled to v1");
        }
    }

    #[test]
    fn buffer_variants_agree_with_one_shot(pt in plaintext(), p in pairs(), prefix in proptest::collection::vec(any::<u8>(), 0..64)) {
        let c = ctx(&p);
        for suite in SUITES {
            let t = tenant(&V2, "acme", suite);
            let sealed = t.seal(&pt, &c).unwrap();
            prop_assert_eq!(sealed.len(), pt.len() + RECORD_OVERHEAD);
            // seal_into and open_into append after what the buffer already holds.
            let mut out = prefix.clone();
            t.seal_into(&pt, &c, &mut out).unwrap();
            prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
            prop_assert_eq!(t.open(&out[prefix.len()..], &c).unwrap(), pt.clone());
            let mut out = prefix.clone();
            t.open_into(&sealed, &c, &mut out).unwrap();
            prop_assert_eq!(out, [prefix.as_slice(), &pt].concat());
        }
    }

    #[test]
    fn failed_opens_leave_buffers_as_documented(pt in proptest::collection::vec(any::<u8>(), 0..512), prefix in proptest::collection::vec(any::<u8>(), 0..64), at in any::<Index>()) {
        let c = Context::new().with("row", "1");
        for suite in SUITES {
            let t = tenant(&V2, "acme", suite);
            let mut bad = t.seal(&pt, &c).unwrap();
            let bit = at.index(bad.len() * 8);
            bad[bit / 8] ^= 1 << (bit % 8);
            // open_into: `out` unchanged.
            let mut out = prefix.clone();
            prop_assert!(t.open_into(&bad, &c, &mut out).is_err());
            prop_assert_eq!(&out, &prefix);
            // Wrong context: same.
            let good = t.seal(&pt, &c).unwrap();
            let mut out = prefix.clone();
            prop_assert!(t.open_into(&good, &Context::new(), &mut out).is_err());
            prop_assert_eq!(&out, &prefix);
        }
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn arbitrary_bytes_never_panic_or_open(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let t = tenant(&V2, "acme", Suite::XAes256Gcm);
        prop_assert!(t.open(&bytes, &Context::new()).is_err());
        let mut out = vec![7u8; 3];
        prop_assert!(t.open_into(&bytes, &Context::new(), &mut out).is_err());
        prop_assert_eq!(out, vec![7u8; 3]);
        if let Ok(info) = record_info(&bytes) {
            prop_assert_eq!(info.format_version, 1);
            prop_assert_eq!(info.plaintext_len + RECORD_OVERHEAD, bytes.len());
        }
        let _ = record_info(&bytes).map(|i| i.key_version);
        prop_assert!(Keyring::from_bytes(&bytes, root()).is_err());
    }

    #[test]
    fn arbitrary_bytes_behind_a_plausible_header_never_open(
        suite in prop::sample::select(vec![0u8, 1, 2, 3, 4, 255]),
        master in 0u16..4,
        generation in 0u16..3,
        body in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut bytes = vec![1, suite];
        bytes.extend_from_slice(&master.to_be_bytes());
        bytes.extend_from_slice(&generation.to_be_bytes());
        bytes.extend_from_slice(&body);
        let t = tenant(&V2, "acme", Suite::XAes256Gcm);
        prop_assert!(t.open(&bytes, &Context::new()).is_err());
        match record_info(&bytes) {
            Ok(info) => {
                prop_assert!(suite == 1 || suite == 3, "suite {suite} accepted by record_info");
                prop_assert_eq!(info.key_version, KeyVersion { master: MasterVersion::new(master), generation });
            }
            Err(e) => prop_assert!(matches!(e, OpenError::Authentication)),
        }
    }

    #[test]
    fn arbitrary_keyring_text_never_panics(body in "\\PC{0,300}", mac in "[0-9a-fA-F]{0,70}") {
        let text = format!("atrest-keyring v1\n{body}\nmac {mac}\n");
        prop_assert!(Keyring::from_bytes(text.as_bytes(), root()).is_err());
    }
}

#[test]
fn every_bit_flip_of_small_records_is_rejected() {
    let mut checked = 0;
    for suite in SUITES {
        let t = tenant(&V2, "acme", suite);
        for pt in [&b""[..], b"x", &[0xa5; 100]] {
            for c in [Context::new(), Context::new().with("table", "t").with("row", "1")] {
                let sealed = t.seal(pt, &c).unwrap();
                for bit in 0..sealed.len() * 8 {
                    check_flip(&t, &sealed, &c, bit);
                    checked += 1;
                }
                // And every truncation.
                for n in 0..sealed.len() {
                    assert_auth_err(t.open(&sealed[..n], &c), "truncated");
                    checked += 1;
                }
            }
        }
    }
    println!("exhaustive bit flips and truncations rejected: {checked}");
    assert!(checked > 0);
}

#[test]
fn v1_record_opens_until_its_version_is_disabled() {
    // A separate keyring: V2 is shared by the property tests and must not change.
    let k1 = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let c = Context::new().with("row", "9");
    let sealed = k1.tenant("acme").unwrap().seal(b"payload", &c).unwrap();
    k1.rotate().unwrap();
    let t = k1.tenant("acme").unwrap();
    assert_eq!(t.open(&sealed, &c).unwrap(), b"payload");
    let v1 = MasterVersion::new(1);
    k1.set_state(v1, atrest::KeyState::Disabled).unwrap();
    assert!(matches!(t.open(&sealed, &c), Err(OpenError::KeyDisabled(v)) if v == v1));
    // A bit flip in the key version of a v2 record never yields plaintext either.
    let v2_record = t.seal(b"payload", &c).unwrap();
    for bit in 16..48 {
        let mut bad = v2_record.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let r = t.open(&bad, &c);
        assert!(
            matches!(r, Err(OpenError::Authentication | OpenError::KeyDisabled(_) | OpenError::KeyDestroyed(_))),
            "bit {bit}: {r:?}"
        );
    }
}

#[test]
fn shredded_tenant_seal_leaves_buffers_as_documented() {
    let k = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let t = k.tenant("acme").unwrap();
    let c = Context::new();
    let sealed = t.seal(b"secret", &c).unwrap();
    k.shred_tenant("acme", atrest::ShredEvidence::Unverified).unwrap();
    assert!(matches!(t.seal(b"plaintext", &c), Err(SealError::TenantShredded { .. })));
    let mut out = b"prefix".to_vec();
    assert!(t.seal_into(b"x", &c, &mut out).is_err());
    assert_eq!(out, b"prefix");
    assert!(matches!(t.open(&sealed, &c), Err(OpenError::TenantShredded { .. })));
    assert!(matches!(k.tenant("acme"), Err(KeyringError::TenantShredded { .. })));
}
