//! One AEAD instance of any [`Suite`], dispatched statically on a small enum.

use aead::{AeadInOut, KeyInit, Nonce, Tag};
use aes_gcm::Aes256Gcm;
use chacha20poly1305::XChaCha20Poly1305;
use core::fmt;

use super::XAes256Gcm;
use crate::Suite;

/// An AEAD cipher of one [`Suite`] under one 256-bit key.
///
/// The crate's record, key-wrapping and backup paths all go through this type, and the
/// Wycheproof known-answer tests drive it directly.
///
/// # Security
/// The caller chooses nonces here: never repeat a nonce under one key, and never use
/// random 96-bit nonces with [`Suite::Aes256Gcm`] under a long-lived key. The record and
/// backup APIs generate nonces for you.
pub struct SuiteCipher {
    inner: Inner,
}

enum Inner {
    XAes(XAes256Gcm),
    Aes(Aes256Gcm),
    XChaCha(XChaCha20Poly1305),
}

/// A failed AEAD operation (wrong nonce or tag length, or authentication failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AEAD operation failed")]
pub struct AeadError;

impl SuiteCipher {
    /// A cipher of `suite` under `key`.
    pub fn new(suite: Suite, key: &[u8; 32]) -> Self {
        let inner = match suite {
            Suite::XAes256Gcm => Inner::XAes(XAes256Gcm::new(key.into())),
            Suite::Aes256Gcm => Inner::Aes(Aes256Gcm::new(key.into())),
            Suite::XChaCha20Poly1305 => Inner::XChaCha(XChaCha20Poly1305::new(key.into())),
        };
        Self { inner }
    }

    /// The suite of this cipher.
    pub fn suite(&self) -> Suite {
        match self.inner {
            Inner::XAes(_) => Suite::XAes256Gcm,
            Inner::Aes(_) => Suite::Aes256Gcm,
            Inner::XChaCha(_) => Suite::XChaCha20Poly1305,
        }
    }

    /// Encrypts `buf` in place and returns the 16-byte tag.
    ///
    /// # Errors
    /// [`AeadError`] if `nonce` has the wrong length for the suite or the message is too long.
    pub fn encrypt_detached(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16], AeadError> {
        fn go<A: AeadInOut>(a: &A, nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16], AeadError> {
            let nonce = Nonce::<A>::try_from(nonce).map_err(|_| AeadError)?;
            let tag = a.encrypt_inout_detached(&nonce, aad, buf.into()).map_err(|_| AeadError)?;
            <[u8; 16]>::try_from(tag.as_slice()).map_err(|_| AeadError)
        }
        match &self.inner {
            Inner::XAes(a) => go(a, nonce, aad, buf),
            Inner::Aes(a) => go(a, nonce, aad, buf),
            Inner::XChaCha(a) => go(a, nonce, aad, buf),
        }
    }

    /// Verifies `tag` and only then decrypts `buf` in place. On failure `buf` is zeroed, so
    /// no unauthenticated plaintext can be read from it.
    ///
    /// # Errors
    /// [`AeadError`] on a wrong nonce or tag length or an authentication failure.
    pub fn decrypt_detached(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), AeadError> {
        fn go<A: AeadInOut>(a: &A, nonce: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), AeadError> {
            let nonce = Nonce::<A>::try_from(nonce).map_err(|_| AeadError)?;
            let tag = Tag::<A>::try_from(tag).map_err(|_| AeadError)?;
            a.decrypt_inout_detached(&nonce, aad, (&mut *buf).into(), &tag).map_err(|_| AeadError)
        }
        let r = match &self.inner {
            Inner::XAes(a) => go(a, nonce, aad, buf, tag),
            Inner::Aes(a) => go(a, nonce, aad, buf, tag),
            Inner::XChaCha(a) => go(a, nonce, aad, buf, tag),
        };
        if r.is_err() {
            buf.fill(0);
        }
        r
    }

    /// Encrypts `plaintext`, returning `ciphertext || tag`.
    ///
    /// # Errors
    /// As [`SuiteCipher::encrypt_detached`].
    pub fn seal(&self, nonce: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AeadError> {
        let mut out = Vec::with_capacity(plaintext.len() + 16);
        out.extend_from_slice(plaintext);
        let tag = self.encrypt_detached(nonce, aad, &mut out)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Verifies and decrypts `ciphertext || tag`.
    ///
    /// # Errors
    /// As [`SuiteCipher::decrypt_detached`]; also if the input is shorter than a tag.
    pub fn open(&self, nonce: &[u8], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AeadError> {
        let split = sealed.len().checked_sub(16).ok_or(AeadError)?;
        let (ct, tag) = sealed.split_at(split);
        let mut out = ct.to_vec();
        self.decrypt_detached(nonce, aad, &mut out, tag)?;
        Ok(out)
    }
}

impl fmt::Debug for SuiteCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SuiteCipher {{ suite: {}, .. }}", self.suite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_suite_and_reject_bad_lengths() {
        for suite in [Suite::XAes256Gcm, Suite::Aes256Gcm, Suite::XChaCha20Poly1305] {
            let c = SuiteCipher::new(suite, &[7; 32]);
            let nonce = vec![9u8; suite.nonce_len()];
            let sealed = c.seal(&nonce, b"aad", b"hello").unwrap();
            assert_eq!(c.open(&nonce, b"aad", &sealed).unwrap(), b"hello");
            assert!(c.open(&nonce, b"aae", &sealed).is_err());
            assert!(c.open(&nonce[1..], b"aad", &sealed).is_err());
            assert!(c.seal(&nonce[1..], b"aad", b"x").is_err());
            assert!(c.open(&nonce, b"aad", &sealed[..15]).is_err());
        }
    }
}
