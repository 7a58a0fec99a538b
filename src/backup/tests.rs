//! Unit tests of the backup stream internals: the documented format rebuilt independently
//! from the primitives, and the chunk-count limit.
#![allow(clippy::cast_possible_truncation, reason = "test data generators")]

use std::io::Write;

use aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::chunk::ChunkCipher;
use super::frame::{Frame, MAX_CHUNKS, TAG_LEN};
use super::keys::{StreamSecrets, build_stream};
use super::pipeline::Exec;
use super::*;
use crate::hazmat::XAes256Gcm;
use crate::secret::{DataKey, TenantKey};
use crate::{Backend, KeyVersion, MasterVersion, TenantId};

fn lp(x: &[u8]) -> Vec<u8> {
    let mut v = (x.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(x);
    v
}

const DATA_KEY: [u8; 32] = [0x22; 32];
const SALT: [u8; 32] = [0x33; 32];
const WRAP_NONCE: [u8; 24] = [0x44; 24];
const BACKUP_KEY: [u8; 32] = [0x11; 32];

fn plaintext() -> Vec<u8> {
    (0..150_000u32).map(|i| (i % 251) as u8).collect()
}

/// The stream the writer produces for fixed secrets, with `threads` threads.
fn written(threads: usize, backend: Backend) -> Vec<u8> {
    let version = KeyVersion { master: MasterVersion::new(3), generation: 2 };
    let ctx = BackupContext::incremental("snap-2", "snap-1", 7);
    let secrets = StreamSecrets { data_key: DataKey::from_bytes(DATA_KEY), salt: SALT, wrap_nonce: WRAP_NONCE };
    let tenant = TenantId::new("acme").unwrap();
    let (header, cipher) =
        build_stream(&TenantKey::from_bytes(BACKUP_KEY), version, &tenant, &ctx, 65536, secrets, backend).unwrap();
    let mut w = BackupWriter::from_parts(Frame::new(65536), cipher, Exec::new(threads).unwrap(), header);
    // Odd write sizes, so chunk boundaries fall inside writes.
    for piece in plaintext().chunks(10_007) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap()
}

/// The same stream, built from the format documentation with the primitives directly.
fn from_spec() -> Vec<u8> {
    let hk = Hkdf::<Sha256>::new(Some(&SALT), &DATA_KEY);
    let expand = |what: &[u8]| {
        let mut info = lp(b"atrest/v1/backup");
        info.extend(lp(what));
        let mut okm = [0u8; 32];
        hk.expand(&info, &mut okm).unwrap();
        okm
    };
    let (chunk_key, prefix, commitment, mac_key) =
        (expand(b"chunk key"), expand(b"nonce prefix"), expand(b"commitment"), expand(b"header mac"));

    let mut fixed = b"ATRESTBK".to_vec();
    fixed.extend([1, 2]);
    fixed.extend(65536u32.to_be_bytes());
    fixed.extend(SALT);
    assert_eq!(fixed.len(), 46);

    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&mac_key).unwrap();
    mac.update(&[lp(b"atrest/v1/backup/header"), fixed.clone(), commitment.to_vec()].concat());
    let tag = mac.finalize().into_bytes().to_vec();

    let key_version = [0, 3, 0, 2];
    let wrap_aad = [
        lp(b"atrest/v1/backup/wrap"),
        lp(b"acme"),
        fixed.clone(),
        key_version.to_vec(),
        commitment.to_vec(),
        tag.clone(),
    ]
    .concat();
    let wrapped = XAes256Gcm::new(&BACKUP_KEY.into())
        .encrypt(&WRAP_NONCE.into(), Payload { msg: &DATA_KEY, aad: &wrap_aad })
        .unwrap();

    let mut out =
        [fixed.clone(), key_version.to_vec(), WRAP_NONCE.to_vec(), wrapped, commitment.to_vec(), tag.clone()].concat();
    assert_eq!(out.len(), 186);

    let mut ctx = lp(b"snap-2");
    ctx.push(1);
    ctx.extend(lp(b"snap-1"));
    ctx.push(2);
    ctx.extend(7u64.to_be_bytes());
    let aad: [u8; 32] =
        Sha256::digest([lp(b"atrest/v1/backup/chunk"), fixed, commitment.to_vec(), tag, lp(b"acme"), ctx].concat())
            .into();

    let gcm = Aes256Gcm::new(&chunk_key.into());
    let pt = plaintext();
    let n = pt.chunks(65536).count();
    for (i, piece) in pt.chunks(65536).enumerate() {
        let mut nonce = prefix[..7].to_vec();
        nonce.extend((i as u32).to_be_bytes());
        nonce.push(u8::from(i + 1 == n));
        let nonce = aead::Nonce::<Aes256Gcm>::try_from(&nonce[..]).unwrap();
        out.extend(gcm.encrypt(&nonce, Payload { msg: piece, aad: &aad }).unwrap());
    }
    out
}

