//! Blind indexes through the public API: known answers pinned against the committed golden
//! keyring and recomputed independently from the spec in `src/record/index/mod.rs` (tenant
//! keys from the shared reference in `tests/common/spec.rs`, then HKDF and HMAC-SHA256 by
//! hand);
//! properties (same value, same index within a tenant and key version; other tenants,
//! indexes, widths and versions give independent values); rotation (lookups cover every
//! usable version, the indexed rewrap moves a record and its values together); errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::golden and common::spec; the rest of the shared kit is unused here")]
mod common;

use std::sync::{Arc, LazyLock};

use atrest::{
    BlindIndex, Context, IndexError, KeyState, KeyVersion, Keyring, LocalRootKey, MasterVersion, RewrapError, RootKey,
    RootKeyProvider, Transform, record_info,
};
use common::golden as g;
use common::spec::{KeyringSecrets, hkdf32, lp};
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use sha2::Sha256;

// ---------------------------------------------------------------------------------------
// An independent implementation of the spec.

/// The value of already transformed `fields` under the tenant index key `kt`.
fn reference_value(kt: &[u8; 32], name: &str, bits: u16, transform_ids: &[&str], fields: &[&[u8]]) -> Vec<u8> {
    let mut d = [lp(b"atrest/v1/blind-index"), lp(name.as_bytes())].concat();
    d.extend_from_slice(&bits.to_be_bytes());
    d.push(u8::try_from(transform_ids.len()).unwrap());
    for id in transform_ids {
        d.extend_from_slice(&lp(id.as_bytes()));
    }
    let ki = hkdf32(&[], kt, &d);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&ki).unwrap();
    mac.update(&fields.iter().flat_map(|f| lp(f)).collect::<Vec<u8>>());
    let full = mac.finalize().into_bytes();
    let len = usize::from(bits).div_ceil(8);
    let mut out = full[..len].to_vec();
    if !bits.is_multiple_of(8) {
        *out.last_mut().unwrap() &= 0xff << (8 - bits % 8);
    }
    out
}

fn kv(master: u16, generation: u16) -> KeyVersion {
    KeyVersion { master: MasterVersion::new(master), generation }
}

fn email() -> BlindIndex {
    BlindIndex::builder("contacts.email").bits(32).field(Transform::LowercaseTrim).build().unwrap()
}

// ---------------------------------------------------------------------------------------
// Known answers.

/// One pinned case: tenant, key version, index, input fields, transformed fields, value.
struct Kat {
    tenant: &'static str,
    version: (u16, u16),
    index: fn() -> BlindIndex,
    ids: &'static [&'static str],
    fields: &'static [&'static str],
    transformed: &'static [&'static str],
    hex: &'static str,
}

fn phone_last4() -> BlindIndex {
    BlindIndex::builder("contacts.phone_last4").bits(12).field(Transform::LastDigits(4)).build().unwrap()
}

fn name_city() -> BlindIndex {
    BlindIndex::builder("contacts.name_city")
        .bits(256)
        .field(Transform::LowercaseTrim)
        .field(Transform::Identity)
        .build()
        .unwrap()
}

fn phone() -> BlindIndex {
    BlindIndex::builder("contacts.phone").bits(63).field(Transform::DigitsOnly).build().unwrap()
}

const KATS: &[Kat] = &[
    Kat {
        tenant: "acme",
        version: (1, 0),
        index: email,
        ids: &["lowercase-trim"],
        fields: &[" Alice@Example.com\n"],
        transformed: &["alice@example.com"],
        hex: "2f638129",
    },
    Kat {
        tenant: "acme",
        version: (2, 0),
        index: email,
        ids: &["lowercase-trim"],
        fields: &["alice@example.com"],
        transformed: &["alice@example.com"],
        hex: "9ea5cfac",
    },
    Kat {
        tenant: "initech",
        version: (2, 1),
        index: email,
        ids: &["lowercase-trim"],
        fields: &["alice@example.com"],
        transformed: &["alice@example.com"],
        hex: "1079faaa",
    },
    Kat {
        tenant: "initech",
        version: (2, 0),
        index: phone_last4,
        ids: &["last-digits:4"],
        fields: &["+1 (555) 010-9999"],
        transformed: &["9999"],
        hex: "5910",
    },
    Kat {
        tenant: "acme",
        version: (2, 0),
        index: phone,
        ids: &["digits"],
        fields: &["+1 (555) 010-9999"],
        transformed: &["15550109999"],
        hex: "1c085e9d50109214",
    },
    Kat {
        tenant: "acme",
        version: (2, 0),
        index: name_city,
        ids: &["lowercase-trim", "identity"],
        fields: &["Zoë Ægir ", "Zürich"],
        transformed: &["zoë ægir", "Zürich"],
        hex: "b268c762d901f954aa79548ab40ae150fd15d7112373c7966a74167aaa3fe227",
    },
];

