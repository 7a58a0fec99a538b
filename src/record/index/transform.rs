//! Field transforms: what a value becomes before it is indexed (see the format in `mod.rs`).

use core::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// The longest name of a custom transform, in bytes.
pub(crate) const MAX_TRANSFORM_NAME_LEN: usize = 64;

/// What a field becomes before it is indexed, so that values a person would call equal
/// index equal (`" Alice@Example.com"` and `"alice@example.com"`).
///
/// The transform is part of the index key's derivation: changing it gives new, independent
/// index values (existing rows must be re-indexed).
#[derive(Clone)]
#[non_exhaustive]
pub enum Transform {
    /// The bytes as they are.
    Identity,
    /// UTF-8 text, trimmed of leading and trailing white space and lowercased (emails,
    /// user names). Fails with [`IndexError::NotText`](crate::IndexError::NotText) on bytes
    /// that are not UTF-8.
    LowercaseTrim,
    /// The ASCII digits `0-9` only (phone numbers: `+1 (555) 010-9999` → `15550109999`).
    DigitsOnly,
    /// The last N digits (all of them if there are fewer): `LastDigits(4)` for "the last
    /// four digits" of a phone or card number. N is 1 to 255.
    LastDigits(u8),
    /// The caller's own function, under a name (1 to 64 bytes) that identifies it in the key
    /// derivation: give a changed function a new name. Build it with [`Transform::custom`].
    Custom(CustomTransform),
}

/// A caller's transform function and its name (see [`Transform::custom`]).
#[derive(Clone)]
pub struct CustomTransform {
    name: String,
    f: Arc<TransformFn>,
}

type TransformFn = dyn Fn(&[u8]) -> Vec<u8> + Send + Sync;

impl Transform {
    /// A transform by the caller's function `f`, identified by `name` (1 to 64 bytes, checked
    /// when the index is built). The output is zeroized after use.
    ///
    /// # Example
    /// ```
    /// use atrest::Transform;
    /// // Names: case-insensitive, inner white space collapsed.
    /// let t = Transform::custom("name-fold-v1", |b: &[u8]| {
    ///     String::from_utf8_lossy(b).split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase().into_bytes()
    /// });
    /// # let _ = t;
    /// ```
    pub fn custom(name: &str, f: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) -> Self {
        Transform::Custom(CustomTransform { name: name.to_owned(), f: Arc::new(f) })
    }

    /// The transform's id in the key derivation.
    pub(crate) fn id(&self) -> String {
        match self {
            Transform::Identity => "identity".to_owned(),
            Transform::LowercaseTrim => "lowercase-trim".to_owned(),
            Transform::DigitsOnly => "digits".to_owned(),
            Transform::LastDigits(n) => format!("last-digits:{n}"),
            Transform::Custom(c) => format!("custom:{}", c.name),
        }
    }

    /// Whether the transform's parameters are in range.
    pub(crate) fn check(&self) -> Result<(), crate::IndexError> {
        match self {
            Transform::LastDigits(0) => Err(crate::IndexError::InvalidDigitCount),
            Transform::Custom(c) if c.name.is_empty() || c.name.len() > MAX_TRANSFORM_NAME_LEN => {
                Err(crate::IndexError::InvalidTransformName)
            }
            _ => Ok(()),
        }
    }

    /// Applies the transform; `None` if the field must be text and is not.
    pub(crate) fn apply<'a>(&self, field: &'a [u8]) -> Option<Field<'a>> {
        Some(match self {
            Transform::Identity => Field::Borrowed(field),
            Transform::LowercaseTrim => {
                let text = core::str::from_utf8(field).ok()?.trim();
                if text.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
                    Field::Borrowed(text.as_bytes())
                } else {
                    Field::Owned(Zeroizing::new(text.to_lowercase().into_bytes()))
                }
            }
            Transform::DigitsOnly => digits(field),
            Transform::LastDigits(n) => match digits(field) {
                Field::Borrowed(d) => Field::Borrowed(d.get(d.len().saturating_sub(usize::from(*n))..).unwrap_or(d)),
                Field::Owned(mut d) => {
                    let cut = d.len().saturating_sub(usize::from(*n));
                    d.drain(..cut);
                    Field::Owned(d)
                }
            },
            Transform::Custom(c) => Field::Owned(Zeroizing::new((c.f)(field))),
        })
    }
}

/// The ASCII digits of `field`, borrowed when it has nothing else.
fn digits(field: &[u8]) -> Field<'_> {
    if field.iter().all(u8::is_ascii_digit) {
        Field::Borrowed(field)
    } else {
        Field::Owned(Zeroizing::new(field.iter().copied().filter(u8::is_ascii_digit).collect()))
    }
}

impl fmt::Debug for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

impl fmt::Debug for CustomTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomTransform").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A transformed field: borrowed from the input when the transform changes nothing,
/// otherwise an owned copy that is zeroized on drop.
pub(crate) enum Field<'a> {
    Borrowed(&'a [u8]),
    Owned(Zeroizing<Vec<u8>>),
}

impl Field<'_> {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Field::Borrowed(b) => b,
            Field::Owned(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(t: &Transform, input: &[u8]) -> Vec<u8> {
        t.apply(input).unwrap().as_bytes().to_vec()
    }

    #[test]
    fn builtin_transforms() {
        let lt = Transform::LowercaseTrim;
        assert_eq!(out(&lt, b"  Alice@Example.COM\t\n"), b"alice@example.com");
        assert_eq!(out(&lt, b"alice@example.com"), b"alice@example.com");
        assert_eq!(out(&lt, "\u{3000}ÉLODIE@exemple.fr ".as_bytes()), "élodie@exemple.fr".as_bytes());
        assert!(lt.apply(b"\xff\xfe").is_none());
        assert_eq!(out(&Transform::DigitsOnly, b"+1 (555) 010-9999"), b"15550109999");
        assert_eq!(out(&Transform::DigitsOnly, b"0123"), b"0123");
        assert_eq!(out(&Transform::DigitsOnly, "٣ no ascii".as_bytes()), b"");
        assert_eq!(out(&Transform::LastDigits(4), b"+1 (555) 010-9999"), b"9999");
        assert_eq!(out(&Transform::LastDigits(4), b"5550109999"), b"9999");
        assert_eq!(out(&Transform::LastDigits(4), b"12"), b"12");
        assert_eq!(out(&Transform::LastDigits(4), b"1-2"), b"12");
        assert_eq!(out(&Transform::Identity, b" X "), b" X ");
        let c = Transform::custom("rev", |b: &[u8]| b.iter().rev().copied().collect());
        assert_eq!(out(&c, b"abc"), b"cba");
    }

    #[test]
    fn ids_and_checks() {
        assert_eq!(Transform::LastDigits(4).id(), "last-digits:4");
        assert_eq!(Transform::custom("x", |b: &[u8]| b.to_vec()).id(), "custom:x");
        assert_eq!(format!("{:?}", Transform::LowercaseTrim), "lowercase-trim");
        assert!(Transform::LastDigits(0).check().is_err());
        assert!(Transform::custom("", |b: &[u8]| b.to_vec()).check().is_err());
        assert!(Transform::custom(&"n".repeat(65), |b: &[u8]| b.to_vec()).check().is_err());
        assert!(Transform::custom(&"n".repeat(64), |b: &[u8]| b.to_vec()).check().is_ok());
    }
}
