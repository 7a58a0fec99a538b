//! Per-tenant key derivation.
//!
//! ```text
//! prk_v      = HKDF-Extract(salt = keyring id (16 bytes), ikm = master key v)
//! tenant key = HKDF-Expand(prk_v, info, 32)
//! info       = len||"atrest/v1/tenant" || len||tenant id || generation (u16 BE) || len||purpose
//! purpose    = "records" | "backups" | "indexes"
//! ```
//!
//! `len||x` is a 4-byte big-endian length followed by `x`, so no two (tenant, purpose)
//! pairs share an info string. The PRK is computed once per master version when the keyring
//! loads; a derivation is one HKDF-Expand (two HMAC-SHA256 blocks).

use crate::hazmat::{Prk, expand32_parts};
use crate::id::TenantId;
use crate::secret::TenantKey;

/// The domain-separation label of tenant keys, version 1.
pub(crate) const TENANT_LABEL: &[u8] = b"atrest/v1/tenant";

/// What a derived tenant key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Purpose {
    /// Sealing records.
    Records,
    /// Wrapping backup data keys.
    Backups,
    /// Blind indexes: per-index keys are derived from this key (see `record::index`).
    Indexes,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Records => b"records",
            Purpose::Backups => b"backups",
            Purpose::Indexes => b"indexes",
        }
    }
}

/// The HKDF info string for a tenant key, whole (the derivation feeds it in parts).
#[cfg(test)]
pub(crate) fn info(tenant: &TenantId, generation: u16, purpose: Purpose) -> Vec<u8> {
    use crate::encoding::put_lp;
    let mut info = Vec::with_capacity(64 + tenant.as_str().len());
    put_lp(&mut info, TENANT_LABEL);
    put_lp(&mut info, tenant.as_str().as_bytes());
    info.extend_from_slice(&generation.to_be_bytes());
    put_lp(&mut info, purpose.label());
    info
}

/// Derives a tenant's key for one purpose: one HKDF-Expand from the master's pre-keyed
/// HMAC state, the info string fed in parts (no allocation).
pub(crate) fn tenant_key(prk: &Prk, tenant: &TenantId, generation: u16, purpose: Purpose) -> TenantKey {
    let label = purpose.label();
    let id = tenant.as_str().as_bytes();
    let parts: [&[u8]; 7] =
        [&lp_len(TENANT_LABEL), TENANT_LABEL, &lp_len(id), id, &generation.to_be_bytes(), &lp_len(label), label];
    TenantKey::from_bytes(expand32_parts(prk, &parts))
}

/// The 4-byte big-endian length prefix `put_lp` writes.
fn lp_len(x: &[u8]) -> [u8; 4] {
    u32::try_from(x.len()).unwrap_or(u32::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hazmat::extract;

    #[test]
    fn known_answer_and_separation() {
        let prk = extract(&[0x11; 16], &[0x22; 32]);
        let t = TenantId::new("acme").unwrap();
        let k = tenant_key(&prk, &t, 0, Purpose::Records);
        // Recomputed independently with the public HKDF-SHA256 function.
        let mut expect = [0u8; 32];
        crate::hazmat::hkdf_sha256(&[0x11; 16], &[0x22; 32], &info(&t, 0, Purpose::Records), &mut expect).unwrap();
        assert_eq!(k.expose_secret(), &expect);
        assert_ne!(k, tenant_key(&prk, &t, 0, Purpose::Backups));
        assert_ne!(k, tenant_key(&prk, &t, 0, Purpose::Indexes));
        assert_ne!(tenant_key(&prk, &t, 0, Purpose::Backups), tenant_key(&prk, &t, 0, Purpose::Indexes));
        assert_ne!(k, tenant_key(&prk, &t, 1, Purpose::Records));
        assert_ne!(k, tenant_key(&prk, &TenantId::new("acme2").unwrap(), 0, Purpose::Records));
        let expected_info =
            [&[0, 0, 0, 16][..], b"atrest/v1/tenant", &[0, 0, 0, 4], b"acme", &[0, 1], &[0, 0, 0, 7], b"backups"]
                .concat();
        assert_eq!(info(&t, 1, Purpose::Backups), expected_info);
        let expected_info =
            [&[0, 0, 0, 16][..], b"atrest/v1/tenant", &[0, 0, 0, 4], b"acme", &[0, 2], &[0, 0, 0, 7], b"indexes"]
                .concat();
        assert_eq!(info(&t, 2, Purpose::Indexes), expected_info);
    }
}
