//! A tenant's catalog: one immutable, authenticated, hash-chained object per entry.
//!
//! # Format (version 1)
//!
//! Entry `n` of tenant `T` is the object `tenants/<hex(T)>/catalog/<n as 20 decimal digits>`,
//! written with `put_new` (never overwritten). All integers are big-endian; `L(x)` is a
//! 4-byte length followed by `x`.
//!
//! ```text
//! offset  size  field
//! 0       8     magic = "ATRESTCT"
//! 8       1     format version = 0x01
//! 9       1     entry type: 0x01 stream, 0x02 prune
//! 10      8     entry index n (0 for the first entry)
//! 18      32    previous entry hash: SHA-256 of all bytes of entry n-1 (zeros for n = 0)
//! 50      2     master key version   \ the key version of the catalog key (the tenant's
//! 52      2     tenant generation    / backup key version current when the entry was written)
//! 54      4     body length B (at most 4096)
//! 58      B     body
//! 58+B    32    MAC = HMAC-SHA256(catalog key, L("atrest/v1/repo/catalog") || bytes[0 .. 58+B])
//!
//! stream body = L(stream object key) || SHA-256 of the stored stream (32) || its size (u64)
//!               || the stream's context, encoded as in a version 2 backup header:
//!                  L(tenant) || L(snapshot) || 0x00 | 0x01 L(parent) || kind || sequence (u64)
//!                  || created (u64)
//! prune body  = L(tenant) || first kept entry index (u64) || cutoff time (u64)
//!
//! catalog key = HKDF-Expand(HKDF-Extract(salt = "atrest/v1/repo/catalog", ikm = the tenant's
//!               backup key of that version), L("atrest/v1/repo/catalog") || L(tenant), 32)
//! ```
//!
//! Nothing new is stored in the keyring: the key is derived from the tenant's backup key of
//! the entry's key version, so entries stay verifiable after a rotation as long as that
//! version is enabled. A parser accepts exactly what a writer produces (known magic, version
//! and type, a valid tenant id and context, nothing left over); anything else, or a MAC that
//! does not verify, makes the entry unauthentic. The entry hash (SHA-256 of the whole object)
//! is what the next entry and an external anchor name.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::backup::Stored;
use crate::encoding::put_lp;
use crate::hazmat::{expand32, extract};
use crate::id::{KeyVersion, MAX_TENANT_ID_LEN, MasterVersion, TenantId};
use crate::secret::TenantKey;

const MAGIC: &[u8; 8] = b"ATRESTCT";
/// The catalog format version this build writes and reads.
pub(crate) const CATALOG_VERSION: u8 = 1;
const LABEL: &[u8] = b"atrest/v1/repo/catalog";
const FIXED_LEN: usize = 58;
const MAC_LEN: usize = 32;
/// The largest body: a stream key (at most 1024 bytes), a digest, a size and a context.
const MAX_BODY_LEN: usize = 4096;
/// The largest catalog object.
pub(crate) const MAX_ENTRY_LEN: usize = FIXED_LEN + MAX_BODY_LEN + MAC_LEN;
const TYPE_STREAM: u8 = 1;
const TYPE_PRUNE: u8 = 2;

/// The catalog key of one tenant and key version: an HMAC-SHA256 key derived from the
/// tenant's backup key.
pub(crate) struct CatalogKey(Zeroizing<[u8; 32]>);

impl CatalogKey {
    /// Derives the catalog key from `backup_key` (the tenant's backup key of some version).
    pub(crate) fn derive(backup_key: &TenantKey, tenant: &TenantId) -> Self {
        let prk = extract(LABEL, backup_key.expose_secret());
        let mut info = Vec::with_capacity(64);
        put_lp(&mut info, LABEL);
        put_lp(&mut info, tenant.as_str().as_bytes());
        Self(Zeroizing::new(expand32(&prk, &info)))
    }

    fn mac(&self, bytes: &[u8]) -> Option<Hmac<Sha256>> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_slice()).ok()?;
        let mut prefix = Vec::with_capacity(LABEL.len() + 4);
        put_lp(&mut prefix, LABEL);
        mac.update(&prefix);
        mac.update(bytes);
        Some(mac)
    }
}

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// A stored backup stream.
    Stream {
        /// Its object key.
        key: String,
        /// SHA-256 of the stored bytes.
        digest: [u8; 32],
        /// Its size in bytes.
        size: u64,
        /// The context its header stores (tenant, snapshot, parent, kind, sequence, created).
        stored: Stored,
    },
    /// A prune: entries below `first_kept` (and their streams) were removed.
    Prune {
        /// The tenant.
        tenant: TenantId,
        /// The lowest entry index kept.
        first_kept: u64,
        /// The cutoff time of the prune (seconds since the Unix epoch).
        cutoff: u64,
    },
}

/// One catalog entry as written or as authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) index: u64,
    pub(crate) prev: [u8; 32],
    pub(crate) key_version: KeyVersion,
    pub(crate) body: Body,
}

