//! The in-memory keyring state: an immutable snapshot, replaced whole on every change.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use super::file::{integrity_aad, master_aad};
use super::key_state::KeyState;
use super::root::RootKeyProvider;
use crate::error::KeyringError;
use crate::hazmat::{Prk, extract};
use crate::id::TenantId;
use crate::id::{KeyVersion, MasterVersion};
use crate::secret::{IntegrityKey, MasterKey, random_array};

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// One master key version.
#[derive(Clone)]
pub(crate) struct MasterEntry {
    pub(crate) state: KeyState,
    pub(crate) created_at: u64,
    pub(crate) changed_at: u64,
    /// The wrapped key as stored in the file; `None` once destroyed.
    pub(crate) wrapped: Option<Vec<u8>>,
    /// HKDF-Extract(salt = keyring id, ikm = master key); `None` once destroyed.
    pub(crate) prk: Option<Arc<Prk>>,
}

impl MasterEntry {
    pub(crate) fn new(
        state: KeyState,
        created_at: u64,
        changed_at: u64,
        material: Option<(Vec<u8>, MasterKey)>,
        keyring_id: &[u8; 16],
    ) -> Self {
        let (wrapped, prk) = match material {
            Some((w, k)) => (Some(w), Some(Arc::new(extract(keyring_id, k.expose_secret())))),
            None => (None, None),
        };
        Self { state, created_at, changed_at, wrapped, prk }
    }
}

/// A tenant's shred record.
#[derive(Clone, Debug)]
pub(crate) struct Shred {
    pub(crate) at: u64,
    /// Master versions that existed at shred time and are not destroyed yet.
    pub(crate) pending: BTreeSet<MasterVersion>,
}

/// Per-tenant overrides (only tenants that were rotated or shredded have one).
#[derive(Clone, Debug, Default)]
pub(crate) struct TenantEntry {
    pub(crate) generation: u16,
    pub(crate) rotated_at: Option<u64>,
    pub(crate) shred: Option<Shred>,
}

/// A complete, verified keyring snapshot.
#[derive(Clone)]
pub(crate) struct State {
    pub(crate) id: [u8; 16],
    pub(crate) revision: u64,
    pub(crate) created_at: u64,
    pub(crate) root_key_id: String,
    pub(crate) root: Arc<dyn RootKeyProvider>,
    pub(crate) primary: MasterVersion,
    pub(crate) masters: BTreeMap<MasterVersion, MasterEntry>,
    pub(crate) tenants: BTreeMap<TenantId, TenantEntry>,
    pub(crate) integrity_wrapped: Vec<u8>,
    pub(crate) integrity_key: Arc<IntegrityKey>,
}

/// Why a key cannot be used.
pub(crate) enum KeyRefusal {
    /// The handle's store has been unreadable for too long.
    Unavailable,
    Shredded {
        at: u64,
    },
    Unknown,
    Disabled(MasterVersion),
    Destroyed(MasterVersion),
}

impl State {
    /// A new keyring with master v1 as primary.
    pub(crate) fn create(root: Arc<dyn RootKeyProvider>) -> Result<Self, KeyringError> {
        let id: [u8; 16] = random_array()?;
        let ik = IntegrityKey::generate()?;
        let integrity_wrapped = root.wrap(ik.expose_secret(), &integrity_aad(&id))?;
        let t = now();
        let mut s = Self {
            id,
            revision: 0,
            created_at: t,
            root_key_id: root.key_id(),
            root,
            primary: MasterVersion::new(1),
            masters: BTreeMap::new(),
            tenants: BTreeMap::new(),
            integrity_wrapped,
            integrity_key: Arc::new(ik),
        };
        s.add_master(MasterVersion::new(1), KeyState::Primary)?;
        Ok(s)
    }

    fn add_master(&mut self, v: MasterVersion, state: KeyState) -> Result<(), KeyringError> {
        let key = MasterKey::generate()?;
        let wrapped = self.root.wrap(key.expose_secret(), &master_aad(&self.id, v))?;
        let t = now();
        self.masters.insert(v, MasterEntry::new(state, t, t, Some((wrapped, key)), &self.id));
        Ok(())
    }

