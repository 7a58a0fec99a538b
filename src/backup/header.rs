//! The stream header codec: its byte layout (see the `backup` module documentation),
//! encoding and parsing, and the public facts [`inspect_backup`] reads without a key.
//!
//! Parsing dispatches on the format version byte; a second header version is a second
//! `parse_v*` / encoder pair here, and a second way of wrapping the data key a second
//! [`KeyWrap`] layout.

use std::io::Read;
use std::ops::Range;

use serde::{Serialize, Serializer};

use super::frame::read_full;
use super::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
use crate::error::BackupError;
use crate::{KeyVersion, MasterVersion, Suite};

pub(crate) const MAGIC: [u8; 8] = *b"ATRESTBK";
/// Format version 1: the data key wrapped under the tenant's backup key.
pub(crate) const FORMAT_V1: u8 = 1;
/// The suite of the chunks.
const CHUNK_SUITE: Suite = Suite::Aes256Gcm;
/// The length of a version 1 header.
pub(crate) const HEADER_LEN: usize = 186;
/// The byte range a rewrap replaces (key version, wrap nonce, wrapped data key).
pub(crate) const MUTABLE_RANGE: Range<usize> = 46..122;

pub(crate) const SALT_LEN: usize = 32;
pub(crate) const WRAP_NONCE_LEN: usize = 24;
/// The wrapped data key: 32 bytes and the XAES-256-GCM tag.
pub(crate) const WRAPPED_KEY_LEN: usize = 32 + 16;

/// How a stream's data key is stored in a version 1 header: wrapped (XAES-256-GCM) under
/// the tenant's backup key of `key_version`. Made and opened in `keys`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeyWrap {
    pub(crate) key_version: KeyVersion,
    pub(crate) nonce: [u8; WRAP_NONCE_LEN],
    pub(crate) wrapped: [u8; WRAPPED_KEY_LEN],
}

/// A parsed header. Nothing in it is authenticated until `keys::open_stream` (or
/// `keys::open_header`) succeeds.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) chunk_size: u32,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) wrap: KeyWrap,
    pub(crate) commitment: [u8; 32],
    pub(crate) tag: [u8; 32],
}

impl Header {
    /// The key version that wraps the data key.
    pub(crate) fn key_version(&self) -> KeyVersion {
        self.wrap.key_version
    }

