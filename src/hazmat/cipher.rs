//! One AEAD instance of any [`Suite`], dispatched statically on a small enum.

use aead::{AeadInOut, KeyInit, Nonce, Tag};
use chacha20poly1305::XChaCha20Poly1305;
use core::fmt;

use super::XAes256Gcm;
use super::gcm::Gcm;
use crate::Suite;
use crate::backend::{Backend, BackendUnavailable};

/// An AEAD cipher of one [`Suite`] under one 256-bit key.
///
/// The crate's record, key-wrapping and backup paths all go through this type, and the
/// Wycheproof known-answer tests drive it directly.
///
/// The AES-GCM suites run on a [`Backend`]: [`SuiteCipher::new`] takes the default one,
/// [`SuiteCipher::with_backend`] a chosen one. The output does not depend on the backend.
///
/// # Security
/// The caller chooses nonces here: never repeat a nonce under one key, and never use
/// random 96-bit nonces with [`Suite::Aes256Gcm`] under a long-lived key. The record and
/// backup APIs generate nonces for you.
pub struct SuiteCipher {
    inner: Inner,
}

#[allow(clippy::large_enum_variant, reason = "one value per cipher, never in bulk; boxing would add an indirection")]
enum Inner {
    /// XAES-256-GCM: the subkey is derived per message (with the `aes` crate), then
    /// AES-256-GCM runs on the backend.
    XAes(XAes256Gcm, Backend),
    Aes(Gcm),
    XChaCha(XChaCha20Poly1305),
}

/// A failed AEAD operation (wrong nonce or tag length, or authentication failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AEAD operation failed")]
pub struct AeadError;

impl SuiteCipher {
    /// A cipher of `suite` under `key`, on the default [`Backend`] (AWS-LC when the `aws-lc`
    /// feature is on).
    pub fn new(suite: Suite, key: &[u8; 32]) -> Self {
        let inner = match suite {
            Suite::XAes256Gcm => Inner::XAes(XAes256Gcm::new(key.into()), Backend::default()),
            Suite::Aes256Gcm => Inner::Aes(Gcm::new_default(key)),
            Suite::XChaCha20Poly1305 => Inner::XChaCha(XChaCha20Poly1305::new(key.into())),
        };
        Self { inner }
    }

    /// A cipher of `suite` under `key` on exactly `backend` (for tests and comparisons: the
    /// output is the same on every backend).
    ///
    /// # Errors
    /// [`BackendUnavailable`] if `backend` is not compiled into this build, or does not
    /// implement `suite` (only [`Backend::RustCrypto`] implements XChaCha20-Poly1305).
    ///
    /// # Example
    /// ```
    /// use atrest::Suite;
    /// use atrest::Backend;
    /// use atrest::hazmat::SuiteCipher;
    /// for backend in Backend::available() {
    ///     let c = SuiteCipher::with_backend(Suite::Aes256Gcm, &[1; 32], *backend)?;
    ///     assert_eq!(c.backend(), *backend);
    /// }
    /// # Ok::<(), atrest::BackendUnavailable>(())
    /// ```
    pub fn with_backend(suite: Suite, key: &[u8; 32], backend: Backend) -> Result<Self, BackendUnavailable> {
        let unavailable = BackendUnavailable { backend, suite };
        let inner = match suite {
            _ if !backend.is_available() => return Err(unavailable),
            Suite::XAes256Gcm => Inner::XAes(XAes256Gcm::new(key.into()), backend),
            Suite::Aes256Gcm => Inner::Aes(Gcm::new(backend, key).ok_or(unavailable)?),
            Suite::XChaCha20Poly1305 if backend == Backend::RustCrypto => {
                Inner::XChaCha(XChaCha20Poly1305::new(key.into()))
            }
            Suite::XChaCha20Poly1305 => return Err(unavailable),
        };
        Ok(Self { inner })
    }

    /// The suite of this cipher.
    pub fn suite(&self) -> Suite {
        match self.inner {
            Inner::XAes(..) => Suite::XAes256Gcm,
            Inner::Aes(_) => Suite::Aes256Gcm,
            Inner::XChaCha(_) => Suite::XChaCha20Poly1305,
        }
    }

