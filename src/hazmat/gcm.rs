//! AES-256-GCM under one key from one of the crate's backends: RustCrypto's `aes-gcm`
//! (always built) or AWS-LC through `aws-lc-rs` (feature `aws-lc`). Both produce the same
//! bytes for the same key, nonce, associated data and plaintext; the cross-backend and
//! Wycheproof tests hold them to that.

use aead::consts::U12;
use aead::{AeadInOut, KeyInit, inout::InOutBuf};
use aes_gcm::AesGcm;

/// AES-256-GCM on an encryption-only key schedule (GCM never runs the block cipher
/// backwards): 240 bytes of round keys instead of 480, and no inverse schedule to compute
/// when a key is made (a record key makes one per nonce prefix).
type Aes256GcmEnc = AesGcm<aes::Aes256Enc, U12>;

use super::AeadError;
use crate::backend::Backend;

/// AES-256-GCM keyed once (the key schedule and GHASH key are computed here, not per
/// message), from a chosen backend.
///
/// Held inline (not boxed): a cached record key reaches its AES round keys without one more
/// pointer to follow, which matters when 100,000 tenants' keys do not fit in the CPU caches.
#[allow(clippy::large_enum_variant, reason = "inline on purpose (see above); AWS-LC boxes its own context")]
pub(crate) enum Gcm {
    RustCrypto(Aes256GcmEnc),
    #[cfg(feature = "aws-lc")]
    AwsLc(aws_lc_rs::aead::LessSafeKey),
}

