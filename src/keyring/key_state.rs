//! The states of a master key version (public, never secret).

use core::fmt;

use serde::{Deserialize, Serialize};

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
