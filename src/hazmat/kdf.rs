//! HKDF-SHA256 (RFC 5869), as used for every key derivation in the crate.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

/// The requested output is longer than HKDF-SHA256 can produce (255 * 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HKDF-SHA256 output length is limited to 8160 bytes")]
pub struct HkdfLengthError;

/// A pseudorandom key from HKDF-Extract, with HMAC-SHA256 keyed by it once (the inner and
/// outer padded-key blocks hashed), so that each 32-byte HKDF-Expand clones that state
/// instead of keying HMAC again: two SHA-256 compressions fewer per derived key.
///
/// The bytes are zeroized on drop. The keyed HMAC state is overwritten on drop with a state
/// keyed by zeros (the `hmac` crate offers no zeroizing state; the store is kept by
/// [`core::hint::black_box`], so it is not elided as dead).
pub(crate) struct Prk {
    bytes: [u8; 32],
    mac: Hmac<Sha256>,
}

/// HMAC-SHA256 keyed by `key`: padded with zeros to the 64-byte block, exactly as HMAC
/// pads a shorter key (RFC 2104), so the state is HMAC keyed by the 32 bytes themselves.
fn keyed_mac(key: &[u8; 32]) -> Hmac<Sha256> {
    let mut block = [0u8; 64];
    let (head, _) = block.split_at_mut(32);
    head.copy_from_slice(key);
    let mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    block.zeroize();
    mac
}

impl Prk {
    fn new(bytes: [u8; 32]) -> Self {
        let mac = keyed_mac(&bytes);
        Self { bytes, mac }
    }
}

impl Drop for Prk {
    fn drop(&mut self) {
        self.bytes.zeroize();
        self.mac = keyed_mac(&[0u8; 32]);
        core::hint::black_box(&mut self.mac);
    }
}

/// HKDF-Extract(salt, ikm).
pub(crate) fn extract(salt: &[u8], ikm: &[u8]) -> Prk {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), ikm);
    let mut out = [0u8; 32];
    out.copy_from_slice(&prk);
    let prk = Prk::new(out);
    out.zeroize();
    prk
}

fn expand(prk: &Prk, info: &[u8], okm: &mut [u8]) -> Result<(), HkdfLengthError> {
    // A 32-byte PRK is always valid for SHA-256; only the output length can fail.
    let hk = Hkdf::<Sha256>::from_prk(&prk.bytes).map_err(|_| HkdfLengthError)?;
    hk.expand(info, okm).map_err(|_| HkdfLengthError)
}

/// HKDF-Expand(prk, info) to 32 bytes: a length HKDF-SHA256 always produces.
pub(crate) fn expand32(prk: &Prk, info: &[u8]) -> [u8; 32] {
    expand32_parts(prk, &[info])
}

/// HKDF-Expand(prk, info) to 32 bytes, where `info` is the concatenation of `info_parts`:
/// one block, T(1) = HMAC(prk, info || 0x01), from the pre-keyed HMAC state (RFC 5869
/// section 2.3 with L = 32). No allocation.
pub(crate) fn expand32_parts(prk: &Prk, info_parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = prk.mac.clone();
    for part in info_parts {
        mac.update(part);
    }
    mac.update(&[1]);
    mac.finalize().into_bytes().into()
}

/// HKDF-SHA256: extract with `salt` and `ikm`, then expand with `info` into `okm`.
///
/// # Errors
/// [`HkdfLengthError`] if `okm` is longer than 8160 bytes.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], okm: &mut [u8]) -> Result<(), HkdfLengthError> {
    expand(&extract(salt, ikm), info, okm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5869_case_1() {
        let ikm = [0x0b; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let mut okm = [0u8; 42];
        hkdf_sha256(&salt, &ikm, &info, &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
        let mut too_long = vec![0u8; 8161];
        assert_eq!(hkdf_sha256(&salt, &ikm, &info, &mut too_long), Err(HkdfLengthError));
    }

    /// The pre-keyed expand against the `hkdf` crate, for split and whole info strings.
    #[test]
    fn expand32_matches_hkdf() {
        let prk = extract(b"salt", b"input key material");
        for info in [&b""[..], b"x", &[7u8; 64], &[9u8; 200]] {
            let mut expect = [0u8; 32];
            hkdf_sha256(b"salt", b"input key material", info, &mut expect).unwrap();
            assert_eq!(expand32(&prk, info), expect);
            let (a, b) = info.split_at(info.len() / 2);
            assert_eq!(expand32_parts(&prk, &[a, b]), expect);
        }
        // RFC 5869 case 3 (empty salt and info), first 32 bytes.
        let prk = extract(&[], &[0x0b; 22]);
        assert_eq!(
            hex::encode(expand32(&prk, &[])),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        );
    }
}
