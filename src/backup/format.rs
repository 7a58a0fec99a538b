//! The stream header (encode, parse), the per-stream key schedule, and chunk sealing and
//! opening. See the `backup` module documentation for the byte layout.

use std::io::Read;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{BackupContext, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
use crate::Backend;
use crate::Suite;
use crate::TenantId;
use crate::encoding::put_lp;
use crate::error::{BackupError, OpenError};
use crate::hazmat::{Gcm, SuiteCipher, expand32, extract};
use crate::secret::{DataKey, TenantKey, random_array};
use crate::{KeyVersion, MasterVersion, Tenant};

pub(crate) const MAGIC: [u8; 8] = *b"ATRESTBK";
pub(crate) const FORMAT_VERSION: u8 = 1;
/// The suite of the chunks.
const CHUNK_SUITE: Suite = Suite::Aes256Gcm;
pub(crate) const HEADER_LEN: usize = 186;
pub(crate) const TAG_LEN: usize = 16;
/// The byte range a rewrap replaces (key version, wrap nonce, wrapped data key).
pub(crate) const MUTABLE_RANGE: core::ops::Range<usize> = 46..122;
/// At most 2^32 chunks per stream (the chunk index in the nonce is a u32).
pub(crate) const MAX_CHUNKS: u64 = 1 << 32;

const SALT_LEN: usize = 32;
const WRAP_NONCE_LEN: usize = 24;
const WRAPPED_KEY_LEN: usize = 32 + TAG_LEN;
const NONCE_PREFIX_LEN: usize = 7;

const LABEL_KDF: &[u8] = b"atrest/v1/backup";
const LABEL_HEADER: &[u8] = b"atrest/v1/backup/header";
const LABEL_WRAP: &[u8] = b"atrest/v1/backup/wrap";
const LABEL_CHUNK: &[u8] = b"atrest/v1/backup/chunk";

/// A parsed header. Nothing in it is authenticated until [`open_stream`] or
/// [`unwrap_data_key`] + [`StreamKeys::verify_header`] succeed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) chunk_size: u32,
    salt: [u8; SALT_LEN],
    pub(crate) key_version: KeyVersion,
    wrap_nonce: [u8; WRAP_NONCE_LEN],
    wrapped_key: [u8; WRAPPED_KEY_LEN],
    commitment: [u8; 32],
    tag: [u8; 32],
}

