//! Backup recipients (issue 14): an encrypt-only process with no root key, no keyring and no
//! way to decrypt writes a full and an incremental backup to a tenant's public recipient;
//! the keyring side restores both. Plus the recipient's lifecycle (disabled, destroyed,
//! shredded), rewraps, seekable and parallel reads, the tamper matrix over every header
//! byte, golden recipient streams and round-trip properties.
//!
//! The known-answer tests of the KEMs (RFC 9180, X-Wing, RFC 7748) run through the crate's
//! own HPKE paths as unit tests (`src/backup/recipient/kats.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

#[allow(dead_code, reason = "uses common::{child, data, golden}; the rest of the shared kit is unused here")]
mod common;

use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use atrest::{
    BackupContext, BackupError, BackupOptions, BackupReader, BackupWriter, DestroyConfirmation, KeyState, KeyVersion,
    Keyring, LocalRootKey, MasterVersion, OpenError, Recipient, RecipientError, RecipientKem, SealError, Tenant,
    decrypt_backup, encrypt_backup, encrypt_backup_to, inspect_backup, rewrap_backup_header, verify_backup,
};
use common::data::pseudo_random as data;
use proptest::prelude::*;

const CS: usize = 64 << 10;
const KEMS: [RecipientKem; 2] = [RecipientKem::XWing, RecipientKem::X25519];

fn opts() -> BackupOptions {
    BackupOptions::default().chunk_size(CS)
}

fn keyring() -> Keyring {
    Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap()
}

fn full() -> BackupContext {
    BackupContext::full("nightly-1")
}

fn incr() -> BackupContext {
    BackupContext::incremental("nightly-2", "nightly-1", 1)
}

/// The header length of a stream: 189 + context for method 0x01, and the encapsulated key's
/// length minus the 24-byte wrap nonce more for a recipient.
fn header_len(kem: Option<RecipientKem>, ctx_len: usize) -> u64 {
    (189 + ctx_len + kem.map_or(0, |k| k.encapsulated_len() - 24)) as u64
}

// ---------------------------------------------------------------------------------------
// The encrypt-only process.

const CHILD_ENV: &str = "ATREST_TEST_RECIPIENT_CHILD";

/// In the child: only the recipient text and an output directory, an environment cleared of
/// everything else. Writes a full and an incremental backup; then shows it cannot decrypt.
fn encrypt_only_child(dir: &str) {
    for (k, _) in std::env::vars() {
        assert!(!k.starts_with("ATREST_ROOT") && !k.contains("KEYRING"), "the child's environment has {k}");
    }
    let text = std::fs::read_to_string(format!("{dir}/recipient.txt")).unwrap();
    let recipient: Recipient = text.parse().unwrap();
    let pt1 = data(300_000, 1);
    let mut w = BackupWriter::to_recipient(&recipient, &full(), opts(), Vec::new()).unwrap();
    w.write_all(&pt1).unwrap();
    std::fs::write(format!("{dir}/full.atrb"), w.finish().unwrap()).unwrap();
    // The incremental names its parent by snapshot id: the full backup is never read.
    let mut out = std::fs::File::create(format!("{dir}/incr.atrb")).unwrap();
    let mut w = BackupWriter::to_recipient(&recipient, &incr(), opts(), &mut out).unwrap();
    w.copy_from(&data(70_000, 2)[..]).unwrap();
    w.finish().unwrap();
    // What this process holds cannot decrypt: a keyring of its own is another keyring, and
    // the stream refuses it (there is no path from a Recipient to plaintext).
    let own = keyring();
    let stream = std::fs::read(format!("{dir}/full.atrb")).unwrap();
    let e = decrypt_backup(&own.tenant("acme").unwrap(), &full(), &stream).unwrap_err();
    assert!(matches!(e, BackupError::Authentication), "{e:?}");
}