    /// The backend this cipher runs on.
    pub fn backend(&self) -> Backend {
        match &self.inner {
            Inner::XAes(_, b) => *b,
            Inner::Aes(g) => g.backend(),
            Inner::XChaCha(_) => Backend::RustCrypto,
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
            Inner::XAes(a, Backend::RustCrypto) => go(a, nonce, aad, buf),
            Inner::XAes(a, b) => {
                let (prefix, suffix) = split_xaes_nonce(nonce)?;
                a.derive_gcm(prefix, *b).ok_or(AeadError)?.seal(suffix, aad, buf)
            }
            Inner::Aes(g) => g.seal(<&[u8; 12]>::try_from(nonce).map_err(|_| AeadError)?, aad, buf),
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
            Inner::XAes(a, Backend::RustCrypto) => go(a, nonce, aad, buf, tag),
            Inner::XAes(a, b) => split_xaes_nonce(nonce)
                .and_then(|(prefix, suffix)| a.derive_gcm(prefix, *b).ok_or(AeadError)?.open(suffix, aad, buf, tag)),
            Inner::Aes(g) => match <&[u8; 12]>::try_from(nonce) {
                Ok(n) => g.open(n, aad, buf, tag),
                Err(_) => Err(AeadError),
            },
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

/// Splits a 24-byte XAES-256-GCM nonce into its 96-bit prefix and suffix.
fn split_xaes_nonce(nonce: &[u8]) -> Result<(&[u8; 12], &[u8; 12]), AeadError> {
    let (prefix, suffix) = nonce.split_first_chunk::<12>().ok_or(AeadError)?;
    Ok((prefix, <&[u8; 12]>::try_from(suffix).map_err(|_| AeadError)?))
}

impl fmt::Debug for SuiteCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SuiteCipher {{ suite: {}, backend: {}, .. }}", self.suite(), self.backend())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITES: [Suite; 3] = [Suite::XAes256Gcm, Suite::Aes256Gcm, Suite::XChaCha20Poly1305];

    fn ciphers(suite: Suite, key: &[u8; 32]) -> Vec<SuiteCipher> {
        let mut v = vec![SuiteCipher::new(suite, key)];
        v.extend(Backend::available().iter().filter_map(|b| SuiteCipher::with_backend(suite, key, *b).ok()));
        v
    }

    #[test]
    fn backend_selection() {
        for suite in SUITES {
            let c = SuiteCipher::new(suite, &[7; 32]);
            let expected = if suite == Suite::XChaCha20Poly1305 { Backend::RustCrypto } else { Backend::default() };
            assert_eq!(c.backend(), expected, "{suite}");
            assert_eq!(
                SuiteCipher::with_backend(suite, &[7; 32], Backend::RustCrypto).unwrap().backend(),
                Backend::RustCrypto
            );
            let aws = SuiteCipher::with_backend(suite, &[7; 32], Backend::AwsLc);
            if cfg!(feature = "aws-lc") && suite != Suite::XChaCha20Poly1305 {
                assert_eq!(aws.unwrap().backend(), Backend::AwsLc);
            } else {
                assert_eq!(aws.unwrap_err(), BackendUnavailable { backend: Backend::AwsLc, suite });
            }
            assert!(format!("{c:?}").contains(c.backend().name()));
        }
        assert_eq!(ciphers(Suite::Aes256Gcm, &[0; 32]).len(), 1 + Backend::available().len());
    }

    /// Sealed with one backend, opened with every other; identical bytes.
    #[test]
    fn cross_backend_identical_output() {
        for suite in [Suite::XAes256Gcm, Suite::Aes256Gcm] {
            let key = [0x5a; 32];
            let nonce: Vec<u8> = (0..=255u8).take(suite.nonce_len()).collect();
            for len in [0usize, 1, 16, 33, 300, 5000] {
                let pt = vec![0xc3u8; len];
                let cs = ciphers(suite, &key);
                let sealed: Vec<Vec<u8>> = cs.iter().map(|c| c.seal(&nonce, b"ad", &pt).unwrap()).collect();
                assert!(sealed.iter().all(|s| s == &sealed[0]), "{suite} len {len}");
                for (s, sealer) in sealed.iter().zip(&cs) {
                    for opener in &cs {
                        let what = format!("{suite} {} -> {}", sealer.backend(), opener.backend());
                        assert_eq!(opener.open(&nonce, b"ad", s).unwrap(), pt, "{what}");
                        let mut bad = s.clone();
                        bad[len / 2] ^= 0x80;
                        assert!(opener.open(&nonce, b"ad", &bad).is_err(), "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn round_trip_every_suite_and_reject_bad_lengths() {
        for c in SUITES.iter().flat_map(|s| ciphers(*s, &[7; 32])) {
            let suite = c.suite();
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
