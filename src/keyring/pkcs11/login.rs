//! Logging in to the token, and checking the PIN when the token is logged in already.
//!
//! A token's login state is per process, shared by every session, so `C_Login` answers
//! `CKR_USER_ALREADY_LOGGED_IN` to the second provider of a process whatever PIN it gives.
//! To report a wrong PIN even then, the process remembers which PIN logged in to which
//! token, as HMAC-SHA256 values under a random key made for this process (never the PINs).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::config::Pkcs11Config;
use super::errors::{Failure, classify, to_root_error};
use super::pool::lock;
use crate::error::RootKeyError;
use crate::secret::random_array;

/// The per-process record of which PIN logged in to which token (module and slot).
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

/// Logs `session` (on `slot`) in with the configured PIN, or checks the PIN against the one
/// that logged in earlier in this process.
pub(super) fn login(session: &Session, slot: Slot, config: &Pkcs11Config) -> Result<(), RootKeyError> {
    let records = login_records()?;
    let verifier = records.verifier(&config.pin)?;
    let token = (config.module.canonicalize().unwrap_or_else(|_| config.module.clone()), slot.id());
    let e = match session.login(UserType::User, Some(&config.pin)) {
        Ok(()) => {
            lock(&records.by_token).insert(token, verifier);
            return Ok(());
        }
        Err(e) => e,
    };
    if classify(&e) != Failure::AlreadyLoggedIn {
        return Err(to_root_error(e));
    }
    match lock(&records.by_token).get(&token) {
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
    }
}