#[test]
fn encrypt_only_process_writes_full_and_incremental_the_keyring_restores_both() {
    if let Some(dir) = common::child::role(CHILD_ENV) {
        encrypt_only_child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = keyring();
    let acme = k.tenant("acme").unwrap();
    let text = acme.backup_recipient(RecipientKem::default()).unwrap().to_string();
    std::fs::write(dir.path().join("recipient.txt"), &text).unwrap();
    let mut cmd = common::child::rerun(
        "encrypt_only_process_writes_full_and_incremental_the_keyring_restores_both",
        CHILD_ENV,
        dir.path().to_str().unwrap(),
    );
    cmd.env_clear().env(CHILD_ENV, dir.path()).env("HOME", dir.path());
    common::child::run_one_test(&mut cmd, "the encrypt-only child");

    let f = std::fs::read(dir.path().join("full.atrb")).unwrap();
    let i = std::fs::read(dir.path().join("incr.atrb")).unwrap();
    assert_eq!(decrypt_backup(&acme, &full(), &f).unwrap(), data(300_000, 1));
    assert_eq!(decrypt_backup(&acme, &incr(), &i).unwrap(), data(70_000, 2));
    let info = inspect_backup(&i[..]).unwrap();
    assert_eq!(info.wrapping, "recipient-x-wing");
    assert_eq!(info.parent.as_deref(), Some("nightly-1"));
    assert_eq!(info.tenant.as_deref(), Some("acme"));
    // Opened without an expectation: the stored context says what it is.
    assert_eq!(BackupReader::open(&acme, None, &i[..]).unwrap().context(), &incr());
    // Another tenant of the same keyring: refused before any key is used.
    let e = decrypt_backup(&k.tenant("globex").unwrap(), &full(), &f).unwrap_err();
    assert!(matches!(e, BackupError::ContextMismatch { field: "tenant", .. }), "{e:?}");
}

// ---------------------------------------------------------------------------------------
// Round trips, reading paths, sizes.

#[test]
fn recipient_streams_read_through_every_path() {
    let k = keyring();
    let acme = k.tenant("acme").unwrap();
    let pt = data(5 * CS + 123, 3);
    for kem in KEMS {
        let r = acme.backup_recipient(kem).unwrap();
        assert_eq!((r.tenant().as_str(), r.kem(), r.key_version()), ("acme", kem, acme.key_version()));
        let parsed: Recipient = r.to_string().parse().unwrap();
        assert_eq!(parsed, r);
        for threads in [1, 3] {
            let o = opts().threads(threads);
            let s = encrypt_backup_to(&parsed, &incr(), &pt, o).unwrap();
            let info = inspect_backup(&s[..]).unwrap();
            let sym = encrypt_backup(&acme, &incr(), &pt, o).unwrap();
            let sym_info = inspect_backup(&sym[..]).unwrap();
            let ctx_len = (sym_info.header_len - 189) as usize;
            assert_eq!(info.header_len, header_len(Some(kem), ctx_len), "{kem:?}");
            assert_eq!(sym_info.header_len, header_len(None, ctx_len));
            assert_eq!(s.len() as u64 - info.header_len, sym.len() as u64 - sym_info.header_len, "same chunks");
            assert_eq!((info.format_version, info.key_version), (2, acme.key_version()));
            // One-shot, sequential reads, copy_to, verify, seekable and read_at.
            assert_eq!(decrypt_backup(&acme, &incr(), &s).unwrap(), pt);
            let mut seq = Vec::new();
            BackupReader::with_options(&acme, &incr(), &s[..], o).unwrap().read_to_end(&mut seq).unwrap();
            assert_eq!(seq, pt);
            assert_eq!(verify_backup(&acme, &incr(), &s[..]).unwrap(), pt.len() as u64);
            let mut r = BackupReader::open_seekable(&acme, &incr(), Cursor::new(&s)).unwrap();
            assert_eq!(r.len(), pt.len() as u64);
            let mut buf = vec![0u8; 1000];
            for at in [0, CS as u64 - 500, 3 * CS as u64 + 7, pt.len() as u64 - 1000] {
                assert_eq!(r.read_at(at, &mut buf).unwrap(), 1000);
                assert_eq!(buf, pt[at as usize..at as usize + 1000]);
            }
            r.seek(SeekFrom::Start(2 * CS as u64)).unwrap();
            let mut tail = Vec::new();
            r.read_to_end(&mut tail).unwrap();
            assert_eq!(tail, pt[2 * CS..]);
            // A wrong expectation is a context mismatch, not an authentication failure.
            let e = decrypt_backup(&acme, &full(), &s).unwrap_err();
            assert!(matches!(e, BackupError::ContextMismatch { field: "snapshot", .. }), "{e:?}");
        }
        // Empty plaintext.
        let s = encrypt_backup_to(&r, &full(), b"", opts()).unwrap();
        assert_eq!(decrypt_backup(&acme, &full(), &s).unwrap(), b"");
    }
}

#[test]
fn invalid_parameters_are_refused_before_anything_is_written() {
    let k = keyring();
    let r = k.tenant("acme").unwrap().backup_recipient(RecipientKem::X25519).unwrap();
    let mut out = Vec::new();
    let e = BackupWriter::to_recipient(&r, &full(), opts().chunk_size(1000), &mut out).unwrap_err();
    assert!(matches!(e, BackupError::InvalidParameter(_)), "{e:?}");
    let e = BackupWriter::to_recipient(&r, &BackupContext::full(""), opts(), &mut out).unwrap_err();
    assert!(matches!(e, BackupError::InvalidParameter(_)), "{e:?}");
    assert!(out.is_empty());
}

// ---------------------------------------------------------------------------------------
// Lifecycle: the recipient follows its key version and its tenant.

#[test]
fn disabled_destroyed_and_shredded_versions_are_refused() {
    let k = keyring();
    let acme = k.tenant("acme").unwrap();
    let v1 = acme.key_version();
    let old = acme.backup_recipient(RecipientKem::X25519).unwrap();
    let stream = encrypt_backup_to(&old, &full(), b"tonight", opts()).unwrap();
    k.rotate().unwrap();
    let new = acme.backup_recipient(RecipientKem::X25519).unwrap();
    assert_ne!(new, old, "a rotation gives a new recipient");
    assert_eq!(new.key_version().master.get(), 2);
    // The old version is enabled: its recipient is still handed out, and its streams open.
    assert_eq!(acme.backup_recipient_at(v1, RecipientKem::X25519).unwrap(), old);
    assert_eq!(decrypt_backup(&acme, &full(), &stream).unwrap(), b"tonight");
    let unknown = KeyVersion { master: MasterVersion::new(9), generation: 0 };
    assert!(matches!(acme.backup_recipient_at(unknown, RecipientKem::XWing), Err(BackupError::InvalidParameter(_))));

    k.set_state(v1.master, KeyState::Disabled).unwrap();
    let e = acme.backup_recipient_at(v1, RecipientKem::X25519).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::KeyDisabled(v)) if v == v1.master), "{e:?}");
    let e = decrypt_backup(&acme, &full(), &stream).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::KeyDisabled(_))), "{e:?}");

    k.destroy(v1.master, DestroyConfirmation::data_under_this_version_is_lost(v1.master).skip_grace_period()).unwrap();
    let e = acme.backup_recipient_at(v1, RecipientKem::X25519).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::KeyDestroyed(_))), "{e:?}");
    let e = decrypt_backup(&acme, &full(), &stream).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::KeyDestroyed(_))), "{e:?}");

    let fresh = encrypt_backup_to(&new, &full(), b"later", opts()).unwrap();
    k.shred_tenant("acme", atrest::ShredEvidence::Unverified).unwrap();
    let e = acme.backup_recipient(RecipientKem::XWing).unwrap_err();
    assert!(matches!(e, BackupError::Seal(SealError::TenantShredded { .. })), "{e:?}");
    let e = acme.backup_recipient_at(new.key_version(), RecipientKem::X25519).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::TenantShredded { .. })), "{e:?}");
    let e = decrypt_backup(&acme, &full(), &fresh).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::TenantShredded { .. })), "{e:?}");
}

