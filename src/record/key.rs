//! A tenant's record key with its cached XAES-256-GCM state (see the `record` module docs
//! for the nonce argument).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aead::KeyInit;
use arc_swap::ArcSwapOption;
use rand::Rng;

use crate::Suite;
use crate::error::{OpenError, SealError};
use crate::hazmat::{Backend, Gcm, SuiteCipher, XAes256Gcm};
use crate::secret::{TenantKey, random_array};

/// Records sealed under one nonce prefix before a new prefix is drawn.
pub(crate) const PREFIX_LIMIT: u64 = 1 << 28;

/// A sealing prefix with its derived AES-256-GCM instance (keyed once).
struct Prefix {
    /// Detects that this process is a fork of the one that drew the prefix.
    fork: ForkCheck,
    prefix: [u8; 12],
    gcm: Gcm,
    uses: AtomicU64,
}

/// An opening prefix with its derived AES-256-GCM instance.
struct Opened {
    prefix: [u8; 12],
    gcm: Gcm,
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

    /// True in a process forked since this value was made.
    fn forked(&self) -> bool {
        match self {
            // A copy, so the value keeps the count from when it was made.
            ForkCheck::Atfork(g) => g.clone().detected_fork(),
            ForkCheck::Pid(pid) => *pid != std::process::id(),
        }
    }
}

/// The record key of one tenant and key version.
///
/// Sealing and opening take no lock: the current prefix is read through an `ArcSwap`
/// (no reference count touched on the fast path) and counted with one atomic add.
pub(crate) struct RecordKey {
    key: TenantKey,
    xaes: XAes256Gcm,
    current: ArcSwapOption<Prefix>,
    /// The last prefix opened that was not the sealing prefix (records sealed together,
    /// by another process or under an earlier prefix, open together).
    last_opened: ArcSwapOption<Opened>,
}

impl RecordKey {
    pub(crate) fn new(key: TenantKey) -> Self {
        let xaes = XAes256Gcm::new(key.expose_secret().into());
        Self { key, xaes, current: ArcSwapOption::empty(), last_opened: ArcSwapOption::empty() }
    }

    fn derive(&self, prefix: &[u8; 12]) -> Gcm {
        match self.xaes.derive_gcm(prefix, Backend::default()) {
            Some(g) => g,
            None => Gcm::new_default(&self.xaes.derive_key(prefix)),
        }
    }

    /// Seals with the current prefix: fills `nonce` (24 bytes), encrypts `input` into
    /// `output` (same length), returns the tag. Draws a new prefix first if there is none,
    /// it reached [`PREFIX_LIMIT`], or this process is a fork of the one that drew it.
    fn seal_xaes(&self, nonce: &mut [u8], aad: &[u8], input: &[u8], output: &mut [u8]) -> Result<[u8; 16], SealError> {
        let too_large = || SealError::TooLarge { len: input.len(), limit: super::MAX_RECORD_LEN };
        let (prefix_out, suffix_out) = nonce.split_at_mut_checked(12).ok_or_else(too_large)?;
        let mut suffix = [0u8; 12];
        rand::rng().fill_bytes(&mut suffix);
        suffix_out.copy_from_slice(&suffix);
        {
            let cur = self.current.load();
            if let Some(p) = cur.as_ref()
                && !p.fork.forked()
                && p.uses.fetch_add(1, Ordering::Relaxed) < PREFIX_LIMIT
            {
                prefix_out.copy_from_slice(&p.prefix);
                return p.gcm.seal_to(&suffix, aad, input, output).map_err(|_| too_large());
            }
        }
        // A new prefix. Two threads may both get here; each seals under its own fresh
        // prefix and the last one stored stays current.
        let fork = ForkCheck::new();
        let prefix: [u8; 12] = random_array()?;
        let fresh = Arc::new(Prefix { fork, prefix, gcm: self.derive(&prefix), uses: AtomicU64::new(1) });
        prefix_out.copy_from_slice(&prefix);
        let tag = fresh.gcm.seal_to(&suffix, aad, input, output).map_err(|_| too_large());
        self.current.store(Some(fresh));
        tag
    }

    /// Opens under `prefix`: with the sealing instance if it matches, else the last opened
    /// one if it matches, else a new one (which becomes the last opened).
    fn open_xaes(
        &self,
        prefix: &[u8; 12],
        suffix: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        tag: &[u8],
        output: &mut [u8],
    ) -> Result<(), OpenError> {
        let open = |gcm: &Gcm, output: &mut [u8]| {
            gcm.open_to(suffix, aad, input, tag, output).map_err(|_| OpenError::Authentication)
        };
        if let Some(p) = self.current.load().as_ref()
            && &p.prefix == prefix
        {
            return open(&p.gcm, output);
        }
        if let Some(o) = self.last_opened.load().as_ref()
            && &o.prefix == prefix
        {
            return open(&o.gcm, output);
        }
        let fresh = Arc::new(Opened { prefix: *prefix, gcm: self.derive(prefix) });
        let r = open(&fresh.gcm, output);
        self.last_opened.store(Some(fresh));
        r
    }

    /// Fills `nonce` (24 bytes), encrypts `input` into `output` (same length), returns the
    /// tag.
    pub(crate) fn seal_detached(
        &self,
        suite: Suite,
        nonce: &mut [u8],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<[u8; 16], SealError> {
        match suite {
            Suite::XAes256Gcm => self.seal_xaes(nonce, aad, input, output),
            Suite::XChaCha20Poly1305 => {
                let n: [u8; 24] = random_array()?;
                let nonce_out = <&mut [u8; 24]>::try_from(nonce).map_err(|_| SealError::UnsupportedSuite(suite))?;
                *nonce_out = n;
                let body = output.get_mut(..input.len()).ok_or(SealError::UnsupportedSuite(suite))?;
                body.copy_from_slice(input);
                SuiteCipher::new(suite, self.key.expose_secret())
                    .encrypt_detached(&n, aad, body)
                    .map_err(|_| SealError::TooLarge { len: input.len(), limit: super::MAX_RECORD_LEN })
            }
            other => Err(SealError::UnsupportedSuite(other)),
        }
    }

    /// Verifies `tag` and decrypts `input` into `output` (same length; zeroed on failure).
    pub(crate) fn open_detached(
        &self,
        suite: Suite,
        nonce: &[u8],
        aad: &[u8],
        input: &[u8],
        tag: &[u8],
        output: &mut [u8],
    ) -> Result<(), OpenError> {
        let r = match suite {
            Suite::XAes256Gcm => match nonce.split_first_chunk::<12>() {
                Some((prefix, suffix)) => match <&[u8; 12]>::try_from(suffix) {
                    Ok(suffix) => self.open_xaes(prefix, suffix, aad, input, tag, output),
                    Err(_) => Err(OpenError::Authentication),
                },
                None => Err(OpenError::Authentication),
            },
            Suite::XChaCha20Poly1305 => match output.get_mut(..input.len()) {
                Some(body) => {
                    body.copy_from_slice(input);
                    SuiteCipher::new(suite, self.key.expose_secret())
                        .decrypt_detached(nonce, aad, body, tag)
                        .map_err(|_| OpenError::Authentication)
                }
                None => Err(OpenError::Authentication),
            },
            _ => Err(OpenError::Authentication),
        };
        if r.is_err() {
            output.fill(0);
        }
        r
    }
}
