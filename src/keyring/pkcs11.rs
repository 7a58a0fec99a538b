//! A root key held in a PKCS#11 token (an HSM, or SoftHSM2 for development and CI).
//!
//! The root key is an AES-256 secret key object that never leaves the token. Wrapping runs
//! `CKM_AES_GCM` inside the token; the library only sees wrapped bytes and unwrapped master
//! keys.
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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use arc_swap::ArcSwap;

use cryptoki::context::Function;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::Ulong;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::root::RootKeyProvider;
use crate::error::RootKeyError;
use crate::secret::{SecretBytes, random_array};

/// The environment variable that holds the token's user PIN by convention (read it with
/// [`Pkcs11Config::pin_from_env`]).
pub const PKCS11_PIN_ENV: &str = "ATREST_PKCS11_PIN";

const WRAP_VERSION: u8 = 1;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TAG_BITS: usize = 128;
const KEY_LEN: usize = 32;
const CKA_ID_LEN: usize = 16;
/// Sessions kept open per provider: concurrent wraps run on different sessions.
const SESSIONS: usize = 4;

/// Where a PKCS#11 root key lives and how to log in to its token.
///
/// # Security
/// The PIN is a [`SecretString`]: zeroized on drop and never printed by `Debug`. Read it
/// from the environment ([`Pkcs11Config::pin_from_env`]) or from a file readable only by
/// its owner ([`Pkcs11Config::pin_from_file`]); never pass it on a command line.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (shared library), for example
    /// `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The label of the token that holds the root key.
    pub token_label: String,
    /// The label (`CKA_LABEL`) of the AES-256 root key object.
    pub key_label: String,
    /// The token's user PIN.
    pub pin: SecretString,
    /// Accept a root key that may leave the token (`CKA_EXTRACTABLE` true or
    /// `CKA_SENSITIVE` false). Off by default: such a key can be exported, and then it is
    /// no longer protected by the HSM.
    pub allow_extractable: bool,
}

impl Pkcs11Config {
    /// A configuration that refuses extractable keys.
    pub fn new(module: impl Into<PathBuf>, token_label: &str, key_label: &str, pin: SecretString) -> Self {
        Self {
            module: module.into(),
            token_label: token_label.to_owned(),
            key_label: key_label.to_owned(),
            pin,
            allow_extractable: false,
        }
    }

    /// Reads the PIN from the environment variable `var` (for example [`PKCS11_PIN_ENV`]).
    ///
    /// # Errors
    /// [`RootKeyError::EnvMissing`] if the variable is unset, empty or not UTF-8.
    pub fn pin_from_env(var: &str) -> Result<SecretString, RootKeyError> {
        let value = Zeroizing::new(std::env::var(var).map_err(|_| RootKeyError::EnvMissing(var.to_owned()))?);
        if value.is_empty() {
            return Err(RootKeyError::EnvMissing(var.to_owned()));
        }
        Ok(SecretString::from(value.as_str()))
    }

    /// Reads the PIN from a file (one trailing newline is removed). On Unix, refuses a file
    /// that group or others may read.
    ///
    /// # Errors
    /// [`RootKeyError::InsecurePermissions`]; [`RootKeyError::Io`] if the file cannot be
    /// read, is not UTF-8 or holds an empty PIN.
    pub fn pin_from_file(path: &Path) -> Result<SecretString, RootKeyError> {
        let io = |source| RootKeyError::Io { path: path.to_path_buf(), source };
        let text = crate::fs::read_private_file(path)?;
        let pin = text.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(text.as_str());
        if pin.is_empty() {
            return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidData, "the PIN file is empty")));
        }
        Ok(SecretString::from(pin))
    }
}

impl core::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("allow_extractable", &self.allow_extractable)
            .finish_non_exhaustive()
    }
}

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
/// from the operating system's CSPRNG for every wrap (or the token's own, if it replaces it). Its [`key_id`](RootKeyProvider::key_id)
/// is an RFC 7512 PKCS#11 URI naming the token label, the key label and the key's `CKA_ID`
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
/// - Refuses a key that may leave the token unless [`Pkcs11Config::allow_extractable`].
/// - Unwrapping fails with [`RootKeyError::Authentication`] on any modified byte, other
///   associated data, or another key; output of an unexpected length is never accepted.
/// - The PIN logs in once per connection. The provider keeps it (a [`SecretString`],
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

