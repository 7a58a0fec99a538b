//! The stream header codec: its byte layout (see the `backup` module documentation),
//! encoding and parsing (the public facts [`inspect_backup`](crate::inspect_backup) reads
//! without a key are in `info.rs`).
//!
//! Parsing dispatches on the format version byte, and in version 2 on the wrapping method:
//! [`KeyWrap`] (method 0x01, the tenant's backup key) or [`KemWrap`] (methods 0x02 and
//! 0x03, a recipient's KEM; see the `recipient` module for that layout).

use std::io::Read;
use std::ops::Range;

use super::frame::read_full;
use super::recipient::RecipientKem;
use super::stored::{MAX_STORED_LEN, Stored};
use super::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
use crate::error::BackupError;
use crate::{KeyVersion, MasterVersion, Suite};

pub(crate) const MAGIC: [u8; 8] = *b"ATRESTBK";
/// Format version 1: the data key wrapped under the tenant's backup key; no stored context.
pub(crate) const FORMAT_V1: u8 = 1;
/// Format version 2: a wrapping-method byte and the stored backup context.
pub(crate) const FORMAT_V2: u8 = 2;
/// Wrapping method 1: XAES-256-GCM under the tenant's backup key (76 bytes).
pub(crate) const WRAP_TENANT_KEY: u8 = 1;
/// The suite of the chunks.
pub(crate) const CHUNK_SUITE: Suite = Suite::Aes256Gcm;
/// The length of a version 1 header.
pub(crate) const HEADER_LEN: usize = 186;
/// The length of a version 2 header of method 0x01 before its context block (which a rewrap
/// never touches).
pub(crate) const V2_PREFIX_LEN: usize = 187;
/// The offset of the wrapping method in a version 2 header.
const METHOD_AT: usize = 46;
/// The byte range a rewrap replaces in a version 1 header (key version, wrap nonce, wrapped
/// data key).
const MUTABLE_V1: Range<usize> = 46..122;

pub(crate) const SALT_LEN: usize = 32;
pub(crate) const WRAP_NONCE_LEN: usize = 24;
/// The wrapped data key: 32 bytes and the XAES-256-GCM tag.
pub(crate) const WRAPPED_KEY_LEN: usize = 32 + 16;

/// How a stream's data key is stored (wrapping method 1): wrapped (XAES-256-GCM) under the
/// tenant's backup key of `key_version`. Made and opened in `keys`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeyWrap {
    pub(crate) key_version: KeyVersion,
    pub(crate) nonce: [u8; WRAP_NONCE_LEN],
    pub(crate) wrapped: [u8; WRAPPED_KEY_LEN],
}

/// How a stream's data key is stored (wrapping methods 0x02 and 0x03): HPKE-sealed to the
/// recipient of `key_version` with `kem`. Made and opened in `recipient::wrap`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KemWrap {
    pub(crate) key_version: KeyVersion,
    pub(crate) kem: RecipientKem,
    /// The HPKE encapsulated key (`kem.encapsulated_len()` bytes).
    pub(crate) enc: Vec<u8>,
    /// The data key sealed with HPKE: 32 bytes and the ChaCha20-Poly1305 tag.
    pub(crate) wrapped: [u8; WRAPPED_KEY_LEN],
}

/// The wrapping of a stream's data key: the key-naming block of the header.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Wrap {
    /// Method 0x01 (and every version 1 header).
    Key(KeyWrap),
    /// Methods 0x02 and 0x03 (version 2 only).
    Kem(KemWrap),
}

impl Wrap {
    /// The key version that wraps the data key.
    pub(crate) fn key_version(&self) -> KeyVersion {
        match self {
            Wrap::Key(w) => w.key_version,
            Wrap::Kem(k) => k.key_version,
        }
    }

    /// The wrapping method byte.
    pub(crate) fn method(&self) -> u8 {
        match self {
            Wrap::Key(_) => WRAP_TENANT_KEY,
            Wrap::Kem(k) => k.kem.id(),
        }
    }
}