    // Looked up by `&str` (a `TenantId` borrows as one): no id is built per lookup.

    pub(crate) fn tenant_generation(&self, t: &(impl Borrow<str> + ?Sized)) -> u16 {
        self.tenants.get(t.borrow()).map(|e| e.generation).unwrap_or(0)
    }

    pub(crate) fn shredded_at(&self, t: &(impl Borrow<str> + ?Sized)) -> Option<u64> {
        self.tenants.get(t.borrow()).and_then(|e| e.shred.as_ref()).map(|s| s.at)
    }

    /// The key version new data for `t` is sealed under.
    pub(crate) fn current_version(&self, t: &(impl Borrow<str> + ?Sized)) -> KeyVersion {
        KeyVersion { master: self.primary, generation: self.tenant_generation(t) }
    }

    /// The PRK of `v` for tenant `t`, if every state allows its use.
    pub(crate) fn usable_prk(&self, t: &(impl Borrow<str> + ?Sized), v: KeyVersion) -> Result<&Prk, KeyRefusal> {
        let entry = self.tenants.get(t.borrow());
        if let Some(at) = entry.and_then(|e| e.shred.as_ref()).map(|s| s.at) {
            return Err(KeyRefusal::Shredded { at });
        }
        if v.generation > entry.map(|e| e.generation).unwrap_or(0) {
            return Err(KeyRefusal::Unknown);
        }
        let m = self.masters.get(&v.master).ok_or(KeyRefusal::Unknown)?;
        match m.state {
            KeyState::Disabled => Err(KeyRefusal::Disabled(v.master)),
            KeyState::Destroyed => Err(KeyRefusal::Destroyed(v.master)),
            _ => m.prk.as_deref().ok_or(KeyRefusal::Destroyed(v.master)),
        }
    }

    fn master_mut(&mut self, v: MasterVersion) -> Result<&mut MasterEntry, KeyringError> {
        self.masters.get_mut(&v).ok_or(KeyringError::UnknownVersion(v))
    }

    /// Adds a master version and makes it primary; the old primary becomes enabled.
    pub(crate) fn rotate(&mut self) -> Result<MasterVersion, KeyringError> {
        let last = self.masters.keys().next_back().copied().unwrap_or(self.primary);
        let v = last.next().ok_or(KeyringError::Exhausted("master key versions"))?;
        self.add_master(v, KeyState::Primary)?;
        let old = self.primary;
        let t = now();
        let e = self.master_mut(old)?;
        e.state = KeyState::Enabled;
        e.changed_at = t;
        self.primary = v;
        Ok(v)
    }

    /// Enables or disables a non-primary, non-destroyed version, or promotes one. Setting a
    /// version to the state it has is no change.
    pub(crate) fn set_state(&mut self, v: MasterVersion, state: KeyState) -> Result<(), KeyringError> {
        let primary = self.primary;
        let e = self.master_mut(v)?;
        if e.state == KeyState::Destroyed {
            return Err(KeyringError::Destroyed(v));
        }
        if e.state == state {
            return Ok(());
        }
        match state {
            KeyState::Enabled | KeyState::Disabled if v == primary => {
                Err(KeyringError::PrimaryRefused(v, if state == KeyState::Disabled { "disable" } else { "change" }))
            }
            KeyState::Enabled | KeyState::Disabled => {
                e.state = state;
                e.changed_at = now();
                Ok(())
            }
            KeyState::Primary => {
                e.state = KeyState::Primary;
                e.changed_at = now();
                self.primary = v;
                let o = self.master_mut(primary)?;
                o.state = KeyState::Enabled;
                o.changed_at = now();
                Ok(())
            }
            // Destroying is irreversible and needs its own confirmation and grace period.
            KeyState::Destroyed => Err(KeyringError::NotConfirmed(v)),
        }
    }

