//! Backup streams: every kind of tampering is rejected, and no unauthenticated byte is
//! released before the rejection.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

#[allow(dead_code, reason = "uses only common::data; the rest of the shared kit is unused here")]
mod common;

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

use atrest::{
    BACKUP_HEADER_LEN, BackupContext, BackupError, BackupKind, BackupOptions, BackupReader, BackupWriter,
    DestroyConfirmation, KeyState, Keyring, LocalRootKey, MasterVersion, OpenError, SealError, Suite, Tenant,
    decrypt_backup, encrypt_backup, inspect_backup, verify_backup,
};
use common::data::pseudo_random as data;

const CS: usize = 64 << 10;
const SLOT: usize = CS + 16;
const H: usize = BACKUP_HEADER_LEN;

struct Fx {
    keyring: Keyring,
    tenant: Tenant,
    ctx: BackupContext,
}

fn fx() -> Fx {
    let keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    Fx { keyring, tenant, ctx: BackupContext::incremental("snap-2", "snap-1", 1) }
}

fn opts() -> BackupOptions {
    BackupOptions::default().chunk_size(CS)
}

fn enc(f: &Fx, pt: &[u8]) -> Vec<u8> {
    encrypt_backup(&f.tenant, &f.ctx, pt, opts()).unwrap()
}

/// Splits a stream into its header and chunks (the last may be short).
fn split(stream: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    (stream[..H].to_vec(), stream[H..].chunks(SLOT).map(<[u8]>::to_vec).collect())
}

fn join(header: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut v = header.to_vec();
    for c in chunks {
        v.extend_from_slice(c);
    }
    v
}

#[derive(Debug)]
enum Outcome {
    Clean,
    Open(BackupError),
    Read(io::Error),
}

/// Reads a stream sequentially with `threads` threads, in odd-sized pieces; returns the
/// bytes released and how it ended.
fn read_seq(t: &Tenant, ctx: &BackupContext, stream: &[u8], threads: usize) -> (Vec<u8>, Outcome) {
    let mut r = match BackupReader::with_options(t, ctx, stream, BackupOptions::default().threads(threads)) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Outcome::Open(e)),
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 10_007];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, Outcome::Clean),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => {
                // The failure is sticky.
                assert!(r.read(&mut buf).is_err());
                return (out, Outcome::Read(e));
            }
        }
    }
}

/// `stream` (a tampered version of an encryption of `pt` for `f`) must be rejected by every
/// entry point. Bytes released before the error must be a prefix of `pt` made of whole
/// chunks, and none from `first_bad_chunk` on.
fn assert_rejected(f: &Fx, stream: &[u8], pt: &[u8], first_bad_chunk: Option<usize>, what: &str) {
    for threads in [1, 2] {
        let (released, outcome) = read_seq(&f.tenant, &f.ctx, stream, threads);
        match &outcome {
            Outcome::Clean => panic!("{what}: accepted with {threads} threads"),
            Outcome::Read(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}"),
            Outcome::Open(e) => assert!(
                matches!(e, BackupError::Authentication | BackupError::NotABackup | BackupError::UnsupportedFormat(_)),
                "{what}: {e:?}"
            ),
        }
        assert!(released.len() % CS == 0, "{what}: released {} bytes: not whole chunks", released.len());
        assert!(pt.starts_with(&released), "{what}: released bytes are not a prefix of the plaintext");
        if let Some(k) = first_bad_chunk {
            assert!(released.len() <= k * CS, "{what}: released {} bytes past chunk {k}", released.len());
        }
    }
    assert!(decrypt_backup(&f.tenant, &f.ctx, stream).is_err(), "{what}: decrypt_backup accepted");
    assert!(verify_backup(&f.tenant, &f.ctx, stream).is_err(), "{what}: verify_backup accepted");
    if let Ok(mut r) = BackupReader::open_seekable(&f.tenant, &f.ctx, Cursor::new(stream)) {
        let mut all = Vec::new();
        let e = r.read_to_end(&mut all).expect_err(what);
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}");
        assert!(pt.starts_with(&all), "{what}: seekable reader released bytes that are not a prefix");
    }
}

