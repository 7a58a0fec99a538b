//! Parsing and building the record header (see the module documentation of `record`).

use crate::Suite;
use crate::context::{Context, TenantId};
use crate::error::OpenError;
use crate::keyring::{KeyVersion, MasterVersion};

pub(crate) const FORMAT_VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 6;
pub(crate) const NONCE_LEN: usize = 24;
pub(crate) const TAG_LEN: usize = 16;
pub(crate) const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
const AAD_LABEL: &[u8] = b"atrest/v1/record";

/// What a record's header says, readable without any key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordInfo {
    /// The format version (1).
    pub format_version: u8,
    /// The suite that sealed it.
    pub suite: Suite,
    /// The key version that sealed it.
    pub key_version: KeyVersion,
    /// The plaintext length.
    pub plaintext_len: usize,
}

pub(crate) struct Parsed<'a> {
    pub(crate) info: RecordInfo,
    pub(crate) header: &'a [u8; HEADER_LEN],
    pub(crate) nonce: &'a [u8],
    pub(crate) ciphertext: &'a [u8],
    pub(crate) tag: &'a [u8],
}

pub(crate) fn header(suite: Suite, v: KeyVersion) -> [u8; HEADER_LEN] {
    let m = v.master.get().to_be_bytes();
    let g = v.generation.to_be_bytes();
    [FORMAT_VERSION, suite.id(), m[0], m[1], g[0], g[1]]
}

/// The most associated data kept on the stack; longer tenant ids and contexts spill to the
/// heap.
const AAD_INLINE: usize = 256;

/// Associated data, built once per record without an allocation for typical tenant ids
/// and contexts.
#[allow(clippy::large_enum_variant, reason = "the inline variant is the point: no allocation per record")]
pub(crate) enum Aad {
    Inline([u8; AAD_INLINE], usize),
    Heap(Vec<u8>),
}

impl core::ops::Deref for Aad {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Aad::Inline(buf, len) => buf.get(..*len).unwrap_or_default(),
            Aad::Heap(v) => v,
        }
    }
}

pub(crate) fn aad(header: &[u8; HEADER_LEN], tenant: &TenantId, context: &Context) -> Aad {
    let tenant = tenant.as_str().as_bytes();
    let label_len = u32::try_from(AAD_LABEL.len()).unwrap_or(u32::MAX).to_be_bytes();
    let tenant_len = u32::try_from(tenant.len()).unwrap_or(u32::MAX).to_be_bytes();
    let parts: [&[u8]; 6] = [&label_len, AAD_LABEL, header, &tenant_len, tenant, context.canonical_bytes()];
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total <= AAD_INLINE {
        let mut buf = [0u8; AAD_INLINE];
        let mut at = 0;
        for p in parts {
            if let Some(dst) = buf.get_mut(at..at + p.len()) {
                dst.copy_from_slice(p);
            }
            at += p.len();
        }
        Aad::Inline(buf, total)
    } else {
        Aad::Heap(parts.concat())
    }
}

pub(crate) fn parse(sealed: &[u8]) -> Result<Parsed<'_>, OpenError> {
    let (header, rest) = sealed.split_first_chunk::<HEADER_LEN>().ok_or(OpenError::Authentication)?;
    let [version, suite, m0, m1, g0, g1] = *header;
    if version != FORMAT_VERSION {
        return Err(OpenError::UnsupportedFormat(version));
    }
    let suite = match Suite::from_id(suite) {
        Some(s @ (Suite::XAes256Gcm | Suite::XChaCha20Poly1305)) => s,
        _ => return Err(OpenError::Authentication),
    };
    let (nonce, rest) = rest.split_at_checked(NONCE_LEN).ok_or(OpenError::Authentication)?;
    let ct_len = rest.len().checked_sub(TAG_LEN).ok_or(OpenError::Authentication)?;
    let (ciphertext, tag) = rest.split_at(ct_len);
    let key_version = KeyVersion {
        master: MasterVersion::new(u16::from_be_bytes([m0, m1])),
        generation: u16::from_be_bytes([g0, g1]),
    };
    Ok(Parsed {
        info: RecordInfo { format_version: version, suite, key_version, plaintext_len: ct_len },
        header,
        nonce,
        ciphertext,
        tag,
    })
}

/// Reads a sealed record's header without any key: format, suite, key version, length.
///
/// Use it to find records that still need a rewrap after a rotation. The header is only
/// authenticated when the record is opened.
///
/// # Errors
/// [`OpenError::Authentication`] if the bytes cannot be a record;
/// [`OpenError::UnsupportedFormat`] for an unknown format version.
pub fn record_info(sealed: &[u8]) -> Result<RecordInfo, OpenError> {
    parse(sealed).map(|p| p.info)
}

/// The key version a sealed record names (see [`record_info`]).
///
/// # Errors
/// As [`record_info`].
pub fn key_version_of(sealed: &[u8]) -> Result<KeyVersion, OpenError> {
    record_info(sealed).map(|i| i.key_version)
}
