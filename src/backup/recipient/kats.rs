//! Known-answer tests of the recipient KEMs, through the crate's own paths where it has one
//! (`RecipientKem::public_key_from_ikm`, `seal_then`, `open`: HPKE base mode) and
//! through the `hpke` crate's KEM types for the raw KEM vectors. The vectors are pinned in
//! `tests/data/recipient/`:
//!
//! - `hpke_base.json`: RFC 9180 A.2.1 (DHKEM(X25519), HKDF-SHA256, ChaCha20-Poly1305) and
//!   the draft-ietf-hpke-pq X-Wing vector with the same KDF and AEAD;
//! - `xwing_draft06.json`: draft-connolly-cfrg-xwing-kem (seed, eseed, pk, ct, ss), which
//!   also covers ML-KEM-768 inside X-Wing;
//! - `x25519_rfc7748.json`: RFC 7748 section 6.1.

use core::convert::Infallible;

use hpke::kem::{X25519HkdfSha256, XWing};
use hpke::rand_core::{TryCryptoRng, TryRng, utils};
use hpke::{Deserializable, Kem as HpkeKem, Serializable};
use serde_json::Value;

use super::RecipientKem;
use crate::secret::TenantKey;

/// An RNG that hands out the given bytes (test only: encapsulation randomness from a vector).
struct Fixed(Vec<u8>);

impl TryRng for Fixed {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        utils::next_word_via_fill(self)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        utils::next_word_via_fill(self)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        assert!(dest.len() <= self.0.len(), "the vector's randomness is used up");
        dest.copy_from_slice(&self.0[..dest.len()]);
        self.0.drain(..dest.len());
        Ok(())
    }
}

impl TryCryptoRng for Fixed {}

fn h(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap_or_else(|| panic!("{k}"))).unwrap()
}

fn vectors(name: &str) -> Value {
    let path = format!("{}/tests/data/recipient/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn hpke_base_mode_vectors_through_our_seal_and_open() {
    let all = vectors("hpke_base.json");
    for (name, kem) in [("x25519", RecipientKem::X25519), ("x-wing", RecipientKem::XWing)] {
        let v = &all[name];
        let (ikm_r, pk_r, info, aad, pt, ct) =
            (h(v, "ikmR"), h(v, "pkRm"), h(v, "info"), h(v, "aad"), h(v, "pt"), h(v, "ct"));
        assert_eq!(kem.public_key_from_ikm(&ikm_r), pk_r, "{name}: DeriveKeyPair(ikmR)");
        assert!(kem.accepts_public_key(&pk_r));
        let mut buf = pt.clone();
        let (enc, tag) = kem.seal_then(&pk_r, &info, |_| aad.clone(), &mut buf, &mut Fixed(h(v, "ikmE"))).unwrap();
        assert_eq!(enc, h(v, "enc"), "{name}: enc");
        assert_eq!([buf.as_slice(), &tag].concat(), ct, "{name}: ciphertext");
        assert_eq!(enc.len(), kem.encapsulated_len());
        assert_eq!(pk_r.len(), kem.public_key_len());
        let mut open = ct[..pt.len()].to_vec();
        kem.open(&ikm_r, &enc, |_| info.clone(), &aad, &mut open, &ct[pt.len()..]).unwrap();
        assert_eq!(open, pt, "{name}: open");
        // One changed byte anywhere fails.
        for (what, mut enc, mut info, mut aad, mut ct) in [
            ("enc", enc.clone(), info.clone(), aad.clone(), ct.clone()),
            ("info", enc.clone(), info.clone(), aad.clone(), ct.clone()),
            ("aad", enc.clone(), info.clone(), aad.clone(), ct.clone()),
            ("ct", enc.clone(), info.clone(), aad.clone(), ct.clone()),
        ] {
            match what {
                "enc" => enc[7] ^= 1,
                "info" => info[0] ^= 1,
                "aad" => aad[0] ^= 1,
                _ => ct[3] ^= 1,
            }
            let mut open = ct[..pt.len()].to_vec();
            assert!(kem.open(&ikm_r, &enc, |_| info.clone(), &aad, &mut open, &ct[pt.len()..]).is_none(), "{what}");
        }
    }
}

#[test]
fn xwing_draft_vectors() {
    let all = vectors("xwing_draft06.json");
    for v in all.as_array().unwrap() {
        let sk = <XWing as HpkeKem>::PrivateKey::from_bytes(&h(v, "seed")).unwrap();
        assert_eq!(sk.to_bytes().as_slice(), h(v, "sk"));
        let pk = XWing::sk_to_pk(&sk);
        assert_eq!(pk.to_bytes().as_slice(), h(v, "pk"));
        let (ss, enc) = XWing::encap_with_rng(&pk, None, &mut Fixed(h(v, "eseed"))).unwrap();
        assert_eq!(enc.to_bytes().as_slice(), h(v, "ct"));
        assert_eq!(ss.0.as_slice(), h(v, "ss"));
        let enc = <XWing as HpkeKem>::EncappedKey::from_bytes(&h(v, "ct")).unwrap();
        assert_eq!(XWing::decap(&sk, None, &enc).unwrap().0.as_slice(), h(v, "ss"));
        assert!(RecipientKem::XWing.accepts_public_key(&h(v, "pk")));
    }
}

#[test]
fn x25519_rfc7748_vectors() {
    let v = vectors("x25519_rfc7748.json");
    for who in ["alice", "bob"] {
        let sk = <X25519HkdfSha256 as HpkeKem>::PrivateKey::from_bytes(&h(&v, &format!("{who}_private"))).unwrap();
        let pk = X25519HkdfSha256::sk_to_pk(&sk);
        assert_eq!(pk.to_bytes().as_slice(), h(&v, &format!("{who}_public")), "{who}");
    }
}

/// The recipient key derivation, recomputed with the public HKDF function and pinned.
#[test]
fn recipient_derivation_known_answer() {
    let key = TenantKey::from_bytes([0x42; 32]);
    for kem in [RecipientKem::X25519, RecipientKem::XWing] {
        let mut info = Vec::new();
        info.extend_from_slice(&[0, 0, 0, 26]);
        info.extend_from_slice(b"atrest/v1/backup/recipient");
        info.extend_from_slice(&u32::try_from(kem.name().len()).unwrap().to_be_bytes());
        info.extend_from_slice(kem.name().as_bytes());
        let mut ikm = [0u8; 32];
        crate::hazmat::hkdf_sha256(&[], &[0x42; 32], &info, &mut ikm).unwrap();
        assert_eq!(kem.public_key(&key), kem.public_key_from_ikm(&ikm));
    }
    let pinned = |kem: RecipientKem| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(kem.public_key(&key)))
    };
    assert_eq!(pinned(RecipientKem::X25519), X25519_PINNED);
    assert_eq!(pinned(RecipientKem::XWing), XWING_PINNED);
    assert_ne!(
        RecipientKem::X25519.public_key(&key),
        RecipientKem::X25519.public_key(&TenantKey::from_bytes([0x43; 32]))
    );
}