fn auth(r: Result<impl Sized, BackupError>) -> bool {
    matches!(r, Err(BackupError::Authentication))
}

#[test]
fn round_trip_at_the_edges() {
    let f = fx();
    for len in [0, 1, CS - 1, CS, CS + 1, 2 * CS, 3 * CS, 3 * CS + 1] {
        let pt = data(len, len as u64);
        let stream = enc(&f, &pt);
        let chunks = len.div_ceil(CS).max(1);
        assert_eq!(stream.len(), H + len + 16 * chunks, "len {len}");
        assert_eq!(decrypt_backup(&f.tenant, &f.ctx, &stream).unwrap(), pt);
        assert_eq!(verify_backup(&f.tenant, &f.ctx, &stream[..]).unwrap(), len as u64);
        for threads in [1, 2] {
            let (out, outcome) = read_seq(&f.tenant, &f.ctx, &stream, threads);
            assert!(matches!(outcome, Outcome::Clean), "len {len}: {outcome:?}");
            assert_eq!(out, pt);
        }
        let mut r = BackupReader::open_seekable(&f.tenant, &f.ctx, Cursor::new(&stream)).unwrap();
        assert_eq!(r.len(), len as u64);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, pt);

        // The streaming writer, fed in odd pieces, gives a stream of the same shape.
        for threads in [1, 3] {
            let mut w = BackupWriter::new(&f.tenant, &f.ctx, opts().threads(threads), Vec::new()).unwrap();
            for piece in pt.chunks(9_999) {
                w.write_all(piece).unwrap();
            }
            let s2 = w.finish().unwrap();
            assert_eq!(s2.len(), stream.len());
            assert_ne!(s2, stream, "every stream has its own data key");
            assert_eq!(decrypt_backup(&f.tenant, &f.ctx, &s2).unwrap(), pt);
        }
    }
}

#[test]
fn every_header_bit_flip_is_rejected_before_any_chunk() {
    let f = fx();
    let pt = data(CS + 1000, 1);
    let stream = enc(&f, &pt);
    for i in 0..H {
        for bit in 0..8 {
            let mut s = stream.clone();
            s[i] ^= 1 << bit;
            let opened = BackupReader::new(&f.tenant, &f.ctx, &s[..]);
            match i {
                0..8 => assert!(matches!(opened, Err(BackupError::NotABackup)), "byte {i}"),
                8 => assert!(matches!(opened, Err(BackupError::UnsupportedFormat(_))), "byte {i}"),
                _ => assert!(auth(opened), "byte {i} bit {bit}"),
            }
            assert_rejected(&f, &s, &pt, Some(0), &format!("header byte {i} bit {bit}"));
        }
    }
}

#[test]
fn every_chunk_and_tag_is_authenticated() {
    let f = fx();
    let pt = data(3 * CS + 1000, 2);
    let stream = enc(&f, &pt);
    let (_, chunks) = split(&stream);
    assert_eq!(chunks.len(), 4);
    for (k, chunk) in chunks.iter().enumerate() {
        let ct_len = chunk.len() - 16;
        // Every entry point for the first, middle and last ciphertext byte and the tag ends.
        for p in [0, ct_len / 2, ct_len - 1, ct_len, ct_len + 15] {
            let mut s = stream.clone();
            s[H + k * SLOT + p] ^= 0x80 >> (p % 8);
            assert_rejected(&f, &s, &pt, Some(k), &format!("chunk {k} byte {p}"));
        }
        // Every other tag byte through the one-chunk-at-a-time reader and the one-shot call.
        for p in ct_len + 1..ct_len + 15 {
            let mut s = stream.clone();
            s[H + k * SLOT + p] ^= 1 << (p % 8);
            let (released, outcome) = read_seq(&f.tenant, &f.ctx, &s, 1);
            assert!(matches!(outcome, Outcome::Read(ref e) if e.kind() == io::ErrorKind::InvalidData), "tag {k}/{p}");
            assert_eq!(released, pt[..k * CS], "chunk {k} tag byte {p}");
            assert!(auth(decrypt_backup(&f.tenant, &f.ctx, &s)), "chunk {k} tag byte {p}");
        }
    }
}

