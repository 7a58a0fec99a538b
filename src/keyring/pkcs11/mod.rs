//! A root key held in a PKCS#11 token (an HSM, or SoftHSM2 for development and CI).
//!
//! The root key is an AES-256 secret key object that never leaves the token. Wrapping runs
//! `CKM_AES_GCM` inside the token; the library only sees wrapped bytes and unwrapped master
//! keys.
//!
//! # Files
//!
//! - `config`: [`Pkcs11Config`] and the PIN readers.
//! - `connection`: load the module, find the token, open a session; `login`: log in and
//!   check the PIN when the token is logged in already.
//! - `key`: find or generate the root key, and the policy it must meet.
//! - `pool`: the session pool and the reconnection after a lost session.
//! - `wrap`: the [`RootKeyProvider`] implementation and the wrapped format (version 1).
//! - `errors`: the one mapping from PKCS#11 return values to [`RootKeyError`].
//!
//! # Process-wide PKCS#11 state
//!
//! A PKCS#11 module is initialised once per process and its login state is per token and
//! per process, shared by every session. This module therefore never calls `C_Finalize`
//! (another provider, or another library in the process, may still use the module),
//! accepts `CKR_CRYPTOKI_ALREADY_INITIALIZED`, and, when the token is already logged in,
//! checks the PIN against the one that logged in earlier in this process, so that a wrong
//! PIN is reported as [`RootKeyError::WrongPin`] even then.
//!
//! # Lost sessions
//!
//! When the token reports that a session is gone (the device was removed or reset, another
//! part of the process called `C_Logout` or `C_Finalize`), the provider reconnects once:
//! it finds the token by label again, logs in with the configured PIN, finds the key by
//! label and checks that it is the same key (same `CKA_ID`, hence the same
//! [`key_id`](RootKeyProvider::key_id)), then retries the operation. If that fails the
//! caller gets [`RootKeyError::TokenRemoved`] (or the precise reason: key missing, wrong
//! PIN), and the next call tries again.

mod config;
mod connection;
mod errors;
mod key;
mod login;
mod pool;
mod wrap;

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use cryptoki::object::ObjectHandle;

pub use self::config::{PKCS11_PIN_ENV, Pkcs11Config};
use self::connection::Connection;
use self::pool::Live;
#[cfg(doc)]
use crate::RootKeyProvider;
use crate::error::RootKeyError;

/// A root key that never leaves a PKCS#11 token: master keys are wrapped and unwrapped with
/// `CKM_AES_GCM` inside the token.
///
/// The provider opens a few sessions once, logs in once and reuses them; it is `Send +
/// Sync` and serves concurrent calls on separate sessions.
///
/// If the token drops the sessions (device removed or reset, or other code in the process
/// called `C_Logout` or `C_Finalize`), the next call reconnects once: it finds the token by
/// label, logs in again, finds the key by label, checks that it is the same key (same
/// `key_id`) and retries. If that fails it returns [`RootKeyError::TokenRemoved`] (or the
/// precise reason, such as [`RootKeyError::KeyMissing`]), and the following call tries again
/// (except after [`RootKeyError::WrongPin`]: the PIN changed, and retrying it would lock it).
/// The keyring keeps unwrapped master keys in memory, so records keep sealing and opening
/// while the token is away; only loading and changing keyrings need it.
///
/// The wrapped format is `0x01 || iv (12) || AES-GCM ciphertext || tag (16)`, the IV fresh
/// from the operating system's CSPRNG for every wrap (or the token's own, if it replaces
/// it). Its [`key_id`](RootKeyProvider::key_id) is an RFC 7512 PKCS#11 URI naming the token label, the key label and the key's `CKA_ID`
/// (public facts, no key material), for example
/// `pkcs11:token=atrest;object=root;id=%3A%9F...`. It carries no token serial number, so a
/// key cloned to another HSM of a cluster (same labels, same `CKA_ID`) has the same id.
///
/// # Example
/// ```no_run
/// use atrest::{Keyring, PKCS11_PIN_ENV, Pkcs11Config, Pkcs11RootKey};
/// let pin = Pkcs11Config::pin_from_env(PKCS11_PIN_ENV)?;
/// let config = Pkcs11Config::new("/usr/lib/softhsm/libsofthsm2.so", "atrest", "root", pin);
/// let root = Pkcs11RootKey::open_or_generate(&config)?;
/// let keyring = Keyring::create(std::path::Path::new("keyring.atrk"), root)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Security
/// - Refuses a key that may leave the token, or could leave it earlier
///   (`CKA_NEVER_EXTRACTABLE` or `CKA_ALWAYS_SENSITIVE` false), unless
///   [`Pkcs11Config::allow_extractable`].
/// - Unwrapping fails with [`RootKeyError::Authentication`] on any modified byte, other
///   associated data, or another key; output of an unexpected length is never accepted.
/// - The PIN logs in once per connection. The provider keeps it (a
///   [`SecretString`](secrecy::SecretString),
///   zeroized on drop) only to log in again after a lost session; it appears in no `Debug`
///   output and no error.
/// - Unwrapped master keys pass through the PKCS#11 module's and this process's memory
///   (as with any `C_Decrypt`); this crate wraps them in zeroizing types at once.
pub struct Pkcs11RootKey {
    /// Kept to reconnect after a lost session (the PIN is zeroized on drop).
    config: Pkcs11Config,
    id: String,
    live: ArcSwap<Live>,
    /// Serializes reconnections.
    reconnect: Mutex<()>,
    /// Set once the token refused the PIN on a reconnection: never try it again (an HSM locks
    /// the PIN after a few wrong attempts).
    pin_refused: AtomicBool,
}

