//! Sequential decryption of arbitrary bytes as a backup stream: `BackupReader::new` + `Read`
//! (from a slice and from an input giving short reads), `decrypt_backup`, `verify_backup`,
//! for tenant `acme` under the committed keyring, with each fixture context.
//!
//! Properties:
//! - nothing panics or hangs;
//! - a clean end of stream (`read` returning 0), a successful `decrypt_backup` or
//!   `verify_backup` happen only for a committed stream with its own context, and give
//!   exactly its plaintext (a truncated stream is never a clean end of file);
//! - bytes handed out before an error are a prefix of the plaintext of the committed stream
//!   whose header the input has, under that stream's context (no unverified byte is
//!   released); after an error every read fails;
//! - another tenant never reads a byte.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::Read;
use std::sync::LazyLock;

use atrest::{BackupContext, BackupReader, Tenant, decrypt_backup, verify_backup};
use atrest_fuzz::{BACKUPS, FIXTURE_KEYRING, TENANT, backup_contexts, known_backup_by_header};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    acme: Tenant,
    beta: Tenant,
    contexts: [BackupContext; 2],
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| Fixture {
    acme: FIXTURE_KEYRING.tenant(TENANT).unwrap(),
    beta: FIXTURE_KEYRING.tenant("beta").unwrap(),
    contexts: backup_contexts(),
});

/// Hands out at most 1000 bytes per read.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(1000);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Reads to the end or the first error in `piece`-byte reads; returns the bytes and
/// whether the end was clean.
fn read_all<R: Read>(mut r: BackupReader<R>, piece: usize) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; piece];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
                assert!(r.read(&mut buf).is_err(), "a failed reader must refuse further reads");
                return (got, false);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let known = known_backup_by_header(data);
    let exact = BACKUPS.iter().find(|b| b.stream == data);

    for (ci, ctx) in f.contexts.iter().enumerate() {
        // Only the committed stream itself, under its own context, may decrypt.
        let expect = exact.filter(|b| b.context == ci).and_then(|b| b.plaintext);

        let whole = decrypt_backup(&f.acme, ctx, data);
        match (&whole, expect) {
            (Ok(p), Some(want)) => assert_eq!(p.as_slice(), want),
            (Ok(p), None) => panic!("decrypt_backup returned {} bytes for a stream that must not open", p.len()),
            (Err(e), Some(_)) => panic!("a committed stream did not decrypt: {e}"),
            (Err(_), None) => {}
        }
        match verify_backup(&f.acme, ctx, data) {
            Ok(n) => assert_eq!(Some(n), expect.map(|p| p.len() as u64), "verify_backup accepted a bad stream"),
            Err(e) => assert!(expect.is_none(), "verify_backup refused a committed stream: {e}"),
        }

        for (reader, piece) in [
            (BackupReader::new(&f.acme, ctx, data).map(|r| Box::new(r) as Box<dyn ReadAll>), 4096),
            (BackupReader::new(&f.acme, ctx, Trickle(data)).map(|r| Box::new(r) as Box<dyn ReadAll>), 70_001),
        ] {
            let Ok(reader) = reader else { continue };
            // The header authenticated: it is a committed stream's header.
            let k = known.unwrap_or_else(|| panic!("a reader opened on a header that is not committed"));
            let (got, clean) = reader.read_all(piece);
            if !got.is_empty() {
                assert_eq!(k.context, ci, "bytes released under another context");
                let want = k.plaintext.expect("bytes released from a stream that must not open");
                assert!(want.starts_with(&got), "released bytes are not the stream's plaintext");
            }
            if clean {
                assert_eq!(Some(got.as_slice()), expect, "clean end of file for a stream that is not complete");
            } else {
                assert!(expect.is_none(), "a committed stream failed to read");
            }
        }
    }

    let ctx = &f.contexts[known.map_or(0, |k| k.context)];
    assert!(decrypt_backup(&f.beta, ctx, data).is_err(), "another tenant decrypted");
    if let Ok(r) = BackupReader::new(&f.beta, ctx, data) {
        panic!("another tenant opened a stream: {r:?}");
    }
});

/// `read_all` for readers over any input type.
trait ReadAll {
    fn read_all(self: Box<Self>, piece: usize) -> (Vec<u8>, bool);
}

impl<R: Read> ReadAll for BackupReader<R> {
    fn read_all(self: Box<Self>, piece: usize) -> (Vec<u8>, bool) {
        read_all(*self, piece)
    }
}
