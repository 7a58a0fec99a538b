//! A tenant's record key with its cached XAES-256-GCM state (see the `record` module docs
//! for the nonce argument).

use std::sync::{Arc, Mutex, PoisonError};

use aead::KeyInit;
use rand::Rng;

use crate::Suite;
use crate::error::{OpenError, SealError};
use crate::hazmat::{Backend, Gcm, SuiteCipher, XAes256Gcm};
use crate::secret::{TenantKey, random_array};

/// Records sealed under one nonce prefix before a new prefix is drawn.
pub(crate) const PREFIX_LIMIT: u64 = 1 << 28;

/// The current sealing prefix with its derived AES-256-GCM instance.
struct Prefix {
    /// Detects that this process is a fork of the one that drew the prefix.
    fork: ForkCheck,
    prefix: [u8; 12],
    gcm: Arc<Gcm>,
    uses: u64,
}

/// Whether the current process is a fork of the one that made this value.
///
/// The check runs on every seal, so it must not cost a system call: a `pthread_atfork`
/// child handler (from `forkguard`) bumps a counter in the child as part of `fork()`
/// itself, before `fork()` returns there, and the check compares that counter (one relaxed
/// atomic load). If the handler cannot be registered, the process id is compared instead
/// (`getpid`, a system call per seal).
enum ForkCheck {
    Atfork(forkguard::Guard),
    Pid(u32),
}

impl ForkCheck {
    fn new() -> Self {
        match forkguard::Guard::try_new() {
            Ok(g) => ForkCheck::Atfork(g),
            Err(_) => ForkCheck::Pid(std::process::id()),
        }
    }

    /// True in a process forked since this value was made (and after the first such call,
    /// still true: the caller replaces the value).
    fn forked(&mut self) -> bool {
        match self {
            ForkCheck::Atfork(g) => g.detected_fork(),
            ForkCheck::Pid(pid) => *pid != std::process::id(),
        }
    }
}

/// The record key of one tenant and key version.
pub(crate) struct RecordKey {
    key: TenantKey,
    xaes: XAes256Gcm,
    current: Mutex<Option<Prefix>>,
    /// The last prefix opened that was not the sealing prefix (records sealed together,
    /// by another process or an earlier prefix, open together).
    last_opened: Mutex<Option<([u8; 12], Arc<Gcm>)>>,
}

impl RecordKey {
    pub(crate) fn new(key: TenantKey) -> Self {
        let xaes = XAes256Gcm::new(key.expose_secret().into());
        Self { key, xaes, current: Mutex::new(None), last_opened: Mutex::new(None) }
    }

    fn derive(&self, prefix: &[u8; 12]) -> Gcm {
        match self.xaes.derive_gcm(prefix, Backend::default()) {
            Some(g) => g,
            None => Gcm::new_default(&self.xaes.derive_key(prefix)),
        }
    }

    /// The prefix and AES-256-GCM instance to seal with now.
    fn sealing_prefix(&self) -> Result<([u8; 12], Arc<Gcm>), SealError> {
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = cur.as_mut()
            && !p.fork.forked()
            && p.uses < PREFIX_LIMIT
        {
            p.uses += 1;
            return Ok((p.prefix, p.gcm.clone()));
        }
        let fork = ForkCheck::new();
        let prefix: [u8; 12] = random_array()?;
        let gcm = Arc::new(self.derive(&prefix));
        *cur = Some(Prefix { fork, prefix, gcm: gcm.clone(), uses: 1 });
        Ok((prefix, gcm))
    }

    /// The AES-256-GCM instance for an opening prefix: the sealing one if it matches, else
    /// the last one opened if it matches, else a new one (which becomes the last opened).
    fn opening_gcm(&self, prefix: &[u8; 12]) -> Arc<Gcm> {
        if let Some(p) = self.current.lock().unwrap_or_else(PoisonError::into_inner).as_ref()
            && &p.prefix == prefix
        {
            return p.gcm.clone();
        }
        if let Some((p, g)) = self.last_opened.lock().unwrap_or_else(PoisonError::into_inner).as_ref()
            && p == prefix
        {
            return g.clone();
        }
        let gcm = Arc::new(self.derive(prefix));
        *self.last_opened.lock().unwrap_or_else(PoisonError::into_inner) = Some((*prefix, gcm.clone()));
        gcm
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
                let mut suffix = [0u8; 12];
                rand::rng().fill_bytes(&mut suffix);
                suffix_out.copy_from_slice(&suffix);
                gcm.seal(&suffix, aad, body)
                    .map_err(|_| SealError::TooLarge { len: body.len(), limit: super::MAX_RECORD_LEN })
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
                let suffix = <&[u8; 12]>::try_from(suffix).map_err(|_| OpenError::Authentication)?;
                // Gcm::open zeroes `body` on failure.
                self.opening_gcm(prefix).open(suffix, aad, body, tag).map_err(|_| OpenError::Authentication)
            }
            Suite::XChaCha20Poly1305 => SuiteCipher::new(suite, self.key.expose_secret())
                .decrypt_detached(nonce, aad, body, tag)
                .map_err(|_| OpenError::Authentication),
            _ => Err(OpenError::Authentication),
        }
    }
}