#[test]
fn truncation_anywhere_is_an_error_never_a_clean_end() {
    let f = fx();
    for len in [0, 1, CS, 2 * CS, 2 * CS + 1, 3 * CS + 1000] {
        let pt = data(len, 3);
        let stream = enc(&f, &pt);
        let mut cuts = vec![0, 1, 7, 8, 9, H - 1, H];
        for k in 0..=len.div_ceil(CS) {
            for d in [0, 1, 15, 16, 17, CS / 2, SLOT - 1] {
                cuts.push(H + k * SLOT + d);
            }
        }
        cuts.push(stream.len() - 1);
        cuts.retain(|&c| c < stream.len());
        cuts.sort_unstable();
        cuts.dedup();
        for cut in cuts {
            let s = &stream[..cut];
            // A cut chunk is never released, nor is the chunk before a cut at a boundary
            // (it is checked as the final chunk, and it is not); earlier ones may be.
            let body = cut.saturating_sub(H);
            let first_bad = if body % SLOT == 0 { (body / SLOT).saturating_sub(1) } else { body / SLOT };
            assert_rejected(&f, s, &pt, Some(first_bad), &format!("len {len} cut at {cut}"));
            if cut >= H {
                assert!(
                    auth(BackupReader::open_seekable(&f.tenant, &f.ctx, Cursor::new(s))),
                    "len {len} cut at {cut}: the seekable reader checks the final chunk first"
                );
            }
        }
    }
}

#[test]
fn dropped_duplicated_and_reordered_chunks_are_rejected() {
    let f = fx();
    let pt = data(3 * CS + 1000, 4);
    let stream = enc(&f, &pt);
    let (header, chunks) = split(&stream);
    let n = chunks.len();
    for k in 0..n {
        let mut c = chunks.clone();
        c.remove(k);
        assert_rejected(&f, &join(&header, &c), &pt, Some(k), &format!("drop {k}"));
        let mut c = chunks.clone();
        c.insert(k, chunks[k].clone());
        assert_rejected(&f, &join(&header, &c), &pt, Some(k + 1), &format!("duplicate {k}"));
    }
    for k in 0..n - 1 {
        let mut c = chunks.clone();
        c.swap(k, k + 1);
        assert_rejected(&f, &join(&header, &c), &pt, Some(k), &format!("swap {k} and {}", k + 1));
    }
    // The final chunk moved to the front, and the full chunks in reverse order.
    let mut c = chunks.clone();
    c.rotate_right(1);
    assert_rejected(&f, &join(&header, &c), &pt, Some(0), "final chunk first");
    let mut c = chunks.clone();
    c[..n - 1].reverse();
    assert_rejected(&f, &join(&header, &c), &pt, Some(0), "reversed");
    // Only the full chunks, without the final one: a clean-looking cut at a boundary.
    assert_rejected(&f, &join(&header, &chunks[..n - 1]), &pt, Some(n - 1), "final chunk dropped");
}

#[test]
fn data_after_the_final_chunk_is_rejected() {
    let f = fx();
    for len in [0, 1000, CS, 2 * CS, 2 * CS + 1000] {
        let pt = data(len, 5);
        let stream = enc(&f, &pt);
        let (_, chunks) = split(&stream);
        let first = chunks[0].clone();
        let last = chunks.last().unwrap().clone();
        for extra in [vec![0u8], vec![0u8; 16], vec![0u8; 17], vec![0u8; SLOT], first, last] {
            let mut s = stream.clone();
            s.extend_from_slice(&extra);
            // The final chunk itself is then read as a non-final one.
            let final_chunk = chunks.len() - 1;
            assert_rejected(&f, &s, &pt, Some(final_chunk), &format!("len {len} + {} bytes", extra.len()));
            assert!(auth(BackupReader::open_seekable(&f.tenant, &f.ctx, Cursor::new(&s))));
        }
    }
}