#[test]
fn known_answers_follow_the_spec_and_stay_pinned() {
    let keyring = Keyring::from_bytes(&g::read(g::KEYRING_FILE), Arc::new(g::root())).unwrap();
    let secrets = KeyringSecrets::load();
    for (i, k) in KATS.iter().enumerate() {
        let index = (k.index)();
        let version = kv(k.version.0, k.version.1);
        let tenant = keyring.tenant(k.tenant).unwrap();
        let value = tenant.blind_index_at(&index, k.fields, version).unwrap();
        let kt = secrets.tenant_key(k.tenant, k.version.0, k.version.1, b"indexes");
        let transformed: Vec<&[u8]> = k.transformed.iter().map(|s| s.as_bytes()).collect();
        let expect = reference_value(&kt, index.name(), index.bits(), k.ids, &transformed);
        assert_eq!(hex::encode(value.as_bytes()), hex::encode(&expect), "case {i}: against the spec");
        assert_eq!(hex::encode(value.as_bytes()), k.hex, "case {i}: pinned");
        assert_eq!(value.key_version(), version);
        if index.bits() <= 64 {
            let mut top = [0u8; 8];
            top[..expect.len().min(8)].copy_from_slice(&expect[..expect.len().min(8)]);
            let int = u64::from_be_bytes(top) >> (64 - index.bits());
            assert_eq!(value.to_i64().unwrap(), i64::from_be_bytes(int.to_be_bytes()), "case {i}: integer form");
        }
    }
    // The current version of the golden keyring is v2; initech is at generation 1.
    let acme = keyring.tenant("acme").unwrap();
    assert_eq!(
        acme.blind_index(&email(), &["alice@example.com"]).unwrap().as_bytes(),
        hex::decode(KATS[1].hex).unwrap()
    );
    let initech = keyring.tenant("initech").unwrap();
    assert_eq!(initech.blind_index_versions().unwrap(), [kv(2, 1), kv(2, 0), kv(1, 1), kv(1, 0)]);
    let lookup = initech.blind_index_lookup(&email(), &["ALICE@example.com"]).unwrap();
    assert_eq!(lookup.values().len(), 4);
    assert_eq!(hex::encode(lookup.values()[0].as_bytes()), KATS[2].hex);
}

// ---------------------------------------------------------------------------------------
// Properties.

const ROOT: [u8; 32] = *b"blind_index test root key 000001";

/// `V1`: a keyring with master v1. `V2`: the same keyring rotated once (v1 enabled, v2
/// primary) with tenant `initech` at generation 1.
static V1: LazyLock<Keyring> =
    LazyLock::new(|| Keyring::in_memory(LocalRootKey::new(RootKey::from_bytes(ROOT))).unwrap());
static V2: LazyLock<Keyring> = LazyLock::new(|| {
    let root: Arc<dyn RootKeyProvider> = Arc::new(LocalRootKey::new(RootKey::from_bytes(ROOT)));
    let k = Keyring::from_bytes(&V1.to_bytes().unwrap(), root).unwrap();
    k.rotate().unwrap();
    k.rotate_tenant("initech").unwrap();
    k
});

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

