//! The public facts of a stream header, readable without any key: [`inspect_backup`].

use std::io::Read;

use serde::{Serialize, Serializer};

use super::BackupKind;
use super::header::{CHUNK_SUITE, Header, Wrap};
use super::recipient::RecipientKem;
use crate::error::BackupError;
use crate::{KeyVersion, Suite};

impl Header {
    /// The header's public facts.
    pub(crate) fn info(&self) -> BackupInfo {
        let stored = self.stored.as_ref();
        BackupInfo {
            format_version: self.format(),
            suite: CHUNK_SUITE,
            chunk_size: self.chunk_size,
            key_version: self.key_version(),
            header_len: self.len() as u64,
            stream_id: hex::encode(self.salt.get(..16).unwrap_or_default()),
            tenant: stored.map(|s| s.tenant.as_str().to_owned()),
            snapshot_id: stored.map(|s| s.ctx.snapshot_id().to_owned()),
            parent: stored.and_then(|s| s.ctx.parent().map(str::to_owned)),
            kind: stored.map(|s| s.ctx.kind()),
            sequence: stored.map(|s| s.ctx.sequence()),
            created: stored.map(|s| s.created),
            wrapping: match &self.wrap {
                Wrap::Key(_) => "tenant-key",
                Wrap::Kem(k) => match k.kem {
                    RecipientKem::XWing => "recipient-x-wing",
                    RecipientKem::X25519 => "recipient-x25519",
                },
            },
        }
    }
}

/// Public facts from a backup header, readable without any key (see [`inspect_backup`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BackupInfo {
    /// The format version (1 or 2).
    pub format_version: u8,
    /// The chunk suite (AES-256-GCM).
    #[serde(serialize_with = "suite_name")]
    pub suite: Suite,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// The key version that wraps the stream's data key (changed by a rewrap).
    pub key_version: KeyVersion,
    /// The header length in bytes (the first chunk starts here).
    pub header_len: u64,
    /// A public identifier of the stream (hex of the first 16 bytes of its random salt): two
    /// streams with the same id are the same stream.
    pub stream_id: String,
    /// The tenant the stream belongs to (version 2; `None` for version 1).
    pub tenant: Option<String>,
    /// The snapshot id (version 2).
    pub snapshot_id: Option<String>,
    /// The parent snapshot id (version 2 incremental backups).
    pub parent: Option<String>,
    /// Full or incremental (version 2).
    pub kind: Option<BackupKind>,
    /// The sequence number in the chain (version 2).
    pub sequence: Option<u64>,
    /// When the stream was started, in seconds since the Unix epoch, UTC (version 2).
    pub created: Option<u64>,
    /// How the data key is held: "tenant-key" (under the tenant's backup key, by a writer
    /// with the keyring), "recipient-x-wing" or "recipient-x25519" (to a public recipient,
    /// by an encrypt-only writer).
    pub wrapping: &'static str,
}

fn suite_name<S: Serializer>(suite: &Suite, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(suite.name())
}

/// Reads a backup stream's header without any key: format version, suite, chunk size, key
/// version. Reads exactly the header's bytes from `input`.
///
/// Use it to find streams that still need [`rewrap_backup_header`](crate::rewrap_backup_header)
/// after a rotation.
///
/// # Errors
/// [`BackupError::NotABackup`], [`BackupError::UnsupportedFormat`],
/// [`BackupError::MalformedHeader`] for a truncated or impossible header,
/// [`BackupError::Io`].
///
/// # Security
/// Nothing is authenticated here: the facts are only as trustworthy as the file until the
/// stream is opened with its key.
pub fn inspect_backup<R: Read>(mut input: R) -> Result<BackupInfo, BackupError> {
    // Without a key nothing is authenticated here, so structural failures are named as such.
    Header::read_from(&mut input).map(|h| h.info()).map_err(|e| match e {
        BackupError::Authentication => BackupError::MalformedHeader,
        other => other,
    })
}
