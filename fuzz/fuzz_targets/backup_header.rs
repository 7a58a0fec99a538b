//! `inspect_backup` (the key-less header parse behind `atrest backup inspect`) on arbitrary
//! bytes, and what the CLI does with its result (JSON through serde_json).
//!
//! Properties: nothing panics; an accepted header's fields are the bytes' (magic, format 1 or
//! 2, AES-256-GCM chunks, chunk size within 64 KiB ..= 16 MiB, stream id = hex of salt bytes
//! 14..30; format 1: key version at offset 46, 186 bytes; format 2: the wrapping method at
//! offset 46 (0x01 tenant key, 0x02 X-Wing, 0x03 X25519 recipient) and the key version at 47),
//! inspect reads exactly the header's bytes, short reads from the input give the same
//! answer, and the result serializes to JSON.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{Cursor, Read};

use atrest::{BACKUP_HEADER_LEN, Suite, inspect_backup};
use libfuzzer_sys::fuzz_target;

/// Hands out at most 7 bytes per read, to exercise short reads.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(7);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut cursor = Cursor::new(data);
    let r = inspect_backup(&mut cursor);
    let trickled = inspect_backup(Trickle(data));
    match (&r, &trickled) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("short reads changed the result: {r:?} vs {trickled:?}"),
    }
    let Ok(info) = r else { return };

    assert_eq!(cursor.position(), info.header_len, "inspect reads exactly the header");
    let header_len = usize::try_from(info.header_len).unwrap();
    assert!(data.len() >= header_len && header_len >= BACKUP_HEADER_LEN);
    assert_eq!(&data[..8], b"ATRESTBK");
    assert_eq!(info.format_version, data[8]);
    assert_eq!(info.suite, Suite::Aes256Gcm);
    assert_eq!(data[9], Suite::Aes256Gcm.id());
    assert!((64 << 10..=16 << 20).contains(&info.chunk_size), "chunk size {}", info.chunk_size);
    assert_eq!(info.chunk_size, u32::from_be_bytes(data[10..14].try_into().unwrap()));
    let version_at = match info.format_version {
        1 => {
            assert_eq!(info.header_len, BACKUP_HEADER_LEN as u64);
            assert_eq!(info.wrapping, "tenant-key");
            46
        }
        2 => {
            let method = match data[46] {
                1 => "tenant-key",
                2 => "recipient-x-wing",
                3 => "recipient-x25519",
                m => panic!("format 2 header with wrapping method {m} accepted"),
            };
            assert_eq!(info.wrapping, method);
            47
        }
        v => panic!("format {v} accepted"),
    };
    assert_eq!(info.key_version.master.get(), u16::from_be_bytes([data[version_at], data[version_at + 1]]));
    assert_eq!(info.key_version.generation, u16::from_be_bytes([data[version_at + 2], data[version_at + 3]]));
    assert_eq!(info.stream_id, hex::encode(&data[14..30]));

    // What `atrest backup inspect [--json]` does with it.
    let value = serde_json::to_value(&info).unwrap();
    let text = serde_json::to_string_pretty(&value).unwrap();
    assert!(text.contains(&info.stream_id));
    assert_eq!(value["chunk_size"], info.chunk_size);
});