impl Gcm {
    /// `key` under `backend`; [`None`] if the backend is not compiled in (or, for AWS-LC,
    /// could not allocate its context).
    pub(crate) fn new(backend: Backend, key: &[u8; 32]) -> Option<Self> {
        match backend {
            Backend::RustCrypto => Some(Gcm::RustCrypto(Aes256GcmEnc::new(key.into()))),
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc => {
                let unbound = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key).ok()?;
                Some(Gcm::AwsLc(aws_lc_rs::aead::LessSafeKey::new(unbound)))
            }
            #[cfg(not(feature = "aws-lc"))]
            Backend::AwsLc => None,
        }
    }

    /// `key` under the default backend, falling back to RustCrypto if AWS-LC cannot make
    /// its context (the output is the same either way).
    pub(crate) fn new_default(key: &[u8; 32]) -> Self {
        match Self::new(Backend::default(), key) {
            Some(g) => g,
            None => Gcm::RustCrypto(Aes256GcmEnc::new(key.into())),
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Gcm::RustCrypto(_) => Backend::RustCrypto,
            #[cfg(feature = "aws-lc")]
            Gcm::AwsLc(_) => Backend::AwsLc,
        }
    }

    /// Encrypts `buf` in place; returns the tag.
    pub(crate) fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16], AeadError> {
        match self {
            Gcm::RustCrypto(g) => {
                let tag = g.encrypt_inout_detached(nonce.into(), aad, buf.into()).map_err(|_| AeadError)?;
                Ok(tag.into())
            }
            #[cfg(feature = "aws-lc")]
            Gcm::AwsLc(k) => {
                let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce);
                let tag =
                    k.seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::from(aad), buf).map_err(|_| AeadError)?;
                <[u8; 16]>::try_from(tag.as_ref()).map_err(|_| AeadError)
            }
        }
    }

    /// Encrypts `input` into `output` (same length); returns the tag.
    pub(crate) fn seal_to(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<[u8; 16], AeadError> {
        match self {
            Gcm::RustCrypto(g) => {
                let buf = InOutBuf::new(input, output).map_err(|_| AeadError)?;
                let tag = g.encrypt_inout_detached(nonce.into(), aad, buf).map_err(|_| AeadError)?;
                Ok(tag.into())
            }
            #[cfg(feature = "aws-lc")]
            Gcm::AwsLc(k) => {
                let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce);
                let mut tag = [0u8; 16];
                k.seal_out_of_place_scatter(nonce, aws_lc_rs::aead::Aad::from(aad), input, output, &[], &mut tag)
                    .map_err(|_| AeadError)?;
                Ok(tag)
            }
        }
    }

    /// Verifies `tag` and decrypts `buf` in place. On failure `buf` is zeroed, so no
    /// unauthenticated plaintext can be read from it.
    pub(crate) fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), AeadError> {
        let r = match (self, <&[u8; 16]>::try_from(tag)) {
            (_, Err(_)) => Err(AeadError),
            (Gcm::RustCrypto(g), Ok(tag)) => {
                g.decrypt_inout_detached(nonce.into(), aad, (&mut *buf).into(), tag.into()).map_err(|_| AeadError)
            }
            #[cfg(feature = "aws-lc")]
            (Gcm::AwsLc(k), Ok(tag)) => {
                let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce);
                k.open_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::from(aad), tag, buf)
                    .map(|_| ())
                    .map_err(|_| AeadError)
            }
        };
        if r.is_err() {
            buf.fill(0);
        }
        r
    }

    /// Verifies `tag` and decrypts `input` into `output` (same length). On failure `output`
    /// is zeroed. (Records open in place; the cross-backend tests still check this path.)
    #[cfg(test)]
    pub(crate) fn open_to(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        tag: &[u8],
        output: &mut [u8],
    ) -> Result<(), AeadError> {
        let r = match (self, <&[u8; 16]>::try_from(tag)) {
            (_, Err(_)) => Err(AeadError),
            (Gcm::RustCrypto(g), Ok(tag)) => match InOutBuf::new(input, &mut *output) {
                Ok(buf) => g.decrypt_inout_detached(nonce.into(), aad, buf, tag.into()).map_err(|_| AeadError),
                Err(_) => Err(AeadError),
            },
            #[cfg(feature = "aws-lc")]
            (Gcm::AwsLc(k), Ok(tag)) => {
                let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce);
                k.open_separate_gather(nonce, aws_lc_rs::aead::Aad::from(aad), input, tag, output)
                    .map_err(|_| AeadError)
            }
        };
        if r.is_err() {
            output.fill(0);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_backend_is_available_and_listed_first() {
        assert_eq!(Backend::available().first(), Some(&Backend::default()));
        assert!(Backend::available().iter().all(|b| b.is_available()));
        assert_eq!(Backend::AwsLc.is_available(), cfg!(feature = "aws-lc"));
        assert_eq!(Gcm::new(Backend::AwsLc, &[0; 32]).is_some(), cfg!(feature = "aws-lc"));
        assert_eq!(Gcm::new_default(&[0; 32]).backend(), Backend::default());
    }

    /// Every backend against every other: identical bytes, and each opens the other's output,
    /// in place and out of place, for lengths around the block and SIMD stride boundaries.
    #[test]
    fn backends_agree_both_ways() {
        let key = [0x42u8; 32];
        let nonce = [7u8; 12];
        let gcms: Vec<Gcm> = Backend::available().iter().map(|b| Gcm::new(*b, &key).unwrap()).collect();
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 4096, 65_537] {
            for aad in [&b""[..], b"a", &[9u8; 70]] {
                let pt: Vec<u8> = (0..=255u8).cycle().step_by(31).take(len).collect();
                let mut outs = Vec::new();
                for g in &gcms {
                    let mut inplace = pt.clone();
                    let tag = g.seal(&nonce, aad, &mut inplace).unwrap();
                    let mut outofplace = vec![0u8; len];
                    let tag2 = g.seal_to(&nonce, aad, &pt, &mut outofplace).unwrap();
                    assert_eq!((inplace.as_slice(), tag), (outofplace.as_slice(), tag2), "{} len {len}", g.backend());
                    outs.push((inplace, tag));
                }
                for (g, (ct, tag)) in gcms.iter().zip(&outs) {
                    assert_eq!((ct, tag), (&outs[0].0, &outs[0].1), "{} differs, len {len}", g.backend());
                }
                let (ct, tag) = &outs[0];
                for g in &gcms {
                    let mut buf = ct.clone();
                    g.open(&nonce, aad, &mut buf, tag).unwrap();
                    assert_eq!(buf, pt);
                    let mut out = vec![0u8; len];
                    g.open_to(&nonce, aad, ct, tag, &mut out).unwrap();
                    assert_eq!(out, pt);
                    // A flipped tag bit fails and leaves zeros behind.
                    let mut bad = *tag;
                    bad[0] ^= 1;
                    let mut buf = ct.clone();
                    assert!(g.open(&nonce, aad, &mut buf, &bad).is_err());
                    assert!(buf.iter().all(|b| *b == 0));
                    let mut out = vec![1u8; len];
                    assert!(g.open_to(&nonce, aad, ct, &bad, &mut out).is_err());
                    assert!(out.iter().all(|b| *b == 0));
                    // Short tags and mismatched lengths are refused.
                    assert!(g.open(&nonce, aad, &mut ct.clone(), &tag[..15]).is_err());
                    assert!(g.open_to(&nonce, aad, ct, tag, &mut vec![0u8; len + 1]).is_err());
                    assert!(g.seal_to(&nonce, aad, &pt, &mut vec![0u8; len + 1]).is_err());
                }
            }
        }
    }
}
