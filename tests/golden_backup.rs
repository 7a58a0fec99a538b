//! Golden backup streams: streams made once under the golden keyring (by
//! `examples/make_golden.rs -- --only-new`) and committed in `tests/data/golden/`. Every run
//! decrypts them byte-for-byte through every reading path, rebuilds them from the format
//! documented in `src/backup/mod.rs` with public primitives only, rejects the `fail_*`
//! streams with the documented error, and checks that no key involved ever prints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses common::{golden, spec, secrets}; the rest of the shared kit is unused here")]
mod common;

use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::sync::{Arc, LazyLock};

use atrest::{
    BACKUP_HEADER_LEN, BackupContext, BackupError, BackupKind, BackupOptions, BackupReader, BackupWriter,
    DestroyConfirmation, KeyState, KeyVersion, Keyring, LocalRootKey, MasterVersion, OpenError, RootKeyProvider, Suite,
    Tenant, decrypt_backup, inspect_backup, verify_backup,
};
use common::golden as g;
use common::secrets::SecretScan;
use common::spec::{KeyringSecrets, StreamSecrets, open_by_spec};
use sha2::{Digest, Sha256};

fn root() -> Arc<dyn RootKeyProvider> {
    Arc::new(g::root())
}

fn keyring() -> Keyring {
    Keyring::from_bytes(&g::read(g::KEYRING_FILE), root()).unwrap()
}

fn acme(k: &Keyring) -> Tenant {
    k.tenant(g::TENANT).unwrap()
}

fn main_plaintext() -> Vec<u8> {
    g::backup_plaintext(g::BACKUP_MAIN.plaintext_len)
}

fn is_auth(e: &BackupError) -> bool {
    matches!(e, BackupError::Authentication)
}

/// An `io::Error` from reading a `BackupReader` that carries `BackupError::Authentication`.
fn is_io_auth(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
        && e.get_ref().and_then(|i| i.downcast_ref::<BackupError>()).is_some_and(is_auth)
}

/// Reads sequentially in `piece`-byte reads until the end or an error; returns the bytes
/// released and the error, if any.
fn read_pieces<R: Read>(r: &mut BackupReader<R>, piece: usize) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; piece];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (out, Some(e)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The valid streams.

#[test]
fn spec_constants_match_the_crate() {
    assert_eq!(g::BACKUP_HEADER_LEN, BACKUP_HEADER_LEN);
    assert_eq!(g::BACKUP_CHUNK_SIZE, atrest::MIN_CHUNK_SIZE);
    assert_eq!((g::BACKUP_MAIN.context)(), BackupContext::incremental("snap-2", "snap-1", 2));
    for b in g::BACKUPS {
        assert_eq!(b.plaintext_len.div_ceil(b.chunk_size).max(1), b.chunks, "{}", b.file);
    }
    // The main stream has two full chunks and a short final one.
    let main = g::BACKUP_MAIN;
    assert_eq!(main.chunks, 3);
    assert!(main.plaintext_len > 2 * main.chunk_size && main.plaintext_len < 3 * main.chunk_size);
    // The known plaintext differs from chunk to chunk (so a chunk swap changes it).
    let pt = main_plaintext();
    assert_ne!(pt[..main.chunk_size], pt[main.chunk_size..2 * main.chunk_size]);
    assert_eq!(&pt[..4], &[0, 1, 2, 3]);
    assert_eq!(pt[251], 0);
    assert!(g::BACKUP_TINY.plaintext_len > 0 && g::BACKUP_EMPTY.plaintext_len == 0);
}

#[test]
fn backups_are_the_committed_bytes() {
    for b in g::BACKUPS {
        let bytes = g::read(b.file);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), b.sha256, "{} changed: golden files are made once", b.file);
        assert_eq!(bytes.len(), BACKUP_HEADER_LEN + b.plaintext_len + 16 * b.chunks, "{}", b.file);
    }
}