#[test]
fn tenant_rotation_gives_a_new_recipient_and_rewrap_moves_the_header_only() {
    let dir = tempfile::tempdir().unwrap();
    let k = keyring();
    let acme = k.tenant("acme").unwrap();
    for kem in KEMS {
        let r = acme.backup_recipient(kem).unwrap();
        let pt = data(3 * CS + 5, 4);
        let path = dir.path().join(format!("{}.atrb", kem.name()));
        std::fs::write(&path, encrypt_backup_to(&r, &incr(), &pt, opts()).unwrap()).unwrap();
        let before = std::fs::read(&path).unwrap();
        // Already current: nothing written.
        assert_eq!(rewrap_backup_header(&acme, &path).unwrap(), r.key_version());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let v2 = k.rotate().unwrap();
        let now = rewrap_backup_header(&acme, &path).unwrap();
        assert_eq!(now.master, v2);
        let after = std::fs::read(&path).unwrap();
        let h = inspect_backup(&after[..]).unwrap();
        assert_eq!((h.wrapping, h.key_version), (inspect_backup(&before[..]).unwrap().wrapping, now));
        assert_eq!(after.len(), before.len());
        let mutable = 47..99 + kem.encapsulated_len();
        let changed: Vec<usize> = (0..before.len()).filter(|&i| after[i] != before[i]).collect();
        assert!(!changed.is_empty() && changed.iter().all(|i| mutable.contains(i)), "{kem:?}: {changed:?}");
        // The old version can go: the stream now needs only the new one.
        k.set_state(MasterVersion::new(v2.get() - 1), KeyState::Disabled).unwrap();
        assert_eq!(decrypt_backup(&acme, &incr(), &after).unwrap(), pt);
        // And it is the current recipient's stream: the new recipient's key version.
        assert_eq!(acme.backup_recipient(kem).unwrap().key_version(), now);
    }
}

