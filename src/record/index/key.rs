//! One index key (K_i of the format in `mod.rs`): derived from a tenant's index key, kept as
//! a keyed HMAC-SHA256 state, so a value costs the HMAC of its input and nothing more.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::definition::BlindIndex;
use super::value::IndexValue;
use crate::error::IndexError;
use crate::hazmat::hkdf_sha256;
use crate::id::KeyVersion;
use crate::secret::TenantKey;

/// The keyed PRF of one index definition under one tenant key version. The HMAC state holds
/// the hashed key pads; it is zeroized on drop (`sha2`'s `zeroize` feature).
pub(crate) struct IndexKey {
    version: KeyVersion,
    bits: u16,
    definition: Vec<u8>,
    mac: Hmac<Sha256>,
}

impl IndexKey {
    /// K_i = HKDF-SHA256(salt = empty, ikm = K_t, info = D, 32), keyed into HMAC-SHA256.
    #[allow(
        clippy::expect_used,
        reason = "a 32-byte HKDF-SHA256 output is always within its limit, and HMAC accepts keys of any length"
    )]
    pub(crate) fn derive(tenant_index_key: &TenantKey, index: &BlindIndex, version: KeyVersion) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        hkdf_sha256(&[], tenant_index_key.expose_secret(), index.definition(), k.as_mut_slice())
            .expect("32-byte HKDF-SHA256 output");
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(k.as_slice()).expect("HMAC takes any key length");
        Self { version, bits: index.bits(), definition: index.definition().to_vec(), mac }
    }

    /// Whether this is the key of `index` under `version`.
    pub(crate) fn is_for(&self, index: &BlindIndex, version: KeyVersion) -> bool {
        self.version == version && self.definition == index.definition()
    }

    /// The index value of `fields`.
    pub(crate) fn value<F: AsRef<[u8]>>(&self, index: &BlindIndex, fields: &[F]) -> Result<IndexValue, IndexError> {
        let mut mac = self.mac.clone();
        index.encode_input(fields, |piece| mac.update(piece))?;
        Ok(self.finish(mac))
    }

    /// The index value of an input already encoded by [`BlindIndex::encode_input`].
    pub(crate) fn value_of_input(&self, input: &[u8]) -> IndexValue {
        let mut mac = self.mac.clone();
        mac.update(input);
        self.finish(mac)
    }

    fn finish(&self, mac: Hmac<Sha256>) -> IndexValue {
        let out = mac.finalize().into_bytes();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&out);
        IndexValue::truncated(bytes, self.bits, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MasterVersion, Transform};

    fn v(m: u16, g: u16) -> KeyVersion {
        KeyVersion { master: MasterVersion::new(m), generation: g }
    }

    #[test]
    fn known_answer_against_a_direct_computation() {
        let kt = TenantKey::from_bytes([7; 32]);
        let index = BlindIndex::builder("contacts.email").bits(32).field(Transform::LowercaseTrim).build().unwrap();
        let key = IndexKey::derive(&kt, &index, v(1, 0));
        let got = key.value(&index, &[" Alice@Example.com "]).unwrap();

        let hk = hkdf::Hkdf::<Sha256>::new(Some(&[]), &[7; 32]);
        let mut ki = [0u8; 32];
        hk.expand(index.definition(), &mut ki).unwrap();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&ki).unwrap();
        mac.update(b"\x00\x00\x00\x11alice@example.com");
        let full = mac.finalize().into_bytes();
        assert_eq!(got.as_bytes(), &full[..4]);
        assert_eq!(got.as_bytes(), hex::decode("b4611505").unwrap());
        assert!(key.is_for(&index, v(1, 0)));
        assert!(!key.is_for(&index, v(1, 1)));

        let mut input = Vec::new();
        index.encode_input(&["alice@example.com"], |p| input.extend_from_slice(p)).unwrap();
        assert_eq!(key.value_of_input(&input), got);
    }
}
