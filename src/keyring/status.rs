//! Public facts about a keyring (no key material): what `atrest keyring status` prints.

use serde::Serialize;

use super::Keyring;
use super::key_state::KeyState;
use crate::id::MasterVersion;

/// Public facts about a keyring (see [`Keyring::status`]).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct KeyringStatus {
    /// Keyring id (hex).
    pub id: String,
    /// Revision, bumped by every change.
    pub revision: u64,
    /// Creation time (Unix seconds).
    pub created_at: u64,
    /// The root key id the keyring is wrapped under.
    pub root_key_id: String,
    /// The primary master version.
    pub primary: MasterVersion,
    /// Every master version.
    pub masters: Vec<MasterStatus>,
    /// Tenants with a generation above 0 or a shred.
    pub tenants: Vec<TenantStatus>,
    /// The live handles of this keyring and the revision each has verified, from their
    /// heartbeats (PostgreSQL store; empty for a file): shows when a change reached the
    /// fleet.
    pub handles: Vec<HandleStatus>,
}

/// A keyring handle as its last heartbeat reported it (PostgreSQL store).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HandleStatus {
    /// Random id of the handle (one per opened keyring).
    pub handle: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The revision it has verified and serves.
    pub revision: u64,
    /// Seconds since its last heartbeat (sent on every revision change, else every 10 s).
    pub seen_secs_ago: u64,
    /// No heartbeat for over a minute: the process ended or lost the database.
    pub stale: bool,
}

/// Public facts about a master version.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct MasterStatus {
    /// The version.
    pub version: MasterVersion,
    /// Its state.
    pub state: KeyState,
    /// Creation time (Unix seconds).
    pub created_at: u64,
    /// Time of the last state change (Unix seconds).
    pub changed_at: u64,
}

/// Public facts about a tenant with overrides.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TenantStatus {
    /// Tenant id.
    pub id: String,
    /// Current generation.
    pub generation: u16,
    /// Last per-tenant rotation (Unix seconds).
    pub rotated_at: Option<u64>,
    /// Shred state, if shredded.
    pub shred: Option<ShredStatus>,
}

/// A tenant's shred state.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ShredStatus {
    /// When the tenant was shredded (Unix seconds).
    pub shredded_at: u64,
    /// Master versions that must still be destroyed for the shred to be complete.
    pub pending_versions: Vec<MasterVersion>,
    /// Whether every such version is destroyed.
    pub complete: bool,
}

impl Keyring {
    /// A snapshot of the keyring's public facts (no key material). For a PostgreSQL store
    /// this also queries the heartbeats of the keyring's live handles (left empty, with a
    /// warning logged, if the database cannot be reached).
    pub fn status(&self) -> KeyringStatus {
        let s = self.state();
        KeyringStatus {
            id: hex::encode(s.id),
            revision: s.revision,
            created_at: s.created_at,
            root_key_id: s.root_key_id.clone(),
            primary: s.primary,
            masters: s
                .masters
                .iter()
                .map(|(v, m)| MasterStatus {
                    version: *v,
                    state: m.state,
                    created_at: m.created_at,
                    changed_at: m.changed_at,
                })
                .collect(),
            tenants: s
                .tenants
                .iter()
                .map(|(id, t)| TenantStatus {
                    id: id.to_string(),
                    generation: t.generation,
                    rotated_at: t.rotated_at,
                    shred: t.shred.as_ref().map(|sh| ShredStatus {
                        shredded_at: sh.at,
                        pending_versions: sh.pending.iter().copied().collect(),
                        complete: sh.pending.is_empty(),
                    }),
                })
                .collect(),
            handles: self.inner.store.as_deref().map_or_else(Vec::new, |store| {
                store.handles().unwrap_or_else(|e| {
                    tracing::warn!(target: "atrest::keyring", error = %e, "cannot list the keyring's handles");
                    Vec::new()
                })
            }),
        }
    }
}