impl Header {
    /// Bytes `0..46`: magic, version, suite, chunk size, salt.
    fn put_fixed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(CHUNK_SUITE.id());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.salt);
    }

    fn put_key_version(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key_version.master.get().to_be_bytes());
        out.extend_from_slice(&self.key_version.generation.to_be_bytes());
    }

    /// The immutable header as it enters the chunk AAD: bytes `0..46`, commitment, tag.
    fn put_immutable(&self, out: &mut Vec<u8>) {
        self.put_fixed(out);
        out.extend_from_slice(&self.commitment);
        out.extend_from_slice(&self.tag);
    }

    /// The 186 header bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        self.put_fixed(&mut out);
        self.put_key_version(&mut out);
        out.extend_from_slice(&self.wrap_nonce);
        out.extend_from_slice(&self.wrapped_key);
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
        if version != FORMAT_VERSION {
            return Err(BackupError::UnsupportedFormat(version));
        }
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
        let (wrap_nonce, rest) = rest.split_first_chunk::<WRAP_NONCE_LEN>().ok_or(BackupError::Authentication)?;
        let (wrapped_key, rest) = rest.split_first_chunk::<WRAPPED_KEY_LEN>().ok_or(BackupError::Authentication)?;
        let (commitment, rest) = rest.split_first_chunk::<32>().ok_or(BackupError::Authentication)?;
        let (tag, _) = rest.split_first_chunk::<32>().ok_or(BackupError::Authentication)?;
        Ok(Self {
            chunk_size,
            salt: *salt,
            key_version: KeyVersion {
                master: MasterVersion::new(u16::from_be_bytes(*m)),
                generation: u16::from_be_bytes(*g),
            },
            wrap_nonce: *wrap_nonce,
            wrapped_key: *wrapped_key,
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
            format_version: FORMAT_VERSION,
            suite: CHUNK_SUITE,
            chunk_size: self.chunk_size,
            key_version: self.key_version,
            header_len: HEADER_LEN as u64,
            stream_id: hex::encode(self.salt.get(..16).unwrap_or_default()),
        }
    }

    fn wrap_aad(&self, tenant: &TenantId) -> Vec<u8> {
        let mut aad = Vec::with_capacity(160 + tenant.as_str().len());
        put_lp(&mut aad, LABEL_WRAP);
        put_lp(&mut aad, tenant.as_str().as_bytes());
        self.put_fixed(&mut aad);
        self.put_key_version(&mut aad);
        aad.extend_from_slice(&self.commitment);
        aad.extend_from_slice(&self.tag);
        aad
    }

    fn chunk_aad(&self, tenant: &TenantId, ctx: &BackupContext) -> [u8; 32] {
        let mut input = Vec::with_capacity(256);
        put_lp(&mut input, LABEL_CHUNK);
        self.put_immutable(&mut input);
        put_lp(&mut input, tenant.as_str().as_bytes());
        ctx.encode_into(&mut input);
        Sha256::digest(&input).into()
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
/// [`BackupError::Authentication`] for a truncated or impossible header,
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

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
pub(crate) fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match input.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k.min(rest.len()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The keys derived from one stream's data key and salt.
struct StreamKeys {
    chunk_key: Zeroizing<[u8; 32]>,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    commitment: [u8; 32],
    mac_key: Zeroizing<[u8; 32]>,
}

impl StreamKeys {
    fn derive(data_key: &DataKey, salt: &[u8; SALT_LEN]) -> Self {
        let prk = extract(salt, data_key.expose_secret());
        let info = |what: &[u8]| {
            let mut info = Vec::with_capacity(48);
            put_lp(&mut info, LABEL_KDF);
            put_lp(&mut info, what);
            info
        };
        let prefix = Zeroizing::new(expand32(&prk, &info(b"nonce prefix")));
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        for (d, s) in nonce_prefix.iter_mut().zip(prefix.iter()) {
            *d = *s;
        }
        Self {
            chunk_key: Zeroizing::new(expand32(&prk, &info(b"chunk key"))),
            nonce_prefix,
            commitment: expand32(&prk, &info(b"commitment")),
            mac_key: Zeroizing::new(expand32(&prk, &info(b"header mac"))),
        }
    }

    fn header_mac(&self, header: &Header) -> Result<Hmac<Sha256>, BackupError> {
        // HMAC accepts keys of any length: this cannot fail for a 32-byte key.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.mac_key.as_slice())
            .map_err(|_| BackupError::InvalidParameter("HMAC key length".into()))?;
        let mut input = Vec::with_capacity(80);
        put_lp(&mut input, LABEL_HEADER);
        header.put_fixed(&mut input);
        input.extend_from_slice(&self.commitment);
        mac.update(&input);
        Ok(mac)
    }

    /// Checks the key commitment (constant time) and the header tag.
    fn verify_header(&self, header: &Header) -> Result<(), BackupError> {
        if !bool::from(self.commitment.ct_eq(&header.commitment)) {
            return Err(BackupError::Authentication);
        }
        // verify_slice compares in constant time.
        self.header_mac(header)?.verify_slice(&header.tag).map_err(|_| BackupError::Authentication)
    }

    fn chunk_cipher(
        &self,
        header: &Header,
        tenant: &TenantId,
        ctx: &BackupContext,
        backend: Backend,
    ) -> Result<ChunkCipher, BackupError> {
        Ok(ChunkCipher {
            gcm: Gcm::new(backend, &self.chunk_key).ok_or_else(|| {
                BackupError::InvalidParameter(format!("the {backend} backend is not available in this build"))
            })?,
            nonce_prefix: self.nonce_prefix,
            aad: header.chunk_aad(tenant, ctx),
            chunk_size: header.chunk_size as usize,
        })
    }
}

/// Wraps `data_key` under `backup_key` (the tenant's backup key of `version`) into `header`,
/// setting its key version and wrap nonce. The rest of the header must already be final.
fn wrap_data_key(
    backup_key: &TenantKey,
    version: KeyVersion,
    tenant: &TenantId,
    header: &mut Header,
    data_key: &DataKey,
    wrap_nonce: [u8; WRAP_NONCE_LEN],
) -> Result<(), BackupError> {
    header.key_version = version;
    header.wrap_nonce = wrap_nonce;
    let mut buf = Zeroizing::new(*data_key.expose_secret());
    let wrapper = SuiteCipher::new(Suite::XAes256Gcm, backup_key.expose_secret());
    let tag = wrapper
        .encrypt_detached(&header.wrap_nonce, &header.wrap_aad(tenant), buf.as_mut_slice())
        .map_err(|_| BackupError::InvalidParameter("wrapping the data key failed".into()))?;
    let (ct, t) = header.wrapped_key.split_at_mut(32);
    ct.copy_from_slice(buf.as_slice());
    t.copy_from_slice(&tag);
    Ok(())
}

/// The tenant's keys for the version a header names. An unknown version is an
/// authentication failure like any other; disabled, destroyed and shredded are reported.
fn keys_for_header(
    tenant: &Tenant,
    header: &Header,
) -> Result<std::sync::Arc<crate::keyring::DerivedKey>, BackupError> {
    tenant.backup_key_for_open(header.key_version).map_err(|e| match e {
        OpenError::Authentication => BackupError::Authentication,
        other => BackupError::Key(other),
    })
}

/// Unwraps the data key of `header` and checks the commitment and header tag.
fn open_data_key(tenant: &Tenant, header: &Header) -> Result<(DataKey, StreamKeys), BackupError> {
    let keys = keys_for_header(tenant, header)?;
    let unwrapper = SuiteCipher::new(Suite::XAes256Gcm, keys.key.expose_secret());
    let (ct, tag) = header.wrapped_key.split_at(32);
    let mut buf = Zeroizing::new([0u8; 32]);
    buf.copy_from_slice(ct);
    unwrapper
        .decrypt_detached(&header.wrap_nonce, &header.wrap_aad(tenant.id()), buf.as_mut_slice(), tag)
        .map_err(|_| BackupError::Authentication)?;
    let data_key = DataKey::from_bytes(*buf);
    let stream = StreamKeys::derive(&data_key, &header.salt);
    stream.verify_header(header)?;
    Ok((data_key, stream))
}

/// The random values of one new stream.
pub(crate) struct StreamSecrets {
    pub(crate) data_key: DataKey,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) wrap_nonce: [u8; WRAP_NONCE_LEN],
}

impl StreamSecrets {
    fn generate() -> Result<Self, BackupError> {
        Ok(Self { data_key: DataKey::generate()?, salt: random_array()?, wrap_nonce: random_array()? })
    }
}

/// Starts a new stream: a fresh data key and salt, wrapped under the tenant's current key.
/// Returns the header bytes and the chunk cipher.
pub(crate) fn seal_stream(
    tenant: &Tenant,
    ctx: &BackupContext,
    chunk_size: usize,
    backend: Backend,
) -> Result<(Vec<u8>, ChunkCipher), BackupError> {
    let keys = tenant.backup_key_for_seal()?;
    build_stream(&keys.key, keys.version, tenant.id(), ctx, chunk_size, StreamSecrets::generate()?, backend)
}

/// [`seal_stream`] with given key and random values (deterministic, for known-answer tests).
pub(crate) fn build_stream(
    backup_key: &TenantKey,
    version: KeyVersion,
    tenant: &TenantId,
    ctx: &BackupContext,
    chunk_size: usize,
    secrets: StreamSecrets,
    backend: Backend,
) -> Result<(Vec<u8>, ChunkCipher), BackupError> {
    let chunk_size =
        u32::try_from(chunk_size).map_err(|_| BackupError::InvalidParameter("chunk size too large".into()))?;
    let mut header = Header {
        chunk_size,
        salt: secrets.salt,
        key_version: version,
        wrap_nonce: [0; WRAP_NONCE_LEN],
        wrapped_key: [0; WRAPPED_KEY_LEN],
        commitment: [0; 32],
        tag: [0; 32],
    };
    let stream = StreamKeys::derive(&secrets.data_key, &header.salt);
    header.commitment = stream.commitment;
    header.tag = stream.header_mac(&header)?.finalize().into_bytes().into();
    wrap_data_key(backup_key, version, tenant, &mut header, &secrets.data_key, secrets.wrap_nonce)?;
    Ok((header.encode(), stream.chunk_cipher(&header, tenant, ctx, backend)?))
}

/// Opens an existing stream's header for reading with `ctx`.
pub(crate) fn open_stream(
    tenant: &Tenant,
    ctx: &BackupContext,
    header: &Header,
    backend: Backend,
) -> Result<ChunkCipher, BackupError> {
    let (_, stream) = open_data_key(tenant, header)?;
    stream.chunk_cipher(header, tenant.id(), ctx, backend)
}

/// Re-wraps the data key of `header` (opened under the version it names) under the tenant's
/// current key version. Returns `None` if the header already names that version.
pub(crate) fn rewrap_header(tenant: &Tenant, header: &Header) -> Result<Option<Header>, BackupError> {
    let (data_key, _) = open_data_key(tenant, header)?;
    let keys = tenant.backup_key_for_seal()?;
    if keys.version == header.key_version {
        return Ok(None);
    }
    let mut new = header.clone();
    wrap_data_key(&keys.key, keys.version, tenant.id(), &mut new, &data_key, random_array()?)?;
    Ok(Some(new))
}

/// Authenticates `header` for `tenant` (data key unwrap, commitment, header tag).
pub(crate) fn open_header(tenant: &Tenant, header: &Header) -> Result<(), BackupError> {
    open_data_key(tenant, header).map(|_| ())
}

/// The chunk layout of a stream body whose length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Number of chunks (at least 1).
    pub(crate) chunks: u64,
    /// Bytes of the final chunk including its tag.
    pub(crate) last_slot: usize,
    /// The plaintext length.
    pub(crate) plain_len: u64,
}

