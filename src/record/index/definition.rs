//! Index definitions: name, width, fields and their transforms, and the PRF input encoding.

use core::fmt;

use zeroize::Zeroizing;

use super::transform::{Field, Transform};
use crate::encoding::put_lp;
use crate::error::IndexError;

/// The widest blind index value, in bits (a whole HMAC-SHA256 output).
pub const MAX_INDEX_BITS: u16 = 256;

/// The longest index name, in bytes.
pub const MAX_INDEX_NAME_LEN: usize = 128;

/// The most fields a compound index combines.
pub const MAX_INDEX_FIELDS: usize = 16;

/// The label that starts every index definition `D` (see the format in `mod.rs`).
pub(crate) const INDEX_LABEL: &[u8] = b"atrest/v1/blind-index";

/// A blind index definition: its name, its width in bits, and the fields it combines, each
/// with its transform. Build one with [`BlindIndex::builder`], once, and use it for every
/// tenant: the keys are per tenant and key version, the definition is the application's.
///
/// # Example
/// ```
/// use atrest::{BlindIndex, Transform};
/// let email = BlindIndex::builder("contacts.email").bits(32).field(Transform::LowercaseTrim).build()?;
/// let last4 = BlindIndex::builder("contacts.phone_last4").bits(8).field(Transform::LastDigits(4)).build()?;
/// // A compound index over two fields (length-prefixed, so ("ab", "c") != ("a", "bc")).
/// let name_city = BlindIndex::builder("contacts.name_city")
///     .bits(24)
///     .field(Transform::LowercaseTrim)
///     .field(Transform::LowercaseTrim)
///     .build()?;
/// assert_eq!((email.bits(), last4.field_count(), name_city.field_count()), (32, 1, 2));
/// # Ok::<(), atrest::IndexError>(())
/// ```
#[derive(Clone)]
pub struct BlindIndex {
    name: String,
    bits: u16,
    transforms: Vec<Transform>,
    /// `D`: the HKDF info of this index's keys.
    definition: Vec<u8>,
}

/// Builds a [`BlindIndex`] (see [`BlindIndex::builder`]).
#[derive(Debug, Clone)]
#[must_use]
pub struct BlindIndexBuilder {
    name: String,
    bits: u16,
    transforms: Vec<Transform>,
}

impl BlindIndex {
    /// Starts a definition named `name` (1 to 128 bytes, for example `"contacts.email"`).
    /// Set the width with [`bits`](BlindIndexBuilder::bits) (required; see
    /// [`IndexPlanner`](crate::IndexPlanner)) and add fields with
    /// [`field`](BlindIndexBuilder::field); without any, the index has one field, unchanged.
    pub fn builder(name: &str) -> BlindIndexBuilder {
        BlindIndexBuilder { name: name.to_owned(), bits: 0, transforms: Vec::new() }
    }

    /// The index name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The width of its values, in bits.
    pub fn bits(&self) -> u16 {
        self.bits
    }

    /// How many fields it combines.
    pub fn field_count(&self) -> usize {
        self.transforms.len()
    }

    /// The field transforms, in order.
    pub fn transforms(&self) -> &[Transform] {
        &self.transforms
    }

    /// `D`, the HKDF info this index's keys are derived with.
    pub(crate) fn definition(&self) -> &[u8] {
        &self.definition
    }

    /// Transforms `fields` and passes the PRF input to `sink` piece by piece:
    /// `len||T_1(f_1) || ... || len||T_n(f_n)`. Transformed copies are zeroized after use.
    pub(crate) fn encode_input<F: AsRef<[u8]>>(
        &self,
        fields: &[F],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), IndexError> {
        if fields.len() != self.transforms.len() {
            return Err(IndexError::FieldCount {
                index: self.name.clone(),
                expected: self.transforms.len(),
                given: fields.len(),
            });
        }
        for (i, (transform, field)) in self.transforms.iter().zip(fields).enumerate() {
            let value: Field<'_> = transform
                .apply(field.as_ref())
                .ok_or_else(|| IndexError::NotText { index: self.name.clone(), field: i })?;
            let bytes = value.as_bytes();
            let len = u32::try_from(bytes.len())
                .map_err(|_| IndexError::FieldTooLong { index: self.name.clone(), field: i })?;
            sink(&len.to_be_bytes());
            sink(bytes);
        }
        Ok(())
    }

    /// The whole PRF input of `fields` in one buffer (zeroized on drop), to compute values
    /// under several key versions, or after the record's key version is known.
    pub(crate) fn input_of<F: AsRef<[u8]>>(&self, fields: &[F]) -> Result<Zeroizing<Vec<u8>>, IndexError> {
        let len: usize = fields.iter().map(|f| f.as_ref().len().saturating_add(4)).fold(0, usize::saturating_add);
        let mut input = Zeroizing::new(Vec::with_capacity(len.saturating_add(64)));
        self.encode_input(fields, |piece| input.extend_from_slice(piece))?;
        Ok(input)
    }
}

