//! Unit tests of the backup stream internals: the documented format rebuilt independently
//! from the primitives, and the chunk-count limit.
#![allow(clippy::cast_possible_truncation, reason = "test data generators")]

use std::io::Write;

use aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::format::{MAX_CHUNKS, StreamSecrets, build_stream};
use super::pipeline::Exec;
use super::*;
use crate::context::TenantId;
use crate::hazmat::XAes256Gcm;
use crate::keyring::{KeyVersion, MasterVersion};
use crate::secret::{DataKey, TenantKey};

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
fn written(threads: usize) -> Vec<u8> {
    let version = KeyVersion { master: MasterVersion::new(3), generation: 2 };
    let ctx = BackupContext::incremental("snap-2", "snap-1", 7);
    let secrets = StreamSecrets { data_key: DataKey::from_bytes(DATA_KEY), salt: SALT, wrap_nonce: WRAP_NONCE };
    let tenant = TenantId::new("acme").unwrap();
    let (header, cipher) =
        build_stream(&TenantKey::from_bytes(BACKUP_KEY), version, &tenant, &ctx, 65536, secrets).unwrap();
    let mut w = BackupWriter::from_parts(cipher, Exec::new(threads).unwrap(), header);
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
    assert_eq!(written(1), spec);
    assert_eq!(written(2), spec);
    assert_eq!(written(3), spec);
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
        let (header, cipher) = build_stream(&key, version, &tenant, &ctx, MIN_CHUNK_SIZE, secrets()).unwrap();
        BackupWriter::from_parts(cipher, Exec::new(1).unwrap(), header)
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

/// The header and chunk cipher of a stream with fixed secrets.
fn fixed_stream(chunk_size: usize) -> (Vec<u8>, super::format::ChunkCipher) {
    let secrets = StreamSecrets { data_key: DataKey::from_bytes(DATA_KEY), salt: SALT, wrap_nonce: WRAP_NONCE };
    let version = KeyVersion { master: MasterVersion::new(1), generation: 0 };
    let tenant = TenantId::new("acme").unwrap();
    let ctx = BackupContext::full("s");
    build_stream(&TenantKey::from_bytes(BACKUP_KEY), version, &tenant, &ctx, chunk_size, secrets).unwrap()
}

/// The stream for fixed secrets, `pt` written in `piece`-byte writes with `threads` threads.
fn written_with(pt: &[u8], chunk_size: usize, threads: usize, piece: usize) -> Vec<u8> {
    let (header, cipher) = fixed_stream(chunk_size);
    let mut w = BackupWriter::from_parts(cipher, Exec::new(threads).unwrap(), header);
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
            let (header, cipher) = fixed_stream(cs);
            let all = encrypt_all(header, &cipher, &Exec::new(threads).unwrap(), &pt).unwrap();
            proptest::prop_assert_eq!(&all, &one);
        }
    }
}
