//! Record contexts: what a record is bound to besides its tenant.

use core::fmt;

use crate::encoding::put_lp;

/// What a record is bound to besides its tenant: ordered key/value pairs such as table,
/// column and row id. Opening requires exactly the same pairs in the same order.
///
/// The canonical encoding is the concatenation of `len(key) || key || len(value) || value`
/// for each pair in order, every length a 4-byte big-endian integer.
///
/// `Debug` shows the keys only: values may be personal data.
///
/// # Example
/// ```
/// use atrest::Context;
/// let ctx = Context::new().with("table", "contacts").with("column", "email").with("row", "42");
/// assert_eq!(ctx.len(), 3);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Context {
    encoded: Vec<u8>,
    keys: Vec<String>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pair.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl AsRef<[u8]>) -> Self {
        self.push(key, value);
        self
    }

    /// Appends a pair in place.
    pub fn push(&mut self, key: &str, value: impl AsRef<[u8]>) {
        put_lp(&mut self.encoded, key.as_bytes());
        put_lp(&mut self.encoded, value.as_ref());
        self.keys.push(key.to_owned());
    }

    /// Builds a context from pairs, in order.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut c = Self::new();
        for (k, v) in pairs {
            c.push(k.as_ref(), v);
        }
        c
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the context has no pairs.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The canonical encoding (see the type's documentation).
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.encoded
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("keys", &self.keys).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_ordered_and_unambiguous() {
        let a = Context::new().with("a-b", "c");
        let b = Context::new().with("a", "b-c");
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        let x = Context::new().with("t", "1").with("c", "2");
        let y = Context::new().with("c", "2").with("t", "1");
        assert_ne!(x, y);
        assert_eq!(x, Context::from_pairs([("t", "1"), ("c", "2")]));
    }

    #[test]
    fn debug_hides_values() {
        let c = Context::new().with("email", "alice@example.com");
        let s = format!("{c:?}");
        assert!(s.contains("email"));
        assert!(!s.contains("alice"));
    }
}