#[test]
fn writer_output_matches_the_documented_format() {
    let spec = from_spec();
    for backend in Backend::available() {
        for threads in [1, 2, 3] {
            assert!(written(threads, *backend) == spec, "{backend}, {threads} threads");
        }
    }
    // Pinned: any change to the format shows up here and must be deliberate.
    assert_eq!(hex::encode(Sha256::digest(&spec)), "1dbb4739005cf094baa6fd3d9f0f8f2fea2d5e5701153b7b464b09b056e9c1ca");
}

#[test]
fn chunk_count_limit() {
    let ctx = BackupContext::full("s");
    let secrets = || StreamSecrets { data_key: DataKey::from_bytes(DATA_KEY), salt: SALT, wrap_nonce: WRAP_NONCE };
    let key = TenantKey::from_bytes(BACKUP_KEY);
    let version = KeyVersion { master: MasterVersion::new(1), generation: 0 };
    let tenant = TenantId::new("acme").unwrap();
    let make = || {
        let (header, cipher) =
            build_stream(&key, version, &tenant, &ctx, MIN_CHUNK_SIZE, secrets(), Backend::default()).unwrap();
        BackupWriter::from_parts(Frame::new(MIN_CHUNK_SIZE), cipher, Exec::new(1).unwrap(), header)
    };
    // The last chunk index, 2^32 - 1, is still allowed.
    let mut w = make();
    w.next_index = MAX_CHUNKS - 1;
    w.write_all(&[1u8; MIN_CHUNK_SIZE]).unwrap();
    w.finish().unwrap();
    // One chunk more is refused.
    let mut w = make();
    w.next_index = MAX_CHUNKS - 1;
    w.write_all(&[1u8; MIN_CHUNK_SIZE]).unwrap();
    let e = w.write_all(&[1u8]).and_then(|()| w.flush());
    assert!(e.is_ok(), "the batch is flushed only when more data follows a full batch");
    assert!(matches!(w.finish(), Err(BackupError::TooLong)));
    let mut w = make();
    w.next_index = MAX_CHUNKS;
    assert!(matches!(w.finish(), Err(BackupError::TooLong)));
}

/// A writer (with `threads` threads) of a stream with fixed secrets, its header written.
fn fixed_writer(chunk_size: usize, threads: usize) -> BackupWriter<Vec<u8>> {
    fixed_writer_on(chunk_size, threads, Backend::default())
}

fn fixed_writer_on(chunk_size: usize, threads: usize, backend: Backend) -> BackupWriter<Vec<u8>> {
    let (header, cipher) = fixed_stream_on(chunk_size, backend);
    BackupWriter::from_parts(Frame::new(chunk_size), cipher, Exec::new(threads).unwrap(), header)
}

/// The header and chunk cipher of a stream with fixed secrets.
fn fixed_stream_on(chunk_size: usize, backend: Backend) -> (Vec<u8>, ChunkCipher) {
    let secrets = StreamSecrets { data_key: DataKey::from_bytes(DATA_KEY), salt: SALT, wrap_nonce: WRAP_NONCE };
    let version = KeyVersion { master: MasterVersion::new(1), generation: 0 };
    let tenant = TenantId::new("acme").unwrap();
    let ctx = BackupContext::full("s");
    build_stream(&TenantKey::from_bytes(BACKUP_KEY), version, &tenant, &ctx, chunk_size, secrets, backend).unwrap()
}

/// The stream for fixed secrets, `pt` written in `piece`-byte writes with `threads` threads.
fn written_with(pt: &[u8], chunk_size: usize, threads: usize, piece: usize) -> Vec<u8> {
    let mut w = fixed_writer(chunk_size, threads);
    for p in pt.chunks(piece) {
        w.write_all(p).unwrap();
    }
    w.finish().unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 16, ..Default::default() })]

    /// The output does not depend on the thread count, the batch size or the write pattern.
    #[test]
    fn output_is_independent_of_threads_and_writes(
        pt in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300 << 10),
        cs in proptest::prop_oneof![proptest::strategy::Just(64usize << 10), proptest::strategy::Just(128 << 10)],
        piece in 1usize..70_000,
    ) {
        let one = written_with(&pt, cs, 1, pt.len().max(1));
        proptest::prop_assert_eq!(&written_with(&pt, cs, 2, piece), &one);
        proptest::prop_assert_eq!(&written_with(&pt, cs, 3, piece), &one);
        // The one-shot path lays the chunks out the same way.
        for threads in [1, 2] {
            let all = encrypt_all(fixed_writer(cs, threads), &pt).unwrap();
            proptest::prop_assert_eq!(&all, &one);
        }
    }
}

