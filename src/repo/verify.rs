//! `verify_chain`: the catalog authentic and complete, every stream present and authentic,
//! every incremental's chain back to its full backup complete.

use std::collections::HashMap;
use std::io::{self, Read};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::load::{self, State, StreamRef, tenant_prefix};
use super::{Repository, Slot};
use crate::error::RepoError;
use crate::{BackupKind, BackupOptions, BackupReader, KeyVersion, Tenant};

/// One problem [`Repository::verify_chain`] found. Entry indexes name catalog entries;
/// snapshot ids name the backups. Warnings ([`Problem::is_warning`]) do not make the
/// repository fail verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// A catalog object that is not an authentic entry of this tenant (modified, forged,
    /// or made under another key).
    BadEntry {
        /// Its index (from its object key).
        index: u64,
    },
    /// An authentic entry stored under another entry's index: the catalog was reordered.
    Reordered {
        /// The index its object key names.
        index: u64,
        /// The index the entry itself records.
        claims: u64,
    },
    /// No entry with this index, though older and newer ones exist (deleted from the
    /// middle), or below the newest but above what the last prune kept.
    EntryMissing {
        /// The missing index.
        index: u64,
    },
    /// The entry does not name the previous entry's hash: an entry before it was replaced.
    BrokenLink {
        /// The entry whose link is wrong.
        index: u64,
    },
    /// The entry's key version cannot be used (disabled, destroyed): not verified.
    KeyUnavailable {
        /// The entry.
        index: u64,
        /// Its key version.
        version: KeyVersion,
    },
    /// The stream the entry names is missing.
    MissingStream {
        /// The entry.
        index: u64,
        /// The snapshot id.
        snapshot: String,
    },
    /// The stream is shorter than its entry records.
    Truncated {
        /// The entry.
        index: u64,
        /// The snapshot id.
        snapshot: String,
        /// The size the entry records.
        expected: u64,
        /// The size stored.
        found: u64,
    },
    /// The stream's bytes are not the ones the entry records (another stream in its place).
    StreamReplaced {
        /// The entry.
        index: u64,
        /// The snapshot id.
        snapshot: String,
    },
    /// The stream has the recorded digest but does not authenticate (for example its key
    /// version was destroyed).
    StreamUnauthentic {
        /// The entry.
        index: u64,
        /// The snapshot id.
        snapshot: String,
    },
    /// An incremental backup whose parent is not in the catalog.
    ParentMissing {
        /// The entry.
        index: u64,
        /// The snapshot id.
        snapshot: String,
        /// The parent it names.
        parent: String,
    },
    /// A sequence number that does not follow its parent's (or a full backup's that is not 0).
    GapInSequence {
        /// The entry.
        index: u64,
        /// The snapshot id.
        snapshot: String,
        /// The sequence the chain requires.
        expected: u64,
        /// The sequence recorded.
        found: u64,
    },
    /// A second entry for a snapshot id already in the catalog.
    DuplicateSnapshot {
        /// The later entry.
        index: u64,
        /// The snapshot id.
        snapshot: String,
    },
    /// Warning: a stream no entry names (a backup interrupted between its stream and its
    /// entry, or a prune interrupted). Removable with `prune --remove-orphans`.
    Orphan {
        /// Its object key.
        object: String,
    },
    /// Warning: an entry below what the last prune kept, still present (an interrupted
    /// prune; the next prune removes it).
    PruneIncomplete {
        /// The entry.
        index: u64,
    },
}