    /// Bytes `0..46`: magic, version, suite, chunk size, salt.
    pub(crate) fn put_fixed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_V1);
        out.push(CHUNK_SUITE.id());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.salt);
    }

    /// Bytes `46..50`: the key version.
    pub(crate) fn put_key_version(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.wrap.key_version.master.get().to_be_bytes());
        out.extend_from_slice(&self.wrap.key_version.generation.to_be_bytes());
    }

    /// The immutable header as it enters the chunk AAD: bytes `0..46`, commitment, tag.
    pub(crate) fn put_immutable(&self, out: &mut Vec<u8>) {
        self.put_fixed(out);
        out.extend_from_slice(&self.commitment);
        out.extend_from_slice(&self.tag);
    }

    /// The 186 header bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        self.put_fixed(&mut out);
        self.put_key_version(&mut out);
        out.extend_from_slice(&self.wrap.nonce);
        out.extend_from_slice(&self.wrap.wrapped);
        out.extend_from_slice(&self.commitment);
        out.extend_from_slice(&self.tag);
        debug_assert_eq!(out.len(), HEADER_LEN);
        out
    }

    /// Parses the header at the start of `bytes` (which may hold more).
    ///
    /// Errors: [`BackupError::NotABackup`] without the magic, [`BackupError::UnsupportedFormat`]
    /// for another format version, [`BackupError::Authentication`] for a truncated header or
    /// fields no writer produces.
    pub(crate) fn parse_prefix(bytes: &[u8]) -> Result<Self, BackupError> {
        let (magic, rest) = bytes.split_first_chunk::<8>().ok_or(BackupError::NotABackup)?;
        if magic != &MAGIC {
            return Err(BackupError::NotABackup);
        }
        let (&version, rest) = rest.split_first().ok_or(BackupError::Authentication)?;
        match version {
            FORMAT_V1 => Self::parse_v1(rest),
            other => Err(BackupError::UnsupportedFormat(other)),
        }
    }

    /// A version 1 header after its magic and version byte.
    fn parse_v1(rest: &[u8]) -> Result<Self, BackupError> {
        let (&suite, rest) = rest.split_first().ok_or(BackupError::Authentication)?;
        if Suite::from_id(suite) != Some(CHUNK_SUITE) {
            return Err(BackupError::Authentication);
        }
        let (cs, rest) = rest.split_first_chunk::<4>().ok_or(BackupError::Authentication)?;
        let chunk_size = u32::from_be_bytes(*cs);
        if !usize::try_from(chunk_size).is_ok_and(|c| (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&c)) {
            return Err(BackupError::Authentication);
        }
        let (salt, rest) = rest.split_first_chunk::<SALT_LEN>().ok_or(BackupError::Authentication)?;
        let (m, rest) = rest.split_first_chunk::<2>().ok_or(BackupError::Authentication)?;
        let (g, rest) = rest.split_first_chunk::<2>().ok_or(BackupError::Authentication)?;
        let (nonce, rest) = rest.split_first_chunk::<WRAP_NONCE_LEN>().ok_or(BackupError::Authentication)?;
        let (wrapped, rest) = rest.split_first_chunk::<WRAPPED_KEY_LEN>().ok_or(BackupError::Authentication)?;
        let (commitment, rest) = rest.split_first_chunk::<32>().ok_or(BackupError::Authentication)?;
        let (tag, _) = rest.split_first_chunk::<32>().ok_or(BackupError::Authentication)?;
        let key_version =
            KeyVersion { master: MasterVersion::new(u16::from_be_bytes(*m)), generation: u16::from_be_bytes(*g) };
        Ok(Self {
            chunk_size,
            salt: *salt,
            wrap: KeyWrap { key_version, nonce: *nonce, wrapped: *wrapped },
            commitment: *commitment,
            tag: *tag,
        })
    }

    /// Reads and parses exactly one header from `input`.
    pub(crate) fn read_from<R: Read>(input: &mut R) -> Result<Self, BackupError> {
        let mut buf = [0u8; HEADER_LEN];
        let n = read_full(input, &mut buf)?;
        // A short read parses as far as it goes: no magic, another version, or truncated.
        Self::parse_prefix(buf.get(..n).unwrap_or_default())
    }

    /// The header's public facts.
    pub(crate) fn info(&self) -> BackupInfo {
        BackupInfo {
            format_version: FORMAT_V1,
            suite: CHUNK_SUITE,
            chunk_size: self.chunk_size,
            key_version: self.key_version(),
            header_len: HEADER_LEN as u64,
            stream_id: hex::encode(self.salt.get(..16).unwrap_or_default()),
        }
    }

    /// Whether `other` differs from this header only in the bytes a rewrap changes.
    pub(crate) fn same_stream(&self, other: &Header) -> bool {
        self.chunk_size == other.chunk_size
            && self.salt == other.salt
            && self.commitment == other.commitment
            && self.tag == other.tag
    }
}

/// Public facts from a backup header, readable without any key (see [`inspect_backup`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BackupInfo {
    /// The format version (1).
    pub format_version: u8,
    /// The chunk suite (AES-256-GCM).
    #[serde(serialize_with = "suite_name")]
    pub suite: Suite,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// The key version that wraps the stream's data key (changed by a rewrap).
    pub key_version: KeyVersion,
    /// The header length in bytes (the first chunk starts here).
    pub header_len: u64,
    /// A public identifier of the stream (hex of the first 16 bytes of its random salt): two
    /// streams with the same id are the same stream.
    pub stream_id: String,
}

fn suite_name<S: Serializer>(suite: &Suite, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(suite.name())
}

