//! Replicating a tenant to a second repository: copy what is missing (streams checked
//! against their entries while copied, then the entries), follow the source's prunes,
//! verify the destination.

use std::io::{self, Read};

use serde::Serialize;

use super::catalog::entry_key;
use super::load::{self, tenant_prefix};
use super::store::StoreError;
use super::verify::{ChainReport, Hashing};
use super::{Repository, Slot};
use crate::Tenant;
use crate::error::RepoError;

/// What [`Repository::replicate`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplicateReport {
    /// Objects copied (streams and catalog entries).
    pub copied: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Objects removed at the destination because the source pruned them.
    pub removed: u64,
    /// The destination's verification after the copy.
    pub verify: ChainReport,
}

impl Repository {
    /// Copies `tenant`'s authentic entries and their streams that `to` lacks (each stream
    /// checked against its entry's size and SHA-256 as it is copied: a mismatch stores
    /// nothing), removes at `to` what the source's last prune removed, then verifies `to`
    /// with [`Repository::verify_chain`].
    ///
    /// A replica also guards the source: if `to` holds an entry the source lacks above the
    /// source's newest, or a different entry under the same index, the source lost entries
    /// or was rolled back, and nothing is copied.
    ///
    /// # Errors
    /// [`RepoError::ReplicaDiverged`], [`RepoError::StreamMismatch`], [`RepoError::Store`].
    pub fn replicate(&self, tenant: &Tenant, to: &Repository) -> Result<ReplicateReport, RepoError> {
        let src = load::load(self.store(), tenant)?;
        let dst = load::load(to.store(), tenant)?;
        check_divergence(tenant, &src, &dst)?;
        let prefix = tenant_prefix(tenant.id());
        let first = load::first_kept(&src);
        let (mut copied, mut bytes) = (0u64, 0u64);
        for slot in src.iter().filter(|s| s.index >= first && s.entry().is_some()) {
            if let Some(s) = slot.stream()
                && to.store().head(s.key)?.is_none()
            {
                let input = self.store().get(s.key)?;
                let mut checked = Checked {
                    inner: Hashing::new(input.take(s.size.saturating_add(1))),
                    size: s.size,
                    digest: *s.digest,
                };
                bytes += to.store().put_new(s.key, &mut checked).map_err(|e| match e {
                    StoreError::Io { source, .. } if source.kind() == io::ErrorKind::InvalidData => {
                        RepoError::StreamMismatch {
                            tenant: tenant.id().to_string(),
                            snapshot: s.ctx.snapshot_id().to_owned(),
                            reason: "the source's stream is not the one its entry records",
                        }
                    }
                    other => other.into(),
                })?;
                copied += 1;
            }
            if !dst.iter().any(|d| d.index == slot.index) {
                let key = entry_key(&prefix, slot.index);
                bytes += to.store().put_new(&key, &mut slot.bytes.as_slice())?;
                copied += 1;
            }
        }
        let dst_now = load::load(to.store(), tenant)?;
        let removed = dst_now.iter().filter(|s| s.index < first).count() as u64;
        to.remove_below(&dst_now, tenant, first)?;
        let verify = to.verify_chain(tenant)?;
        tracing::info!(target: "atrest::audit", event = "repo.replicate", from = %self.name, to = %to.name,
            tenant = %tenant.id(), copied, bytes, removed, ok = verify.is_ok());
        Ok(ReplicateReport { copied, bytes, removed, verify })
    }
}

/// Refuses when the destination is ahead of the source or differs from it at an index.
fn check_divergence(tenant: &Tenant, src: &[Slot], dst: &[Slot]) -> Result<(), RepoError> {
    let diverged = |index, reason| RepoError::ReplicaDiverged { tenant: tenant.id().to_string(), index, reason };
    let src_head = src.last().map(|s| s.index);
    for d in dst {
        match src.iter().find(|s| s.index == d.index) {
            Some(s) if s.bytes != d.bytes => {
                return Err(diverged(d.index, "the replica holds a different entry under this index"));
            }
            None if src_head.is_none_or(|h| d.index > h) => {
                return Err(diverged(
                    d.index,
                    "the replica holds newer entries than the source: the source lost entries or was rolled back",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A reader that fails (`InvalidData`) at its end unless exactly `size` bytes with SHA-256
/// `digest` went through it, so a store discards a mismatching copy.
struct Checked<R> {
    inner: Hashing<R>,
    size: u64,
    digest: [u8; 32],
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if (n == 0 && !buf.is_empty() && (self.inner.len != self.size || self.inner.digest() != self.digest))
            || self.inner.len > self.size
        {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the stream does not match its catalog entry"));
        }
        Ok(n)
    }
}