/// The length of a version 2 header before its context block, for wrapping method `method`.
fn v2_prefix_len(method: u8) -> Option<usize> {
    match method {
        WRAP_TENANT_KEY => Some(V2_PREFIX_LEN),
        m => RecipientKem::from_id(m).map(|kem| V2_PREFIX_LEN - WRAP_NONCE_LEN + kem.encapsulated_len()),
    }
}

/// A parsed header. Nothing in it is authenticated until `keys::open_stream` (or
/// `keys::open_header`) succeeds.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) chunk_size: u32,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) wrap: Wrap,
    pub(crate) commitment: [u8; 32],
    pub(crate) tag: [u8; 32],
    /// The stored context: `Some` exactly for a version 2 header.
    pub(crate) stored: Option<Stored>,
}

impl Header {
    /// The key version that wraps the data key.
    pub(crate) fn key_version(&self) -> KeyVersion {
        self.wrap.key_version()
    }

    /// The format version.
    pub(crate) fn format(&self) -> u8 {
        if self.stored.is_some() { FORMAT_V2 } else { FORMAT_V1 }
    }

    /// The bound header `B`: bytes `0..46` (magic, version, suite, chunk size, salt) and, in
    /// version 2, the context block (its 2-byte length and the context).
    pub(crate) fn put_fixed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(self.format());
        out.push(CHUNK_SUITE.id());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.salt);
        if let Some(stored) = &self.stored {
            put_context_block(out, stored);
        }
    }

    /// The key naming bytes: in version 2 the wrapping method, then the key version.
    pub(crate) fn put_key_version(&self, out: &mut Vec<u8>) {
        if self.stored.is_some() {
            out.push(self.wrap.method());
        }
        let version = self.key_version();
        out.extend_from_slice(&version.master.get().to_be_bytes());
        out.extend_from_slice(&version.generation.to_be_bytes());
    }

    /// The immutable header as it enters the chunk AAD: `B`, commitment, tag.
    pub(crate) fn put_immutable(&self, out: &mut Vec<u8>) {
        self.put_fixed(out);
        out.extend_from_slice(&self.commitment);
        out.extend_from_slice(&self.tag);
    }

    /// The header bytes (186 in version 1, 189 + context length in version 2).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&MAGIC);
        out.push(self.format());
        out.push(CHUNK_SUITE.id());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.salt);
        self.put_key_version(&mut out);
        match &self.wrap {
            Wrap::Key(w) => {
                out.extend_from_slice(&w.nonce);
                out.extend_from_slice(&w.wrapped);
            }
            Wrap::Kem(k) => {
                out.extend_from_slice(&k.enc);
                out.extend_from_slice(&k.wrapped);
            }
        }
        out.extend_from_slice(&self.commitment);
        out.extend_from_slice(&self.tag);
        if let Some(stored) = &self.stored {
            put_context_block(&mut out, stored);
        }
        debug_assert_eq!(out.len(), self.len());
        out
    }

    /// The header length in bytes (the first chunk starts here).
    pub(crate) fn len(&self) -> usize {
        match &self.stored {
            None => HEADER_LEN,
            Some(s) => self.prefix_len() + 2 + s.encode().len(),
        }
    }

    /// The bytes a rewrap may change: the key version and the wrapping (after the method byte
    /// in version 2), up to the commitment.
    pub(crate) fn mutable_range(&self) -> Range<usize> {
        if self.stored.is_some() { METHOD_AT + 1..self.prefix_len() - 64 } else { MUTABLE_V1 }
    }

    /// How many leading bytes a rewrap rewrites (the context block after them never changes).
    pub(crate) fn prefix_len(&self) -> usize {
        match &self.wrap {
            _ if self.stored.is_none() => HEADER_LEN,
            Wrap::Key(_) => V2_PREFIX_LEN,
            Wrap::Kem(k) => V2_PREFIX_LEN - WRAP_NONCE_LEN + k.enc.len(),
        }
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
            FORMAT_V1 => Self::parse_v1(rest).map(|(h, _)| h),
            FORMAT_V2 => Self::parse_v2(rest),
            other => Err(BackupError::UnsupportedFormat(other)),
        }
    }

    /// A version 2 header after its magic and version byte.
    fn parse_v2(rest: &[u8]) -> Result<Self, BackupError> {
        let (chunk_size, salt, rest) = parse_common(rest)?;
        let ([method], rest) = take::<1>(rest)?;
        let (key_version, rest) = take_version(rest)?;
        let (wrap, rest) = if method == WRAP_TENANT_KEY {
            let (nonce, rest) = take::<WRAP_NONCE_LEN>(rest)?;
            let (wrapped, rest) = take::<WRAPPED_KEY_LEN>(rest)?;
            (Wrap::Key(KeyWrap { key_version, nonce, wrapped }), rest)
        } else {
            let kem = RecipientKem::from_id(method).ok_or(BackupError::Authentication)?;
            let (enc, rest) = rest.split_at_checked(kem.encapsulated_len()).ok_or(BackupError::Authentication)?;
            let (wrapped, rest) = take::<WRAPPED_KEY_LEN>(rest)?;
            (Wrap::Kem(KemWrap { key_version, kem, enc: enc.to_vec(), wrapped }), rest)
        };
        let (commitment, rest) = take::<32>(rest)?;
        let (tag, rest) = take::<32>(rest)?;
        let (len, rest) = take::<2>(rest)?;
        let len = usize::from(u16::from_be_bytes(len));
        if len > MAX_STORED_LEN {
            return Err(BackupError::Authentication);
        }
        let stored = Some(Stored::parse(rest.get(..len).ok_or(BackupError::Authentication)?)?);
        Ok(Self { chunk_size, salt, wrap, commitment, tag, stored })
    }

    /// A version 1 header after its magic and version byte, and what follows it.
    fn parse_v1(rest: &[u8]) -> Result<(Self, &[u8]), BackupError> {
        let (chunk_size, salt, rest) = parse_common(rest)?;
        let (key_version, rest) = take_version(rest)?;
        let (nonce, rest) = take::<WRAP_NONCE_LEN>(rest)?;
        let (wrapped, rest) = take::<WRAPPED_KEY_LEN>(rest)?;
        let (commitment, rest) = take::<32>(rest)?;
        let (tag, rest) = take::<32>(rest)?;
        let wrap = Wrap::Key(KeyWrap { key_version, nonce, wrapped });
        Ok((Self { chunk_size, salt, wrap, commitment, tag, stored: None }, rest))
    }

    /// Reads and parses exactly one header from `input` (no byte after it).
    pub(crate) fn read_from<R: Read>(input: &mut R) -> Result<Self, BackupError> {
        let mut buf = Vec::with_capacity(V2_PREFIX_LEN + 64);
        read_more(input, &mut buf, 9)?;
        match buf.get(8) {
            Some(&FORMAT_V1) => {
                read_more(input, &mut buf, HEADER_LEN)?;
            }
            Some(&FORMAT_V2) => {
                // Through the wrapping method, which tells how long the key-naming block is.
                read_more(input, &mut buf, METHOD_AT + 1)?;
                if let Some(prefix) = buf.get(METHOD_AT).and_then(|&m| v2_prefix_len(m)) {
                    read_more(input, &mut buf, prefix + 2)?;
                    if let Some(len) = buf.get(prefix..).and_then(|b| b.first_chunk::<2>()) {
                        let len = usize::from(u16::from_be_bytes(*len));
                        if len > MAX_STORED_LEN {
                            return Err(BackupError::Authentication);
                        }
                        read_more(input, &mut buf, prefix + 2 + len)?;
                    }
                }
            }
            _ => {}
        }
        // A short read parses as far as it goes: no magic, another version, or truncated.
        Self::parse_prefix(&buf)
    }

    /// Whether `other` differs from this header only in the bytes a rewrap changes.
    pub(crate) fn same_stream(&self, other: &Header) -> bool {
        self.chunk_size == other.chunk_size
            && self.salt == other.salt
            && self.commitment == other.commitment
            && self.tag == other.tag
            && self.stored == other.stored
            && self.wrap.method() == other.wrap.method()
    }
}