/// Reads a backup stream's header without any key: format version, suite, chunk size, key
/// version. Reads exactly the header's bytes from `input`.
///
/// Use it to find streams that still need [`rewrap_backup_header`](crate::rewrap_backup_header)
/// after a rotation.
///
/// # Errors
/// [`BackupError::NotABackup`], [`BackupError::UnsupportedFormat`],
/// [`BackupError::MalformedHeader`] for a truncated or impossible header,
/// [`BackupError::Io`].
///
/// # Security
/// Nothing is authenticated here: the facts are only as trustworthy as the file until the
/// stream is opened with its key.
pub fn inspect_backup<R: Read>(mut input: R) -> Result<BackupInfo, BackupError> {
    // Without a key nothing is authenticated here, so structural failures are named as such.
    Header::read_from(&mut input).map(|h| h.info()).map_err(|e| match e {
        BackupError::Authentication => BackupError::MalformedHeader,
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            chunk_size: 1 << 16,
            salt: [1; 32],
            wrap: KeyWrap {
                key_version: KeyVersion { master: MasterVersion::new(0x0102), generation: 0x0304 },
                nonce: [2; 24],
                wrapped: [3; 48],
            },
            commitment: [4; 32],
            tag: [5; 32],
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let h = sample();
        let b = h.encode();
        assert_eq!(b.len(), HEADER_LEN);
        assert_eq!(&b[0..8], b"ATRESTBK");
        assert_eq!(b[8], 1);
        assert_eq!(b[9], 2);
        assert_eq!(&b[10..14], &[0, 1, 0, 0]);
        assert_eq!(&b[14..46], &[1; 32]);
        assert_eq!(&b[46..50], &[1, 2, 3, 4]);
        assert_eq!(&b[50..74], &[2; 24]);
        assert_eq!(&b[74..122], &[3; 48]);
        assert_eq!(&b[122..154], &[4; 32]);
        assert_eq!(&b[154..186], &[5; 32]);
        assert!(Header::parse_prefix(&b).unwrap() == h);
        // The mutable range is exactly key version, wrap nonce and wrapped key.
        let mut other = h.clone();
        other.wrap.key_version.master = MasterVersion::new(9);
        other.wrap.nonce = [7; 24];
        other.wrap.wrapped = [8; 48];
        let b2 = other.encode();
        for i in (0..HEADER_LEN).filter(|i| !MUTABLE_RANGE.contains(i)) {
            assert_eq!(b[i], b2[i], "byte {i}");
        }
        assert_ne!(b[MUTABLE_RANGE], b2[MUTABLE_RANGE]);
        assert!(h.same_stream(&other));
    }

    #[test]
    fn parse_errors() {
        let b = sample().encode();
        assert!(matches!(Header::parse_prefix(&[]), Err(BackupError::NotABackup)));
        assert!(matches!(Header::parse_prefix(&b[..7]), Err(BackupError::NotABackup)));
        assert!(matches!(Header::parse_prefix(b"not a backup at all"), Err(BackupError::NotABackup)));
        assert!(matches!(Header::parse_prefix(&b[..8]), Err(BackupError::Authentication)));
        for cut in 9..HEADER_LEN {
            assert!(matches!(Header::parse_prefix(&b[..cut]), Err(BackupError::Authentication)), "{cut}");
        }
        let mut v2 = b.clone();
        v2[8] = 2;
        assert!(matches!(Header::parse_prefix(&v2[..9]), Err(BackupError::UnsupportedFormat(2))));
        for suite in [0u8, 1, 3, 0xff] {
            let mut bad = b.clone();
            bad[9] = suite;
            assert!(matches!(Header::parse_prefix(&bad), Err(BackupError::Authentication)), "suite {suite}");
        }
        for cs in [0u32, 65535, (16 << 20) + 1, u32::MAX] {
            let mut bad = b.clone();
            bad[10..14].copy_from_slice(&cs.to_be_bytes());
            assert!(matches!(Header::parse_prefix(&bad), Err(BackupError::Authentication)), "chunk size {cs}");
        }
        for cs in [65536u32, 16 << 20] {
            let mut ok = b.clone();
            ok[10..14].copy_from_slice(&cs.to_be_bytes());
            assert_eq!(Header::parse_prefix(&ok).unwrap().chunk_size, cs);
        }
    }
}