    /// Erases the material of a version that has been disabled for at least `grace`.
    pub(crate) fn destroy(&mut self, v: MasterVersion, grace: Duration) -> Result<(), KeyringError> {
        if v == self.primary {
            return Err(KeyringError::PrimaryRefused(v, "destroy"));
        }
        let e = self.master_mut(v)?;
        match e.state {
            KeyState::Destroyed => return Ok(()),
            KeyState::Disabled => {}
            _ => return Err(KeyringError::NotDisabled(v)),
        }
        // Times are whole seconds: wait one more so that a bound is never cut short.
        let need = if grace.is_zero() { 0 } else { grace.as_secs() + u64::from(grace.subsec_nanos() > 0) + 1 };
        let ready = e.changed_at.saturating_add(need);
        let t = now();
        if t < ready {
            return Err(KeyringError::GracePeriod { version: v, remaining_secs: ready - t });
        }
        e.state = KeyState::Destroyed;
        e.changed_at = t;
        e.wrapped = None;
        e.prk = None;
        for t in self.tenants.values_mut() {
            if let Some(s) = t.shred.as_mut() {
                s.pending.remove(&v);
            }
        }
        Ok(())
    }

    /// Checks the invariants every keyring document must hold before it is written (and
    /// after it is read): exactly one primary, with key material; material present exactly
    /// for versions that are not destroyed; shreds pending only on live versions.
    pub(crate) fn validate(&self) -> Result<(), KeyringError> {
        let mut primaries = self.masters.iter().filter(|(_, m)| m.state == KeyState::Primary).map(|(v, _)| *v);
        if primaries.next() != Some(self.primary) || primaries.next().is_some() {
            return Err(KeyringError::Inconsistent("exactly one master version must be primary"));
        }
        for m in self.masters.values() {
            if (m.state == KeyState::Destroyed) != m.wrapped.is_none() {
                return Err(KeyringError::Inconsistent("key material must exist exactly for versions not destroyed"));
            }
        }
        let live = |v: &MasterVersion| self.masters.get(v).is_some_and(|m| m.state != KeyState::Destroyed);
        if self.tenants.values().filter_map(|t| t.shred.as_ref()).any(|s| !s.pending.iter().all(live)) {
            return Err(KeyringError::Inconsistent("a shred is pending on a version that is not live"));
        }
        Ok(())
    }

    /// Bumps one tenant's generation.
    pub(crate) fn rotate_tenant(&mut self, t: &TenantId) -> Result<u16, KeyringError> {
        if let Some(at) = self.shredded_at(t) {
            return Err(KeyringError::TenantShredded { tenant: t.to_string(), shredded_at: at });
        }
        let e = self.tenants.entry(t.clone()).or_default();
        e.generation = e.generation.checked_add(1).ok_or(KeyringError::Exhausted("tenant generations"))?;
        e.rotated_at = Some(now());
        Ok(e.generation)
    }

    /// Marks a tenant shredded; pending until every current master version is destroyed.
    pub(crate) fn shred_tenant(&mut self, t: &TenantId) -> Result<(), KeyringError> {
        if let Some(at) = self.shredded_at(t) {
            return Err(KeyringError::AlreadyShredded { tenant: t.to_string(), shredded_at: at });
        }
        let pending = self.masters.iter().filter(|(_, m)| m.state != KeyState::Destroyed).map(|(v, _)| *v).collect();
        let e = self.tenants.entry(t.clone()).or_default();
        e.shred = Some(Shred { at: now(), pending });
        Ok(())
    }

    /// Re-wraps every live master key and the integrity key under `new_root`.
    pub(crate) fn rewrap_root(&mut self, new_root: Arc<dyn RootKeyProvider>) -> Result<(), KeyringError> {
        let ik = self.root.unwrap(&self.integrity_wrapped, &integrity_aad(&self.id))?;
        self.integrity_wrapped = new_root.wrap(ik.expose_secret(), &integrity_aad(&self.id))?;
        for (v, m) in self.masters.iter_mut() {
            if let Some(w) = &m.wrapped {
                let aad = master_aad(&self.id, *v);
                let k = self.root.unwrap(w, &aad)?;
                m.wrapped = Some(new_root.wrap(k.expose_secret(), &aad)?);
            }
        }
        self.root_key_id = new_root.key_id();
        self.root = new_root;
        Ok(())
    }
}
