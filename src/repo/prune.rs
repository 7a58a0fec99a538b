//! Pruning to a time window without breaking a chain, and removing orphan streams.

use std::collections::BTreeSet;

use serde::Serialize;

use super::catalog::{Body, entry_key};
use super::load::{self, StreamRef, tenant_prefix};
use super::{CatalogEntry, Repository, Slot};
use crate::error::RepoError;
use crate::{BackupKind, Tenant};

/// What [`Repository::prune`] kept and removed (or would, in a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Backups created before this time (seconds since the Unix epoch) are removed unless
    /// a kept backup needs them.
    pub cutoff: u64,
    /// The lowest catalog index kept.
    pub first_kept: u64,
    /// The backups kept, oldest first.
    pub kept: Vec<CatalogEntry>,
    /// The backups removed (or to remove), oldest first.
    pub removed: Vec<CatalogEntry>,
    /// Whether nothing was changed.
    pub dry_run: bool,
}

impl Repository {
    /// Removes `tenant`'s backups created before `now - keep_within_secs`, except those a
    /// kept backup needs (the full backup and incrementals its chain starts from); if no
    /// backup is that recent, the newest chain is kept. Writes a prune entry first (so a
    /// removal is never mistaken for a deletion by someone else), then deletes the streams
    /// and the entries below the first kept one. `dry_run` only reports.
    ///
    /// # Errors
    /// [`RepoError::Store`]; [`RepoError::CatalogDamaged`] if the prune entry cannot be
    /// appended.
    pub fn prune(
        &self,
        tenant: &Tenant,
        keep_within_secs: u64,
        now: u64,
        dry_run: bool,
    ) -> Result<PruneReport, RepoError> {
        let slots = load::load(self.store(), tenant)?;
        let cutoff = now.saturating_sub(keep_within_secs);
        let kept_streams = load::kept_streams(&slots);
        let keep = keep_set(&kept_streams, cutoff);
        let old_first = load::first_kept(&slots);
        let first_kept = keep.first().copied().unwrap_or(old_first).max(old_first);
        let view = |pred: &dyn Fn(u64) -> bool| -> Vec<CatalogEntry> {
            slots.iter().filter(|s| pred(s.index)).filter_map(CatalogEntry::from_slot).collect()
        };
        let report = PruneReport {
            cutoff,
            first_kept,
            kept: view(&|i| i >= first_kept),
            removed: view(&|i| i < first_kept),
            dry_run,
        };
        if dry_run {
            return Ok(report);
        }
        if first_kept > old_first {
            self.append(tenant, Body::Prune { tenant: tenant.id().clone(), first_kept, cutoff })?;
        }
        self.remove_below(&slots, tenant, first_kept)?;
        tracing::info!(target: "atrest::audit", event = "repo.prune", repo = %self.name, tenant = %tenant.id(),
            cutoff, first_kept, removed = report.removed.len());
        Ok(report)
    }

    /// Deletes the streams, then the catalog objects, below `first_kept`.
    pub(crate) fn remove_below(&self, slots: &[Slot], tenant: &Tenant, first_kept: u64) -> Result<(), RepoError> {
        let prefix = tenant_prefix(tenant.id());
        let below = || slots.iter().filter(|s| s.index < first_kept);
        // Streams named by a kept entry stay, even if an older entry names them too.
        let needed: BTreeSet<&str> =
            slots.iter().filter(|s| s.index >= first_kept).filter_map(Slot::stream).map(|s| s.key).collect();
        for s in below().filter_map(Slot::stream).filter(|s| !needed.contains(s.key)) {
            self.store().delete(s.key)?;
        }
        for s in below() {
            self.store().delete(&entry_key(&prefix, s.index))?;
        }
        Ok(())
    }

    /// Deletes the streams of `tenant` that no catalog entry names (left by interrupted
    /// backups). Run it only when no backup of the tenant is being written: a stream being
    /// stored has no entry yet. Returns the object keys removed.
    ///
    /// # Errors
    /// [`RepoError::Store`].
    pub fn remove_orphans(&self, tenant: &Tenant) -> Result<Vec<String>, RepoError> {
        let slots = load::load(self.store(), tenant)?;
        let named = load::named_streams(&slots);
        let prefix = tenant_prefix(tenant.id());
        let mut removed = Vec::new();
        for m in self.store().list(&format!("{prefix}streams/"))? {
            if !named.contains(&m.key) {
                self.store().delete(&m.key)?;
                removed.push(m.key);
            }
        }
        tracing::info!(target: "atrest::audit", event = "repo.orphans.removed", repo = %self.name, tenant = %tenant.id(), count = removed.len());
        Ok(removed)
    }
}

/// The indexes to keep, ascending: every backup created at or after `cutoff` and every
/// backup their chains need; the newest chain if nothing is that recent.
fn keep_set(kept: &[StreamRef<'_>], cutoff: u64) -> Vec<u64> {
    let mut keep = BTreeSet::new();
    let mut roots: Vec<&StreamRef<'_>> = kept.iter().filter(|s| s.created >= cutoff).collect();
    if roots.is_empty() {
        roots.extend(kept.last());
    }
    for root in roots {
        let mut cur = root;
        while keep.insert(cur.index) && cur.ctx.kind() == BackupKind::Incremental {
            let parent = cur.ctx.parent();
            match kept.iter().rev().find(|s| s.index < cur.index && Some(s.ctx.snapshot_id()) == parent) {
                Some(p) => cur = p,
                None => break,
            }
        }
    }
    keep.into_iter().collect()
}