impl Geometry {
    /// The layout of a body of `body_len` bytes (everything after the header), or
    /// [`BackupError::Authentication`] if no writer produces that length.
    pub(crate) fn from_body_len(body_len: u64, chunk_size: u32) -> Result<Self, BackupError> {
        let slot = u64::from(chunk_size) + TAG_LEN as u64;
        let chunks = body_len.div_ceil(slot);
        if chunks == 0 || chunks > MAX_CHUNKS {
            return Err(BackupError::Authentication);
        }
        let full = chunks - 1;
        let last_slot = body_len - full * slot;
        // The final chunk holds at least one byte, except in the empty stream.
        let min_last = if chunks == 1 { TAG_LEN as u64 } else { TAG_LEN as u64 + 1 };
        if last_slot < min_last {
            return Err(BackupError::Authentication);
        }
        Ok(Self {
            chunks,
            last_slot: usize::try_from(last_slot).map_err(|_| BackupError::Authentication)?,
            plain_len: full * u64::from(chunk_size) + (last_slot - TAG_LEN as u64),
        })
    }
}

/// Seals and opens the chunks of one stream (AES-256-GCM under the stream's chunk key,
/// keyed once per stream).
pub(crate) struct ChunkCipher {
    gcm: Gcm,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    aad: [u8; 32],
    chunk_size: usize,
}

