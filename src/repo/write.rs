//! Storing a backup: the stream into the store as it is encrypted, then its catalog entry.

use std::io::Read;

use super::catalog::{Body, CatalogKey, Entry, MAX_ENTRY_LEN, entry_key};
use super::load::{State, authenticate, read_small, tenant_prefix};
use super::pipe::{Written, pipe};
use super::store::StoreError;
use super::{CatalogEntry, Repository, Slot};
use crate::backup::Stored;
use crate::error::{BackupError, RepoError};
use crate::secret::random_array;
use crate::{BackupContext, BackupOptions, BackupWriter, Tenant, inspect_backup};

/// How often an append is retried when another writer took the index.
const APPEND_ATTEMPTS: usize = 16;

/// A backup stored in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredBackup {
    /// Its catalog entry.
    pub entry: CatalogEntry,
    /// The plaintext bytes encrypted.
    pub plaintext_bytes: u64,
}

impl Repository {
    /// Encrypts `input` for `tenant` bound to `ctx` straight into the repository (streamed:
    /// memory stays bounded), then appends it to the tenant's catalog.
    ///
    /// # Errors
    /// [`RepoError::Backup`] (bad context or options, unusable key, reading `input`),
    /// [`RepoError::Store`], [`RepoError::CatalogDamaged`], [`RepoError::Contention`]. On any
    /// error no entry was appended; a stream already stored is an orphan.
    pub fn store_backup<R: Read>(
        &self,
        tenant: &Tenant,
        ctx: &BackupContext,
        opts: BackupOptions,
        input: R,
    ) -> Result<StoredBackup, RepoError> {
        self.store_backup_if(tenant, ctx, opts, input, |_| true)
    }

    /// [`Repository::store_backup`], committing only if `commit(plaintext bytes)` returns
    /// true once the input is exhausted (for example: the producer exited 0, the input was
    /// not empty). Otherwise nothing is stored and the result is [`RepoError::Backup`] of
    /// [`BackupError::Finished`].
    ///
    /// # Errors
    /// As [`Repository::store_backup`].
    pub fn store_backup_if<R: Read>(
        &self,
        tenant: &Tenant,
        ctx: &BackupContext,
        opts: BackupOptions,
        mut input: R,
        commit: impl FnOnce(u64) -> bool,
    ) -> Result<StoredBackup, RepoError> {
        let prefix = tenant_prefix(tenant.id());
        let object = format!("{prefix}streams/{}.atrb", hex::encode(random_array::<16>().map_err(BackupError::from)?));
        let store = self.store();
        let (w, mut r) = pipe();
        let (encrypted, put) = std::thread::scope(|s| {
            let put = s.spawn(|| store.put_new(&object, &mut r));
            let encrypted = (|| {
                let mut bw = BackupWriter::new(tenant, ctx, opts, w)?;
                let n = bw.copy_from(&mut input)?;
                if !commit(n) {
                    return Err(BackupError::Finished);
                }
                let written = bw.finish()?.finish()?;
                Ok::<(u64, Written), BackupError>((n, written))
            })();
            let put = put.join().unwrap_or_else(|_| {
                Err(StoreError::Io { key: object.clone(), source: std::io::Error::other("the upload thread panicked") })
            });
            (encrypted, put)
        });
        // An encryption error explains a store error (the upload was abandoned), not the
        // other way round, except when the store stopped reading first.
        let (n, written) = match (encrypted, put) {
            (Ok(x), Ok(_)) => x,
            (Err(BackupError::Io(e)), Err(store)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Err(store.into());
            }
            (Err(e), _) => return Err(e.into()),
            (Ok(_), Err(store)) => return Err(store.into()),
        };
        let info = inspect_backup(written.head.as_slice())?;
        let (Some(tenant_id), Some(created)) = (info.tenant, info.created) else {
            return Err(BackupError::Internal("a new stream without a stored context").into());
        };
        if tenant_id != tenant.id().as_str() {
            return Err(BackupError::Internal("a new stream of another tenant").into());
        }
        let stored = Stored { tenant: tenant.id().clone(), ctx: ctx.clone(), created };
        let body = Body::Stream { key: object, digest: written.digest, size: written.size, stored };
        let slot = self.append(tenant, body)?;
        let entry = CatalogEntry::from_slot(&slot).ok_or(BackupError::Internal("a new entry did not read back"))?;
        tracing::info!(target: "atrest::audit", event = "repo.backup.stored", repo = %self.name, tenant = %tenant.id(),
            snapshot = ctx.snapshot_id(), index = entry.index, bytes = written.size);
        Ok(StoredBackup { entry, plaintext_bytes: n })
    }

    /// Appends an entry with `body` after the tenant's newest entry (which must be
    /// authentic), retrying with the next index when another writer took this one.
    pub(crate) fn append(&self, tenant: &Tenant, body: Body) -> Result<Slot, RepoError> {
        let prefix = tenant_prefix(tenant.id());
        for _ in 0..APPEND_ATTEMPTS {
            let (index, prev) = self.tail(tenant, &prefix)?;
            let key = tenant.backup_key_for_seal()?;
            let entry = Entry { index, prev, key_version: key.version, body: body.clone() };
            let bytes = entry
                .encode(&CatalogKey::derive(&key.key, tenant.id()))
                .ok_or_else(|| RepoError::InvalidParameter("the catalog entry is too large".into()))?;
            match self.store().put_new(&entry_key(&prefix, index), &mut bytes.as_slice()) {
                Ok(_) => {
                    let hash = super::catalog::entry_hash(&bytes);
                    return Ok(Slot { index, bytes, hash, state: State::Good(Box::new(entry)) });
                }
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RepoError::Contention(tenant.id().to_string()))
    }

    /// The next entry index and the hash of the newest entry (zeros for an empty catalog).
    fn tail(&self, tenant: &Tenant, prefix: &str) -> Result<(u64, [u8; 32]), RepoError> {
        let listed = self.store().list(&format!("{prefix}catalog/"))?;
        let Some(last) = listed.iter().rev().find_map(|m| super::catalog::index_of(prefix, &m.key)) else {
            return Ok((0, [0; 32]));
        };
        let damaged = || RepoError::CatalogDamaged { tenant: tenant.id().to_string(), index: last };
        let bytes = read_small(self.store(), &entry_key(prefix, last), MAX_ENTRY_LEN)?.ok_or_else(damaged)?;
        match authenticate(&mut super::load::Keys::new(tenant), &bytes) {
            State::Good(e) if e.index == last => {
                Ok((last.checked_add(1).ok_or_else(damaged)?, super::catalog::entry_hash(&bytes)))
            }
            _ => Err(damaged()),
        }
    }
}