#[test]
fn chunks_and_headers_from_other_streams_are_rejected() {
    let f = fx();
    let pt = data(3 * CS + 1000, 6);
    let a = enc(&f, &pt);
    let b = enc(&f, &pt);
    let (ha, ca) = split(&a);
    let (hb, cb) = split(&b);
    for k in 0..ca.len() {
        let mut c = ca.clone();
        c[k] = cb[k].clone();
        assert_rejected(&f, &join(&ha, &c), &pt, Some(k), &format!("chunk {k} from another stream"));
    }
    assert_rejected(&f, &join(&hb, &ca), &pt, Some(0), "header from another stream");
    // A stream of another snapshot, same tenant and data.
    let other = BackupContext::full("snap-1");
    let c = encrypt_backup(&f.tenant, &other, &pt, opts()).unwrap();
    let (hc, cc) = split(&c);
    let mut mixed = ca.clone();
    mixed[1] = cc[1].clone();
    assert_rejected(&f, &join(&ha, &mixed), &pt, Some(1), "chunk from another snapshot");
    assert_rejected(&f, &join(&hc, &ca), &pt, Some(0), "header from another snapshot");
}

#[test]
fn wrong_tenant_keyring_or_context_is_rejected() {
    let f = fx();
    let pt = data(CS + 10, 7);
    let stream = enc(&f, &pt);
    let globex = f.keyring.tenant("globex").unwrap();
    assert!(auth(BackupReader::new(&globex, &f.ctx, &stream[..])));
    assert!(auth(decrypt_backup(&globex, &f.ctx, &stream)));
    let other_keyring = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let acme_elsewhere = other_keyring.tenant("acme").unwrap();
    assert!(auth(BackupReader::new(&acme_elsewhere, &f.ctx, &stream[..])));
    assert!(auth(verify_backup(&acme_elsewhere, &f.ctx, &stream[..])));

    let contexts = [
        BackupContext::incremental("snap-3", "snap-1", 1),
        BackupContext::incremental("snap-2", "snap-0", 1),
        BackupContext::incremental("snap-2", "snap-1", 2),
        BackupContext::new("snap-2", Some("snap-1"), BackupKind::Full, 1),
        BackupContext::full("snap-2"),
        // Field boundaries move: the encoding is length-prefixed.
        BackupContext::incremental("snap-2s", "nap-1", 1),
        BackupContext::incremental("snap-", "2snap-1", 1),
    ];
    for ctx in contexts {
        assert!(auth(decrypt_backup(&f.tenant, &ctx, &stream)), "{ctx:?}");
        let g = Fx { keyring: f.keyring.clone(), tenant: f.tenant.clone(), ctx: ctx.clone() };
        assert_rejected(&g, &stream, &pt, Some(0), &format!("{ctx:?}"));
    }
    // Malformed contexts are refused up front.
    let bad = [
        BackupContext::full(""),
        BackupContext::new("s", None, BackupKind::Incremental, 1),
        BackupContext::incremental("s", "", 1),
        BackupContext::full(&"x".repeat(atrest::MAX_SNAPSHOT_ID_LEN + 1)),
    ];
    for ctx in bad {
        assert!(matches!(encrypt_backup(&f.tenant, &ctx, b"x", opts()), Err(BackupError::InvalidParameter(_))));
        assert!(matches!(BackupReader::new(&f.tenant, &ctx, &stream[..]), Err(BackupError::InvalidParameter(_))));
    }
}

