//! The PostgreSQL store (feature `postgres`): one row per keyring in a table the store
//! creates, changed in one transaction with compare-and-swap on the revision and a
//! notification sent in the same transaction.
//!
//! ```sql
//! CREATE TABLE <table> (name text PRIMARY KEY, revision bigint NOT NULL,
//!                       document bytea NOT NULL, updated_at timestamptz NOT NULL);
//! CREATE TABLE <table>_handles (keyring text, handle text, host text, pid bigint,
//!                               revision bigint, started_at timestamptz, seen_at timestamptz,
//!                               PRIMARY KEY (keyring, handle));
//! ```
//!
//! - `document` holds the authenticated keyring document, byte for byte as in a keyring
//!   file; `revision` copies its revision so that a watcher can poll cheaply. Only the
//!   document is trusted: a handle decides on what it authenticates.
//! - A change: `SELECT … FOR UPDATE` the row, apply the change, `UPDATE … WHERE name = $1 AND
//!   revision = $old`, `pg_notify('<table>', '<revision> <name>')`, commit.
//! - Watchers `LISTEN "<table>"` on a connection of their own and also poll the row's
//!   revision and `xmin` (any rewrite of the row changes it), so a notification lost while
//!   disconnected costs at most one polling interval.
//! - Every live handle upserts a heartbeat row (its verified revision) when its revision
//!   changes and every 10 s otherwise; `keyring status` lists them.
//!
//! Connections are opened lazily, with a connect timeout and a TCP user timeout, and dropped
//! after any failure, so a stopped server never hangs a handle: the next use reconnects.

mod sql;
mod target;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

use super::{Change, Store};
use crate::error::KeyringError;
use crate::keyring::status::HandleStatus;
use target::Target;

/// A heartbeat is refreshed this often even when nothing changed.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// A keyring row in a PostgreSQL table.
pub(crate) struct PostgresStore {
    target: Target,
    sql: sql::Statements,
    /// Reads, changes, heartbeats.
    conn: Mutex<Option<Client>>,
    /// The `LISTEN` connection of the watcher.
    listener: Mutex<Option<Client>>,
    handle_id: String,
    host: String,
    /// The revision and time of the last heartbeat sent.
    last_beat: Mutex<Option<(u64, Instant)>>,
}

/// A failure inside a transaction: the database's, or the change's own.
enum Fail {
    Db(postgres::Error),
    Keyring(KeyringError),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<KeyringError> for Fail {
    fn from(e: KeyringError) -> Self {
        Fail::Keyring(e)
    }
}

fn lock<T>(m: &Mutex<Option<T>>) -> MutexGuard<'_, Option<T>> {
    // A poisoned connection slot holds at worst a connection in an unknown state: drop it.
    m.lock().unwrap_or_else(|p| {
        let mut g = p.into_inner();
        *g = None;
        g
    })
}

fn host_name() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let h: String = h.trim().chars().filter(|c| !c.is_control()).take(255).collect();
    if h.is_empty() { "unknown".to_owned() } else { h }
}

impl PostgresStore {
    /// A store for the location `url`; connects on first use.
    pub(crate) fn new(url: &str) -> Result<Self, KeyringError> {
        let target = Target::parse(url)?;
        let id: [u8; 8] = crate::secret::random_array()?;
        Ok(Self {
            sql: sql::Statements::new(&target.table, &target.handles_table()),
            target,
            conn: Mutex::new(None),
            listener: Mutex::new(None),
            handle_id: hex::encode(id),
            host: host_name(),
            last_beat: Mutex::new(None),
        })
    }

    fn error(&self, reason: impl Into<String>) -> KeyringError {
        KeyringError::Store { location: self.target.location.clone(), reason: reason.into() }
    }

    fn db_error(&self, e: &postgres::Error) -> KeyringError {
        match e.as_db_error() {
            Some(db) if db.code() == &postgres::error::SqlState::UNDEFINED_TABLE => {
                self.error(format!("no keyring table {:?} (create the keyring first)", self.target.table))
            }
            Some(db) => self.error(format!("{}: {} ({})", db.severity(), db.message(), db.code().code())),
            None => self.error(e.to_string()),
        }
    }