/// One connection: the key handle and the sessions that use it.
struct Live {
    generation: u64,
    key: ObjectHandle,
    next: AtomicUsize,
    // Declared before the context: the sessions close before the module may be unloaded.
    sessions: Sessions,
    _ctx: Pkcs11,
}

/// Sessions opened without cryptoki's close-on-drop: closed here, except after the module
/// was finalized under them (their handles then mean nothing, or worse, name sessions that
/// other code opened since).
struct Sessions {
    pool: Vec<Mutex<Option<Session>>>,
}

impl Sessions {
    /// Closes every session (waiting for operations in flight on them).
    fn close_all(&self) {
        for m in &self.pool {
            if let Some(session) = lock(m).take() {
                // Nothing to do about a session that cannot be closed: it is gone either way.
                let _ = session.close();
            }
        }
    }

    /// Drops every session without `C_CloseSession` (after `C_Finalize`).
    fn abandon_all(&self) {
        for m in &self.pool {
            drop(lock(m).take());
        }
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        self.close_all();
    }
}

impl Live {
    /// Picks an idle session, or waits for one. `None` (no session) and `Some(None)` (closed
    /// by a reconnection) both mean "reconnect".
    fn session(&self) -> Option<MutexGuard<'_, Option<Session>>> {
        let n = self.sessions.pool.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Some(Ok(guard)) = self.sessions.pool.get(start.wrapping_add(i) % n).map(Mutex::try_lock) {
                return Some(guard);
            }
        }
        self.sessions.pool.get(start.checked_rem(n)?).map(lock)
    }
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a session is held leaves no half-done state in the session that the next
    // C_*Init would not reset, so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The per-process record of which PIN logged in to which token (see the module docs). Holds
/// HMAC-SHA256 values of PINs under a random key made for this process, never PINs.
struct LoginRecords {
    key: [u8; 32],
    by_token: Mutex<HashMap<(PathBuf, u64), [u8; 32]>>,
}

fn login_records() -> Result<&'static LoginRecords, RootKeyError> {
    static RECORDS: OnceLock<LoginRecords> = OnceLock::new();
    if let Some(r) = RECORDS.get() {
        return Ok(r);
    }
    let key = random_array()?;
    Ok(RECORDS.get_or_init(|| LoginRecords { key, by_token: Mutex::new(HashMap::new()) }))
}

impl LoginRecords {
    fn verifier(&self, pin: &SecretString) -> Result<[u8; 32], RootKeyError> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .map_err(|_| RootKeyError::Pkcs11("internal: HMAC key length".to_owned()))?;
        mac.update(pin.expose_secret().as_bytes());
        Ok(mac.finalize().into_bytes().into())
    }
}

/// Serializes key generation within this process (see [`Pkcs11RootKey::open_or_generate`]).
static GENERATE: Mutex<()> = Mutex::new(());

fn rv_of(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

fn is_token_gone(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::CryptokiNotInitialized
    )
}

/// Maps any other PKCS#11 failure; the message names the function and return value only.
fn map_err(e: CkError) -> RootKeyError {
    match e {
        CkError::Pkcs11(rv, _) if is_token_gone(rv) => RootKeyError::TokenRemoved,
        CkError::Pkcs11(rv, function) => RootKeyError::Pkcs11(format!("{function:?} returned {rv:?}")),
        other => RootKeyError::Pkcs11(other.to_string()),
    }
}

/// Whether `e` means the connection is gone: `Some(true)` if the module was finalized (the
/// session handles are meaningless now), `Some(false)` for other losses. A key handle that
/// stopped working counts too: the reconnection then finds out whether the key is gone.
fn lost_session(e: &CkError) -> Option<bool> {
    match rv_of(e)? {
        RvError::CryptokiNotInitialized => Some(true),
        RvError::SessionHandleInvalid
        | RvError::SessionClosed
        | RvError::DeviceRemoved
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::UserNotLoggedIn
        | RvError::KeyHandleInvalid
        | RvError::ObjectHandleInvalid => Some(false),
        _ => None,
    }
}

