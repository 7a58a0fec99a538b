//! Reaching the token: load and initialise the module, find the one token with the label,
//! check that it can run `CKM_AES_GCM`, open a session and log in.

use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::MechanismType;
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use super::config::Pkcs11Config;
use super::errors::{Failure, classify, to_root_error};
use super::login::login;
use super::pool::{Sessions, lock};
use crate::error::RootKeyError;

/// A module, a token and a logged-in session, before the key is known.
pub(super) struct Connection {
    // Declared before the context: the sessions close before the module may be unloaded.
    pub(super) sessions: Sessions,
    pub(super) ctx: Pkcs11,
    pub(super) slot: Slot,
}

impl Connection {
    /// Loads the module (never finalizing it: other code may use it), finds the token and
    /// logs in.
    pub(super) fn establish(config: &Pkcs11Config) -> Result<Self, RootKeyError> {
        let module = config.module.as_path();
        let not_found = |reason: String| RootKeyError::ModuleNotFound { path: module.to_path_buf(), reason };
        if !module.is_file() {
            return Err(not_found("no such file".to_owned()));
        }
        let ctx = Pkcs11::new(module).map_err(|e| not_found(e.to_string()))?;
        if let Err(e) = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            && classify(&e) != Failure::AlreadyInitialized
        {
            return Err(not_found(format!("C_Initialize failed: {e}")));
        }

        let slot = find_token(&ctx, &config.token_label)?;
        let mechanisms = ctx.get_mechanism_list(slot).map_err(to_root_error)?;
        if !mechanisms.contains(&MechanismType::AES_GCM) {
            return Err(RootKeyError::MechanismUnsupported("CKM_AES_GCM".to_owned()));
        }

        let session = ctx.open_ro_session_no_drop(slot).map_err(to_root_error)?;
        let sessions = Sessions::new(session);
        let conn = Self { sessions, ctx, slot };
        conn.with_session(|s| login(s, slot, config))?;
        Ok(conn)
    }

    /// Runs `f` on the first (logged-in) session.
    pub(super) fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, RootKeyError>,
    ) -> Result<T, RootKeyError> {
        let guard = self.sessions.pool.first().map(lock);
        match guard.as_ref().and_then(|g| g.as_ref()) {
            Some(session) => f(session),
            None => Err(RootKeyError::TokenRemoved),
        }
    }

    /// Opens sessions until the pool holds `n`. Sessions opened after the login share the
    /// logged-in state. If one fails, the ones already open are closed when `self` drops.
    pub(super) fn open_sessions(&mut self, n: usize) -> Result<(), RootKeyError> {
        while self.sessions.pool.len() < n {
            let session = self.ctx.open_ro_session_no_drop(self.slot).map_err(to_root_error)?;
            self.sessions.pool.push(Mutex::new(Some(session)));
        }
        Ok(())
    }
}

/// The slot of the one token labelled `label`.
fn find_token(ctx: &Pkcs11, label: &str) -> Result<Slot, RootKeyError> {
    let mut found = Vec::new();
    for slot in ctx.get_slots_with_token().map_err(to_root_error)? {
        match ctx.get_token_info(slot) {
            Ok(info) if info.label() == label => found.push(slot),
            Ok(_) => {}
            // A token that cannot describe itself (removed between the two calls, or
            // broken) cannot be identified as the one wanted.
            Err(e) => tracing::debug!(slot = slot.id(), error = %to_root_error(e), "skipping a PKCS#11 slot"),
        }
    }
    match found.as_slice() {
        [] => Err(RootKeyError::TokenNotFound(label.to_owned())),
        [slot] => Ok(*slot),
        _ => Err(RootKeyError::Pkcs11(format!(
            "{} tokens are labelled '{label}': the label must name exactly one token",
            found.len()
        ))),
    }
}