impl Problem {
    /// Whether this is only a warning (an orphan stream, an unfinished prune).
    pub fn is_warning(&self) -> bool {
        matches!(self, Self::Orphan { .. } | Self::PruneIncomplete { .. })
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadEntry { index } => write!(f, "entry {index}: not an authentic catalog entry of this tenant"),
            Self::Reordered { index, claims } => {
                write!(f, "entry {index}: holds entry {claims} (the catalog was reordered)")
            }
            Self::EntryMissing { index } => write!(f, "entry {index}: missing (deleted from the catalog)"),
            Self::BrokenLink { index } => write!(f, "entry {index}: does not link to the entry before it"),
            Self::KeyUnavailable { index, version } => write!(f, "entry {index}: key version {version} is not usable"),
            Self::MissingStream { index, snapshot } => write!(f, "entry {index}: stream of '{snapshot}' is missing"),
            Self::Truncated { index, snapshot, expected, found } => {
                write!(f, "entry {index}: stream of '{snapshot}' is truncated ({found} of {expected} bytes)")
            }
            Self::StreamReplaced { index, snapshot } => {
                write!(f, "entry {index}: stream of '{snapshot}' was replaced (its digest differs)")
            }
            Self::StreamUnauthentic { index, snapshot } => {
                write!(f, "entry {index}: stream of '{snapshot}' does not authenticate")
            }
            Self::ParentMissing { index, snapshot, parent } => {
                write!(f, "entry {index}: the parent '{parent}' of '{snapshot}' is not in the catalog")
            }
            Self::GapInSequence { index, snapshot, expected, found } => {
                write!(f, "entry {index}: '{snapshot}' has sequence {found}, its chain needs {expected}")
            }
            Self::DuplicateSnapshot { index, snapshot } => {
                write!(f, "entry {index}: '{snapshot}' is already in the catalog")
            }
            Self::Orphan { object } => {
                write!(f, "warning: stream {object} is named by no entry (an interrupted backup)")
            }
            Self::PruneIncomplete { index } => write!(f, "warning: entry {index} should have been pruned"),
        }
    }
}

/// What [`Repository::verify_chain`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChainReport {
    /// The tenant.
    pub tenant: String,
    /// Catalog objects read.
    pub entries: u64,
    /// Streams read and authenticated.
    pub streams_verified: u64,
    /// Bytes of those streams.
    pub bytes_verified: u64,
    /// The index of the newest authentic entry.
    pub head_index: Option<u64>,
    /// The hash of the newest authentic entry (hex): keep it elsewhere (an anchor) to detect
    /// a later rollback of the catalog.
    pub head: Option<String>,
    /// Every problem found, in catalog order.
    pub problems: Vec<Problem>,
}

impl ChainReport {
    /// Whether the repository verified: no problems other than warnings.
    pub fn is_ok(&self) -> bool {
        self.problems.iter().all(Problem::is_warning)
    }
}

impl Repository {
    /// Verifies `tenant`'s catalog and every stream it keeps, and names each problem.
    ///
    /// # Errors
    /// [`RepoError::Store`] when the store cannot be read; problems with what it holds are
    /// in the report.
    pub fn verify_chain(&self, tenant: &Tenant) -> Result<ChainReport, RepoError> {
        let slots = load::load(self.store(), tenant)?;
        let mut problems = catalog_problems(&slots);
        let kept = load::kept_streams(&slots);
        problems.extend(chain_problems(&kept));
        let (mut streams_verified, mut bytes_verified) = (0, 0);
        for s in &kept {
            match self.check_stream(tenant, s)? {
                Some(p) => problems.push(p),
                None => {
                    streams_verified += 1;
                    bytes_verified += s.size;
                }
            }
        }
        let named = load::named_streams(&slots);
        let prefix = tenant_prefix(tenant.id());
        for m in self.store().list(&format!("{prefix}streams/"))? {
            if !named.contains(&m.key) {
                problems.push(Problem::Orphan { object: m.key });
            }
        }
        let head = slots.iter().rev().find(|s| s.entry().is_some());
        let report = ChainReport {
            tenant: tenant.id().to_string(),
            entries: slots.len() as u64,
            streams_verified,
            bytes_verified,
            head_index: head.map(|s| s.index),
            head: head.map(|s| hex::encode(s.hash)),
            problems,
        };
        tracing::info!(target: "atrest::audit", event = "repo.verify", repo = %self.name, tenant = %tenant.id(),
            entries = report.entries, problems = report.problems.len(), ok = report.is_ok());
        Ok(report)
    }

