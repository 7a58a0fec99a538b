//! Public key identifiers and states (never secret).

use core::fmt;

use serde::{Deserialize, Serialize};

/// The version number of a master key in a keyring (1, 2, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MasterVersion(u16);

impl MasterVersion {
    /// Version `n`.
    pub const fn new(n: u16) -> Self {
        Self(n)
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }

    pub(crate) fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

impl fmt::Display for MasterVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// The key that sealed something: a master key version and the tenant's generation.
///
/// Every sealed record and backup header names one, so opening picks exactly one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyVersion {
    /// The master key version.
    pub master: MasterVersion,
    /// The tenant's key generation (bumped by a per-tenant rotation).
    pub generation: u16,
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/g{}", self.master, self.generation)
    }
}

/// The state of a master key version.
///
/// `Primary` (encrypts and decrypts) > `Enabled` (decrypts only) > `Disabled` (refuses,
/// reversible) > `Destroyed` (material erased, irreversible).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyState {
    /// Seals new data and opens old data. Exactly one version is primary.
    Primary,
    /// Opens data sealed under it; seals nothing new.
    Enabled,
    /// Refuses everything until enabled again.
    Disabled,
    /// Key material erased from the keyring: everything sealed under it is unrecoverable.
    Destroyed,
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyState::Primary => "primary",
            KeyState::Enabled => "enabled",
            KeyState::Disabled => "disabled",
            KeyState::Destroyed => "destroyed",
        })
    }
}
