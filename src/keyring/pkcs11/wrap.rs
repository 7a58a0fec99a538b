//! Wrapping and unwrapping master keys with `CKM_AES_GCM` inside the token.
//!
//! # Wrapped format (version 1)
//!
//! ```text
//! 0x01 || iv (12) || ciphertext (len of the key) || tag (16)
//! ```
//!
//! - `iv`: 12 bytes from the operating system's CSPRNG, fresh for every wrap. A token that
//!   generates IVs itself (some FIPS-mode HSMs write their IV back into the parameters) is
//!   honoured: the IV stored is the one the token used. Random 96-bit IVs are safe here
//!   because a root key wraps very few keys (one per keyring creation, rotation and root
//!   rewrap), far below the 2^32 messages NIST SP 800-38D allows per key with random IVs.
//! - The associated data is what the keyring passes (it names the keyring id and the slot,
//!   for example the master version), so a wrapped key cannot be moved to another keyring
//!   or slot.
//! - The tag is 128 bits.

use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::types::Ulong;

use super::Pkcs11RootKey;
use super::errors::to_root_error;
use crate::RootKeyProvider;
use crate::error::RootKeyError;
use crate::secret::{SecretBytes, random_array};

const WRAP_VERSION: u8 = 1;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TAG_BITS: usize = 128;

impl RootKeyProvider for Pkcs11RootKey {
    fn key_id(&self) -> String {
        self.id.clone()
    }

    fn wrap(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, RootKeyError> {
        let tag_bits = Ulong::try_from(TAG_BITS).map_err(to_root_error)?;
        let mut iv = [0u8; IV_LEN];
        let mut rng_failed = None;
        let sealed = self.run(|session, handle| {
            // A fresh IV for every attempt, so a retry after a lost session never repeats one.
            iv = random_array().map_err(|e| {
                rng_failed = Some(e);
                CkError::InvalidValue
            })?;
            let params = GcmParams::new(&mut iv, aad, tag_bits)?;
            session.encrypt(&Mechanism::AesGcm(params), handle, key)
        });
        if let Some(e) = rng_failed {
            return Err(e.into());
        }
        let sealed = sealed?;
        let expected = key.len().checked_add(TAG_LEN).ok_or(RootKeyError::Authentication)?;
        if sealed.len() != expected {
            return Err(RootKeyError::Pkcs11(format!(
                "the token returned {} bytes for AES-GCM, expected {expected}",
                sealed.len()
            )));
        }
        let mut out = Vec::with_capacity(1 + IV_LEN + expected);
        out.push(WRAP_VERSION);
        // The IV the token used: the one generated above, unless the token replaced it.
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretBytes, RootKeyError> {
        let (iv, sealed) = parse(wrapped).ok_or(RootKeyError::Authentication)?;
        let expected = sealed.len().checked_sub(TAG_LEN).ok_or(RootKeyError::Authentication)?;
        let tag_bits = Ulong::try_from(TAG_BITS).map_err(to_root_error)?;
        // A failure of C_Decrypt itself is an authentication failure (see `errors`).
        let plain = self.run(|session, handle| {
            let mut iv = *iv;
            let params = GcmParams::new(&mut iv, aad, tag_bits)?;
            session.decrypt(&Mechanism::AesGcm(params), handle, sealed).map(SecretBytes::new)
        })?;
        // Never treat "success" with output of the wrong length as an unwrap.
        if plain.len() != expected {
            return Err(RootKeyError::Authentication);
        }
        Ok(plain)
    }
}

/// Splits a wrapped key of version 1 into its IV and `ciphertext || tag`.
fn parse(wrapped: &[u8]) -> Option<(&[u8; IV_LEN], &[u8])> {
    match wrapped.split_first() {
        Some((&WRAP_VERSION, rest)) => rest.split_first_chunk::<IV_LEN>(),
        _ => None,
    }
}