const X25519_PINNED: &str = "761899ca80b676d23026846c054f73fa9e29bdc40bd76e9c56c6f32d97c2d860";
const XWING_PINNED: &str = "b8438bd086b5d24ed6e1039523816546b3e933b5ad48e28b75273e48ff772d33";

/// A whole recipient header made from fixed secrets and encapsulation randomness: the
/// layout, the HPKE info and AAD of the format, pinned (SHA-256 of the header bytes), and
/// opened again through the keyring's path (`unwrap_data_key`).
#[test]
fn recipient_header_known_answer() {
    use crate::backup::header::{Header, Wrap};
    use crate::backup::keys::{StreamSecrets, build_recipient_stream};
    use crate::backup::stored::Stored;
    use crate::backup::{BackupContext, recipient};
    use crate::secret::DataKey;
    use crate::{Backend, KeyVersion, MasterVersion, TenantId};
    use sha2::Digest;

    let backup_key = TenantKey::from_bytes([0x42; 32]);
    let tenant = TenantId::new("acme").unwrap();
    let version = KeyVersion { master: MasterVersion::new(1), generation: 0 };
    let ctx = BackupContext::incremental("s2", "s1", 1);
    let mut pinned = Vec::new();
    for kem in [RecipientKem::X25519, RecipientKem::XWing] {
        let r = super::Recipient::derive(&tenant, version, kem, &backup_key);
        let secrets = StreamSecrets { data_key: DataKey::from_bytes([7; 32]), salt: [8; 32], wrap_nonce: [0; 24] };
        let stored = Stored { tenant: tenant.clone(), ctx: ctx.clone(), created: 1_700_000_000 };
        let (bytes, _) =
            build_recipient_stream(&r, &ctx, 1 << 16, secrets, Backend::default(), stored, &mut Fixed(vec![9; 64]))
                .unwrap();
        let e = kem.encapsulated_len();
        // 163 + E, the context length (2) and the context (38 bytes: acme, s2, s1, kind, sequence, time).
        assert_eq!(bytes.len(), 163 + e + 2 + 38);
        assert_eq!((bytes[46], &bytes[47..51]), (kem.id(), &[0u8, 1, 0, 0][..]));
        let header = Header::parse_prefix(&bytes).unwrap();
        assert_eq!(header.encode(), bytes);
        let Wrap::Kem(wrap) = &header.wrap else { panic!("not a recipient header") };
        assert_eq!(wrap.enc, bytes[51..51 + e]);
        let dk = recipient::unwrap_data_key(&backup_key, &tenant, &header, wrap).unwrap();
        assert_eq!(dk.expose_secret(), &[7; 32]);
        // Another backup key, tenant or key version does not open it.
        assert!(recipient::unwrap_data_key(&TenantKey::from_bytes([0x43; 32]), &tenant, &header, wrap).is_err());
        let other = TenantId::new("acmf").unwrap();
        assert!(recipient::unwrap_data_key(&backup_key, &other, &header, wrap).is_err());
        pinned.push(hex::encode(sha2::Sha256::digest(&bytes)));
    }
    assert_eq!(
        pinned,
        [
            "af0a034b36fa60ac948727ce8b7d4c7d7e3f897a443e9e775ebc13a2fdc609f4",
            "ef65f050c465a41e6c8be6e12b7612963f3e551f072026f6e4efe4047845d9d2"
        ]
    );
}