impl Pkcs11RootKey {
    /// Loads the module, finds the token, logs in and finds the root key by its label.
    ///
    /// # Errors
    /// [`RootKeyError::ModuleNotFound`], [`RootKeyError::TokenNotFound`],
    /// [`RootKeyError::WrongPin`], [`RootKeyError::MechanismUnsupported`] (no `CKM_AES_GCM`),
    /// [`RootKeyError::KeyMissing`], [`RootKeyError::KeyExtractable`],
    /// [`RootKeyError::Pkcs11`] (two keys with the label, not an AES-256 key, not usable
    /// for encryption and decryption, other token failures).
    pub fn open(config: &Pkcs11Config) -> Result<Self, RootKeyError> {
        let conn = Connection::establish(config)?;
        let key = conn.find_key(config)?.ok_or_else(|| RootKeyError::KeyMissing(config.key_label.clone()))?;
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
        let _guard = lock(&GENERATE);
        let key = match conn.find_key(config)? {
            Some(key) => key,
            None => conn.generate(config)?,
        };
        Self::from_connection(config, conn, key)
    }

    fn from_connection(config: &Pkcs11Config, conn: Connection, key: ObjectHandle) -> Result<Self, RootKeyError> {
        let (live, id) = conn.into_live(config, key, 0)?;
        Ok(Self {
            config: config.clone(),
            id,
            live: ArcSwap::from_pointee(live),
            reconnect: Mutex::new(()),
            pin_refused: AtomicBool::new(false),
        })
    }

    /// Runs `op` on a session; after a lost session, reconnects once and runs it again. The
    /// inner error is `op`'s own (for the caller to interpret); the outer one is a failed
    /// reconnection.
    fn run<T>(
        &self,
        mut op: impl FnMut(&Session, ObjectHandle) -> Result<T, CkError>,
    ) -> Result<Result<T, CkError>, RootKeyError> {
        let mut live = self.live.load_full();
        let mut retried = false;
        loop {
            let outcome = {
                let guard = live.session();
                guard.as_ref().and_then(|g| g.as_ref()).map(|session| op(session, live.key))
            };
            let lost = match &outcome {
                None => Some(false),
                Some(Err(e)) => lost_session(e),
                Some(Ok(_)) => None,
            };
            match (lost, outcome) {
                (Some(finalized), _) if !retried => {
                    self.reconnect(&live, finalized)?;
                    live = self.live.load_full();
                    retried = true;
                }
                (_, Some(result)) => return Ok(result),
                (_, None) => return Err(RootKeyError::TokenRemoved),
            }
        }
    }

    /// Replaces the connection `seen` (unless another thread already did).
    fn reconnect(&self, seen: &Live, finalized: bool) -> Result<(), RootKeyError> {
        let _guard = lock(&self.reconnect);
        let current = self.live.load();
        if current.generation != seen.generation {
            return Ok(());
        }
        // Waits for operations in flight on the old sessions; they then reconnect too and find
        // the new generation.
        if finalized {
            current.sessions.abandon_all();
        } else {
            current.sessions.close_all();
        }
        tracing::warn!(target: "atrest::audit", event = "pkcs11.reconnect", key_id = %self.id);
        let lost = |e| match e {
            RootKeyError::TokenNotFound(_) => RootKeyError::TokenRemoved,
            other => other,
        };
        if self.pin_refused.load(Ordering::Relaxed) {
            return Err(RootKeyError::WrongPin);
        }
        let conn = Connection::establish(&self.config).map_err(|e| {
            if matches!(e, RootKeyError::WrongPin) {
                self.pin_refused.store(true, Ordering::Relaxed);
            }
            lost(e)
        })?;
        let key =
            conn.find_key(&self.config)?.ok_or_else(|| RootKeyError::KeyMissing(self.config.key_label.clone()))?;
        let (live, id) = conn.into_live(&self.config, key, current.generation.wrapping_add(1))?;
        if id != self.id {
            return Err(RootKeyError::Pkcs11(format!(
                "the key labelled '{}' is no longer the key this provider opened ({} instead of {})",
                self.config.key_label, id, self.id
            )));
        }
        self.live.store(Arc::new(live));
        Ok(())
    }
}