impl ChunkCipher {
    pub(crate) fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// A chunk with its tag.
    pub(crate) fn slot_len(&self) -> usize {
        self.chunk_size + TAG_LEN
    }

    fn nonce(&self, index: u64, last: bool) -> Option<[u8; 12]> {
        let index = u32::try_from(index).ok()?.to_be_bytes();
        let mut n = [0u8; 12];
        let (prefix, rest) = n.split_at_mut(NONCE_PREFIX_LEN);
        prefix.copy_from_slice(&self.nonce_prefix);
        let (idx, flag) = rest.split_at_mut(4);
        idx.copy_from_slice(&index);
        flag.fill(u8::from(last));
        Some(n)
    }

    /// Encrypts a slot in place: `slot` holds the plaintext followed by 16 bytes that
    /// receive the tag.
    pub(crate) fn seal_slot(&self, index: u64, last: bool, slot: &mut [u8]) -> Result<(), BackupError> {
        let nonce = self.nonce(index, last).ok_or(BackupError::TooLong)?;
        let pt_len = slot.len().checked_sub(TAG_LEN).ok_or(BackupError::InvalidParameter("empty slot".into()))?;
        let (pt, tag) = slot.split_at_mut(pt_len);
        let t = self
            .gcm
            .seal(&nonce, &self.aad, pt)
            .map_err(|_| BackupError::InvalidParameter("chunk encryption failed".into()))?;
        tag.copy_from_slice(&t);
        Ok(())
    }

    /// Encrypts `plain` into `slot` (`plain.len() + 16` bytes: ciphertext, then tag), reading
    /// the plaintext where it is instead of copying it first.
    pub(crate) fn seal_slot_from(
        &self,
        index: u64,
        last: bool,
        plain: &[u8],
        slot: &mut [u8],
    ) -> Result<(), BackupError> {
        let nonce = self.nonce(index, last).ok_or(BackupError::TooLong)?;
        let (ct, tag) = slot
            .split_at_mut_checked(plain.len())
            .filter(|(_, t)| t.len() == TAG_LEN)
            .ok_or(BackupError::InvalidParameter("slot length".into()))?;
        let t = self
            .gcm
            .seal_to(&nonce, &self.aad, plain, ct)
            .map_err(|_| BackupError::InvalidParameter("chunk encryption failed".into()))?;
        tag.copy_from_slice(&t);
        Ok(())
    }

