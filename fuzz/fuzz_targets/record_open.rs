//! `Tenant::open` (and `open_into`, `record_info`,
//! `key_version_census`) on arbitrary bytes, with the committed keyring fixture.
//!
//! Properties:
//! - nothing panics;
//! - an open succeeds only for a committed record (the fuzzer cannot forge a tag), and then
//!   gives exactly its plaintext; with another tenant or context it always fails;
//! - a failed `open_into` leaves the output buffer as it was;
//! - `record_info` agrees with the bytes (header fields, length = input - 46);
//! - sealing the input as a plaintext round-trips, and `record_info` of the fresh record
//!   names the tenant's current key version, the suite and the plaintext length.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::LazyLock;

use atrest::{Context, RECORD_OVERHEAD, RecordSuite, Suite, Tenant, key_version_census, record_info};
use atrest_fuzz::{FIXTURE_KEYRING, TENANT, known_record, record_context};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    acme: Tenant,
    acme_chacha: Tenant,
    beta: Tenant,
    ctx: Context,
    other_ctx: Context,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let acme = FIXTURE_KEYRING.tenant(TENANT).unwrap();
    Fixture {
        acme_chacha: acme.clone().with_suite(RecordSuite::XChaCha20Poly1305),
        acme,
        beta: FIXTURE_KEYRING.tenant("beta").unwrap(),
        ctx: record_context(),
        other_ctx: Context::new().with("table", "fuzz").with("row", "2"),
    }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;

    // Header parsing agrees with the bytes.
    match record_info(data) {
        Ok(info) => {
            assert_eq!(info.plaintext_len, data.len() - RECORD_OVERHEAD);
            assert_eq!(info.format_version, data[0]);
            assert_eq!(info.suite.id(), data[1]);
            assert_eq!(info.key_version.master.get(), u16::from_be_bytes([data[2], data[3]]));
            assert_eq!(info.key_version.generation, u16::from_be_bytes([data[4], data[5]]));
        }
        Err(_) => assert!(key_version_census([data]).unreadable == 1),
    }
    let census = key_version_census([data, data.get(..data.len() / 2).unwrap_or_default(), data]);
    assert_eq!(census.versions.values().sum::<u64>() + census.unreadable, 3);

    // Opening: Ok only for a committed record, with its plaintext.
    let opened = f.acme.open(data, &f.ctx);
    let known = known_record(data);
    match (&opened, known) {
        (Ok(p), Some(k)) => assert_eq!(Some(p.as_slice()), k.plaintext, "{} opened to the wrong bytes", k.name),
        (Ok(p), None) => panic!("opened {} bytes that are not a committed record: forged", p.len()),
        (Err(e), Some(k)) => assert!(k.plaintext.is_none(), "committed record {} did not open: {e}", k.name),
        (Err(_), None) => {}
    }
    assert!(f.acme_chacha.open(data, &f.ctx).is_ok() == opened.is_ok(), "the sealing suite must not matter");
    assert!(f.acme.open(data, &f.other_ctx).is_err(), "opened under another context");
    assert!(f.beta.open(data, &f.ctx).is_err(), "opened for another tenant");

    // open_into: appends on success, leaves the buffer alone on failure.
    let mut out = b"prefix".to_vec();
    let r = f.acme.open_into(data, &f.ctx, &mut out);
    assert_eq!(r.is_ok(), opened.is_ok());
    match &opened {
        Ok(p) => assert_eq!(&out[6..], p.as_slice()),
        Err(_) => assert_eq!(out, b"prefix"),
    }

    // Seal the input as a plaintext: the header names what sealed it; it opens back.
    let plain = data.get(..4096).unwrap_or(data);
    for t in [&f.acme, &f.acme_chacha] {
        let sealed = t.seal(plain, &f.ctx).unwrap();
        let info = record_info(&sealed).unwrap();
        assert_eq!(info.key_version, t.key_version());
        assert_eq!(info.suite, Suite::from(t.suite()));
        assert_eq!(info.plaintext_len, plain.len());
        assert_eq!(sealed.len(), plain.len() + RECORD_OVERHEAD);
        assert_eq!(f.acme.open(&sealed, &f.ctx).unwrap(), plain);
        assert!(f.acme.open(&sealed, &f.other_ctx).is_err());
        assert!(f.beta.open(&sealed, &f.ctx).is_err());
    }
});