/// A module, a token and a logged-in session, before the key is known.
struct Connection {
    // Declared before the context: the sessions close before the module may be unloaded.
    sessions: Sessions,
    ctx: Pkcs11,
    slot: Slot,
}

impl Connection {
    fn establish(config: &Pkcs11Config) -> Result<Self, RootKeyError> {
        let module = config.module.as_path();
        let not_found = |reason: String| RootKeyError::ModuleNotFound { path: module.to_path_buf(), reason };
        if !module.is_file() {
            return Err(not_found("no such file".to_owned()));
        }
        let ctx = Pkcs11::new(module).map_err(|e| not_found(e.to_string()))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(not_found(format!("C_Initialize failed: {e}"))),
        }

        let mut found = Vec::new();
        for slot in ctx.get_slots_with_token().map_err(map_err)? {
            match ctx.get_token_info(slot) {
                Ok(info) if info.label() == config.token_label => found.push(slot),
                Ok(_) => {}
                // A token that cannot describe itself (removed between the two calls, or
                // broken) cannot be identified as the one wanted.
                Err(e) => tracing::debug!(slot = slot.id(), error = %map_err(e), "skipping a PKCS#11 slot"),
            }
        }
        let slot = match found.as_slice() {
            [] => return Err(RootKeyError::TokenNotFound(config.token_label.clone())),
            [slot] => *slot,
            _ => {
                return Err(RootKeyError::Pkcs11(format!(
                    "{} tokens are labelled '{}': the label must name exactly one token",
                    found.len(),
                    config.token_label
                )));
            }
        };

        let mechanisms = ctx.get_mechanism_list(slot).map_err(map_err)?;
        if !mechanisms.contains(&MechanismType::AES_GCM) {
            return Err(RootKeyError::MechanismUnsupported("CKM_AES_GCM".to_owned()));
        }