impl core::fmt::Debug for Pkcs11RootKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pkcs11RootKey")
            .field("module", &self.config.module)
            .field("token", &self.config.token_label)
            .field("key", &self.config.key_label)
            .finish_non_exhaustive()
    }
}

impl Pkcs11RootKey {
    /// Loads the module, finds the token, logs in and finds the root key by its label.
    ///
    /// # Errors
    /// [`RootKeyError::ModuleNotFound`], [`RootKeyError::TokenNotFound`],
    /// [`RootKeyError::WrongPin`], [`RootKeyError::MechanismUnsupported`] (no `CKM_AES_GCM`),
    /// [`RootKeyError::KeyMissing`], [`RootKeyError::KeyExtractable`],
    /// [`RootKeyError::KeyWasExtractable`] (unless [`Pkcs11Config::allow_extractable`]),
    /// [`RootKeyError::Pkcs11`] (two keys with the label, not an AES-256 key, not usable
    /// for encryption and decryption, other token failures).
    pub fn open(config: &Pkcs11Config) -> Result<Self, RootKeyError> {
        let conn = Connection::establish(config)?;
        let key = conn.existing_key(config)?;
        Self::from_connection(config, conn, key)
    }

    /// As [`open`](Pkcs11RootKey::open), but if no key has the label, generates one in the
    /// token: AES-256 with `CKA_TOKEN`, `CKA_PRIVATE` and `CKA_SENSITIVE` true,
    /// `CKA_EXTRACTABLE` false, `CKA_ENCRYPT` and `CKA_DECRYPT` true, and a random 16-byte
    /// `CKA_ID`.
    ///
    /// Generation is serialized within this process. Two *processes* provisioning the same
    /// label at the same moment can each create a key; every later `open` then refuses the
    /// duplicate label, so provision once (for example with `scripts/softhsm-setup` or a
    /// deployment step) rather than racing.
    ///
    /// # Errors
    /// As [`open`](Pkcs11RootKey::open), and [`RootKeyError::MechanismUnsupported`] if the
    /// token cannot generate AES keys.
    pub fn open_or_generate(config: &Pkcs11Config) -> Result<Self, RootKeyError> {
        let conn = Connection::establish(config)?;
        let key = conn.key_or_generate(config)?;
        Self::from_connection(config, conn, key)
    }

    fn from_connection(config: &Pkcs11Config, conn: Connection, key: ObjectHandle) -> Result<Self, RootKeyError> {
        let (live, id) = Live::open(conn, config, key, 0)?;
        Ok(Self {
            config: config.clone(),
            id,
            live: ArcSwap::from_pointee(live),
            reconnect: Mutex::new(()),
            pin_refused: AtomicBool::new(false),
        })
    }
}
