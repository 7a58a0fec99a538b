//! The revision anchor: the highest revision of one keyring this host has seen, kept in a
//! small file apart from the keyring, so that a restarted process refuses an older document.
//!
//! Format (text): `atrest-anchor v1 <keyring id, 32 hex> <revision>\n`. The anchor holds no
//! secret; it only raises a floor. Someone who can write both the keyring and the anchor can
//! roll both back: keep the anchor where the keyring's writers cannot (another disk, a
//! directory only the application user can write).

use std::path::{Path, PathBuf};

use crate::error::KeyringError;
use crate::fs;

const PREFIX: &str = "atrest-anchor v1 ";

/// A revision anchor file.
pub(crate) struct Anchor {
    path: PathBuf,
}

impl Anchor {
    pub(crate) fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf() }
    }

    fn corrupted(&self, reason: &str) -> KeyringError {
        KeyringError::Corrupted { path: self.path.clone(), reason: format!("revision anchor: {reason}") }
    }

    /// The keyring id and revision recorded, if the anchor exists.
    fn read(&self) -> Result<Option<([u8; 16], u64)>, KeyringError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(KeyringError::Io { path: self.path.clone(), source }),
        };
        let line =
            text.strip_suffix('\n').and_then(|t| t.strip_prefix(PREFIX)).ok_or_else(|| self.corrupted("bad line"))?;
        let (id, rev) = line.split_once(' ').ok_or_else(|| self.corrupted("bad line"))?;
        let mut id_bytes = [0u8; 16];
        hex::decode_to_slice(id, &mut id_bytes).map_err(|_| self.corrupted("bad keyring id"))?;
        let rev = rev.parse().map_err(|_| self.corrupted("bad revision"))?;
        Ok(Some((id_bytes, rev)))
    }

    /// Refuses a document of another keyring, or older than the anchor.
    pub(crate) fn check(&self, id: &[u8; 16], revision: u64) -> Result<(), KeyringError> {
        match self.read()? {
            Some((anchored, _)) if anchored != *id => {
                Err(KeyringError::Substituted { expected: hex::encode(anchored), found: hex::encode(id) })
            }
            Some((_, floor)) if revision < floor => Err(KeyringError::RolledBack { seen: floor, offered: revision }),
            _ => Ok(()),
        }
    }

    /// Raises the anchor to `revision` (never lowers it).
    pub(crate) fn raise(&self, id: &[u8; 16], revision: u64) -> Result<(), KeyringError> {
        self.check(id, revision)?;
        if matches!(self.read()?, Some((_, floor)) if floor >= revision) {
            return Ok(());
        }
        let text = format!("{PREFIX}{} {revision}\n", hex::encode(id));
        fs::replace(&self.path, text.as_bytes()).map_err(|source| KeyringError::Io { path: self.path.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_only_rises_and_pins_the_id() {
        let dir = tempfile::tempdir().unwrap();
        let a = Anchor::new(&dir.path().join("anchor"));
        let id = [7u8; 16];
        a.check(&id, 0).unwrap();
        a.raise(&id, 5).unwrap();
        assert!(a.raise(&id, 3).is_err(), "an older document is refused, the anchor stays");
        assert!(matches!(a.check(&id, 4), Err(KeyringError::RolledBack { seen: 5, offered: 4 })));
        a.check(&id, 5).unwrap();
        assert!(matches!(a.check(&[8u8; 16], 9), Err(KeyringError::Substituted { .. })));
        std::fs::write(dir.path().join("anchor"), "garbage").unwrap();
        assert!(matches!(a.check(&id, 9), Err(KeyringError::Corrupted { .. })));
    }
}