        let session = ctx.open_ro_session_no_drop(slot).map_err(map_err)?;
        let sessions = Sessions { pool: vec![Mutex::new(Some(session))] };
        let conn = Self { sessions, ctx, slot };
        conn.with_session(|s| conn.login(s, config))?;
        Ok(conn)
    }

    /// Runs `f` on the first (logged-in) session.
    fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, RootKeyError>) -> Result<T, RootKeyError> {
        let guard = self.sessions.pool.first().map(lock);
        match guard.as_ref().and_then(|g| g.as_ref()) {
            Some(session) => f(session),
            None => Err(RootKeyError::TokenRemoved),
        }
    }

    fn login(&self, session: &Session, config: &Pkcs11Config) -> Result<(), RootKeyError> {
        let records = login_records()?;
        let verifier = records.verifier(&config.pin)?;
        let token = (config.module.canonicalize().unwrap_or_else(|_| config.module.clone()), self.slot.id());
        match session.login(UserType::User, Some(&config.pin)) {
            Ok(()) => {
                lock(&records.by_token).insert(token, verifier);
                Ok(())
            }
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => match lock(&records.by_token).get(&token) {
                Some(known) if bool::from(known.ct_eq(&verifier)) => Ok(()),
                Some(_) => Err(RootKeyError::WrongPin),
                None => {
                    // Someone else in this process logged in through this module: the token is
                    // usable, but this PIN could not be checked.
                    tracing::warn!(
                        target: "atrest::audit",
                        event = "pkcs11.login_unverified",
                        token = %config.token_label,
                        "token already logged in by other code in this process; PIN not verified"
                    );
                    Ok(())
                }
            },
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange, _)) => {
                Err(RootKeyError::WrongPin)
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                Err(RootKeyError::Pkcs11("the token's user PIN is locked (CKR_PIN_LOCKED)".to_owned()))
            }
            Err(CkError::Pkcs11(RvError::UserPinNotInitialized, _)) => {
                Err(RootKeyError::Pkcs11("the token's user PIN is not initialized".to_owned()))
            }
            Err(e) => Err(map_err(e)),
        }
    }

    fn find_key(&self, config: &Pkcs11Config) -> Result<Option<ObjectHandle>, RootKeyError> {
        let template =
            [Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(config.key_label.as_bytes().to_vec())];
        let found = self.with_session(|s| s.find_objects(&template).map_err(map_err))?;
        match found.as_slice() {
            [] => Ok(None),
            [key] => Ok(Some(*key)),
            _ => Err(RootKeyError::Pkcs11(format!(
                "{} secret keys are labelled '{}': the label must name exactly one key",
                found.len(),
                config.key_label
            ))),
        }
    }

    fn generate(&self, config: &Pkcs11Config) -> Result<ObjectHandle, RootKeyError> {
        let mechanisms = self.ctx.get_mechanism_list(self.slot).map_err(map_err)?;
        if !mechanisms.contains(&MechanismType::AES_KEY_GEN) {
            return Err(RootKeyError::MechanismUnsupported("CKM_AES_KEY_GEN".to_owned()));
        }
        let id: [u8; CKA_ID_LEN] = random_array()?;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(Ulong::try_from(KEY_LEN).map_err(map_err)?),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::Label(config.key_label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        // Token objects need a read-write session; it is closed again on return.
        let rw = self.ctx.open_rw_session(self.slot).map_err(map_err)?;
        let key = rw.generate_key(&Mechanism::AesKeyGen, &template).map_err(map_err)?;
        tracing::info!(
            target: "atrest::audit",
            event = "pkcs11.generate",
            token = %config.token_label,
            key = %config.key_label,
            id = %hex::encode(id)
        );
        Ok(key)
    }

    /// Checks the key and opens the rest of the sessions.
    fn into_live(
        self,
        config: &Pkcs11Config,
        key: ObjectHandle,
        generation: u64,
    ) -> Result<(Live, String), RootKeyError> {
        let wanted = [
            AttributeType::KeyType,
            AttributeType::ValueLen,
            AttributeType::Extractable,
            AttributeType::Sensitive,
            AttributeType::Encrypt,
            AttributeType::Decrypt,
            AttributeType::Id,
        ];
        let attrs = self.with_session(|s| s.get_attributes(key, &wanted).map_err(map_err))?;
        let (mut key_type, mut value_len, mut extractable, mut sensitive) = (None, None, None, None);
        let (mut encrypt, mut decrypt, mut cka_id) = (false, false, Vec::new());
        for attr in attrs {
            match attr {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::ValueLen(l) => value_len = Some(usize::from(l)),
                Attribute::Extractable(b) => extractable = Some(b),
                Attribute::Sensitive(b) => sensitive = Some(b),
                Attribute::Encrypt(b) => encrypt = b,
                Attribute::Decrypt(b) => decrypt = b,
                Attribute::Id(v) => cka_id = v,
                _ => {}
            }
        }
        let label = &config.key_label;
        if key_type != Some(KeyType::AES) || value_len != Some(KEY_LEN) {
            return Err(RootKeyError::Pkcs11(format!("key '{label}' is not an AES-256 key")));
        }
        if !(encrypt && decrypt) {
            return Err(RootKeyError::Pkcs11(format!("key '{label}' does not allow CKA_ENCRYPT and CKA_DECRYPT")));
        }
        // Unknown counts as "may leave the token".
        let may_leave = extractable != Some(false) || sensitive != Some(true);
        if may_leave && !config.allow_extractable {
            return Err(RootKeyError::KeyExtractable(label.clone()));
        }

        let id = key_uri(&config.token_label, label, &cka_id);
        let Self { mut sessions, ctx, slot } = self;
        for _ in 1..SESSIONS {
            // Sessions opened after the login share the logged-in state. If one fails, the
            // ones already open are closed when `sessions` drops.
            sessions.pool.push(Mutex::new(Some(ctx.open_ro_session_no_drop(slot).map_err(map_err)?)));
        }
        tracing::info!(
            target: "atrest::audit",
            event = "pkcs11.open",
            module = %config.module.display(),
            key_id = %id,
            extractable = may_leave
        );
        Ok((Live { generation, key, next: AtomicUsize::new(0), sessions, _ctx: ctx }, id))
    }
}