    /// Verifies and decrypts a slot in place (ciphertext followed by its tag). On failure
    /// the slot is zeroed.
    pub(crate) fn open_slot(&self, index: u64, last: bool, slot: &mut [u8]) -> Result<(), BackupError> {
        let Some(ct_len) = slot.len().checked_sub(TAG_LEN) else {
            slot.fill(0);
            return Err(BackupError::Authentication);
        };
        let (ct, tag) = slot.split_at_mut(ct_len);
        let r = self.open_chunk(index, last, ct, tag);
        if r.is_err() {
            tag.fill(0);
        }
        r
    }

    /// Verifies `slot` (ciphertext, then tag) and decrypts it into `out` (`slot.len() - 16`
    /// bytes). On failure `out` is zeroed.
    pub(crate) fn open_slot_to(&self, index: u64, last: bool, slot: &[u8], out: &mut [u8]) -> Result<(), BackupError> {
        let r = match (self.nonce(index, last), slot.split_at_checked(out.len())) {
            (Some(nonce), Some((ct, tag))) => {
                self.gcm.open_to(&nonce, &self.aad, ct, tag, out).map_err(|_| BackupError::Authentication)
            }
            _ => Err(BackupError::Authentication),
        };
        if r.is_err() {
            out.fill(0);
        }
        r
    }

    /// Verifies `tag` and only then decrypts `buf` in place. On failure `buf` is zeroed.
    pub(crate) fn open_chunk(&self, index: u64, last: bool, buf: &mut [u8], tag: &[u8]) -> Result<(), BackupError> {
        let Some(nonce) = self.nonce(index, last) else {
            buf.fill(0);
            return Err(BackupError::Authentication);
        };
        self.gcm.open(&nonce, &self.aad, buf, tag).map_err(|_| BackupError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            chunk_size: 1 << 16,
            salt: [1; 32],
            key_version: KeyVersion { master: MasterVersion::new(0x0102), generation: 0x0304 },
            wrap_nonce: [2; 24],
            wrapped_key: [3; 48],
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
        other.key_version.master = MasterVersion::new(9);
        other.wrap_nonce = [7; 24];
        other.wrapped_key = [8; 48];
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

    #[test]
    fn geometry() {
        let cs = 1u32 << 16;
        let slot = u64::from(cs) + 16;
        assert!(Geometry::from_body_len(0, cs).is_err());
        assert!(Geometry::from_body_len(15, cs).is_err());
        assert_eq!(Geometry::from_body_len(16, cs).unwrap(), Geometry { chunks: 1, last_slot: 16, plain_len: 0 });
        assert_eq!(Geometry::from_body_len(17, cs).unwrap().plain_len, 1);
        assert_eq!(
            Geometry::from_body_len(slot, cs).unwrap(),
            Geometry { chunks: 1, last_slot: 65552, plain_len: 65536 }
        );
        for extra in 1..=16 {
            assert!(Geometry::from_body_len(slot + extra, cs).is_err(), "{extra}");
        }
        assert_eq!(Geometry::from_body_len(slot + 17, cs).unwrap().plain_len, 65537);
        assert_eq!(Geometry::from_body_len(MAX_CHUNKS * slot, cs).unwrap().chunks, MAX_CHUNKS);
        assert!(Geometry::from_body_len(MAX_CHUNKS * slot + 17, cs).is_err());
    }

    #[test]
    fn nonce_layout_and_index_limit() {
        let c =
            ChunkCipher { gcm: Gcm::new_default(&[0; 32]), nonce_prefix: [9; 7], aad: [0; 32], chunk_size: 1 << 16 };
        assert_eq!(c.nonce(0x0102_0304, true).unwrap(), [9, 9, 9, 9, 9, 9, 9, 1, 2, 3, 4, 1]);
        assert_eq!(c.nonce(u64::from(u32::MAX), false).unwrap()[7..], [0xff, 0xff, 0xff, 0xff, 0]);
        assert!(c.nonce(1 << 32, false).is_none());
        let mut slot = vec![0u8; 32];
        assert!(matches!(c.seal_slot(1 << 32, false, &mut slot), Err(BackupError::TooLong)));
        assert!(matches!(c.open_slot(1 << 32, false, &mut slot), Err(BackupError::Authentication)));
    }
}