fn wide(name: &str, bits: u16) -> BlindIndex {
    BlindIndex::builder(name).bits(bits).build().unwrap()
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn same_value_same_index_within_tenant_and_version(value in proptest::collection::vec(any::<u8>(), 0..80)) {
        let index = wide("p.same", 64);
        let a = V2.tenant("acme").unwrap();
        let first = a.blind_index(&index, &[&value]).unwrap();
        // Another handle, another keyring handle of the same keyring: the same value.
        prop_assert_eq!(first, V2.tenant("acme").unwrap().blind_index(&index, &[&value]).unwrap());
        prop_assert_eq!(first, a.blind_index_at(&index, &[&value], kv(2, 0)).unwrap());
        // The same key version reached from another copy of the keyring.
        let v1_copy = V1.tenant("acme").unwrap().blind_index(&index, &[&value]).unwrap();
        prop_assert_eq!(v1_copy, a.blind_index_at(&index, &[&value], kv(1, 0)).unwrap());
        let lookup = a.blind_index_lookup(&index, &[&value]).unwrap();
        prop_assert_eq!(lookup.values()[0], first);
        prop_assert!(lookup.values().contains(&v1_copy));
    }

    #[test]
    fn transforms_make_equivalent_inputs_equal(
        local in "[a-zA-Z0-9._]{1,20}",
        pad_left in "[ \t\n]{0,3}",
        pad_right in "[ \t\n]{0,3}",
        digits in "[0-9]{6,12}",
    ) {
        let t = V2.tenant("acme").unwrap();
        let canonical = format!("{}@example.com", local.to_lowercase());
        let messy = format!("{pad_left}{}@EXAMPLE.com{pad_right}", local.to_uppercase());
        prop_assert_eq!(t.blind_index(&email(), &[&canonical]).unwrap(), t.blind_index(&email(), &[&messy]).unwrap());
        let formatted = format!("+{} ({}) {}", &digits[..1], &digits[1..4], &digits[4..]);
        let p = phone();
        prop_assert_eq!(t.blind_index(&p, &[&digits]).unwrap(), t.blind_index(&p, &[&formatted]).unwrap());
        let l4 = phone_last4();
        let last = &digits[digits.len() - 4..];
        prop_assert_eq!(t.blind_index(&l4, &[last]).unwrap(), t.blind_index(&l4, &[&formatted]).unwrap());
    }

    #[test]
    fn tenants_indexes_widths_and_versions_are_independent(value in proptest::collection::vec(any::<u8>(), 0..80)) {
        let f = [&value];
        let acme = V2.tenant("acme").unwrap();
        let base = acme.blind_index(&wide("p.ind", 64), &f).unwrap();
        let others = [
            V2.tenant("globex").unwrap().blind_index(&wide("p.ind", 64), &f).unwrap(),
            acme.blind_index(&wide("p.ind2", 64), &f).unwrap(),
            acme.blind_index_at(&wide("p.ind", 64), &f, kv(1, 0)).unwrap(),
            acme.blind_index(&BlindIndex::builder("p.ind").bits(64).field(Transform::DigitsOnly).build().unwrap(), &f).unwrap(),
        ];
        for o in others {
            prop_assert_ne!(o.as_bytes(), base.as_bytes());
        }
        let initech = V2.tenant("initech").unwrap();
        let g1 = initech.blind_index(&wide("p.ind", 64), &f).unwrap();
        prop_assert_eq!(g1.key_version(), kv(2, 1));
        let g0 = initech.blind_index_at(&wide("p.ind", 64), &f, kv(2, 0)).unwrap();
        prop_assert_ne!(g1.as_bytes(), g0.as_bytes());
        // A narrower index of the same name is not a prefix of the wider one.
        let narrow = acme.blind_index(&wide("p.ind", 32), &f).unwrap();
        prop_assert_ne!(narrow.as_bytes(), &base.as_bytes()[..4]);
    }

    #[test]
    fn compound_fields_are_unambiguous(a in "[a-z]{0,8}", b in "[a-z]{0,8}", cut in 0usize..16) {
        let joined = format!("{a}{b}");
        let cut = cut.min(joined.len());
        prop_assume!(cut != a.len());
        let index = BlindIndex::builder("p.compound").bits(64).field(Transform::Identity).field(Transform::Identity).build().unwrap();
        let t = V2.tenant("acme").unwrap();
        let x = t.blind_index(&index, &[a.as_str(), b.as_str()]).unwrap();
        let y = t.blind_index(&index, &[&joined[..cut], &joined[cut..]]).unwrap();
        prop_assert_ne!(x, y);
    }
}