/// An RFC 7512 PKCS#11 URI: labels percent-encoded outside the unreserved set, every id byte
/// percent-encoded.
fn key_uri(token: &str, object: &str, id: &[u8]) -> String {
    fn push_encoded(out: &mut String, bytes: &[u8]) {
        for &b in bytes {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut out = String::from("pkcs11:token=");
    push_encoded(&mut out, token.as_bytes());
    out.push_str(";object=");
    push_encoded(&mut out, object.as_bytes());
    if !id.is_empty() {
        out.push_str(";id=");
        for b in id {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RootKeyProvider for Pkcs11RootKey {
    fn key_id(&self) -> String {
        self.id.clone()
    }

    fn wrap(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, RootKeyError> {
        let tag_bits = Ulong::try_from(TAG_BITS).map_err(map_err)?;
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
        })?;
        if let Some(e) = rng_failed {
            return Err(e.into());
        }
        let sealed = sealed.map_err(map_err)?;
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
        let (&version, rest) = wrapped.split_first().ok_or(RootKeyError::Authentication)?;
        if version != WRAP_VERSION {
            return Err(RootKeyError::Authentication);
        }
        let (iv, sealed) = rest.split_at_checked(IV_LEN).ok_or(RootKeyError::Authentication)?;
        let expected = sealed.len().checked_sub(TAG_LEN).ok_or(RootKeyError::Authentication)?;
        let tag_bits = Ulong::try_from(TAG_BITS).map_err(map_err)?;
        let plain = self.run(|session, handle| {
            let mut iv: [u8; IV_LEN] = iv.try_into().map_err(|_| CkError::InvalidValue)?;
            let params = GcmParams::new(&mut iv, aad, tag_bits)?;
            session.decrypt(&Mechanism::AesGcm(params), handle, sealed).map(SecretBytes::new)
        })?;
        let plain = plain.map_err(|e| match e {
            // Tokens report a failed GCM tag check in different ways (SoftHSM2 2.6:
            // CKR_GENERAL_ERROR from C_Decrypt): every failure of the decryption itself means
            // the wrapped bytes, the associated data or the key do not match. Failures to
            // start it (C_DecryptInit) and device trouble are not authentication failures.
            CkError::Pkcs11(
                RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::DataInvalid
                | RvError::DataLenRange
                | RvError::GeneralError
                | RvError::FunctionFailed
                | RvError::ArgumentsBad,
                Function::Decrypt,
            ) => RootKeyError::Authentication,
            other => map_err(other),
        })?;
        // Never treat "success" with output of the wrong length as an unwrap.
        if plain.len() != expected {
            return Err(RootKeyError::Authentication);
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_uri_is_rfc7512() {
        assert_eq!(key_uri("atrest", "root", &[]), "pkcs11:token=atrest;object=root");
        assert_eq!(key_uri("my token", "a;b=c", &[0x01, 0xab]), "pkcs11:token=my%20token;object=a%3Bb%3Dc;id=%01%AB");
    }

    #[test]
    fn config_debug_hides_pin() {
        let c = Pkcs11Config::new("/m.so", "tok", "key", SecretString::from("s3cr3t-pin"));
        let d = format!("{c:?}");
        assert!(d.contains("tok") && d.contains("key") && !d.contains("s3cr3t"));
    }

    #[test]
    fn pin_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "1234\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(Pkcs11Config::pin_from_file(&p), Err(RootKeyError::InsecurePermissions { .. })));
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(Pkcs11Config::pin_from_file(&p).unwrap().expose_secret(), "1234");
        std::fs::write(&p, "12 34\r\n").unwrap();
        assert_eq!(Pkcs11Config::pin_from_file(&p).unwrap().expose_secret(), "12 34");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(Pkcs11Config::pin_from_file(&p), Err(RootKeyError::Io { .. })));
        assert!(matches!(Pkcs11Config::pin_from_file(&dir.path().join("missing")), Err(RootKeyError::Io { .. })));
        assert!(matches!(
            Pkcs11Config::pin_from_env("ATREST_TEST_SURELY_UNSET_VARIABLE"),
            Err(RootKeyError::EnvMissing(_))
        ));
    }
}