/// The result of parsing an entry: its claimed key version comes first, so the caller can
/// fetch the right key before authenticating.
pub(crate) struct Parsed<'a> {
    pub(crate) entry: Entry,
    signed: &'a [u8],
    mac: &'a [u8],
}

impl Entry {
    /// The entry's bytes, MAC included.
    pub(crate) fn encode(&self, key: &CatalogKey) -> Option<Vec<u8>> {
        let mut body = Vec::with_capacity(256);
        let kind = match &self.body {
            Body::Stream { key, digest, size, stored } => {
                put_lp(&mut body, key.as_bytes());
                body.extend_from_slice(digest);
                body.extend_from_slice(&size.to_be_bytes());
                body.extend_from_slice(&stored.encode());
                TYPE_STREAM
            }
            Body::Prune { tenant, first_kept, cutoff } => {
                put_lp(&mut body, tenant.as_str().as_bytes());
                body.extend_from_slice(&first_kept.to_be_bytes());
                body.extend_from_slice(&cutoff.to_be_bytes());
                TYPE_PRUNE
            }
        };
        if body.len() > MAX_BODY_LEN {
            return None;
        }
        let body_len = u32::try_from(body.len()).ok()?;
        let mut out = Vec::with_capacity(FIXED_LEN + body.len() + MAC_LEN);
        out.extend_from_slice(MAGIC);
        out.push(CATALOG_VERSION);
        out.push(kind);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.prev);
        out.extend_from_slice(&self.key_version.master.get().to_be_bytes());
        out.extend_from_slice(&self.key_version.generation.to_be_bytes());
        out.extend_from_slice(&body_len.to_be_bytes());
        out.extend_from_slice(&body);
        let tag = key.mac(&out)?.finalize().into_bytes();
        out.extend_from_slice(&tag);
        Some(out)
    }

    /// Parses an entry's bytes without authenticating them (`None`: not an entry of this
    /// format). Call [`Parsed::authenticate`] before trusting anything.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Parsed<'_>> {
        let (signed, mac) = bytes.split_at_checked(bytes.len().checked_sub(MAC_LEN)?)?;
        let mut r = signed;
        if take::<8>(&mut r)? != *MAGIC || take::<1>(&mut r)? != [CATALOG_VERSION] {
            return None;
        }
        let [kind] = take::<1>(&mut r)?;
        let index = u64::from_be_bytes(take(&mut r)?);
        let prev = take::<32>(&mut r)?;
        let master = MasterVersion::new(u16::from_be_bytes(take(&mut r)?));
        let generation = u16::from_be_bytes(take(&mut r)?);
        let body_len = usize::try_from(u32::from_be_bytes(take(&mut r)?)).ok()?;
        if body_len != r.len() || body_len > MAX_BODY_LEN {
            return None;
        }
        let body = match kind {
            TYPE_STREAM => {
                let key = String::from_utf8(take_lp(&mut r, 1024)?.to_vec()).ok()?;
                let digest = take::<32>(&mut r)?;
                let size = u64::from_be_bytes(take(&mut r)?);
                let stored = Stored::parse(r).ok()?;
                Body::Stream { key, digest, size, stored }
            }
            TYPE_PRUNE => {
                let tenant = std::str::from_utf8(take_lp(&mut r, MAX_TENANT_ID_LEN)?).ok()?;
                let tenant = TenantId::new(tenant).ok()?;
                let first_kept = u64::from_be_bytes(take(&mut r)?);
                let cutoff = u64::from_be_bytes(take(&mut r)?);
                if !r.is_empty() {
                    return None;
                }
                Body::Prune { tenant, first_kept, cutoff }
            }
            _ => return None,
        };
        let entry = Entry { index, prev, key_version: KeyVersion { master, generation }, body };
        Some(Parsed { entry, signed, mac })
    }
}

impl Parsed<'_> {
    /// The entry, if its MAC verifies under `key` (compared in constant time).
    pub(crate) fn authenticate(self, key: &CatalogKey) -> Option<Entry> {
        key.mac(self.signed)?.verify_slice(self.mac).ok()?;
        Some(self.entry)
    }
}

/// The hash that names an entry: SHA-256 of its bytes.
pub(crate) fn entry_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The object key of entry `index` of the tenant whose objects are under `tenant_prefix`.
pub(crate) fn entry_key(tenant_prefix: &str, index: u64) -> String {
    format!("{tenant_prefix}catalog/{index:020}")
}

/// The entry index an object key names (`None` for any other key).
pub(crate) fn index_of(tenant_prefix: &str, key: &str) -> Option<u64> {
    let digits = key.strip_prefix(tenant_prefix)?.strip_prefix("catalog/")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

fn take<const N: usize>(r: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = r.split_first_chunk::<N>()?;
    *r = rest;
    Some(*head)
}

fn take_lp<'a>(r: &mut &'a [u8], max: usize) -> Option<&'a [u8]> {
    let len = usize::try_from(u32::from_be_bytes(take(r)?)).ok()?;
    if len > max {
        return None;
    }
    let (field, rest) = r.split_at_checked(len)?;
    *r = rest;
    Some(field)
}

#[cfg(test)]
mod tests;