/// The writer's three paths (gathered small writes, writes of more than a batch encrypted
/// in place from the caller's buffer, `copy_from` a reader) and the one-shot path give the
/// same bytes on every backend and thread count; the reader's `Read`, `copy_to` and
/// `verify` paths give the plaintext back.
#[test]
fn every_write_and_read_path_agrees() {
    let cs = 64 << 10;
    // 7 full batches of 4 chunks and a bit: batch boundaries, chunk boundaries, a short tail.
    let pt: Vec<u8> = (0..(28 * cs + 12_345)).map(|i| (i * 7 % 253) as u8).collect();
    let reference = written_with(&pt, cs, 1, 1000);
    for backend in Backend::available() {
        for threads in [1, 2, 3] {
            let what = format!("{backend}, {threads} threads");
            for piece in [1000, cs - 1, 4 * cs, 4 * cs + 1, 9 * cs, pt.len()] {
                let mut w = fixed_writer_on(cs, threads, *backend);
                for p in pt.chunks(piece) {
                    w.write_all(p).unwrap();
                }
                assert!(w.finish().unwrap() == reference, "{what}, writes of {piece}");
            }
            for len in [0, 1, cs, 4 * cs, 8 * cs, 8 * cs + 1, pt.len()] {
                let mut w = fixed_writer_on(cs, threads, *backend);
                // A reader that returns short reads, so batches are filled from several reads.
                let mut input = ShortReads(&pt[..len]);
                assert_eq!(w.copy_from(&mut input).unwrap(), len as u64);
                let stream = w.finish().unwrap();
                assert!(stream == written_with(&pt[..len], cs, 1, len.max(1)), "{what}, copy_from {len}");
                if len == pt.len() {
                    assert!(stream == reference);
                }
            }
            let all = encrypt_all(fixed_writer_on(cs, threads, *backend), &pt).unwrap();
            assert!(all == reference, "{what}, one shot");
        }
    }
}

/// A reader that hands out at most 5000 bytes per call.
struct ShortReads<'a>(&'a [u8]);

impl std::io::Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(5000);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn writer_flush_writes_the_encrypted_batch() {
    let cs = 64 << 10;
    let mut w = fixed_writer(cs, 1);
    let header_len = w.out.as_ref().unwrap().len();
    w.write_all(&vec![5u8; cs + 10]).unwrap();
    w.flush().unwrap();
    // One chunk is complete and non-final, so it was encrypted; flush wrote it.
    assert_eq!(w.out.as_ref().unwrap().len(), header_len + cs + TAG_LEN);
    let stream = w.finish().unwrap();
    assert!(stream == written_with(&vec![5u8; cs + 10], cs, 1, 1));
}

