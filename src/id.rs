//! Public identifiers: tenant ids and key versions (never secret).
//!
//! They sit in the lowest layer beside the secret types, so that errors, the keyring and the
//! formats all import them and never each other.

use core::fmt;
use core::hash::{Hash, Hasher};
use std::borrow::Borrow;
use std::sync::Arc;

use arrayvec::ArrayString;
use serde::{Deserialize, Serialize};

/// The longest tenant id, in bytes.
pub const MAX_TENANT_ID_LEN: usize = 128;

/// A validated tenant identifier: 1 to 128 bytes of UTF-8 without control characters and
/// without invisible format characters (bidirectional overrides, zero-width characters).
///
/// Tenant ids are public identifiers: they appear in logs, errors and the keyring file
/// (for generations and shreds), so they must not themselves be PII. Invisible characters
/// are refused so that two ids that print alike are the same id (`acme` and `ac\u{200b}me`
/// would otherwise be two tenants that an operator cannot tell apart).
///
/// Cheap to clone and usually allocation-free: an id of up to 56 bytes (a UUID with a
/// prefix, `tenant-0000042`) is held inline and copied, a longer one is a shared string.
/// The keyring's key cache holds each key's id inline, so that looking a tenant up and
/// handing its id to a new handle read no memory but the key's own (with 100,000 tenants,
/// whose keys do not fit in the CPU caches, every other allocation read is one more wait
/// on memory per request).
#[derive(Clone)]
pub struct TenantId(Repr);

/// The longest tenant id held inline (longer ids are shared strings).
const INLINE_ID_LEN: usize = 56;

#[derive(Clone)]
enum Repr {
    Inline(ArrayString<INLINE_ID_LEN>),
    Shared(Arc<str>),
}

/// Why a string is not a valid [`TenantId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTenantId {
    /// The id is empty.
    #[error("it is empty")]
    Empty,
    /// The id is longer than [`MAX_TENANT_ID_LEN`] bytes.
    #[error("it is longer than 128 bytes")]
    TooLong,
    /// The id contains a control character.
    #[error("it contains control characters")]
    Control,
    /// The id contains an invisible Unicode format character (bidi control, zero-width).
    #[error("it contains invisible Unicode format characters (bidi controls, zero-width characters)")]
    Invisible,
}

/// Unicode general category Cf (format characters), as of Unicode 15.
fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

impl TenantId {
    /// Validates `id`.
    ///
    /// # Errors
    /// [`InvalidTenantId`] if it is empty, longer than [`MAX_TENANT_ID_LEN`] bytes, or
    /// contains control or invisible format characters.
    pub fn new(id: &str) -> Result<Self, InvalidTenantId> {
        if id.is_empty() {
            return Err(InvalidTenantId::Empty);
        }
        if id.len() > MAX_TENANT_ID_LEN {
            return Err(InvalidTenantId::TooLong);
        }
        if id.chars().any(char::is_control) {
            return Err(InvalidTenantId::Control);
        }
        if id.chars().any(is_format_char) {
            return Err(InvalidTenantId::Invisible);
        }
        Ok(Self(match ArrayString::from(id) {
            Ok(inline) => Repr::Inline(inline),
            Err(_) => Repr::Shared(Arc::from(id)),
        }))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(s) => s.as_str(),
            Repr::Shared(s) => s,
        }
    }
}

/// Maps keyed by [`TenantId`] are searched with a `&str` (no id built per lookup); the
/// hash, equality and order of the id are those of the string.
impl Borrow<str> for TenantId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for TenantId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TenantId {}

impl Hash for TenantId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for TenantId {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TenantId {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({:?})", self.as_str())
    }
}

/// The version number of a master key in a keyring (1, 2, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MasterVersion(u16);

impl MasterVersion {
    /// Version `n`.
    pub const fn new(n: u16) -> Self {
        Self(n)
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }

    pub(crate) fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

impl fmt::Display for MasterVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// The key that sealed something: a master key version and the tenant's generation.
///
/// Every sealed record and backup header names one, so opening picks exactly one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyVersion {
    /// The master key version.
    pub master: MasterVersion,
    /// The tenant's key generation (bumped by a per-tenant rotation).
    pub generation: u16,
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/g{}", self.master, self.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_id_validation() {
        assert!(TenantId::new("acme").is_ok());
        assert_eq!(TenantId::new(""), Err(InvalidTenantId::Empty));
        assert_eq!(TenantId::new(&"x".repeat(129)), Err(InvalidTenantId::TooLong));
        assert_eq!(TenantId::new("a\nb"), Err(InvalidTenantId::Control));
        assert!(TenantId::new(&"x".repeat(128)).is_ok());
        assert!(TenantId::new("café-é").is_ok());
    }

    /// Ids held inline (up to 56 bytes) and shared (longer) behave as their strings do:
    /// equality, order and hash (maps keyed by `TenantId` are searched with a `&str`).
    #[test]
    fn inline_and_shared_ids_are_their_strings() {
        use std::collections::{BTreeMap, HashMap};
        let lens = [1, 14, INLINE_ID_LEN - 1, INLINE_ID_LEN, INLINE_ID_LEN + 1, MAX_TENANT_ID_LEN];
        let strings: Vec<String> = lens.iter().map(|&n| "é".repeat(n / 2) + &"x".repeat(n % 2)).collect();
        let ids: Vec<TenantId> = strings.iter().map(|s| TenantId::new(s).unwrap()).collect();
        let hashed: HashMap<TenantId, usize> = ids.iter().cloned().zip(0..).collect();
        let ordered: BTreeMap<TenantId, usize> = ids.iter().cloned().zip(0..).collect();
        for (i, (s, id)) in strings.iter().zip(&ids).enumerate() {
            assert_eq!(id.as_str(), s);
            assert_eq!(id.to_string(), *s);
            assert_eq!(matches!(id.0, Repr::Inline(_)), s.len() <= INLINE_ID_LEN, "{}", s.len());
            assert_eq!(id.clone(), *id);
            assert_eq!(hashed.get(s.as_str()), Some(&i));
            assert_eq!(ordered.get(s.as_str()), Some(&i));
            for (t, other) in strings.iter().zip(&ids) {
                assert_eq!(id.cmp(other), s.cmp(t));
                assert_eq!(id.partial_cmp(other), Some(s.cmp(t)));
                assert_eq!(id < other, s < t);
                assert_eq!(id == other, s == t);
            }
        }
        assert_eq!(format!("{:?}", ids[1]), format!("TenantId({:?})", strings[1]));
    }

    #[test]
    fn invisible_characters_are_refused() {
        for c in ['\u{200b}', '\u{200d}', '\u{202e}', '\u{2066}', '\u{feff}', '\u{00ad}', '\u{e0041}'] {
            let id = format!("ac{c}me");
            assert_eq!(TenantId::new(&id), Err(InvalidTenantId::Invisible), "{:?}", c as u32);
        }
        // Neighbours of the ranges are letters or symbols, not format characters.
        for c in ['\u{200a}', '\u{2010}', '\u{2065}', '\u{fefe}'] {
            let id = format!("ac{c}me");
            assert!(TenantId::new(&id).is_ok() || c.is_control(), "{:?}", c as u32);
        }
    }

    #[test]
    fn versions_print() {
        let v = KeyVersion { master: MasterVersion::new(3), generation: 2 };
        assert_eq!(v.to_string(), "v3/g2");
        assert_eq!(MasterVersion::new(1).next(), Some(MasterVersion::new(2)));
        assert_eq!(MasterVersion::new(u16::MAX).next(), None);
    }
}