#[test]
fn key_states_give_typed_errors() {
    let f = fx();
    let pt = data(1000, 8);
    let stream = enc(&f, &pt);
    let v1 = MasterVersion::new(1);
    let v2 = f.keyring.rotate().unwrap();
    // Still opens under the enabled old version; new streams use v2.
    assert_eq!(decrypt_backup(&f.tenant, &f.ctx, &stream).unwrap(), pt);
    assert_eq!(inspect_backup(&enc(&f, &pt)[..]).unwrap().key_version.master, v2);

    f.keyring.set_state(v1, KeyState::Disabled).unwrap();
    let e = BackupReader::new(&f.tenant, &f.ctx, &stream[..]).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::KeyDisabled(v)) if v == v1), "{e:?}");
    assert!(matches!(decrypt_backup(&f.tenant, &f.ctx, &stream), Err(BackupError::Key(OpenError::KeyDisabled(_)))));
    assert!(matches!(verify_backup(&f.tenant, &f.ctx, &stream[..]), Err(BackupError::Key(OpenError::KeyDisabled(_)))));
    f.keyring.set_state(v1, KeyState::Enabled).unwrap();
    assert_eq!(decrypt_backup(&f.tenant, &f.ctx, &stream).unwrap(), pt);

    f.keyring.set_state(v1, KeyState::Disabled).unwrap();

    f.keyring.destroy(v1, DestroyConfirmation::data_under_this_version_is_lost(v1).skip_grace_period()).unwrap();
    let e = BackupReader::new(&f.tenant, &f.ctx, &stream[..]).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::KeyDestroyed(v)) if v == v1), "{e:?}");

    let fresh = enc(&f, &pt);
    f.keyring.shred_tenant("acme", atrest::ShredEvidence::Unverified).unwrap();
    let e = BackupReader::new(&f.tenant, &f.ctx, &fresh[..]).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::TenantShredded { .. })), "{e:?}");
    let e = BackupWriter::new(&f.tenant, &f.ctx, opts(), Vec::new()).unwrap_err();
    assert!(matches!(e, BackupError::Seal(SealError::TenantShredded { .. })), "{e:?}");
}

#[test]
fn not_a_backup_and_inspect() {
    let f = fx();
    assert!(matches!(BackupReader::new(&f.tenant, &f.ctx, &[][..]), Err(BackupError::NotABackup)));
    assert!(matches!(BackupReader::new(&f.tenant, &f.ctx, &b"PGDMP\x01\x0e"[..]), Err(BackupError::NotABackup)));
    assert!(matches!(inspect_backup(&b"hello"[..]), Err(BackupError::NotABackup)));
    // A header cut short is named as such by the keyless inspect, at every length.
    let full = enc(&f, &data(10, 9));
    for cut in 8..BACKUP_HEADER_LEN {
        assert!(matches!(inspect_backup(&full[..cut]), Err(BackupError::MalformedHeader)), "cut {cut}");
    }
    let stream = enc(&f, &data(10, 9));
    let info = inspect_backup(&stream[..]).unwrap();
    assert_eq!(info.format_version, 1);
    assert_eq!(info.suite, Suite::Aes256Gcm);
    assert_eq!(info.chunk_size, CS as u32);
    assert_eq!(info.key_version, f.tenant.key_version());
    assert_eq!(info.header_len, H as u64);
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["suite"], "AES-256-GCM");
    assert_eq!(json["chunk_size"], CS);
    assert_eq!(json["key_version"]["master"], 1);
    // The header alone: it opens, and the first read reports the missing final chunk.
    let mut r = BackupReader::new(&f.tenant, &f.ctx, &stream[..H]).unwrap();
    let e = r.read(&mut [0u8; 10]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    // Chunk sizes outside the range are refused.
    for cs in [0, 1, (64 << 10) - 1, (16 << 20) + 1] {
        let o = BackupOptions::default().chunk_size(cs);
        assert!(matches!(encrypt_backup(&f.tenant, &f.ctx, b"x", o), Err(BackupError::InvalidParameter(_))));
        assert!(matches!(BackupWriter::new(&f.tenant, &f.ctx, o, Vec::new()), Err(BackupError::InvalidParameter(_))));
    }
}