#[test]
fn backups_have_the_known_header_facts() {
    for b in g::BACKUPS {
        let bytes = g::read(b.file);
        let version = KeyVersion { master: MasterVersion::new(b.master), generation: b.generation };
        let info = inspect_backup(&bytes[..]).unwrap();
        assert_eq!(info.format_version, 1, "{}", b.file);
        assert_eq!(info.suite, Suite::Aes256Gcm, "{}", b.file);
        assert_eq!(info.chunk_size as usize, b.chunk_size, "{}", b.file);
        assert_eq!(info.key_version, version, "{}", b.file);
        assert_eq!(info.header_len, BACKUP_HEADER_LEN as u64);
        assert_eq!(info.stream_id, b.stream_id, "{}", b.file);
        // inspect reads exactly the header.
        let mut input = Cursor::new(&bytes);
        inspect_backup(&mut input).unwrap();
        assert_eq!(input.position(), BACKUP_HEADER_LEN as u64);

        // The same facts, byte for byte, where the format puts them.
        assert_eq!(&bytes[..8], b"ATRESTBK");
        assert_eq!(bytes[8], 1, "format version");
        assert_eq!(bytes[9], Suite::Aes256Gcm.id());
        assert_eq!(bytes[10..14], u32::try_from(b.chunk_size).unwrap().to_be_bytes());
        assert_eq!(bytes[46..48], b.master.to_be_bytes());
        assert_eq!(bytes[48..50], b.generation.to_be_bytes());
        assert_eq!(hex::encode(&bytes[14..30]), b.stream_id, "the stream id is the first 16 salt bytes");
    }
    // Three distinct streams.
    assert_ne!(g::BACKUP_MAIN.stream_id, g::BACKUP_TINY.stream_id);
    assert_ne!(g::BACKUP_TINY.stream_id, g::BACKUP_EMPTY.stream_id);
}

#[test]
fn backups_decrypt_to_the_known_plaintext() {
    let k = keyring();
    for b in g::BACKUPS {
        let bytes = g::read(b.file);
        let pt = g::backup_plaintext(b.plaintext_len);
        let tenant = k.tenant(b.tenant).unwrap();
        let ctx = (b.context)();

        // One-shot.
        assert_eq!(decrypt_backup(&tenant, &ctx, &bytes).unwrap(), pt, "{}: decrypt_backup", b.file);
        // Verify only.
        assert_eq!(verify_backup(&tenant, &ctx, &bytes[..]).unwrap(), pt.len() as u64, "{}: verify", b.file);

        // Sequential, all cores and one thread, in one go and in odd-sized reads.
        let mut all = Vec::new();
        BackupReader::new(&tenant, &ctx, &bytes[..]).unwrap().read_to_end(&mut all).unwrap();
        assert_eq!(all, pt, "{}: sequential", b.file);
        for threads in [1, 2] {
            for piece in [1, 4093, 65536, 70_001] {
                if piece == 1 && pt.len() > 1000 {
                    continue;
                }
                let mut r =
                    BackupReader::with_options(&tenant, &ctx, &bytes[..], BackupOptions::default().threads(threads))
                        .unwrap();
                let (got, err) = read_pieces(&mut r, piece);
                assert!(err.is_none(), "{}: {err:?}", b.file);
                assert_eq!(got, pt, "{}: sequential, {threads} threads, {piece}-byte reads", b.file);
                assert_eq!(r.read(&mut [0u8; 8]).unwrap(), 0, "stays at the end");
            }
        }

        // Random access.
        let mut r = BackupReader::open_seekable(&tenant, &ctx, Cursor::new(&bytes)).unwrap();
        assert_eq!(r.len(), pt.len() as u64, "{}", b.file);
        assert_eq!(r.is_empty(), pt.is_empty());
        let cs = b.chunk_size;
        let offsets =
            [0, 1, 99, cs - 5, cs, cs + 1, 2 * cs - 3, 2 * cs, pt.len().saturating_sub(7), pt.len().saturating_sub(1)];
        for &off in offsets.iter().filter(|&&o| o < pt.len()) {
            let mut buf = [0u8; 10];
            let n = r.read_at(off as u64, &mut buf).unwrap();
            let want = &pt[off..(off + 10).min(pt.len())];
            assert_eq!(&buf[..n], want, "{}: read_at({off})", b.file);
        }
        // At and past the end: nothing.
        assert_eq!(r.read_at(pt.len() as u64, &mut [0u8; 4]).unwrap(), 0);
        assert_eq!(r.read_at(pt.len() as u64 + 1000, &mut [0u8; 4]).unwrap(), 0);
        // The whole plaintext in one read_at, then through Seek + Read.
        let mut whole = vec![0u8; pt.len() + 5];
        assert_eq!(r.read_at(0, &mut whole).unwrap(), pt.len());
        assert_eq!(whole[..pt.len()], pt[..]);
        if pt.len() > 20 {
            r.seek(SeekFrom::End(-20)).unwrap();
            let mut tail = Vec::new();
            r.read_to_end(&mut tail).unwrap();
            assert_eq!(tail, pt[pt.len() - 20..], "{}: seek from end", b.file);
        }
        // A sequential reader switches to random access on its first seek.
        let mut r = BackupReader::new(&tenant, &ctx, Cursor::new(&bytes)).unwrap();
        r.seek(SeekFrom::Start((pt.len() / 2) as u64)).unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, pt[pt.len() / 2..]);
    }
}