// ---------------------------------------------------------------------------------------
// Tampering: every header byte, the KEM ciphertext and the recipient fields included.

#[test]
fn every_header_byte_is_authenticated() {
    let k = keyring();
    let acme = k.tenant("acme").unwrap();
    for kem in KEMS {
        let r = acme.backup_recipient(kem).unwrap();
        let pt = data(CS + 10, 5);
        let s = encrypt_backup_to(&r, &incr(), &pt, opts()).unwrap();
        let h = inspect_backup(&s[..]).unwrap().header_len as usize;
        let enc = 51..51 + kem.encapsulated_len();
        let ctx_start = 165 + kem.encapsulated_len();
        let tenant_bytes = ctx_start + 4..ctx_start + 8;
        for i in 0..h {
            // One bit per byte, a different one from byte to byte (X-Wing opens are slow in
            // debug builds).
            let flip = 1u8 << (i % 8);
            let mut bad = s.clone();
            bad[i] ^= flip;
            let e = decrypt_backup(&acme, &incr(), &bad).expect_err(&format!("{kem:?} byte {i}"));
            let ok = match i {
                0..8 => matches!(e, BackupError::NotABackup),
                8 => matches!(e, BackupError::UnsupportedFormat(_)),
                // Another tenant id, or not UTF-8 at all.
                _ if tenant_bytes.contains(&i) => {
                    matches!(e, BackupError::ContextMismatch { field: "tenant", .. } | BackupError::Authentication)
                }
                // A method byte that names another known method changes the layout.
                _ => matches!(e, BackupError::Authentication),
            };
            assert!(ok, "{kem:?} byte {i} ^ {flip:#x} (enc: {}): {e:?}", enc.contains(&i));
        }
        // Swapping the KEM byte to the other recipient method, and to the symmetric one.
        for method in [1u8, 2, 3, 4, 0xff].into_iter().filter(|&m| m != kem_id(kem)) {
            let mut bad = s.clone();
            bad[46] = method;
            assert!(
                matches!(decrypt_backup(&acme, &incr(), &bad), Err(BackupError::Authentication)),
                "method {method}"
            );
            assert!(inspect_backup(&bad[..]).map_or(true, |i| i.header_len as usize != h));
        }
        // Cut anywhere in the header: never a panic, always an error.
        for cut in 0..h {
            assert!(decrypt_backup(&acme, &incr(), &s[..cut]).is_err());
            assert!(inspect_backup(&s[..cut]).is_err());
        }
        // A stream to another tenant's recipient, relabelled: the stored tenant is checked
        // first, and with the label changed the wrap no longer authenticates.
        let other = k.tenant("acmf").unwrap().backup_recipient(kem).unwrap();
        let mut s2 = encrypt_backup_to(&other, &incr(), &pt, opts()).unwrap();
        let e = decrypt_backup(&acme, &incr(), &s2).unwrap_err();
        assert!(matches!(e, BackupError::ContextMismatch { field: "tenant", .. }), "{e:?}");
        s2[tenant_bytes.end - 1] = b'e';
        assert!(matches!(decrypt_backup(&acme, &incr(), &s2), Err(BackupError::Authentication)));
        // The header of one recipient stream on the chunks of another.
        let s3 = encrypt_backup_to(&r, &incr(), &pt, opts()).unwrap();
        let spliced = [&s3[..h], &s[h..]].concat();
        assert!(matches!(decrypt_backup(&acme, &incr(), &spliced), Err(BackupError::Authentication)));
        // The encapsulated key of one stream in the header of another.
        let mut swapped = s.clone();
        swapped[enc.clone()].copy_from_slice(&s3[enc.clone()]);
        assert!(matches!(decrypt_backup(&acme, &incr(), &swapped), Err(BackupError::Authentication)));
    }
}

fn kem_id(kem: RecipientKem) -> u8 {
    match kem {
        RecipientKem::XWing => 2,
        _ => 3,
    }
}