impl BlindIndexBuilder {
    /// The width of the index values: 1 to 256 bits. Fewer bits leak less and match more
    /// rows by chance (false positives, dropped when the candidates are opened); see
    /// [`IndexPlanner`](crate::IndexPlanner) to choose.
    pub fn bits(mut self, bits: u16) -> Self {
        self.bits = bits;
        self
    }

    /// Adds a field, transformed by `transform` before it is indexed. An index with more
    /// than one field is a compound index; lookups then give every field, in order.
    pub fn field(mut self, transform: Transform) -> Self {
        self.transforms.push(transform);
        self
    }

    /// Checks the definition and builds the index.
    ///
    /// # Errors
    /// [`IndexError::InvalidName`] (empty or over 128 bytes), [`IndexError::InvalidBits`]
    /// (not set, or over 256), [`IndexError::TooManyFields`] (over 16),
    /// [`IndexError::InvalidTransformName`], [`IndexError::InvalidDigitCount`].
    pub fn build(self) -> Result<BlindIndex, IndexError> {
        let Self { name, bits, mut transforms } = self;
        if name.is_empty() || name.len() > MAX_INDEX_NAME_LEN {
            return Err(IndexError::InvalidName);
        }
        if bits == 0 || bits > MAX_INDEX_BITS {
            return Err(IndexError::InvalidBits(u32::from(bits)));
        }
        if transforms.is_empty() {
            transforms.push(Transform::Identity);
        }
        let count = u8::try_from(transforms.len())
            .ok()
            .filter(|n| usize::from(*n) <= MAX_INDEX_FIELDS)
            .ok_or(IndexError::TooManyFields(transforms.len()))?;
        let mut definition = Vec::with_capacity(64 + name.len());
        put_lp(&mut definition, INDEX_LABEL);
        put_lp(&mut definition, name.as_bytes());
        definition.extend_from_slice(&bits.to_be_bytes());
        definition.push(count);
        for t in &transforms {
            t.check()?;
            put_lp(&mut definition, t.id().as_bytes());
        }
        Ok(BlindIndex { name, bits, transforms, definition })
    }
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlindIndex")
            .field("name", &self.name)
            .field("bits", &self.bits)
            .field("transforms", &self.transforms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(index: &BlindIndex, fields: &[&str]) -> Result<Vec<u8>, IndexError> {
        let mut out = Vec::new();
        index.encode_input(fields, |b| out.extend_from_slice(b))?;
        Ok(out)
    }

    #[test]
    fn definition_bytes_follow_the_spec() {
        let i = BlindIndex::builder("e").bits(256).field(Transform::LastDigits(4)).build().unwrap();
        let expect = [
            &[0, 0, 0, 21][..],
            b"atrest/v1/blind-index",
            &[0, 0, 0, 1],
            b"e",
            &[1, 0],
            &[1],
            &[0, 0, 0, 13],
            b"last-digits:4",
        ]
        .concat();
        assert_eq!(i.definition(), expect);
        let plain = BlindIndex::builder("e").bits(8).build().unwrap();
        assert_eq!(plain.field_count(), 1);
        assert!(plain.definition().ends_with(b"\x00\x08\x01\x00\x00\x00\x08identity"));
    }

    #[test]
    fn invalid_definitions_are_refused() {
        assert!(matches!(BlindIndex::builder("").bits(8).build(), Err(IndexError::InvalidName)));
        assert!(matches!(BlindIndex::builder(&"n".repeat(129)).bits(8).build(), Err(IndexError::InvalidName)));
        assert!(BlindIndex::builder(&"n".repeat(128)).bits(8).build().is_ok());
        assert!(matches!(BlindIndex::builder("x").build(), Err(IndexError::InvalidBits(0))));
        assert!(matches!(BlindIndex::builder("x").bits(257).build(), Err(IndexError::InvalidBits(257))));
        assert!(BlindIndex::builder("x").bits(256).build().is_ok());
        let many = (0..17).fold(BlindIndex::builder("x").bits(8), |b, _| b.field(Transform::Identity));
        assert!(matches!(many.build(), Err(IndexError::TooManyFields(17))));
        let b = BlindIndex::builder("x").bits(8).field(Transform::LastDigits(0));
        assert!(matches!(b.build(), Err(IndexError::InvalidDigitCount)));
    }

    #[test]
    fn input_encoding_is_length_prefixed() {
        let i = BlindIndex::builder("c").bits(8).field(Transform::Identity).field(Transform::Identity).build().unwrap();
        assert_eq!(input(&i, &["ab", "c"]).unwrap(), b"\0\0\0\x02ab\0\0\0\x01c");
        assert_ne!(input(&i, &["ab", "c"]).unwrap(), input(&i, &["a", "bc"]).unwrap());
        assert!(matches!(input(&i, &["a"]), Err(IndexError::FieldCount { expected: 2, given: 1, .. })));
        let t = BlindIndex::builder("t").bits(8).field(Transform::LowercaseTrim).build().unwrap();
        let mut sink = Vec::new();
        let err = t.encode_input(&[b"\xff"], |b| sink.extend_from_slice(b)).unwrap_err();
        assert!(matches!(err, IndexError::NotText { field: 0, .. }));
        assert!(!format!("{err}").contains('\u{fffd}'));
    }
}