/// Values of different tenants look unrelated: about half of their bits agree.
#[test]
fn other_tenants_values_agree_on_half_their_bits() {
    let index = wide("p.bits", 64);
    let (a, b) = (V2.tenant("acme").unwrap(), V2.tenant("globex").unwrap());
    let (mut same, mut total) = (0u64, 0u64);
    for i in 0..2000u32 {
        let v = i.to_be_bytes();
        let x = a.blind_index(&index, &[v]).unwrap().to_i64().unwrap();
        let y = b.blind_index(&index, &[v]).unwrap().to_i64().unwrap();
        same += u64::from((!(x ^ y)).count_ones());
        total += 64;
    }
    let ratio = same as f64 / total as f64;
    assert!((0.48..0.52).contains(&ratio), "{ratio}");
}

// ---------------------------------------------------------------------------------------
// Rotation.

#[test]
fn rotation_keeps_rows_findable_and_one_pass_migrates_records_and_values() {
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let t = keyring.tenant("acme").unwrap();
    let l4 = phone_last4();
    let ctx = |i: usize| Context::new().with("table", "contacts").with("column", "phone").with("row", i.to_string());
    let phones: Vec<String> = (0..20).map(|i| format!("+1 555 010 {:04}", 1000 + i)).collect();
    let mut rows: Vec<(Vec<u8>, Vec<atrest::IndexValue>)> = phones
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let r = t.seal_indexed(p.as_bytes(), &ctx(i), &[&phone(), &l4]).unwrap();
            assert_eq!(r.index_values[0].key_version(), record_info(&r.sealed).unwrap().key_version);
            (r.sealed, r.index_values)
        })
        .collect();
    let finds = |t: &atrest::Tenant, rows: &[(Vec<u8>, Vec<atrest::IndexValue>)], i: usize| {
        let lookup = t.blind_index_lookup(&phone(), &[&phones[i]]).unwrap();
        rows.iter().enumerate().filter(|(_, r)| lookup.matches(r.1[0].as_bytes())).map(|(j, _)| j).any(|j| j == i)
    };

    keyring.rotate().unwrap();
    assert_eq!(t.blind_index_versions().unwrap(), [kv(2, 0), kv(1, 0)]);
    // Half migrated: every row is found, old or new.
    let ctxs: Vec<Context> = (0..rows.len()).map(ctx).collect();
    let report = t.rewrap_batch_indexed(
        &[&phone(), &l4],
        rows.iter_mut().take(10).zip(&ctxs).map(|((s, v), c)| (s, c, v)),
        |_| {},
    );
    assert_eq!((report.rewrapped, report.already_current, report.failed.len()), (10, 0, 0));
    for i in 0..rows.len() {
        assert!(finds(&t, &rows, i), "row {i} mid-migration");
        let expect = if i < 10 { kv(2, 0) } else { kv(1, 0) };
        assert_eq!(rows[i].1[0].key_version(), expect);
        assert_eq!(rows[i].1[1].key_version(), expect);
        assert_eq!(t.needs_rewrap(&rows[i].0).unwrap(), i >= 10);
    }
    // The rest, then the old version goes: lookups shrink, and still find everything.
    let report =
        t.rewrap_batch_indexed(&[&phone(), &l4], rows.iter_mut().zip(&ctxs).map(|((s, v), c)| (s, c, v)), |_| {});
    assert_eq!((report.rewrapped, report.already_current), (10, 10));
    keyring.set_state(MasterVersion::new(1), KeyState::Disabled).unwrap();
    assert_eq!(t.blind_index_versions().unwrap(), [kv(2, 0)]);
    for (i, row) in rows.iter().enumerate() {
        assert!(finds(&t, &rows, i));
        assert_eq!(row.1[0], t.blind_index(&phone(), &[&phones[i]]).unwrap());
        assert_eq!(row.1[1], t.blind_index(&l4, &[&phones[i]]).unwrap());
        assert_eq!(t.open(&row.0, &ctxs[i]).unwrap(), phones[i].as_bytes());
    }
    // A per-tenant rotation: the lookup covers both generations.
    keyring.rotate_tenant("acme").unwrap();
    assert_eq!(t.blind_index_versions().unwrap(), [kv(2, 1), kv(2, 0)]);
    assert!(finds(&t, &rows, 3));
    let only_new = t.blind_index_lookup_in(&phone(), &[&phones[3]], &[kv(2, 1), kv(2, 1)]).unwrap();
    assert_eq!(only_new.values().len(), 1);
    assert!(!only_new.matches(rows[3].1[0].as_bytes()));
}

