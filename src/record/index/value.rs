//! Index values and what a lookup or an indexed seal returns.

use core::fmt;

use crate::error::IndexError;
use crate::id::KeyVersion;

/// One blind index value: the first `bits` bits of the PRF output, under one key version.
///
/// Store it in a plain column beside the sealed record: [`as_bytes`](IndexValue::as_bytes)
/// for a `bytea` column (any width), or [`to_i64`](IndexValue::to_i64) for a `bigint` column
/// (up to 64 bits; the smaller btree). Index values are not secret keys, but they do reveal
/// which rows hold equal values (see SECURITY.md): keep them with the rest of the row.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexValue {
    bytes: [u8; 32],
    bits: u16,
    version: KeyVersion,
}

impl IndexValue {
    /// Keeps the first `bits` bits of a PRF output (1..=256, checked by the definition).
    pub(crate) fn truncated(mut bytes: [u8; 32], bits: u16, version: KeyVersion) -> Self {
        let len = usize::from(bits).div_ceil(8);
        for b in bytes.iter_mut().skip(len) {
            *b = 0;
        }
        let spare = (8 - bits % 8) % 8;
        if let Some(last) = len.checked_sub(1).and_then(|i| bytes.get_mut(i)) {
            *last &= 0xff_u8 << spare;
        }
        Self { bytes, bits, version }
    }

    /// The value as `ceil(bits / 8)` bytes, big-endian; the unused low bits of the last byte
    /// are zero. For a `bytea` column.
    pub fn as_bytes(&self) -> &[u8] {
        let len = usize::from(self.bits).div_ceil(8);
        self.bytes.get(..len).unwrap_or(&self.bytes)
    }

    /// The value as an integer in `0 .. 2^bits`, for a `bigint` column: non-negative up to
    /// 63 bits; a 64-bit value is reinterpreted as two's complement (still one-to-one).
    ///
    /// # Errors
    /// [`IndexError::TooWideForInteger`] for indexes of more than 64 bits.
    pub fn to_i64(&self) -> Result<i64, IndexError> {
        if self.bits > 64 {
            return Err(IndexError::TooWideForInteger(self.bits));
        }
        let [a, b, c, d, e, f, g, h, ..] = self.bytes;
        let top = u64::from_be_bytes([a, b, c, d, e, f, g, h]) >> (64 - u32::from(self.bits));
        Ok(i64::from_be_bytes(top.to_be_bytes()))
    }

    /// The width in bits.
    pub fn bits(&self) -> u16 {
        self.bits
    }

    /// The key version the value was computed under.
    pub fn key_version(&self) -> KeyVersion {
        self.version
    }
}

impl fmt::Debug for IndexValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexValue")
            .field("bits", &self.bits)
            .field("key_version", &self.version)
            .field("value", &hex::encode(self.as_bytes()))
            .finish()
    }
}

/// The index values to look a value up with: one per key version in use, the current
/// version's first. Query with all of them (`WHERE idx = ANY($1)`), so rows not yet
/// migrated to the current version still match during a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexLookup {
    values: Vec<IndexValue>,
}

impl IndexLookup {
    pub(crate) fn new(values: Vec<IndexValue>) -> Self {
        Self { values }
    }

    /// Every value, the current key version's first.
    pub fn values(&self) -> &[IndexValue] {
        &self.values
    }

    /// The values as bytes, for a `bytea[]` query parameter.
    pub fn bytes(&self) -> Vec<&[u8]> {
        self.values.iter().map(IndexValue::as_bytes).collect()
    }

    /// The values as integers, for a `bigint[]` query parameter.
    ///
    /// # Errors
    /// [`IndexError::TooWideForInteger`] for indexes of more than 64 bits.
    pub fn to_i64s(&self) -> Result<Vec<i64>, IndexError> {
        self.values.iter().map(IndexValue::to_i64).collect()
    }

    /// Whether a stored value (bytes) is one of these.
    pub fn matches(&self, stored: &[u8]) -> bool {
        self.values.iter().any(|v| v.as_bytes() == stored)
    }
}

/// A sealed record with its blind index values, all under the same key version (see
/// [`Tenant::seal_indexed`](crate::Tenant::seal_indexed)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexedRecord {
    /// The sealed record.
    pub sealed: Vec<u8>,
    /// One value per index asked for, in the same order.
    pub index_values: Vec<IndexValue>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterVersion;

    const V: KeyVersion = KeyVersion { master: MasterVersion::new(1), generation: 0 };

    #[test]
    fn truncation_keeps_the_leading_bits() {
        let full = [0xff; 32];
        for bits in 1..=256u16 {
            let v = IndexValue::truncated(full, bits, V);
            assert_eq!(v.as_bytes().len(), usize::from(bits).div_ceil(8));
            let ones: u32 = v.as_bytes().iter().map(|b| b.count_ones()).sum();
            assert_eq!(ones, u32::from(bits));
            if bits <= 64 {
                let expect = if bits == 64 { -1 } else { i64::MAX >> (63 - bits) };
                assert_eq!(v.to_i64().unwrap(), expect, "{bits}");
            } else {
                assert!(matches!(v.to_i64(), Err(IndexError::TooWideForInteger(b)) if b == bits));
            }
        }
        let mut mac = [0u8; 32];
        mac[..3].copy_from_slice(&[0xab, 0xcd, 0xef]);
        let v = IndexValue::truncated(mac, 12, V);
        assert_eq!(v.as_bytes(), [0xab, 0xc0]);
        assert_eq!(v.to_i64().unwrap(), 0xabc);
        assert_eq!(
            format!("{v:?}"),
            "IndexValue { bits: 12, key_version: KeyVersion { master: MasterVersion(1), generation: 0 }, value: \"abc0\" }"
        );
    }

    #[test]
    fn lookup_forms() {
        let a = IndexValue::truncated([1; 32], 16, V);
        let b = IndexValue::truncated([2; 32], 16, V);
        let l = IndexLookup::new(vec![a, b]);
        assert_eq!(l.bytes(), vec![&[1u8, 1][..], &[2, 2]]);
        assert_eq!(l.to_i64s().unwrap(), vec![0x0101, 0x0202]);
        assert!(l.matches(&[2, 2]));
        assert!(!l.matches(&[2, 3]));
    }
}
