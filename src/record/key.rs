//! A tenant's record key with its cached XAES-256-GCM state (see the `record` module docs
//! for the nonce argument).

use std::sync::{Arc, Mutex, PoisonError};

use aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use rand::Rng;

use crate::Suite;
use crate::error::{OpenError, SealError};
use crate::hazmat::{SuiteCipher, XAes256Gcm};
use crate::secret::{TenantKey, random_array};

/// Records sealed under one nonce prefix before a new prefix is drawn.
pub(crate) const PREFIX_LIMIT: u64 = 1 << 28;

struct Prefix {
    pid: u32,
    prefix: [u8; 12],
    gcm: Arc<Aes256Gcm>,
    uses: u64,
}

/// The record key of one tenant and key version.
pub(crate) struct RecordKey {
    key: TenantKey,
    xaes: XAes256Gcm,
    current: Mutex<Option<Prefix>>,
}

impl RecordKey {
    pub(crate) fn new(key: TenantKey) -> Self {
        let xaes = XAes256Gcm::new(key.expose_secret().into());
        Self { key, xaes, current: Mutex::new(None) }
    }

    /// The prefix and AES-256-GCM instance to seal with now.
    fn sealing_prefix(&self) -> Result<([u8; 12], Arc<Aes256Gcm>), SealError> {
        let pid = std::process::id();
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        match cur.as_mut() {
            Some(p) if p.pid == pid && p.uses < PREFIX_LIMIT => {
                p.uses += 1;
                Ok((p.prefix, p.gcm.clone()))
            }
            _ => {
                let prefix: [u8; 12] = random_array()?;
                let gcm = Arc::new(self.xaes.derive(&prefix));
                *cur = Some(Prefix { pid, prefix, gcm: gcm.clone(), uses: 1 });
                Ok((prefix, gcm))
            }
        }
    }

    /// The AES-256-GCM instance for an opening prefix: the sealing one if it matches.
    fn opening_gcm(&self, prefix: &[u8; 12]) -> Arc<Aes256Gcm> {
        let cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        match cur.as_ref() {
            Some(p) if &p.prefix == prefix => p.gcm.clone(),
            _ => {
                drop(cur);
                Arc::new(self.xaes.derive(prefix))
            }
        }
    }

    /// Fills `nonce` (24 bytes), encrypts `body` in place, returns the tag.
    pub(crate) fn seal_detached(
        &self,
        suite: Suite,
        nonce: &mut [u8],
        aad: &[u8],
        body: &mut [u8],
    ) -> Result<[u8; 16], SealError> {
        let (prefix_out, suffix_out) = nonce.split_at_mut_checked(12).ok_or(SealError::UnsupportedSuite(suite))?;
        match suite {
            Suite::XAes256Gcm => {
                let (prefix, gcm) = self.sealing_prefix()?;
                prefix_out.copy_from_slice(&prefix);
                rand::rng().fill_bytes(suffix_out);
                let suffix =
                    aead::Nonce::<Aes256Gcm>::try_from(&*suffix_out).map_err(|_| SealError::UnsupportedSuite(suite))?;
                let tag = gcm
                    .encrypt_inout_detached(&suffix, aad, body.into())
                    .map_err(|_| SealError::TooLarge { len: body.len(), limit: super::MAX_RECORD_LEN })?;
                let mut out = [0u8; 16];
                out.copy_from_slice(&tag);
                Ok(out)
            }
            Suite::XChaCha20Poly1305 => {
                let n: [u8; 24] = random_array()?;
                prefix_out.copy_from_slice(n.get(..12).unwrap_or_default());
                suffix_out.copy_from_slice(n.get(12..).unwrap_or_default());
                SuiteCipher::new(suite, self.key.expose_secret())
                    .encrypt_detached(&n, aad, body)
                    .map_err(|_| SealError::TooLarge { len: body.len(), limit: super::MAX_RECORD_LEN })
            }
            other => Err(SealError::UnsupportedSuite(other)),
        }
    }

    /// Verifies `tag` and decrypts `body` in place (zeroed on failure).
    pub(crate) fn open_detached(
        &self,
        suite: Suite,
        nonce: &[u8],
        aad: &[u8],
        body: &mut [u8],
        tag: &[u8],
    ) -> Result<(), OpenError> {
        match suite {
            Suite::XAes256Gcm => {
                let (prefix, suffix) = nonce.split_first_chunk::<12>().ok_or(OpenError::Authentication)?;
                let gcm = self.opening_gcm(prefix);
                let suffix = aead::Nonce::<Aes256Gcm>::try_from(suffix).map_err(|_| OpenError::Authentication)?;
                let tag = aead::Tag::<Aes256Gcm>::try_from(tag).map_err(|_| OpenError::Authentication)?;
                gcm.decrypt_inout_detached(&suffix, aad, (&mut *body).into(), &tag).map_err(|_| {
                    body.fill(0);
                    OpenError::Authentication
                })
            }
            Suite::XChaCha20Poly1305 => SuiteCipher::new(suite, self.key.expose_secret())
                .decrypt_detached(nonce, aad, body, tag)
                .map_err(|_| OpenError::Authentication),
            _ => Err(OpenError::Authentication),
        }
    }
}