#[test]
fn backups_are_bound_to_their_tenant_context_and_keyring() {
    let k = keyring();
    let bytes = g::read(g::BACKUP_MAIN.file);
    let ctx = g::backup_context();
    let acme = acme(&k);

    // Another snapshot id, parent, sequence or kind: the header opens (the context is not in
    // the wrapping), every chunk fails.
    let wrong_contexts = [
        BackupContext::incremental("snap-3", "snap-1", 2),
        BackupContext::incremental("snap-2", "snap-0", 2),
        BackupContext::incremental("snap-2", "snap-1", 3),
        BackupContext::full("snap-2"),
        BackupContext::new("snap-2", Some("snap-1"), BackupKind::Full, 2),
        g::backup_tiny_context(),
    ];
    for wrong in &wrong_contexts {
        assert_ne!(wrong, &ctx);
        let e = decrypt_backup(&acme, wrong, &bytes).unwrap_err();
        assert!(is_auth(&e), "{wrong:?}: {e:?}");
        let e = verify_backup(&acme, wrong, &bytes[..]).unwrap_err();
        assert!(is_auth(&e), "{wrong:?}: {e:?}");
        let mut r = BackupReader::with_options(&acme, wrong, &bytes[..], BackupOptions::default().threads(1)).unwrap();
        let (released, err) = read_pieces(&mut r, 4096);
        assert!(released.is_empty(), "nothing released under a wrong context");
        assert!(is_io_auth(&err.unwrap()));
        let e = BackupReader::open_seekable(&acme, wrong, Cursor::new(&bytes)).unwrap_err();
        assert!(is_auth(&e), "{wrong:?}: {e:?}");
    }

    // Another tenant of the same keyring (a new one, and the rotated one): the data key does
    // not unwrap, so even the header is refused.
    for other in [g::OTHER_TENANT, g::ROTATED_TENANT] {
        let t = k.tenant(other).unwrap();
        let e = decrypt_backup(&t, &ctx, &bytes).unwrap_err();
        assert!(is_auth(&e), "{other}: {e:?}");
        let e = BackupReader::new(&t, &ctx, &bytes[..]).unwrap_err();
        assert!(is_auth(&e), "{other}: {e:?}");
        let e = verify_backup(&t, &ctx, &bytes[..]).unwrap_err();
        assert!(is_auth(&e), "{other}: {e:?}");
    }

    // Tenant `acme` of another keyring that also has a master v2.
    let other = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    other.rotate().unwrap();
    let e = decrypt_backup(&acme_of(&other), &ctx, &bytes).unwrap_err();
    assert!(is_auth(&e), "{e:?}");
    // And one that has no v2 at all: the same opaque error.
    let fresh = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let e = decrypt_backup(&acme_of(&fresh), &ctx, &bytes).unwrap_err();
    assert!(is_auth(&e), "{e:?}");

    // A malformed context is a parameter error, before anything is decrypted.
    let e = decrypt_backup(&acme, &BackupContext::incremental("", "snap-1", 2), &bytes).unwrap_err();
    assert!(matches!(e, BackupError::InvalidParameter(_)), "{e:?}");
    let e = BackupReader::new(&acme, &BackupContext::new("snap-2", None, BackupKind::Incremental, 2), &bytes[..])
        .unwrap_err();
    assert!(matches!(e, BackupError::InvalidParameter(_)), "{e:?}");
}

fn acme_of(k: &Keyring) -> Tenant {
    k.tenant(g::TENANT).unwrap()
}

#[test]
fn backups_follow_the_key_states() {
    // In memory only: the committed keyring is never written.
    let k = keyring();
    let bytes = g::read(g::BACKUP_MAIN.file);
    let ctx = g::backup_context();
    let acme = acme(&k);
    let v2 = MasterVersion::new(2);
    k.rotate().unwrap(); // v3 primary, so v2 can be disabled
    assert_eq!(decrypt_backup(&acme, &ctx, &bytes).unwrap(), main_plaintext(), "v2 is still enabled");
    k.set_state(v2, KeyState::Disabled).unwrap();
    let e = decrypt_backup(&acme, &ctx, &bytes).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::KeyDisabled(v)) if v == v2), "{e:?}");
    let e = BackupReader::new(&acme, &ctx, &bytes[..]).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::KeyDisabled(v)) if v == v2), "{e:?}");
    k.set_state(v2, KeyState::Enabled).unwrap();
    assert_eq!(verify_backup(&acme, &ctx, &bytes[..]).unwrap(), g::BACKUP_MAIN.plaintext_len as u64);
    k.set_state(v2, KeyState::Disabled).unwrap();
    k.destroy(v2, DestroyConfirmation::data_under_this_version_is_lost(v2).skip_grace_period()).unwrap();
    let e = decrypt_backup(&acme, &ctx, &bytes).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::KeyDestroyed(v)) if v == v2), "{e:?}");
    // The committed keyring is untouched.
    assert_eq!(decrypt_backup(&acme_of(&keyring()), &ctx, &bytes).unwrap(), main_plaintext());
}