#[test]
fn an_unfinished_writer_leaves_a_stream_that_never_verifies() {
    let f = fx();
    // The writer holds one encrypted batch back (it is written while the next one is
    // encrypted): 17 chunks and a bit make at least one batch (of up to eight chunks, on two
    // threads) reach the output before the drop.
    let pt = data(17 * CS + 7, 10);
    for threads in [1, 2] {
        let mut out = Vec::new();
        {
            let mut w = BackupWriter::new(&f.tenant, &f.ctx, opts().threads(threads), &mut out).unwrap();
            w.write_all(&pt).unwrap();
            // Dropped without finish().
        }
        assert!(out.len() > H + SLOT, "full batches were written");
        assert_rejected(&f, &out, &pt, None, "unfinished writer");
    }
}

/// A writer that fails after `left` bytes.
struct Failing {
    left: usize,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("disk full"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn writer_refuses_use_after_an_error() {
    let f = fx();
    let mut w = BackupWriter::new(&f.tenant, &f.ctx, opts().threads(1), Failing { left: H + 10 }).unwrap();
    let e = w.write_all(&data(3 * CS, 11)).unwrap_err();
    assert_eq!(e.to_string(), "disk full");
    let e = w.write(b"more").unwrap_err();
    assert!(e.to_string().contains("failed earlier"), "{e}");
    assert!(matches!(w.finish(), Err(BackupError::Finished)));
    assert!(matches!(BackupWriter::new(&f.tenant, &f.ctx, opts(), Failing { left: 3 }), Err(BackupError::Io(_))));
}

#[test]
fn random_access_after_the_final_chunk_is_authenticated() {
    let f = fx();
    let pt = data(3 * CS + 1000, 12);
    let stream = enc(&f, &pt);
    let mut r = BackupReader::open_seekable(&f.tenant, &f.ctx, Cursor::new(&stream)).unwrap();
    assert_eq!(r.len(), pt.len() as u64);
    for off in [0, 1, CS - 1, CS, 2 * CS + 5, 3 * CS, pt.len() - 1] {
        let mut buf = vec![0u8; 1500];
        let n = r.read_at(off as u64, &mut buf).unwrap();
        let want = &pt[off..(off + 1500).min(pt.len())];
        assert_eq!(&buf[..n], want, "offset {off}");
    }
    assert_eq!(r.read_at(pt.len() as u64, &mut [0u8; 4]).unwrap(), 0);
    assert_eq!(r.read_at(u64::MAX, &mut [0u8; 4]).unwrap(), 0);
    // read_at does not move the position; Seek does.
    let mut b = [0u8; 3];
    r.read_exact(&mut b).unwrap();
    assert_eq!(b, pt[..3]);
    assert_eq!(r.seek(SeekFrom::End(-2)).unwrap(), pt.len() as u64 - 2);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, pt[pt.len() - 2..]);
    assert_eq!(r.seek(SeekFrom::Current(-(CS as i64))).unwrap(), (pt.len() - CS) as u64);
    assert!(r.seek(SeekFrom::End(-(pt.len() as i64) - 1)).is_err());

    // A reader made by new() on a seekable input switches to random access on its first seek.
    let mut r = BackupReader::new(&f.tenant, &f.ctx, Cursor::new(&stream)).unwrap();
    let mut first = vec![0u8; 100];
    r.read_exact(&mut first).unwrap();
    assert_eq!(first, pt[..100]);
    r.seek(SeekFrom::Start(2 * CS as u64 + 3)).unwrap();
    assert_eq!(r.len(), pt.len() as u64);
    let mut b = vec![0u8; 10];
    r.read_exact(&mut b).unwrap();
    assert_eq!(b, pt[2 * CS + 3..2 * CS + 13]);

    // The stream may start inside a larger file.
    let mut embedded = b"prefix bytes".to_vec();
    embedded.extend_from_slice(&stream);
    let mut cur = Cursor::new(&embedded);
    cur.seek(SeekFrom::Start(12)).unwrap();
    let mut r = BackupReader::open_seekable(&f.tenant, &f.ctx, cur).unwrap();
    let mut b = vec![0u8; 10];
    assert_eq!(r.read_at(CS as u64, &mut b).unwrap(), 10);
    assert_eq!(b, pt[CS..CS + 10]);

    // A modified middle chunk: the stream opens (its final chunk is fine), reading there fails.
    let mut bad = stream.clone();
    bad[H + SLOT + 100] ^= 1;
    let mut r = BackupReader::open_seekable(&f.tenant, &f.ctx, Cursor::new(&bad)).unwrap();
    assert!(matches!(r.read_at(CS as u64 + 5, &mut [0u8; 8]), Err(BackupError::Authentication)));
    assert!(r.read_at(0, &mut [0u8; 8]).is_err(), "refuses after a failure");
}

#[test]
fn reader_error_kinds() {
    let f = fx();
    let pt = data(2 * CS + 10, 13);
    let mut stream = enc(&f, &pt);
    stream.truncate(stream.len() - 5);
    let mut r = BackupReader::new(&f.tenant, &f.ctx, &stream[..]).unwrap();
    let mut all = Vec::new();
    let e = r.read_to_end(&mut all).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    let inner = e.into_inner().unwrap().downcast::<BackupError>().unwrap();
    assert!(matches!(*inner, BackupError::Authentication));
}

#[test]
fn rewrap_changes_only_the_header_and_survives_destroying_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::sync::Arc::new(LocalRootKey::generate().unwrap());
    let keyring = Keyring::create(&dir.path().join("keyring.atrk"), root.clone()).unwrap();
    let acme = keyring.tenant("acme").unwrap();
    let ctx = BackupContext::full("nightly");
    let pt = data(3 * CS + 123, 14);
    let path = dir.path().join("nightly.atrb");
    let mut w = BackupWriter::new(&acme, &ctx, opts(), std::fs::File::create(&path).unwrap()).unwrap();
    w.write_all(&pt).unwrap();
    w.finish().unwrap();
    let kept = dir.path().join("kept.atrb");
    std::fs::copy(&path, &kept).unwrap();
    let before = std::fs::read(&path).unwrap();