/// Suite, chunk size and salt (bytes 9..46), and what follows them.
fn parse_common(rest: &[u8]) -> Result<(u32, [u8; SALT_LEN], &[u8]), BackupError> {
    let ([suite], rest) = take::<1>(rest)?;
    if Suite::from_id(suite) != Some(CHUNK_SUITE) {
        return Err(BackupError::Authentication);
    }
    let (cs, rest) = take::<4>(rest)?;
    let chunk_size = u32::from_be_bytes(cs);
    if !usize::try_from(chunk_size).is_ok_and(|c| (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&c)) {
        return Err(BackupError::Authentication);
    }
    let (salt, rest) = take::<SALT_LEN>(rest)?;
    Ok((chunk_size, salt, rest))
}

/// The key version (master version, generation) and what follows it.
fn take_version(rest: &[u8]) -> Result<(KeyVersion, &[u8]), BackupError> {
    let (m, rest) = take::<2>(rest)?;
    let (g, rest) = take::<2>(rest)?;
    Ok((KeyVersion { master: MasterVersion::new(u16::from_be_bytes(m)), generation: u16::from_be_bytes(g) }, rest))
}

/// The first `N` bytes of `rest` and the others; a header cut short fails authentication.
fn take<const N: usize>(rest: &[u8]) -> Result<([u8; N], &[u8]), BackupError> {
    rest.split_first_chunk::<N>().map(|(head, tail)| (*head, tail)).ok_or(BackupError::Authentication)
}