    /// Reads one stream: present, as long as recorded, the recorded digest, authentic.
    fn check_stream(&self, tenant: &Tenant, s: &StreamRef<'_>) -> Result<Option<Problem>, RepoError> {
        let (index, snapshot) = (s.index, s.ctx.snapshot_id().to_owned());
        let found = match self.store().head(s.key)? {
            None => return Ok(Some(Problem::MissingStream { index, snapshot })),
            Some(m) => m.size,
        };
        if found < s.size {
            return Ok(Some(Problem::Truncated { index, snapshot, expected: s.size, found }));
        }
        let mut input = Hashing::new(self.store().get(s.key)?);
        let authentic = BackupReader::open_with_options(tenant, Some(s.ctx), &mut input, read_options(s.size))
            .and_then(|mut r| r.copy_to(io::sink()));
        // Whatever the reader left unread still counts for the digest.
        io::copy(&mut input, &mut io::sink())
            .map_err(|source| super::store::StoreError::Io { key: s.key.to_owned(), source })?;
        if input.digest() != *s.digest || input.len != s.size {
            return Ok(Some(Problem::StreamReplaced { index, snapshot }));
        }
        Ok(authentic.is_err().then_some(Problem::StreamUnauthentic { index, snapshot }))
    }
}

/// Catalog structure: authentic entries, each under its own index, no gaps above what the
/// last prune kept, each linked to its predecessor.
fn catalog_problems(slots: &[Slot]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let first = load::first_kept(slots);
    let by_index: HashMap<u64, &Slot> = slots.iter().map(|s| (s.index, s)).collect();
    let mut expected = first;
    for s in slots {
        if s.index < first {
            problems.push(Problem::PruneIncomplete { index: s.index });
            continue;
        }
        problems.extend((expected..s.index).map(|index| Problem::EntryMissing { index }));
        expected = s.index.saturating_add(1);
        match &s.state {
            State::Unauthentic => problems.push(Problem::BadEntry { index: s.index }),
            State::KeyUnavailable(version) => {
                problems.push(Problem::KeyUnavailable { index: s.index, version: *version });
            }
            State::Good(e) if e.index != s.index => {
                problems.push(Problem::Reordered { index: s.index, claims: e.index });
            }
            State::Good(e) => {
                let link_ok = match s.index.checked_sub(1) {
                    None => e.prev == [0; 32],
                    // The first entry a prune kept links to a removed one.
                    Some(_) if s.index == first => true,
                    // A missing or unauthentic predecessor is reported as such.
                    Some(p) => by_index.get(&p).is_none_or(|prev| prev.entry().is_none() || prev.hash == e.prev),
                };
                if !link_ok {
                    problems.push(Problem::BrokenLink { index: s.index });
                }
            }
        }
    }
    problems
}

/// Chains: every incremental's parent present before it, sequences consecutive, fulls at 0,
/// snapshot ids unique.
fn chain_problems(kept: &[StreamRef<'_>]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen: HashMap<&str, &StreamRef<'_>> = HashMap::new();
    for s in kept {
        let (index, snapshot) = (s.index, s.ctx.snapshot_id());
        let expected = match (s.ctx.kind(), s.ctx.parent()) {
            (BackupKind::Full, _) => Some(0),
            (BackupKind::Incremental, Some(parent)) => match seen.get(parent) {
                Some(p) => Some(p.ctx.sequence().saturating_add(1)),
                None => {
                    let parent = parent.to_owned();
                    problems.push(Problem::ParentMissing { index, snapshot: snapshot.to_owned(), parent });
                    None
                }
            },
            (BackupKind::Incremental, None) => None,
        };
        if let Some(expected) = expected.filter(|&e| e != s.ctx.sequence()) {
            let found = s.ctx.sequence();
            problems.push(Problem::GapInSequence { index, snapshot: snapshot.to_owned(), expected, found });
        }
        if seen.insert(snapshot, s).is_some() {
            problems.push(Problem::DuplicateSnapshot { index, snapshot: snapshot.to_owned() });
        }
    }
    problems
}

/// How to read a stream of `size` bytes: a small one on the calling thread (a parallel
/// reader's buffers, sized for several chunks per core, cost more than the stream).
pub(crate) fn read_options(size: u64) -> BackupOptions {
    let opts = BackupOptions::default();
    if size < 8 << 20 { opts.threads(1) } else { opts }
}

/// A reader that hashes and counts what passes through.
pub(crate) struct Hashing<R> {
    inner: R,
    hash: Sha256,
    pub(crate) len: u64,
}

impl<R: Read> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self { inner, hash: Sha256::new(), len: 0 }
    }

    pub(crate) fn digest(&self) -> [u8; 32] {
        self.hash.clone().finalize().into()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = buf.get(..n).unwrap_or_default();
        self.hash.update(got);
        self.len += got.len() as u64;
        Ok(n)
    }
}
