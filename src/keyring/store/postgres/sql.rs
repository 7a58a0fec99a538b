//! The SQL of the PostgreSQL store. Table names are validated identifiers
//! (`[a-z_][a-z0-9_]*`, see `target.rs`), quoted anyway; every value is a bound parameter.

use crate::keyring::status::HandleStatus;

/// Set on every connection of the store: no statement or lock wait runs forever.
pub(super) const SESSION: &str = "SET statement_timeout = '15s'; SET lock_timeout = '10s'";
/// Serializes schema creation between processes (`CREATE TABLE IF NOT EXISTS` races).
pub(super) const SCHEMA_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext($1::text))";
/// Sent in the transaction of every change: channel = table name, payload `<revision> <name>`.
pub(super) const NOTIFY: &str = "SELECT pg_notify($1::text, $2::text)";
/// A heartbeat older than this is shown as stale.
pub(super) const STALE_SECS: f64 = 60.0;

/// Statements for one table.
pub(super) struct Statements {
    pub(super) schema: String,
    pub(super) read: String,
    pub(super) insert: String,
    pub(super) lock_row: String,
    pub(super) swap: String,
    pub(super) fingerprint: String,
    pub(super) listen: String,
    pub(super) beat: String,
    pub(super) purge: String,
    pub(super) list: String,
    pub(super) farewell: String,
}

impl Statements {
    pub(super) fn new(table: &str, handles: &str) -> Self {
        let t = format!("\"{table}\"");
        let h = format!("\"{handles}\"");
        Self {
            schema: format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    name text PRIMARY KEY,
                    revision bigint NOT NULL CHECK (revision >= 0),
                    document bytea NOT NULL,
                    updated_at timestamptz NOT NULL DEFAULT now());
                 CREATE TABLE IF NOT EXISTS {h} (
                    keyring text NOT NULL,
                    handle text NOT NULL,
                    host text NOT NULL,
                    pid bigint NOT NULL,
                    revision bigint NOT NULL,
                    started_at timestamptz NOT NULL DEFAULT now(),
                    seen_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (keyring, handle));"
            ),
            read: format!("SELECT document FROM {t} WHERE name = $1"),
            insert: format!(
                "INSERT INTO {t} (name, revision, document) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING"
            ),
            lock_row: format!("SELECT revision, document FROM {t} WHERE name = $1 FOR UPDATE"),
            swap: format!(
                "UPDATE {t} SET revision = $3, document = $4, updated_at = now() WHERE name = $1 AND revision = $2"
            ),
            fingerprint: format!("SELECT revision, xmin::text FROM {t} WHERE name = $1"),
            listen: format!("LISTEN {t}"),
            beat: format!(
                "INSERT INTO {h} (keyring, handle, host, pid, revision) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (keyring, handle) DO UPDATE SET revision = EXCLUDED.revision, seen_at = now()"
            ),
            purge: format!("DELETE FROM {h} WHERE seen_at < now() - interval '1 hour'"),
            list: format!(
                "SELECT handle, host, pid, revision, EXTRACT(EPOCH FROM now() - seen_at)::float8
                 FROM {h} WHERE keyring = $1 ORDER BY host, pid, handle"
            ),
            farewell: format!("DELETE FROM {h} WHERE keyring = $1 AND handle = $2"),
        }
    }
}

/// One row of the `list` statement.
pub(super) fn handle_status(r: &postgres::Row) -> Result<HandleStatus, postgres::Error> {
    let pid: i64 = r.try_get(2)?;
    let revision: i64 = r.try_get(3)?;
    let age: f64 = r.try_get(4)?;
    let age = age.max(0.0);
    Ok(HandleStatus {
        handle: r.try_get(0)?,
        host: r.try_get(1)?,
        pid: u32::try_from(pid).unwrap_or(0),
        revision: u64::try_from(revision).unwrap_or(0),
        seen_secs_ago: std::time::Duration::try_from_secs_f64(age).map(|d| d.as_secs()).unwrap_or(u64::MAX),
        stale: age > STALE_SECS,
    })
}
