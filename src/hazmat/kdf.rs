//! HKDF-SHA256 (RFC 5869), as used for every key derivation in the crate.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The requested output is longer than HKDF-SHA256 can produce (255 * 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HKDF-SHA256 output length is limited to 8160 bytes")]
pub struct HkdfLengthError;

/// A pseudorandom key from HKDF-Extract, zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct Prk([u8; 32]);

/// HKDF-Extract(salt, ikm).
pub(crate) fn extract(salt: &[u8], ikm: &[u8]) -> Prk {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), ikm);
    let mut out = [0u8; 32];
    out.copy_from_slice(&prk);
    Prk(out)
}

fn expand(prk: &Prk, info: &[u8], okm: &mut [u8]) -> Result<(), HkdfLengthError> {
    // A 32-byte PRK is always valid for SHA-256; only the output length can fail.
    let hk = Hkdf::<Sha256>::from_prk(&prk.0).map_err(|_| HkdfLengthError)?;
    hk.expand(info, okm).map_err(|_| HkdfLengthError)
}

/// HKDF-Expand(prk, info) to 32 bytes: a length HKDF-SHA256 always produces.
#[allow(clippy::expect_used, reason = "a 32-byte PRK and a 32-byte output are always within HKDF-SHA256's limits")]
pub(crate) fn expand32(prk: &Prk, info: &[u8]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    expand(prk, info, &mut okm).expect("32-byte HKDF-SHA256 output");
    okm
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
}