/// The version 2 context block: the context's length (u16) and the context.
fn put_context_block(out: &mut Vec<u8>, stored: &Stored) {
    let ctx = stored.encode();
    // The context is at most MAX_STORED_LEN bytes (checked when written and parsed).
    let len = u16::try_from(ctx.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&ctx);
}

/// Grows `buf` to `want` bytes read from `input`; returns how many were read (fewer at the
/// end of the input) and keeps `buf` at what was read.
fn read_more<R: Read>(input: &mut R, buf: &mut Vec<u8>, want: usize) -> Result<usize, BackupError> {
    let have = buf.len();
    if want <= have {
        return Ok(0);
    }
    buf.resize(want, 0);
    let n = read_full(input, buf.get_mut(have..).unwrap_or_default())?;
    buf.truncate(have + n);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            chunk_size: 1 << 16,
            salt: [1; 32],
            wrap: Wrap::Key(KeyWrap {
                key_version: KeyVersion { master: MasterVersion::new(0x0102), generation: 0x0304 },
                nonce: [2; 24],
                wrapped: [3; 48],
            }),
            commitment: [4; 32],
            tag: [5; 32],
            stored: None,
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
        other.wrap = Wrap::Key(KeyWrap {
            key_version: KeyVersion { master: MasterVersion::new(9), generation: 0x0304 },
            nonce: [7; 24],
            wrapped: [8; 48],
        });
        let b2 = other.encode();
        for i in (0..HEADER_LEN).filter(|i| !h.mutable_range().contains(i)) {
            assert_eq!(b[i], b2[i], "byte {i}");
        }
        assert_ne!(b[h.mutable_range()], b2[h.mutable_range()]);
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
        let mut v3 = b.clone();
        v3[8] = 3;
        assert!(matches!(Header::parse_prefix(&v3[..9]), Err(BackupError::UnsupportedFormat(3))));
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