// ---------------------------------------------------------------------------------------
// The documented format, rebuilt with public primitives only (`common::spec`).

static KEYS: LazyLock<KeyringSecrets> = LazyLock::new(KeyringSecrets::load);

/// Every golden stream's secrets, recovered by the spec.
static STREAMS: LazyLock<Vec<StreamSecrets>> = LazyLock::new(|| {
    g::BACKUPS
        .iter()
        .map(|b| {
            let key = KEYS.tenant_key(b.tenant, b.master, b.generation, b"backups");
            let (secrets, pt) = open_by_spec(&g::read(b.file), b.tenant, &key, &(b.context)());
            assert_eq!(pt, g::backup_plaintext(b.plaintext_len), "{}: plaintext by the spec", b.file);
            secrets
        })
        .collect()
});

#[test]
fn backups_follow_the_documented_format() {
    // The keyring secrets are what the crate uses: its own keyring loads with the same id.
    assert_eq!(KEYS.masters.iter().map(|m| m.0).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(STREAMS.len(), g::BACKUPS.len());
    // Distinct data keys per stream.
    assert_ne!(STREAMS[0].data_key, STREAMS[1].data_key);
    assert_ne!(STREAMS[1].data_key, STREAMS[2].data_key);
    // The backup key is not the records key, and generation/tenant change it.
    let b = KEYS.tenant_key(g::TENANT, 2, 0, b"backups");
    assert_ne!(b, KEYS.tenant_key(g::TENANT, 2, 0, b"records"));
    assert_ne!(b, KEYS.tenant_key(g::OTHER_TENANT, 2, 0, b"backups"));
    // A wrong key does not unwrap (the spec check itself can fail).
    let wrong = KEYS.tenant_key(g::TENANT, 1, 0, b"backups");
    let r = std::panic::catch_unwind(|| {
        open_by_spec(&g::read(g::BACKUP_MAIN.file), g::TENANT, &wrong, &g::backup_context())
    });
    assert!(r.is_err(), "opening by the spec under the v1 key must fail");
}

// ---------------------------------------------------------------------------------------
// The fail_* streams.

/// How one rejected stream behaved through every entry point (for the secrets check too).
struct Rejection {
    /// Every error seen, as `Display` and `Debug`.
    rendered: Vec<String>,
    /// Bytes a one-thread sequential reader released before its error.
    released_one_thread: usize,
    /// Whether `BackupReader::new` already refused (the header).
    refused_at_header: bool,
    /// Whether `open_seekable` accepted it (final chunk authentic).
    seekable_opened: bool,
}

/// Checks that `stream` is rejected with `BackupError::Authentication` by `decrypt_backup`,
/// `verify_backup`, sequential readers (which must end with an error, never a clean end of
/// file, and release only a prefix of the plaintext) and random access.
fn rejected(tenant: &Tenant, ctx: &BackupContext, stream: &[u8], what: &str) -> Rejection {
    let pt = main_plaintext();
    let mut rendered = Vec::new();
    let mut keep = |e: &dyn std::fmt::Display, d: &dyn std::fmt::Debug| {
        rendered.push(format!("{e}"));
        rendered.push(format!("{d:?}"));
        rendered.push(format!("{d:#?}"));
    };

    let e = decrypt_backup(tenant, ctx, stream).unwrap_err();
    assert!(is_auth(&e), "{what}: decrypt_backup: {e:?}");
    keep(&e, &e);
    let e = verify_backup(tenant, ctx, stream).unwrap_err();
    assert!(is_auth(&e), "{what}: verify_backup: {e:?}");
    keep(&e, &e);

    let mut refused_at_header = false;
    let mut released_one_thread = 0;
    for threads in [1, 2] {
        match BackupReader::with_options(tenant, ctx, stream, BackupOptions::default().threads(threads)) {
            Err(e) => {
                assert!(is_auth(&e), "{what}: reader: {e:?}");
                keep(&e, &e);
                refused_at_header = true;
            }
            Ok(mut r) => {
                let (released, err) = read_pieces(&mut r, 5000);
                let err =
                    err.unwrap_or_else(|| panic!("{what}: {threads} threads: clean end of file after a bad stream"));
                assert!(is_io_auth(&err), "{what}: {threads} threads: {err:?}");
                keep(&err, &err);
                assert!(released.len() < pt.len() && pt.starts_with(&released), "{what}: released unverified bytes");
                assert_eq!(released.len() % g::BACKUP_CHUNK_SIZE, 0, "{what}: only whole verified chunks");
                if threads == 1 {
                    released_one_thread = released.len();
                }
                // The reader stays failed.
                let again = r.read(&mut [0u8; 16]).unwrap_err();
                assert!(is_io_auth(&again), "{what}: {again:?}");
                keep(&format!("{r:?}"), &r);
                // read_to_end reports the error too.
                let mut r =
                    BackupReader::with_options(tenant, ctx, stream, BackupOptions::default().threads(threads)).unwrap();
                let mut sink = Vec::new();
                let err = r.read_to_end(&mut sink).unwrap_err();
                assert!(is_io_auth(&err), "{what}: read_to_end: {err:?}");
            }
        }
    }

    let seekable_opened = match BackupReader::open_seekable(tenant, ctx, Cursor::new(stream)) {
        Err(e) => {
            assert!(is_auth(&e), "{what}: open_seekable: {e:?}");
            keep(&e, &e);
            false
        }
        Ok(mut r) => {
            let mut buf = vec![0u8; pt.len()];
            let e = r.read_at(0, &mut buf).unwrap_err();
            assert!(is_auth(&e), "{what}: read_at: {e:?}");
            keep(&e, &e);
            true
        }
    };
    Rejection { rendered, released_one_thread, refused_at_header, seekable_opened }
}

fn reject_file(file: &str) -> Rejection {
    let k = keyring();
    let r = rejected(&acme(&k), &g::backup_context(), &g::read(file), file);
    assert!(!r.rendered.is_empty());
    r
}

#[test]
fn fail_backup_header_bitflip() {
    let bad = g::read(g::FAIL_BACKUP_HEADER_BITFLIP);
    let good = g::read(g::BACKUP_MAIN.file);
    let (at, mask) = g::BACKUP_HEADER_BITFLIP_AT;
    assert!(at < BACKUP_HEADER_LEN);
    assert_eq!(bad.len(), good.len());
    assert_eq!(bad[at] ^ good[at], mask);
    assert_eq!(bad.iter().zip(&good).filter(|(a, b)| a != b).count(), 1);
    // inspect_backup authenticates nothing: it still reads the header.
    assert_eq!(inspect_backup(&bad[..]).unwrap().key_version, inspect_backup(&good[..]).unwrap().key_version);
    let r = reject_file(g::FAIL_BACKUP_HEADER_BITFLIP);
    assert!(r.refused_at_header, "a modified header is refused before any chunk");
}

#[test]
fn fail_backup_chunk_bitflip() {
    let bad = g::read(g::FAIL_BACKUP_CHUNK_BITFLIP);
    let good = g::read(g::BACKUP_MAIN.file);
    let (at, mask) = g::BACKUP_CHUNK_BITFLIP_AT;
    assert!((BACKUP_HEADER_LEN + g::BACKUP_SLOT..BACKUP_HEADER_LEN + 2 * g::BACKUP_SLOT - 16).contains(&at));
    assert_eq!(bad[at] ^ good[at], mask);
    assert_eq!(bad.iter().zip(&good).filter(|(a, b)| a != b).count(), 1);
    let r = reject_file(g::FAIL_BACKUP_CHUNK_BITFLIP);
    assert!(!r.refused_at_header);
    assert_eq!(r.released_one_thread, g::BACKUP_CHUNK_SIZE, "chunk 0 is authentic and released, chunk 1 is not");
    assert!(r.seekable_opened, "the final chunk is authentic");
    // Random access still serves the authentic chunks, never the modified one.
    let k = keyring();
    let mut rd = BackupReader::open_seekable(&acme(&k), &g::backup_context(), Cursor::new(&bad)).unwrap();
    let pt = main_plaintext();
    let mut buf = [0u8; 100];
    let at2 = 2 * g::BACKUP_CHUNK_SIZE + 10;
    assert_eq!(rd.read_at(at2 as u64, &mut buf).unwrap(), 100);
    assert_eq!(buf[..], pt[at2..at2 + 100]);
    let e = rd.read_at(g::BACKUP_CHUNK_SIZE as u64 + 5, &mut buf).unwrap_err();
    assert!(is_auth(&e), "{e:?}");
}

#[test]
fn fail_backup_truncated_boundary() {
    let bad = g::read(g::FAIL_BACKUP_TRUNCATED_BOUNDARY);
    let good = g::read(g::BACKUP_MAIN.file);
    assert_eq!(bad.len(), BACKUP_HEADER_LEN + 2 * g::BACKUP_SLOT, "the final chunk is dropped");
    assert!(good.starts_with(&bad));
    let r = reject_file(g::FAIL_BACKUP_TRUNCATED_BOUNDARY);
    assert!(!r.refused_at_header && !r.seekable_opened);
    assert_eq!(r.released_one_thread, g::BACKUP_CHUNK_SIZE, "chunk 1 is not final, so it fails");
}

#[test]
fn fail_backup_truncated_mid() {
    let bad = g::read(g::FAIL_BACKUP_TRUNCATED_MID);
    let good = g::read(g::BACKUP_MAIN.file);
    assert_eq!(bad.len(), g::BACKUP_TRUNCATED_MID_LEN);
    assert!((BACKUP_HEADER_LEN + g::BACKUP_SLOT + 1..BACKUP_HEADER_LEN + 2 * g::BACKUP_SLOT).contains(&bad.len()));
    assert!(good.starts_with(&bad));
    let r = reject_file(g::FAIL_BACKUP_TRUNCATED_MID);
    assert!(!r.refused_at_header && !r.seekable_opened);
    assert_eq!(r.released_one_thread, g::BACKUP_CHUNK_SIZE);
}

#[test]
fn truncations_never_end_cleanly_at_any_read_size() {
    let k = keyring();
    let acme = acme(&k);
    let ctx = g::backup_context();
    for file in [g::FAIL_BACKUP_TRUNCATED_BOUNDARY, g::FAIL_BACKUP_TRUNCATED_MID] {
        let bad = g::read(file);
        for piece in [1000, 65536, 65537, 200_000] {
            for threads in [0, 1, 3] {
                let mut r =
                    BackupReader::with_options(&acme, &ctx, &bad[..], BackupOptions::default().threads(threads))
                        .unwrap();
                let (_, err) = read_pieces(&mut r, piece);
                let err = err.unwrap_or_else(|| panic!("{file}: clean EOF with {piece}-byte reads, {threads} threads"));
                assert!(is_io_auth(&err), "{file}: {err:?}");
            }
        }
        // Through a reader that returns one byte at a time (a slow pipe).
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match (self.0.split_first(), buf.first_mut()) {
                    (Some((&b, rest)), Some(out)) => {
                        *out = b;
                        self.0 = rest;
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
        let e = verify_backup(&acme, &ctx, Trickle(&bad)).unwrap_err();
        assert!(is_auth(&e), "{file}: {e:?}");
    }
}

#[test]
fn fail_backup_chunks_swapped() {
    let bad = g::read(g::FAIL_BACKUP_SWAPPED);
    let good = g::read(g::BACKUP_MAIN.file);
    let (h, s) = (BACKUP_HEADER_LEN, g::BACKUP_SLOT);
    assert_eq!(bad.len(), good.len());
    assert_eq!(bad[..h], good[..h]);
    assert_eq!(bad[h..h + s], good[h + s..h + 2 * s]);
    assert_eq!(bad[h + s..h + 2 * s], good[h..h + s]);
    assert_eq!(bad[h + 2 * s..], good[h + 2 * s..]);
    let r = reject_file(g::FAIL_BACKUP_SWAPPED);
    assert!(!r.refused_at_header);
    assert_eq!(r.released_one_thread, 0, "the first chunk is out of place");
    assert!(r.seekable_opened, "the final chunk is in place");
}

#[test]
fn fail_backup_appended() {
    let bad = g::read(g::FAIL_BACKUP_APPENDED);
    let good = g::read(g::BACKUP_MAIN.file);
    assert_eq!(bad, [good.as_slice(), g::BACKUP_APPENDED].concat());
    let r = reject_file(g::FAIL_BACKUP_APPENDED);
    assert!(!r.refused_at_header && !r.seekable_opened);
    assert_eq!(r.released_one_thread, 2 * g::BACKUP_CHUNK_SIZE, "the two full chunks verify, the final one not");
}

#[test]
fn fail_backup_spliced_header() {
    let bad = g::read(g::FAIL_BACKUP_SPLICED_HEADER);
    let main = g::read(g::BACKUP_MAIN.file);
    let tiny = g::read(g::BACKUP_TINY.file);
    let h = BACKUP_HEADER_LEN;
    assert_eq!(bad[..h], tiny[..h]);
    assert_eq!(bad[h..], main[h..]);
    assert_eq!(g::BACKUP_TINY.chunk_size, g::BACKUP_MAIN.chunk_size, "same geometry: only the keys differ");
    // The header alone is authentic (for acme), so it is accepted; no chunk is.
    let r = reject_file(g::FAIL_BACKUP_SPLICED_HEADER);
    assert!(!r.refused_at_header && !r.seekable_opened);
    assert_eq!(r.released_one_thread, 0);
    // Under the tiny stream's own context as well.
    let k = keyring();
    let e = decrypt_backup(&acme(&k), &g::backup_tiny_context(), &bad).unwrap_err();
    assert!(is_auth(&e), "{e:?}");
    // And the other way round: the main header on the tiny stream's chunk.
    let other = [&main[..h], &tiny[h..]].concat();
    for ctx in [g::backup_context(), g::backup_tiny_context()] {
        let e = decrypt_backup(&acme(&k), &ctx, &other).unwrap_err();
        assert!(is_auth(&e), "{e:?}");
    }
}

#[test]
fn every_fail_backup_is_rejected_with_authentication() {
    for file in g::FAIL_BACKUPS {
        reject_file(file);
    }
    // The fail files differ from every valid stream.
    for file in g::FAIL_BACKUPS {
        let bad = g::read(file);
        for b in g::BACKUPS {
            assert_ne!(bad, g::read(b.file), "{file}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Secrets never print.

/// Every secret involved in the golden backups: root key, keyring integrity key, master
/// keys, acme's backup and record keys, each stream's data key, chunk key and header MAC key.
static SECRETS: LazyLock<SecretScan> = LazyLock::new(|| {
    let mut scan = SecretScan::new().with("root key", &KEYS.root).with("integrity key", &KEYS.integrity);
    for (v, m) in &KEYS.masters {
        scan = scan.with(format!("master v{v}"), m);
        for purpose in [&b"backups"[..], b"records"] {
            let k = KEYS.tenant_key(g::TENANT, *v, 0, purpose);
            scan = scan.with(format!("acme v{v} {}", String::from_utf8_lossy(purpose)), &k);
        }
    }
    for (b, s) in g::BACKUPS.iter().zip(STREAMS.iter()) {
        scan = scan.with(format!("{} data key", b.file), &s.data_key);
        scan = scan.with(format!("{} chunk key", b.file), &s.chunk_key);
        scan = scan.with(format!("{} mac key", b.file), &s.mac_key);
    }
    scan
});

#[test]
fn the_backup_secret_check_can_fail() {
    let s = &STREAMS[0];
    assert!(SECRETS.find(&format!("{:?}", s.data_key)).is_some(), "decimal Debug of a data key");
    assert!(SECRETS.find(&hex::encode_upper(&s.chunk_key[3..12])).is_some(), "hex of a chunk key slice");
    assert!(SECRETS.find(&format!("{:?}", KEYS.master(2).to_vec())).is_some(), "a master key");
    assert!(SECRETS.find(&hex::encode(KEYS.tenant_key(g::TENANT, 2, 0, b"backups"))).is_some());
    assert!(SECRETS.find(&hex::encode([0x5a; 32])).is_none());
    // The committed stream files themselves hold no 6-byte run of any of these keys.
    let mut keys = vec![KEYS.root, KEYS.master(1), KEYS.master(2), KEYS.tenant_key(g::TENANT, 2, 0, b"backups")];
    keys.extend(STREAMS.iter().flat_map(|s| [s.data_key, s.chunk_key, s.mac_key]));
    let raw = keys.iter().enumerate().fold(SecretScan::new(), |scan, (i, k)| scan.with(format!("key {i}"), k));
    for b in g::BACKUPS {
        let bytes = g::read(b.file);
        assert!(raw.find_in_bytes(&bytes).is_none(), "{}: key bytes in the file", b.file);
    }
}

#[test]
fn backup_secrets_never_print() {
    let k = keyring();
    let acme = acme(&k);
    let ctx = g::backup_context();
    let main = g::read(g::BACKUP_MAIN.file);
    let mut out: Vec<String> = Vec::new();

    // Contexts (snapshot ids are public and shown; no key is).
    for c in [g::backup_context(), g::backup_tiny_context(), g::backup_empty_context()] {
        let d = format!("{c:?}");
        assert!(d.contains(c.snapshot_id()), "{d}");
        out.extend([d, format!("{c:#?}")]);
    }
    let opts = BackupOptions::default().chunk_size(g::BACKUP_CHUNK_SIZE);
    out.push(format!("{opts:?}"));

    // Header facts.
    for b in g::BACKUPS {
        let info = inspect_backup(&g::read(b.file)[..]).unwrap();
        out.extend([format!("{info:?}"), format!("{info:#?}"), serde_json::to_string(&info).unwrap()]);
    }

    // A writer: fresh, mid-stream (a batch held in memory), and its errors.
    let mut w = BackupWriter::new(&acme, &ctx, opts.threads(1), Vec::new()).unwrap();
    out.push(format!("{w:?}"));
    io::Write::write_all(&mut w, &main_plaintext()[..100_000]).unwrap();
    out.extend([format!("{w:?}"), format!("{w:#?}")]);
    let written = w.finish().unwrap();
    assert!(written.len() > 100_000);
    struct Broken;
    impl io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let e = BackupWriter::new(&acme, &ctx, opts, Broken).unwrap_err();
    out.extend([format!("{e}"), format!("{e:?}")]);

    // Readers: fresh, mid-stream, random access, failed.
    let mut r = BackupReader::with_options(&acme, &ctx, &main[..], BackupOptions::default().threads(1)).unwrap();
    out.push(format!("{r:?}"));
    r.read_exact(&mut [0u8; 1000]).unwrap();
    out.extend([format!("{r:?}"), format!("{r:#?}")]);
    let mut r = BackupReader::open_seekable(&acme, &ctx, Cursor::new(&main)).unwrap();
    r.read_at(70_000, &mut [0u8; 10]).unwrap();
    out.extend([format!("{r:?}"), format!("{r:#?}")]);
    let bad = g::read(g::FAIL_BACKUP_CHUNK_BITFLIP);
    let mut r = BackupReader::open_seekable(&acme, &ctx, Cursor::new(&bad)).unwrap();
    let e = r.read_at(0, &mut vec![0u8; 200_000]).unwrap_err();
    out.extend([format!("{r:?}"), format!("{e}"), format!("{e:?}")]);

    // Every error of the tamper cases, the wrong contexts and tenants, and the other kinds.
    for file in g::FAIL_BACKUPS {
        out.extend(reject_file(file).rendered);
    }
    let wrong_ctx = BackupContext::incremental("snap-3", "snap-1", 2);
    let rej = rejected(&acme, &wrong_ctx, &main, "wrong context");
    out.extend(rej.rendered);
    let rej = rejected(&k.tenant(g::OTHER_TENANT).unwrap(), &ctx, &main, "wrong tenant");
    assert!(rej.refused_at_header);
    out.extend(rej.rendered);
    let mut errors = vec![
        decrypt_backup(&acme, &ctx, b"not a backup").unwrap_err(),
        decrypt_backup(&acme, &ctx, &main[..100]).unwrap_err(),
        decrypt_backup(&acme, &BackupContext::full(""), &main).unwrap_err(),
    ];
    let mut v9 = main.clone();
    v9[8] = 9;
    errors.push(decrypt_backup(&acme, &ctx, &v9).unwrap_err());
    assert!(matches!(errors[0], BackupError::NotABackup));
    assert!(matches!(errors[3], BackupError::UnsupportedFormat(9)));
    let k2 = keyring();
    k2.rotate().unwrap();
    k2.set_state(MasterVersion::new(2), KeyState::Disabled).unwrap();
    errors.push(decrypt_backup(&acme_of(&k2), &ctx, &main).unwrap_err());
    assert!(matches!(errors[4], BackupError::Key(OpenError::KeyDisabled(_))));
    // Without a key, a cut-off header is named as such.
    errors.push(inspect_backup(&main[..100]).unwrap_err());
    assert!(matches!(errors[5], BackupError::MalformedHeader), "{:?}", errors[5]);
    for e in &errors {
        out.extend([format!("{e}"), format!("{e:?}"), format!("{e:#?}"), format!("{}", io::Error::from(e_clone(e)))]);
    }

    assert!(out.len() > 100, "{} renderings checked", out.len());
    for s in &out {
        SECRETS.assert_clean(s);
    }
    // The authentication error is one opaque message: it names neither the tenant nor the
    // snapshot, whatever went wrong.
    let auth = BackupError::Authentication.to_string();
    for s in out.iter().filter(|s| s.contains("backup authentication failed")) {
        assert!(s.contains(&auth), "{s}");
        assert!(!s.contains("acme") && !s.contains("snap-"), "{s}");
    }
}

/// Re-creates the errors used above (`BackupError` is not `Clone`) for the `io::Error` form.
fn e_clone(e: &BackupError) -> BackupError {
    match e {
        BackupError::Authentication => BackupError::Authentication,
        BackupError::NotABackup => BackupError::NotABackup,
        BackupError::MalformedHeader => BackupError::MalformedHeader,
        BackupError::UnsupportedFormat(v) => BackupError::UnsupportedFormat(*v),
        BackupError::InvalidParameter(s) => BackupError::InvalidParameter(s.clone()),
        BackupError::Key(OpenError::KeyDisabled(v)) => BackupError::Key(OpenError::KeyDisabled(*v)),
        other => panic!("not expected here: {other:?}"),
    }
}
