//! The AEAD suites, as one small enum with static dispatch (no registry).

use core::fmt;

/// An AEAD algorithm, named by one byte in every sealed format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Suite {
    /// XAES-256-GCM (default): 192-bit random nonces, no practical per-key message limit.
    /// Used for records and key wrapping.
    #[default]
    XAes256Gcm,
    /// AES-256-GCM with 96-bit nonces. Used only where nonces are derived, never random under
    /// a long-lived key: backup chunks (per-stream key, counter nonces).
    Aes256Gcm,
    /// XChaCha20-Poly1305: 192-bit random nonces; for CPUs without AES instructions.
    XChaCha20Poly1305,
}

impl Suite {
    /// The byte that names this suite in sealed formats.
    pub const fn id(self) -> u8 {
        match self {
            Suite::XAes256Gcm => 1,
            Suite::Aes256Gcm => 2,
            Suite::XChaCha20Poly1305 => 3,
        }
    }

    /// The suite named by `id`, if any.
    pub const fn from_id(id: u8) -> Option<Suite> {
        match id {
            1 => Some(Suite::XAes256Gcm),
            2 => Some(Suite::Aes256Gcm),
            3 => Some(Suite::XChaCha20Poly1305),
            _ => None,
        }
    }

    /// Nonce length in bytes.
    pub const fn nonce_len(self) -> usize {
        match self {
            Suite::XAes256Gcm | Suite::XChaCha20Poly1305 => 24,
            Suite::Aes256Gcm => 12,
        }
    }

    /// Tag length in bytes (16 for every suite).
    pub const fn tag_len(self) -> usize {
        16
    }

    /// The suite's name as used in specifications.
    pub const fn name(self) -> &'static str {
        match self {
            Suite::XAes256Gcm => "XAES-256-GCM",
            Suite::Aes256Gcm => "AES-256-GCM",
            Suite::XChaCha20Poly1305 => "XChaCha20-Poly1305",
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for s in [Suite::XAes256Gcm, Suite::Aes256Gcm, Suite::XChaCha20Poly1305] {
            assert_eq!(Suite::from_id(s.id()), Some(s));
        }
        assert_eq!(Suite::from_id(0), None);
        assert_eq!(Suite::from_id(4), None);
    }
}
