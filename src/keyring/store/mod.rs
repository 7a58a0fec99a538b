//! Where a keyring document lives: a file (the embedded default) or a PostgreSQL table
//! (feature `postgres`). A store holds the authenticated document as opaque bytes; it
//! serializes changes (a file lock, a database transaction with compare-and-swap on the
//! revision) and tells a watcher cheaply whether the document may have changed.

mod file;

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use file::FileStore;

use crate::error::KeyringError;

/// A change to apply to the current document: returns the new document and its revision.
pub(crate) type Change<'a> = dyn FnMut(&[u8]) -> Result<Option<(Vec<u8>, u64)>, KeyringError> + 'a;

/// A place that holds one keyring document.
pub(crate) trait Store: Send + Sync + 'static {
    /// The location, for messages (never a password).
    fn describe(&self) -> String;

    /// The current document.
    fn read(&self) -> Result<Vec<u8>, KeyringError>;

    /// Stores the first document; fails with [`KeyringError::AlreadyExists`] if there is one.
    fn create(&self, doc: &[u8], revision: u64) -> Result<(), KeyringError>;

    /// Applies `change` to the current document with every other writer excluded (and the
    /// document re-read under that exclusion). `change` returns `None` for "nothing to write".
    fn update(&self, change: &mut Change<'_>) -> Result<(), KeyringError>;

    /// A cheap value that differs whenever the document changed (a file's identity, size and
    /// times; a row's revision), for the watcher. Reading the document itself decides.
    fn fingerprint(&self) -> Result<Vec<u8>, KeyringError>;

    /// Waits up to `timeout` for a sign of change (a notification), or just sleeps.
    fn wait(&self, timeout: Duration) {
        std::thread::sleep(timeout);
    }

    /// The file behind this store, if it is one.
    fn path(&self) -> Option<&std::path::Path> {
        None
    }
}

/// Where a keyring lives, as given on a command line or in configuration: a file path, or
/// (feature `postgres`) a `postgres://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringLocation {
    /// A keyring file.
    File(PathBuf),
    /// A row in a PostgreSQL table: the connection URL as given (with `table` and
    /// `keyring` query parameters naming the table and the row).
    Postgres(String),
}

impl KeyringLocation {
    /// Parses a location: `postgres://…` or `postgresql://…` is a database, anything else a
    /// file path.
    pub fn parse(location: &str) -> Self {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            KeyringLocation::Postgres(location.to_owned())
        } else {
            KeyringLocation::File(PathBuf::from(location))
        }
    }

    /// Opens the store at this location.
    pub(crate) fn store(&self) -> Result<Box<dyn Store>, KeyringError> {
        match self {
            KeyringLocation::File(p) => Ok(Box::new(FileStore::new(p.clone()))),
            KeyringLocation::Postgres(_) => {
                Err(KeyringError::StoreUnsupported("PostgreSQL keyring stores need the `postgres` feature of atrest"))
            }
        }
    }
}

impl core::fmt::Display for KeyringLocation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KeyringLocation::File(p) => write!(f, "{}", p.display()),
            KeyringLocation::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

/// `url` with any password replaced by `***`.
pub(crate) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_never_print_passwords() {
        assert_eq!(KeyringLocation::parse("/var/lib/k.atrk"), KeyringLocation::File("/var/lib/k.atrk".into()));
        let pg = KeyringLocation::parse("postgres://app:s3cret@db:5432/crm?table=keyrings");
        assert!(matches!(pg, KeyringLocation::Postgres(_)));
        assert_eq!(pg.to_string(), "postgres://app:***@db:5432/crm?table=keyrings");
        assert_eq!(redact_password("postgresql://app@db/crm"), "postgresql://app@db/crm");
        assert_eq!(redact_password("postgres://db/crm"), "postgres://db/crm");
    }
}
