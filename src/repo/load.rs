//! Reading a tenant's catalog from a store: every catalog object, authenticated one by one.
//! Verification, restore plans, pruning and replication all start here.

use std::collections::HashMap;
use std::io::Read;

use super::catalog::{Body, CatalogKey, Entry, MAX_ENTRY_LEN, entry_hash, index_of};
use super::store::{ObjectStore, StoreError};
use crate::error::{OpenError, RepoError};
use crate::id::{KeyVersion, TenantId};
use crate::{BackupContext, Tenant};

/// The key prefix of a tenant's objects: `tenants/<hex of the tenant id>/`.
pub(crate) fn tenant_prefix(tenant: &TenantId) -> String {
    format!("tenants/{}/", hex::encode(tenant.as_str()))
}

/// What a catalog object turned out to be.
#[derive(Debug)]
pub(crate) enum State {
    /// An authentic entry.
    Good(Box<Entry>),
    /// Not an entry of this tenant: malformed, or its MAC does not verify.
    Unauthentic,
    /// The key version it names cannot be used (disabled, destroyed, unknown to this keyring).
    KeyUnavailable(KeyVersion),
}

/// One catalog object.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The index its object key names.
    pub(crate) index: u64,
    /// Its bytes.
    pub(crate) bytes: Vec<u8>,
    /// SHA-256 of its bytes.
    pub(crate) hash: [u8; 32],
    /// What it is.
    pub(crate) state: State,
}

impl Slot {
    /// The entry, if authentic and stored under its own index.
    pub(crate) fn entry(&self) -> Option<&Entry> {
        match &self.state {
            State::Good(e) if e.index == self.index => Some(e),
            _ => None,
        }
    }

    /// The stream entry's fields, if this is an authentic stream entry under its own index.
    pub(crate) fn stream(&self) -> Option<StreamRef<'_>> {
        match self.entry().map(|e| &e.body) {
            Some(Body::Stream { key, digest, size, stored }) => Some(StreamRef {
                index: self.index,
                key,
                digest,
                size: *size,
                ctx: &stored.ctx,
                created: stored.created,
            }),
            _ => None,
        }
    }
}

/// An authentic stream entry, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamRef<'a> {
    pub(crate) index: u64,
    pub(crate) key: &'a str,
    pub(crate) digest: &'a [u8; 32],
    pub(crate) size: u64,
    pub(crate) ctx: &'a BackupContext,
    pub(crate) created: u64,
}

/// Catalog keys by key version, derived once per use of the catalog.
pub(crate) struct Keys<'t> {
    tenant: &'t Tenant,
    cache: HashMap<KeyVersion, CatalogKey>,
}

impl<'t> Keys<'t> {
    pub(crate) fn new(tenant: &'t Tenant) -> Self {
        Self { tenant, cache: HashMap::new() }
    }

    /// The catalog key of `version`.
    pub(crate) fn get(&mut self, version: KeyVersion) -> Result<&CatalogKey, OpenError> {
        if !self.cache.contains_key(&version) {
            let k = self.tenant.backup_key_for_open(version)?;
            self.cache.insert(version, CatalogKey::derive(&k.key, self.tenant.id()));
        }
        self.cache.get(&version).ok_or(OpenError::Authentication)
    }
}

/// Parses and authenticates one catalog object.
pub(crate) fn authenticate(keys: &mut Keys<'_>, bytes: &[u8]) -> State {
    let Some(parsed) = Entry::parse(bytes) else { return State::Unauthentic };
    let version = parsed.entry.key_version;
    match keys.get(version) {
        Ok(key) => parsed.authenticate(key).map_or(State::Unauthentic, |e| State::Good(Box::new(e))),
        // An unknown version is indistinguishable from a forged one.
        Err(OpenError::Authentication) => State::Unauthentic,
        Err(_) => State::KeyUnavailable(version),
    }
}

/// Reads an object of at most `max` bytes (`None` if it is larger).
pub(crate) fn read_small(store: &dyn ObjectStore, key: &str, max: usize) -> Result<Option<Vec<u8>>, StoreError> {
    let mut buf = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    store
        .get(key)?
        .take(limit)
        .read_to_end(&mut buf)
        .map_err(|source| StoreError::Io { key: key.to_owned(), source })?;
    Ok((buf.len() <= max).then_some(buf))
}

/// Every catalog object of `tenant`, in index order, each authenticated.
///
/// # Errors
/// Store errors only: what the objects hold is reported in their [`State`].
pub(crate) fn load(store: &dyn ObjectStore, tenant: &Tenant) -> Result<Vec<Slot>, RepoError> {
    let prefix = tenant_prefix(tenant.id());
    let mut keys = Keys::new(tenant);
    let mut slots = Vec::new();
    for meta in store.list(&format!("{prefix}catalog/"))? {
        let Some(index) = index_of(&prefix, &meta.key) else { continue };
        let bytes = match read_small(store, &meta.key, MAX_ENTRY_LEN) {
            Ok(b) => b.unwrap_or_default(),
            // Deleted since it was listed (a concurrent prune): as if never listed.
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let state = authenticate(&mut keys, &bytes);
        slots.push(Slot { index, hash: entry_hash(&bytes), bytes, state });
    }
    slots.sort_by_key(|s| s.index);
    Ok(slots)
}

/// The lowest entry index the catalog must hold: the `first_kept` of the newest authentic
/// prune entry, or 0.
pub(crate) fn first_kept(slots: &[Slot]) -> u64 {
    slots
        .iter()
        .rev()
        .find_map(|s| match s.entry().map(|e| &e.body) {
            Some(Body::Prune { first_kept, .. }) => Some(*first_kept),
            _ => None,
        })
        .unwrap_or(0)
}

/// The stream object keys that any catalog object names, authentic or not (a stream named
/// by a damaged entry is that entry's problem, not an orphan).
pub(crate) fn named_streams(slots: &[Slot]) -> std::collections::BTreeSet<String> {
    slots
        .iter()
        .filter_map(|s| Entry::parse(&s.bytes))
        .filter_map(|p| match p.entry.body {
            Body::Stream { key, .. } => Some(key),
            Body::Prune { .. } => None,
        })
        .collect()
}

/// The authentic stream entries at or above `first_kept`, in index order.
pub(crate) fn kept_streams(slots: &[Slot]) -> Vec<StreamRef<'_>> {
    let first = first_kept(slots);
    slots.iter().filter(|s| s.index >= first).filter_map(Slot::stream).collect()
}
