//! Restoring: the chain for a point in apply order (full, then incrementals), each stream
//! checked against its entry and authenticated whole before any of its bytes are released.

use std::io::{self, Read, Seek, SeekFrom};

use super::load::{self, StreamRef};
use super::store::StoreError;
use super::verify::{Hashing, read_options};
use super::{CatalogEntry, Repository};
use crate::error::RepoError;
use crate::{BackupKind, BackupReader, Tenant};

/// Which backup to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestorePoint {
    /// The backup with this snapshot id.
    Snapshot(String),
    /// The newest backup created at or before this time (seconds since the Unix epoch).
    At(u64),
}

impl Repository {
    /// The backups to apply, in order, to restore `point`: its full backup, then each
    /// incremental up to it. Only the authentic catalog is read (streams are checked by
    /// [`Repository::restore`]).
    ///
    /// # Errors
    /// [`RepoError::NotFound`] if no backup matches, [`RepoError::BrokenChain`] if a parent
    /// is missing or a sequence does not follow, [`RepoError::Store`].
    pub fn restore_plan(&self, tenant: &Tenant, point: &RestorePoint) -> Result<Vec<CatalogEntry>, RepoError> {
        let slots = load::load(self.store(), tenant)?;
        let kept = load::kept_streams(&slots);
        let plan = plan(tenant, &kept, point)?;
        let entries: Vec<CatalogEntry> = plan
            .iter()
            .filter_map(|s| slots.iter().find(|slot| slot.index == s.index).and_then(CatalogEntry::from_slot))
            .collect();
        Ok(entries)
    }

    /// Restores `point`: for each backup of its plan in apply order, fetches the stream into
    /// a private temporary file (ciphertext only), checks it against its entry (size,
    /// SHA-256), authenticates it whole, and only then calls `consume` with a reader of its
    /// plaintext. A failure of `consume` stops the restore. Returns the plan.
    ///
    /// # Errors
    /// As [`Repository::restore_plan`]; [`RepoError::StreamMismatch`] (missing, truncated or
    /// replaced stream), [`RepoError::Backup`] (not authentic), [`RepoError::Consumer`].
    pub fn restore(
        &self,
        tenant: &Tenant,
        point: &RestorePoint,
        mut consume: impl FnMut(&CatalogEntry, &mut dyn Read) -> io::Result<()>,
    ) -> Result<Vec<CatalogEntry>, RepoError> {
        let plan = self.restore_plan(tenant, point)?;
        for entry in &plan {
            let mut spool = self.fetch_checked(tenant, entry)?;
            let ctx = entry.context();
            let opts = read_options(entry.size);
            BackupReader::open_with_options(tenant, Some(&ctx), &mut spool, opts)?.copy_to(io::sink())?;
            spool.seek(SeekFrom::Start(0)).map_err(|source| StoreError::Io { key: entry.object.clone(), source })?;
            let mut reader = BackupReader::open_with_options(tenant, Some(&ctx), spool, opts)?;
            consume(entry, &mut reader)
                .map_err(|source| RepoError::Consumer { snapshot: entry.snapshot_id.clone(), source })?;
            tracing::info!(target: "atrest::audit", event = "repo.restore.stream", repo = %self.name,
                tenant = %tenant.id(), snapshot = %entry.snapshot_id, index = entry.index);
        }
        Ok(plan)
    }

    /// The stream of `entry` in an anonymous temporary file, if its size and digest are
    /// the ones the entry records.
    fn fetch_checked(&self, tenant: &Tenant, entry: &CatalogEntry) -> Result<std::fs::File, RepoError> {
        let mismatch = |reason| RepoError::StreamMismatch {
            tenant: tenant.id().to_string(),
            snapshot: entry.snapshot_id.clone(),
            reason,
        };
        let io_err = |source| StoreError::Io { key: entry.object.clone(), source };
        let input = match self.store().get(&entry.object) {
            Err(StoreError::NotFound(_)) => return Err(mismatch("the stream is missing")),
            other => other?,
        };
        let mut input = Hashing::new(input.take(entry.size.saturating_add(1)));
        let mut spool = tempfile::tempfile().map_err(io_err)?;
        io::copy(&mut input, &mut spool).map_err(io_err)?;
        if input.len < entry.size {
            return Err(mismatch("the stream is truncated"));
        }
        if input.len != entry.size || hex::encode(input.digest()) != entry.digest {
            return Err(mismatch("the stream's bytes are not the ones its entry records"));
        }
        spool.seek(SeekFrom::Start(0)).map_err(io_err)?;
        Ok(spool)
    }
}

/// The chain for `point` in apply order.
fn plan<'a>(tenant: &Tenant, kept: &[StreamRef<'a>], point: &RestorePoint) -> Result<Vec<StreamRef<'a>>, RepoError> {
    let target = match point {
        RestorePoint::Snapshot(id) => kept.iter().rev().find(|s| s.ctx.snapshot_id() == id),
        RestorePoint::At(t) => kept.iter().filter(|s| s.created <= *t).max_by_key(|s| (s.created, s.index)),
    };
    let mut cur = *target.ok_or_else(|| RepoError::NotFound {
        tenant: tenant.id().to_string(),
        what: match point {
            RestorePoint::Snapshot(id) => format!("named '{id}'"),
            RestorePoint::At(t) => format!("created at or before {t} (unix time)"),
        },
    })?;
    let broken = |reason: String| RepoError::BrokenChain {
        tenant: tenant.id().to_string(),
        snapshot: cur.ctx.snapshot_id().to_owned(),
        reason,
    };
    let mut chain = vec![cur];
    while cur.ctx.kind() == BackupKind::Incremental {
        let Some(parent) = cur.ctx.parent() else { return Err(broken("an incremental without a parent".into())) };
        let p = kept
            .iter()
            .rev()
            .find(|s| s.index < cur.index && s.ctx.snapshot_id() == parent)
            .ok_or_else(|| broken(format!("its parent '{parent}' is not in the catalog")))?;
        if p.ctx.sequence().checked_add(1) != Some(cur.ctx.sequence()) {
            return Err(broken(format!(
                "sequence {} does not follow its parent's {} (a backup in between is missing)",
                cur.ctx.sequence(),
                p.ctx.sequence()
            )));
        }
        cur = *p;
        chain.push(cur);
    }
    if cur.ctx.sequence() != 0 {
        return Err(broken(format!("the full backup has sequence {}, not 0", cur.ctx.sequence())));
    }
    chain.reverse();
    Ok(chain)
}