// ---------------------------------------------------------------------------------------
// Errors.

#[test]
fn errors_are_typed_and_nothing_is_sealed_on_failure() {
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let t = keyring.tenant("acme").unwrap();
    let ctx = Context::new().with("row", "1");
    let err = t.blind_index(&email(), &[b"\xff\xfeBAD".as_slice()]).unwrap_err();
    assert!(matches!(&err, IndexError::NotText { field: 0, index } if index == "contacts.email"));
    assert!(matches!(t.blind_index(&email(), &["a", "b"]), Err(IndexError::FieldCount { expected: 1, given: 2, .. })));
    let compound = name_city();
    assert!(matches!(
        t.seal_indexed(b"x", &ctx, &[&compound]),
        Err(IndexError::FieldCount { expected: 2, given: 1, .. })
    ));
    assert!(matches!(t.seal_indexed(b"\xff", &ctx, &[&email()]), Err(IndexError::NotText { .. })));
    let too_wide = t.blind_index(&name_city(), &["a", "b"]).unwrap();
    assert!(matches!(too_wide.to_i64(), Err(IndexError::TooWideForInteger(256))));
    assert!(
        matches!(t.blind_index_at(&email(), &["a"], kv(9, 0)), Err(IndexError::KeyUnavailable(v)) if v == kv(9, 0))
    );
    assert!(matches!(t.blind_index_at(&email(), &["a"], kv(1, 3)), Err(IndexError::KeyUnavailable(_))));

    // A record whose plaintext an index cannot take is not rewrapped.
    let sealed = t.seal(b"\xff\xfe", &ctx).unwrap();
    keyring.rotate().unwrap();
    assert!(matches!(
        t.rewrap_indexed(&sealed, &ctx, &[&email()]),
        Err(RewrapError::Index(IndexError::NotText { .. }))
    ));
    assert!(matches!(t.rewrap_indexed(&sealed, &Context::new(), &[&email()]), Err(RewrapError::Open(_))));
    let (mut s, mut v) = (sealed.clone(), Vec::new());
    let report = t.rewrap_batch_indexed(&[&email()], [(&mut s, &ctx, &mut v)], |_| {});
    assert_eq!(report.failed.len(), 1);
    assert_eq!(s, sealed);

    // Disabled versions are refused when asked for, and left out of lookups.
    keyring.set_state(MasterVersion::new(1), KeyState::Disabled).unwrap();
    assert!(matches!(t.blind_index_lookup_in(&email(), &["a"], &[kv(1, 0)]), Err(IndexError::KeyUnavailable(_))));
    assert_eq!(t.blind_index_lookup(&email(), &["a"]).unwrap().values().len(), 1);

    // A shredded tenant computes nothing, even from a handle that had cached keys.
    keyring.shred_tenant("acme", atrest::ShredEvidence::Unverified).unwrap();
    assert!(matches!(t.blind_index(&email(), &["a"]), Err(IndexError::TenantShredded { .. })));
    assert!(matches!(t.blind_index_lookup(&email(), &["a"]), Err(IndexError::TenantShredded { .. })));
    assert!(matches!(
        t.seal_indexed(b"a", &ctx, &[&email()]),
        Err(IndexError::TenantShredded { .. } | IndexError::Seal(_))
    ));
    // Messages name the index, never a value.
    let msg = IndexError::NotText { index: "contacts.email".into(), field: 0 }.to_string();
    assert!(msg.contains("contacts.email"));
}