    fn connect(&self) -> Result<Client, KeyringError> {
        let mut client = self.target.config.connect(NoTls).map_err(|e| self.db_error(&e))?;
        // Server-side limits, so a lock held by a stuck writer cannot stall this one forever.
        client.batch_execute(sql::SESSION).map_err(|e| self.db_error(&e))?;
        Ok(client)
    }

    /// Runs `f` on the shared connection, connecting first if needed; drops the connection
    /// after any database failure.
    fn with_conn<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, Fail>) -> Result<T, KeyringError> {
        let mut slot = lock(&self.conn);
        let client = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(self.connect()?),
        };
        match f(client) {
            Ok(v) => Ok(v),
            Err(Fail::Keyring(e)) => Err(e),
            Err(Fail::Db(e)) => {
                // Whatever failed (a lost connection, a server shutting down, a timeout), the
                // next use starts on a fresh connection: reconnecting is cheap, errors rare.
                *slot = None;
                Err(self.db_error(&e))
            }
        }
    }

    /// Creates the tables if they are missing (serialized by an advisory lock: concurrent
    /// `CREATE TABLE IF NOT EXISTS` may otherwise fail).
    fn ensure_schema(client: &mut Client, sql: &sql::Statements, table: &str) -> Result<(), postgres::Error> {
        let mut tx = client.transaction()?;
        tx.execute(sql::SCHEMA_LOCK, &[&table])?;
        tx.batch_execute(&sql.schema)?;
        tx.commit()
    }

    fn not_found(&self) -> KeyringError {
        self.error(format!("no keyring named {:?} in table {:?}", self.target.keyring, self.target.table))
    }

    fn revision_param(&self, revision: u64) -> Result<i64, KeyringError> {
        i64::try_from(revision).map_err(|_| self.error("revision out of range"))
    }

    fn notify_payload(&self, revision: u64) -> String {
        format!("{revision} {}", self.target.keyring)
    }
}

impl Store for PostgresStore {
    fn describe(&self) -> String {
        self.target.location.clone()
    }

    fn read(&self) -> Result<Vec<u8>, KeyringError> {
        let row = self.with_conn(|c| Ok(c.query_opt(&self.sql.read, &[&self.target.keyring])?))?;
        row.map(|r| r.try_get::<_, Vec<u8>>(0).map_err(|e| self.db_error(&e))).unwrap_or_else(|| Err(self.not_found()))
    }

    fn create(&self, doc: &[u8], revision: u64) -> Result<(), KeyringError> {
        let rev = self.revision_param(revision)?;
        let inserted = self.with_conn(|c| {
            Self::ensure_schema(c, &self.sql, &self.target.table)?;
            let mut tx = c.transaction()?;
            let n = tx.execute(&self.sql.insert, &[&self.target.keyring, &rev, &doc])?;
            tx.execute(sql::NOTIFY, &[&self.target.table, &self.notify_payload(revision)])?;
            tx.commit()?;
            Ok(n)
        })?;
        if inserted == 0 {
            return Err(KeyringError::AlreadyExists(self.describe().into()));
        }
        Ok(())
    }

    fn update(&self, change: &mut Change<'_>) -> Result<(), KeyringError> {
        self.with_conn(|c| {
            let mut tx = c.transaction()?;
            let row = tx.query_opt(&self.sql.lock_row, &[&self.target.keyring])?.ok_or_else(|| self.not_found())?;
            let old: i64 = row.try_get(0)?;
            let doc: Vec<u8> = row.try_get(1)?;
            let Some((new_doc, revision)) = change(&doc)? else { return Ok(()) };
            let rev = self.revision_param(revision)?;
            if rev <= old {
                return Err(KeyringError::Inconsistent("a change must raise the revision").into());
            }
            // Compare-and-swap: the row is locked, so this only fails if the lock was not
            // honoured (a writer outside atrest); the whole transaction is then abandoned.
            if tx.execute(&self.sql.swap, &[&self.target.keyring, &old, &rev, &new_doc])? != 1 {
                return Err(self
                    .error(format!("revision {old} changed during the update: nothing written, try again"))
                    .into());
            }
            tx.execute(sql::NOTIFY, &[&self.target.table, &self.notify_payload(revision)])?;
            tx.commit()?;
            Ok(())
        })
    }

