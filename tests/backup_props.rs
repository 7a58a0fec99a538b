//! Property tests of backup streams through the public API: round trips for any length,
//! chunk size, write pattern and thread count; random access to any offset; any single bit
//! flip or cut is rejected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::sync::LazyLock;

use atrest::{
    BackupContext, BackupError, BackupOptions, BackupReader, BackupWriter, Keyring, LocalRootKey, Tenant,
    decrypt_backup, encrypt_backup, verify_backup,
};
use proptest::prelude::*;

static TENANT: LazyLock<Tenant> =
    LazyLock::new(|| Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap().tenant("acme").unwrap());

fn ctx() -> BackupContext {
    BackupContext::incremental("s2", "s1", 2)
}

fn chunk_size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(64 << 10), Just(96 << 10), Just(128 << 10)]
}

/// A plaintext of 0 .. ~300 KiB (often near a chunk multiple) and a chunk size.
fn input() -> impl Strategy<Value = (Vec<u8>, usize)> {
    (
        chunk_size(),
        prop_oneof![
            0usize..300 << 10,
            (0usize..5, -2i64..=2).prop_map(|(k, d)| ((k * (64 << 10)) as i64 + d).max(0) as usize)
        ],
    )
        .prop_flat_map(|(cs, len)| (proptest::collection::vec(any::<u8>(), len), Just(cs)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn round_trip((pt, cs) in input(), piece in 1usize..100_000, threads in 1usize..=2) {
        let opts = BackupOptions::default().chunk_size(cs).threads(threads);
        let mut w = BackupWriter::new(&TENANT, &ctx(), opts, Vec::new()).unwrap();
        for p in pt.chunks(piece) {
            w.write_all(p).unwrap();
        }
        let stream = w.finish().unwrap();
        prop_assert_eq!(stream.len(), atrest::BACKUP_HEADER_LEN + pt.len() + 16 * pt.len().div_ceil(cs).max(1));
        prop_assert_eq!(&decrypt_backup(&TENANT, &ctx(), &stream).unwrap(), &pt);
        prop_assert_eq!(verify_backup(&TENANT, &ctx(), &stream[..]).unwrap(), pt.len() as u64);
        for rt in [1, 2] {
            let mut out = Vec::new();
            BackupReader::with_options(&TENANT, &ctx(), &stream[..], BackupOptions::default().threads(rt)).unwrap().read_to_end(&mut out).unwrap();
            prop_assert_eq!(&out, &pt);
        }
        let one_shot = encrypt_backup(&TENANT, &ctx(), &pt, opts).unwrap();
        prop_assert_eq!(one_shot.len(), stream.len());
        prop_assert_eq!(&decrypt_backup(&TENANT, &ctx(), &one_shot).unwrap(), &pt);
    }

    #[test]
    fn seek_and_read_at_any_offset(
        (pt, cs) in input(),
        reads in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..200_000), 1..6),
    ) {
        let stream = encrypt_backup(&TENANT, &ctx(), &pt, BackupOptions::default().chunk_size(cs)).unwrap();
        let mut r = BackupReader::open_seekable(&TENANT, &ctx(), Cursor::new(&stream)).unwrap();
        prop_assert_eq!(r.len(), pt.len() as u64);
        for (at, len) in reads {
            // Offsets across the whole stream and a little past its end.
            let off = at.index(pt.len() + 10);
            let want = &pt[off.min(pt.len())..(off + len).min(pt.len())];
            let mut buf = vec![0u8; len];
            let n = r.read_at(off as u64, &mut buf).unwrap();
            prop_assert_eq!(&buf[..n], want);
            prop_assert_eq!(r.seek(SeekFrom::Start(off as u64)).unwrap(), off as u64);
            let mut buf = vec![0u8; len];
            let mut got = 0;
            while got < len {
                match r.read(&mut buf[got..]).unwrap() {
                    0 => break,
                    k => got += k,
                }
            }
            prop_assert_eq!(&buf[..got], want);
        }
    }

    #[test]
    fn any_bit_flip_or_cut_is_rejected(
        len in 0usize..200_000,
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        cut in any::<prop::sample::Index>(),
    ) {
        let pt: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        let stream = encrypt_backup(&TENANT, &ctx(), &pt, BackupOptions::default().chunk_size(64 << 10)).unwrap();
        let mut flipped = stream.clone();
        flipped[at.index(stream.len())] ^= 1 << bit;
        let cut = &stream[..cut.index(stream.len())];
        for bad in [&flipped[..], cut] {
            prop_assert!(decrypt_backup(&TENANT, &ctx(), bad).is_err());
            prop_assert!(verify_backup(&TENANT, &ctx(), bad).is_err());
            if let Ok(mut r) = BackupReader::new(&TENANT, &ctx(), bad) {
                let mut out = Vec::new();
                let e = r.read_to_end(&mut out);
                prop_assert!(e.is_err(), "a damaged stream read to a clean end");
                prop_assert!(pt.starts_with(&out));
            }
        }
        prop_assert!(matches!(
            BackupReader::open_seekable(&TENANT, &ctx(), Cursor::new(cut)).map(|_| ()),
            Err(BackupError::Authentication | BackupError::NotABackup | BackupError::UnsupportedFormat(_))
        ));
    }
}
