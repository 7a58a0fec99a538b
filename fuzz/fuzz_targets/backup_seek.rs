//! Random access to arbitrary or mutated backup streams: `BackupReader::open_seekable` (or
//! `new` followed by seeks), `Seek`, `read_at` and `read` in any order, at any offset.
//!
//! Input: `[n] [op; n & 15] [stream]`, each op 9 bytes `[code] [u64 BE]`: code & 7 picks
//! seek from start (0), from the end (1), from the current position (2), `read_at` (3) or
//! `read` (4..7); code >> 3 picks a buffer length (1 ..= about 70 000 bytes). An offset
//! with the top bit set is used as is (huge); otherwise it is taken modulo the stream
//! length + 64. Bit 7 of `n` opens with `new` (sequential until the first seek).
//!
//! Properties: nothing panics or hangs; opening for random access succeeds only on a
//! committed stream's header and length; every byte `read` or `read_at` returns is the
//! committed plaintext at that position, and on an unmodified stream they return everything
//! up to the end; seeking before the start fails; after a failure, every read and seek fails.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{Cursor, ErrorKind, Read, Seek, SeekFrom};
use std::sync::LazyLock;

use atrest::{BackupContext, BackupReader, Tenant};
use atrest_fuzz::{FIXTURE_KEYRING, TENANT, backup_contexts, known_backup_by_header};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    acme: Tenant,
    contexts: [BackupContext; 2],
}

static FIXTURE: LazyLock<Fixture> =
    LazyLock::new(|| Fixture { acme: FIXTURE_KEYRING.tenant(TENANT).unwrap(), contexts: backup_contexts() });

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Some((&n, rest)) = data.split_first() else { return };
    let Some((ops, stream)) = rest.split_at_checked(usize::from(n & 15) * 9) else { return };
    // A committed header picks the plaintext and context to compare with.
    let Some(k) = known_backup_by_header(stream) else {
        assert!(BackupReader::open_seekable(&f.acme, &f.contexts[0], Cursor::new(stream)).is_err());
        return;
    };
    let ctx = &f.contexts[k.context];
    let sequential_first = n & 0x80 != 0;
    let opened = if sequential_first {
        BackupReader::new(&f.acme, ctx, Cursor::new(stream))
    } else {
        BackupReader::open_seekable(&f.acme, ctx, Cursor::new(stream))
    };
    let Ok(mut r) = opened else { return };
    let plain = k.plaintext.expect("a stream that must not open was opened");
    let len = plain.len() as u64;
    if !sequential_first {
        assert_eq!(stream.len(), k.stream.len(), "random access opened a stream of another length");
        assert_eq!(r.len(), len);
    }
    let intact = stream == k.stream;

    let mut pos = 0u64;
    let mut failed = false;
    for op in ops.chunks_exact(9) {
        let code = op[0];
        let raw = u64::from_be_bytes(op[1..9].try_into().unwrap());
        let offset = if raw >> 63 == 1 { raw } else { raw % (len + 64) };
        let delta = (raw as i64) % 100_000;
        let buf_len = 1 + (usize::from(code >> 3)).pow(2) * 73;
        let mut buf = vec![0u8; buf_len];
        match code & 7 {
            0..=2 => {
                let (to, target) = match code & 7 {
                    0 => (SeekFrom::Start(offset), Some(offset)),
                    1 => (SeekFrom::End(delta), len.checked_add_signed(delta)),
                    _ => (SeekFrom::Current(delta), pos.checked_add_signed(delta)),
                };
                match r.seek(to) {
                    Ok(p) => {
                        assert!(!failed, "seek succeeded after a failure");
                        assert_eq!(r.len(), len, "after a seek the length is authenticated");
                        assert_eq!(Some(p), target);
                        pos = p;
                    }
                    Err(e) if e.kind() == ErrorKind::InvalidInput => assert!(target.is_none(), "{e}"),
                    Err(e) => {
                        assert!(!intact || failed, "seek failed on an intact stream: {e}");
                        failed = true;
                    }
                }
            }
            3 => match r.read_at(offset, &mut buf) {
                Ok(got) => {
                    assert!(!failed, "read_at succeeded after a failure");
                    let want = plain.get(usize::try_from(offset).unwrap_or(usize::MAX)..).unwrap_or_default();
                    assert_eq!(&buf[..got], &want[..got.min(want.len())], "read_at returned wrong bytes");
                    assert_eq!(got, buf_len.min(want.len()), "read_at must fill the buffer up to the end");
                }
                Err(e) => {
                    assert!(!intact || failed, "read_at failed on an intact stream: {e}");
                    failed = true;
                }
            },
            _ => match r.read(&mut buf) {
                Ok(got) => {
                    assert!(!failed, "read succeeded after a failure");
                    let want = plain.get(usize::try_from(pos).unwrap_or(usize::MAX)..).unwrap_or_default();
                    assert!(got <= want.len());
                    assert_eq!(&buf[..got], &want[..got], "read returned wrong bytes");
                    if intact {
                        assert!(got > 0 || want.is_empty(), "read returned 0 before the end");
                    }
                    pos += got as u64;
                }
                Err(e) => {
                    assert!(!intact || failed, "read failed on an intact stream: {e}");
                    failed = true;
                }
            },
        }
    }
});