    // Nothing to do under the current version: the file is untouched.
    assert_eq!(atrest::rewrap_backup_header(&acme, &path).unwrap(), acme.key_version());
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let v1 = MasterVersion::new(1);
    let v2 = keyring.rotate().unwrap();
    let now = atrest::rewrap_backup_header(&acme, &path).unwrap();
    assert_eq!(now.master, v2);
    let after = std::fs::read(&path).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(after[H..], before[H..], "chunk bytes are untouched");
    let changed: Vec<usize> = (0..H).filter(|&i| after[i] != before[i]).collect();
    assert!(!changed.is_empty());
    assert!(changed.iter().all(|i| (46..122).contains(i)), "only key version and wrapping change: {changed:?}");
    assert_eq!(inspect_backup(&after[..]).unwrap().key_version.master, v2);
    assert_eq!(decrypt_backup(&acme, &ctx, &after).unwrap(), pt);
    // Idempotent.
    assert_eq!(atrest::rewrap_backup_header(&acme, &path).unwrap(), now);
    assert_eq!(std::fs::read(&path).unwrap(), after);

    keyring.set_state(v1, KeyState::Disabled).unwrap();

    // A file keyring: disabled for at least its staleness bound first (whole seconds).

    let confirm = DestroyConfirmation::data_under_this_version_is_lost(v1).skip_grace_period();