/// The reader's paths on every backend and thread count: `Read` with small buffers,
/// `copy_to` from the start, `copy_to` after a partial read, `verify_to_end`, and a cut
/// stream failing through every path.
#[test]
fn every_read_path_agrees() {
    use std::io::Read;
    let keyring = crate::Keyring::in_memory(crate::LocalRootKey::generate().unwrap()).unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let ctx = BackupContext::full("s");
    let cs = 64 << 10;
    for len in [0usize, 1, cs, 4 * cs + 7, 30 * cs + 5] {
        let pt: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
        let stream = encrypt_backup(&tenant, &ctx, &pt, BackupOptions::default().chunk_size(cs)).unwrap();
        for backend in Backend::available() {
            for threads in [1, 2, 3] {
                let what = format!("{backend}, {threads} threads, {len} bytes");
                let opts = BackupOptions::default().threads(threads).backend(*backend);
                let open = |s: &[u8]| BackupReader::with_options(&tenant, &ctx, std::io::Cursor::new(s.to_vec()), opts);

                let mut r = open(&stream).unwrap();
                let mut got = Vec::new();
                let mut small = [0u8; 7777];
                loop {
                    let n = r.read(&mut small).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&small[..n]);
                }
                assert!(got == pt, "{what}: read");

                let mut got = Vec::new();
                assert_eq!(open(&stream).unwrap().copy_to(&mut got).unwrap(), len as u64, "{what}");
                assert!(got == pt, "{what}: copy_to");

                let mut r = open(&stream).unwrap();
                let mut head = vec![0u8; len / 3];
                r.read_exact(&mut head).unwrap();
                let mut rest = Vec::new();
                assert_eq!(r.copy_to(&mut rest).unwrap(), (len - len / 3) as u64);
                head.extend(rest);
                assert!(head == pt, "{what}: read then copy_to");

                assert_eq!(open(&stream).unwrap().verify_to_end().unwrap(), len as u64, "{what}");
                assert!(decrypt_with(&tenant, &ctx, &stream, opts).unwrap() == pt, "{what}: one shot");

                // Cut inside the final chunk, or at a chunk boundary: every path fails.
                for cut in [stream.len() - 1, BACKUP_HEADER_LEN + cs + 16] {
                    if cut >= stream.len() || (len == 0 && cut != stream.len() - 1) {
                        continue;
                    }
                    let short = &stream[..cut];
                    let mut sink = Vec::new();
                    assert!(matches!(open(short).unwrap().copy_to(&mut sink), Err(BackupError::Authentication)));
                    assert!(sink.len() < len.max(1), "{what}: cut at {cut}");
                    assert!(open(short).unwrap().read_to_end(&mut Vec::new()).is_err(), "{what}: cut at {cut}");
                    assert!(open(short).unwrap().verify_to_end().is_err());
                    assert!(decrypt_with(&tenant, &ctx, short, opts).is_err());
                }
            }
        }
    }
}

/// Buffers kept for the next stream never hold plaintext: after every way a writer or reader
/// can end (finished, dropped unfinished, read to the end, dropped mid-stream, random access,
/// failed), no kept buffer contains the plaintext marker. A chunk size no other test uses
/// keeps other tests' buffers apart.
#[test]
fn kept_buffers_hold_no_plaintext() {
    use std::io::{Read, Seek, SeekFrom};
    let keyring = crate::Keyring::in_memory(crate::LocalRootKey::generate().unwrap()).unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let ctx = BackupContext::full("s");
    let cs = MIN_CHUNK_SIZE + 3 * 4096;
    let marker = b"PLAINTEXT-MARKER";
    let pt: Vec<u8> = marker.iter().copied().cycle().take(21 * cs + 777).collect();
    for threads in [1, 2] {
        let opts = BackupOptions::default().chunk_size(cs).threads(threads);
        let len = pipeline::Exec::new(threads).unwrap().batch_chunks(cs + 16) * (cs + 16);
        let clean = |what: &str| assert!(!pipeline::spare_contains(len, marker), "{threads} threads: {what}");

        let mut w = BackupWriter::new(&tenant, &ctx, opts, Vec::new()).unwrap();
        for p in pt.chunks(5000) {
            w.write_all(p).unwrap();
        }
        let stream = w.finish().unwrap();
        clean("finished writer");
        let mut w = BackupWriter::new(&tenant, &ctx, opts, Vec::new()).unwrap();
        w.write_all(&pt[..3 * cs + 5]).unwrap();
        drop(w);
        clean("unfinished writer");

        let mut r = BackupReader::with_options(&tenant, &ctx, &stream[..], opts).unwrap();
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert!(all == pt);
        drop(r);
        clean("reader read to the end");
        let mut r = BackupReader::with_options(&tenant, &ctx, &stream[..], opts).unwrap();
        r.read_exact(&mut [0u8; 100]).unwrap();
        drop(r);
        clean("reader dropped mid-stream");
        r = BackupReader::with_options(&tenant, &ctx, &stream[..], opts).unwrap();
        r.copy_to(std::io::sink()).unwrap();
        drop(r);
        clean("copy_to");
        let mut r = BackupReader::with_options(&tenant, &ctx, std::io::Cursor::new(&stream), opts).unwrap();
        r.read_exact(&mut [0u8; 100]).unwrap();
        for at in [20 * cs as u64, 0, 9 * cs as u64 + 3] {
            r.seek(SeekFrom::Start(at)).unwrap();
            r.read_exact(&mut [0u8; 10]).unwrap();
        }
        drop(r);
        clean("random access");
        let mut bad = stream.clone();
        let n = bad.len();
        bad[n - 3] ^= 1;
        let mut r = BackupReader::with_options(&tenant, &ctx, &bad[..], opts).unwrap();
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        drop(r);
        clean("failed reader");
        assert!(pipeline::spare_count(len) > 0, "the buffers were kept (else this test checks nothing)");
    }
}