#[test]
fn recipient_text_errors_are_typed() {
    let k = keyring();
    let r = k.tenant("acme").unwrap().backup_recipient(RecipientKem::XWing).unwrap();
    let text = r.to_string();
    assert!(text.starts_with("atrestr1") && text.len() > 1900 && !text.contains('\n'));
    let short = k.tenant("acme").unwrap().backup_recipient(RecipientKem::X25519).unwrap().to_string();
    assert!(short.len() < 100, "{}", short.len());
    let mut typo = text.clone().into_bytes();
    typo[100] = if typo[100] == b'q' { b'p' } else { b'q' };
    assert_eq!(String::from_utf8(typo).unwrap().parse::<Recipient>(), Err(RecipientError::Checksum));
    assert_eq!("age1qqqq".parse::<Recipient>().unwrap_err(), RecipientError::Checksum);
    assert_eq!("hello".parse::<Recipient>().unwrap_err(), RecipientError::Encoding);
    // Debug shows public facts only.
    let dbg = format!("{r:?}");
    assert!(dbg.contains("acme") && dbg.contains(&r.fingerprint()) && dbg.len() < 300, "{dbg}");
}

// ---------------------------------------------------------------------------------------
// Golden recipient streams: made once (`cargo test --test recipients -- --ignored
// make_golden_recipient_streams`) under the golden keyring, committed in
// tests/data/recipient/, opened byte for byte forever.

const GOLDEN: [(&str, RecipientKem, bool); 2] = [
    ("golden_xwing_full.atrb", RecipientKem::XWing, false),
    ("golden_x25519_incremental.atrb", RecipientKem::X25519, true),
];

fn golden_keyring() -> Keyring {
    let root: std::sync::Arc<dyn atrest::RootKeyProvider> = std::sync::Arc::new(common::golden::root());
    Keyring::from_bytes(&common::golden::read(common::golden::KEYRING_FILE), root).unwrap()
}

fn golden_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/recipient").join(name)
}

fn golden_ctx(incremental: bool) -> BackupContext {
    if incremental { BackupContext::incremental("golden-2", "golden-1", 1) } else { BackupContext::full("golden-1") }
}

#[test]
#[ignore = "writes the golden recipient streams; run once, by hand"]
fn make_golden_recipient_streams() {
    let k = golden_keyring();
    let acme = k.tenant(common::golden::TENANT).unwrap();
    for (name, kem, incremental) in GOLDEN {
        let r = acme.backup_recipient(kem).unwrap();
        let s = encrypt_backup_to(&r, &golden_ctx(incremental), &data(2 * CS + 77, 14), opts()).unwrap();
        std::fs::write(golden_path(name), s).unwrap();
        std::fs::write(golden_path(&format!("{name}.recipient")), format!("{r}\n")).unwrap();
    }
}

#[test]
fn golden_recipient_streams_open_byte_for_byte() {
    let k = golden_keyring();
    let acme = k.tenant(common::golden::TENANT).unwrap();
    for (name, kem, incremental) in GOLDEN {
        let s = std::fs::read(golden_path(name)).unwrap();
        let ctx = golden_ctx(incremental);
        assert_eq!(decrypt_backup(&acme, &ctx, &s).unwrap(), data(2 * CS + 77, 14), "{name}");
        let info = inspect_backup(&s[..]).unwrap();
        assert_eq!(info.wrapping, if kem == RecipientKem::XWing { "recipient-x-wing" } else { "recipient-x25519" });
        // The committed recipient text is the one the golden keyring derives today.
        let text = std::fs::read_to_string(golden_path(&format!("{name}.recipient"))).unwrap();
        let r: Recipient = text.parse().unwrap();
        assert_eq!(acme.backup_recipient_at(info.key_version, kem).unwrap(), r, "{name}: derivation changed");
        let mut bad = s.clone();
        bad[60] ^= 4;
        assert!(matches!(decrypt_backup(&acme, &ctx, &bad), Err(BackupError::Authentication)));
    }
}

// ---------------------------------------------------------------------------------------
// Properties.

fn tenant_for_props() -> &'static (Keyring, Tenant, Recipient) {
    static FX: std::sync::OnceLock<(Keyring, Tenant, Recipient)> = std::sync::OnceLock::new();
    FX.get_or_init(|| {
        let k = keyring();
        let t = k.tenant("acme").unwrap();
        let r = t.backup_recipient(RecipientKem::X25519).unwrap();
        (k, t, r)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_plaintext_round_trips_and_any_bit_flip_is_rejected(
        len in 0usize..(3 * CS + 100),
        seed in any::<u64>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (_, t, r) = tenant_for_props();
        let pt = data(len, seed);
        let s = encrypt_backup_to(r, &full(), &pt, opts()).unwrap();
        prop_assert_eq!(decrypt_backup(t, &full(), &s).unwrap(), pt);
        let mut bad = s.clone();
        bad[flip.index(s.len())] ^= 1 << bit;
        prop_assert!(decrypt_backup(t, &full(), &bad).is_err());
    }
}