    while let Err(atrest::KeyringError::GracePeriod { .. }) = keyring.destroy(v1, confirm) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let reopened = Keyring::open(&dir.path().join("keyring.atrk"), root).unwrap();
    let acme2 = reopened.tenant("acme").unwrap();
    let f = std::fs::File::open(&path).unwrap();
    assert_eq!(verify_backup(&acme2, &ctx, f).unwrap(), pt.len() as u64);
    let mut r = BackupReader::open_seekable(&acme2, &ctx, std::fs::File::open(&path).unwrap()).unwrap();
    let mut b = [0u8; 5];
    r.read_at(2 * CS as u64, &mut b).unwrap();
    assert_eq!(b, pt[2 * CS..2 * CS + 5]);
    // The copy that was not rewrapped is gone with v1.
    let e = verify_backup(&acme2, &ctx, std::fs::File::open(&kept).unwrap()).unwrap_err();
    assert!(matches!(e, BackupError::Key(OpenError::KeyDestroyed(v)) if v == v1), "{e:?}");
    assert!(matches!(atrest::rewrap_backup_header(&acme2, &kept), Err(BackupError::Key(OpenError::KeyDestroyed(_)))));

    // A per-tenant rotation: the generation moves.
    reopened.rotate_tenant("acme").unwrap();
    let g = atrest::rewrap_backup_header(&acme2, &path).unwrap();
    assert_eq!((g.master, g.generation), (v2, 1));
    assert_eq!(decrypt_backup(&acme2, &ctx, &std::fs::read(&path).unwrap()).unwrap(), pt);

    // Another tenant, or a damaged header, is refused and the file left as it was.
    reopened.rotate().unwrap();
    let globex = reopened.tenant("globex").unwrap();
    let current = std::fs::read(&path).unwrap();
    assert!(auth(atrest::rewrap_backup_header(&globex, &path)));
    let mut damaged = current.clone();
    damaged[130] ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    assert!(auth(atrest::rewrap_backup_header(&acme2, &path)));
    assert_eq!(std::fs::read(&path).unwrap(), damaged);
    assert!(matches!(atrest::rewrap_backup_header(&acme2, &dir.path().join("missing")), Err(BackupError::Io(_))));
    std::fs::write(&path, b"not a backup").unwrap();
    assert!(matches!(atrest::rewrap_backup_header(&acme2, &path), Err(BackupError::NotABackup)));

    // No journal or temporary file is left behind.
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["kept.atrb", "keyring.atrk", "keyring.atrk.lock", "nightly.atrb"]);
}

/// A seekable-typed input whose seeks fail, like a pipe.
struct Unseekable<'a>(&'a [u8]);

impl Read for Unseekable<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Seek for Unseekable<'_> {
    fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
        Err(io::Error::other("illegal seek"))
    }
}

#[test]
fn a_failed_seek_on_an_unseekable_input_leaves_sequential_reading_intact() {
    let f = fx();
    let pt = data(2 * CS + 3, 15);
    let stream = enc(&f, &pt);
    assert!(BackupReader::open_seekable(&f.tenant, &f.ctx, Unseekable(&stream)).is_err());
    let mut r = BackupReader::with_options(&f.tenant, &f.ctx, Unseekable(&stream), BackupOptions::default().threads(1))
        .unwrap();
    let mut first = vec![0u8; 1000];
    r.read_exact(&mut first).unwrap();
    assert!(r.seek(SeekFrom::Start(0)).is_err());
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    first.extend(rest);
    assert_eq!(first, pt);
}

#[test]
fn a_failed_switch_to_random_access_is_final() {
    // Found by the backup_seek fuzz target: after the first seek failed to authenticate the
    // final chunk, a second seek succeeded and `len()` reported the unauthenticated length.
    let f = fx();
    let pt = data(100, 16);
    let mut stream = enc(&f, &pt);
    stream.extend_from_slice(&[0u8; 50]);
    let mut r = BackupReader::new(&f.tenant, &f.ctx, Cursor::new(&stream)).unwrap();
    assert!(r.seek(SeekFrom::Start(0)).is_err());
    assert!(r.seek(SeekFrom::Start(0)).is_err(), "refuses after a failure");
    assert!(r.seek(SeekFrom::End(0)).is_err());
    assert!(r.read_at(0, &mut [0u8; 8]).is_err());
    assert_eq!(r.len(), 0, "no unauthenticated length");
    assert!(r.read(&mut [0u8; 8]).is_err());
}
