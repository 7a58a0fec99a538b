//! Canonical, injective byte encodings for HKDF info strings and AEAD associated data.
//!
//! Every variable-length field is prefixed with its length as a 4-byte big-endian integer,
//! so `("a-b", "c")` and `("a", "b-c")` never encode to the same bytes.

/// Appends `field` to `out` with a 4-byte big-endian length prefix.
///
/// Fields are bounded by the callers (tenant ids, labels, context entries) far below 4 GiB;
/// a longer field saturates its prefix, which still cannot collide with a shorter field
/// because the bytes that follow differ in count.
pub(crate) fn put_lp(out: &mut Vec<u8>, field: &[u8]) {
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefix_is_injective_on_splits() {
        let enc = |a: &[u8], b: &[u8]| {
            let mut v = Vec::new();
            put_lp(&mut v, a);
            put_lp(&mut v, b);
            v
        };
        assert_ne!(enc(b"a-b", b"c"), enc(b"a", b"b-c"));
        assert_ne!(enc(b"", b"ab"), enc(b"ab", b""));
        assert_eq!(enc(b"x", b"y"), vec![0, 0, 0, 1, b'x', 0, 0, 0, 1, b'y']);
    }
}