    fn fingerprint(&self) -> Result<Vec<u8>, KeyringError> {
        let row = self.with_conn(|c| Ok(c.query_opt(&self.sql.fingerprint, &[&self.target.keyring])?))?;
        let row = row.ok_or_else(|| self.not_found())?;
        let rev: i64 = row.try_get(0).map_err(|e| self.db_error(&e))?;
        let xmin: String = row.try_get(1).map_err(|e| self.db_error(&e))?;
        let mut fp = rev.to_be_bytes().to_vec();
        fp.extend_from_slice(xmin.as_bytes());
        Ok(fp)
    }

    fn wait(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut slot = lock(&self.listener);
        let client = match slot.as_mut() {
            Some(c) => c,
            None => match self.connect().and_then(|mut c| {
                c.batch_execute(&self.sql.listen).map_err(|e| self.db_error(&e))?;
                Ok(c)
            }) {
                // Reconnected: notifications may have been lost meanwhile, so return at once
                // and let the watcher compare the fingerprint.
                Ok(c) => {
                    *slot = Some(c);
                    return;
                }
                Err(e) => {
                    drop(slot);
                    tracing::debug!(target: "atrest::keyring", error = %e, "keyring store listener unavailable");
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    return;
                }
            },
        };
        let failed = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            match client.notifications().timeout_iter(left).next() {
                Ok(None) => break false,
                Ok(Some(n)) if n.payload().split_once(' ').is_some_and(|(_, k)| k == self.target.keyring) => {
                    break false;
                }
                Ok(Some(_)) => {}
                Err(_) => break true,
            }
        };
        if failed {
            // Lost the connection: reconnect on the next call (after this interval).
            *slot = None;
            drop(slot);
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        }
    }

    fn heartbeat(&self, revision: u64) {
        let mut last = lock(&self.last_beat);
        if last.is_some_and(|(r, t)| r == revision && t.elapsed() < HEARTBEAT_EVERY) {
            return;
        }
        let Ok(rev) = self.revision_param(revision) else { return };
        let pid = i64::from(std::process::id());
        let params: [&(dyn postgres::types::ToSql + Sync); 5] =
            [&self.target.keyring, &self.handle_id, &self.host, &pid, &rev];
        let outcome = self.with_conn(|c| match c.execute(&self.sql.beat, &params) {
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => {
                // A keyring made by an older atrest, or the table was dropped: recreate.
                Self::ensure_schema(c, &self.sql, &self.target.table)?;
                Ok(c.execute(&self.sql.beat, &params)?)
            }
            other => Ok(other?),
        });
        match outcome {
            Ok(_) => *last = Some((revision, Instant::now())),
            Err(e) => tracing::debug!(target: "atrest::keyring", error = %e, "keyring heartbeat failed"),
        }
    }

    fn handles(&self) -> Result<Vec<HandleStatus>, KeyringError> {
        let rows = self.with_conn(|c| {
            // Purging needs DELETE on the table; listing does not.
            if let Err(e) = c.execute(&self.sql.purge, &[]) {
                tracing::debug!(target: "atrest::keyring", error = %e, "could not purge old heartbeats");
            }
            Ok(c.query(&self.sql.list, &[&self.target.keyring])?)
        })?;
        rows.iter().map(|r| sql::handle_status(r).map_err(|e| self.db_error(&e))).collect()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The handle is gone: remove its heartbeat, on the open connection only (never
        // reconnect while dropping).
        if lock(&self.last_beat).is_none() {
            return;
        }
        if let Some(c) = lock(&self.conn).as_mut() {
            let _ = c.execute(&self.sql.farewell, &[&self.target.keyring, &self.handle_id]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_server_is_a_typed_error_without_the_password() {
        // Port 1 on loopback: refused at once.
        let store = PostgresStore::new("postgres://app:hunter2@127.0.0.1:1/db?connect_timeout=2").unwrap();
        let t = Instant::now();
        for e in [store.read().err(), store.fingerprint().err(), store.create(b"x", 1).err()] {
            let e = e.unwrap();
            assert!(matches!(e, KeyringError::Store { .. }), "{e:?}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        store.wait(Duration::from_millis(50));
        store.heartbeat(1);
        assert!(store.handles().is_err());
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
