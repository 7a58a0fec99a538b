//! The session pool: a few sessions per provider, one operation per session at a time, and
//! one reconnection after a lost session (see the "Lost sessions" section of the module
//! docs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cryptoki::context::Pkcs11;
use cryptoki::error::Error as CkError;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;

use super::Pkcs11RootKey;
use super::config::Pkcs11Config;
use super::connection::Connection;
use super::errors::{classify, to_root_error};
use super::key::check_key;
use crate::error::RootKeyError;

/// Sessions kept open per provider: concurrent wraps run on different sessions.
const SESSIONS: usize = 4;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a session is held leaves no half-done state in the session that the next
    // C_*Init would not reset, so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sessions opened without cryptoki's close-on-drop: closed here, except after the module
/// was finalized under them (their handles then mean nothing, or worse, name sessions that
/// other code opened since).
pub(super) struct Sessions {
    pub(super) pool: Vec<Mutex<Option<Session>>>,
}

impl Sessions {
    pub(super) fn new(first: Session) -> Self {
        Self { pool: vec![Mutex::new(Some(first))] }
    }

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

/// One connection: the key handle and the sessions that use it.
pub(super) struct Live {
    generation: u64,
    key: ObjectHandle,
    next: AtomicUsize,
    // Declared before the context: the sessions close before the module may be unloaded.
    sessions: Sessions,
    _ctx: Pkcs11,
}

impl Live {
    /// Checks `key` against the policy and opens the rest of the sessions. Returns the
    /// connection and the key's id.
    pub(super) fn open(
        mut conn: Connection,
        config: &Pkcs11Config,
        key: ObjectHandle,
        generation: u64,
    ) -> Result<(Self, String), RootKeyError> {
        let checked = conn.with_session(|s| check_key(s, key, config))?;
        conn.open_sessions(SESSIONS)?;
        tracing::info!(
            target: "atrest::audit",
            event = "pkcs11.open",
            module = %config.module.display(),
            key_id = %checked.id,
            extractable = checked.exposed
        );
        let Connection { sessions, ctx, slot: _ } = conn;
        Ok((Self { generation, key, next: AtomicUsize::new(0), sessions, _ctx: ctx }, checked.id))
    }

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

impl Pkcs11RootKey {
    /// Runs `op` on a session with the key; after a lost session, reconnects once and runs
    /// it again.
    pub(super) fn run<T>(
        &self,
        mut op: impl FnMut(&Session, ObjectHandle) -> Result<T, CkError>,
    ) -> Result<T, RootKeyError> {
        let mut live = self.live.load_full();
        let mut retried = false;
        loop {
            let outcome = {
                let guard = live.session();
                guard.as_ref().and_then(|g| g.as_ref()).map(|session| op(session, live.key))
            };
            let lost = match &outcome {
                None => Some(false),
                Some(Err(e)) => classify(e).lost(),
                Some(Ok(_)) => None,
            };
            match (lost, outcome) {
                (Some(finalized), _) if !retried => {
                    self.reconnect(&live, finalized)?;
                    live = self.live.load_full();
                    retried = true;
                }
                (_, Some(result)) => return result.map_err(to_root_error),
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
        if self.pin_refused.load(Ordering::Relaxed) {
            return Err(RootKeyError::WrongPin);
        }
        let conn = Connection::establish(&self.config).map_err(|e| match e {
            RootKeyError::WrongPin => {
                self.pin_refused.store(true, Ordering::Relaxed);
                e
            }
            RootKeyError::TokenNotFound(_) => RootKeyError::TokenRemoved,
            other => other,
        })?;
        let key = conn.existing_key(&self.config)?;
        let (live, id) = Live::open(conn, &self.config, key, current.generation.wrapping_add(1))?;
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
