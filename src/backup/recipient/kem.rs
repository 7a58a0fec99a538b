//! The key encapsulation of backup recipients: HPKE (RFC 9180, base mode) with X-Wing
//! (ML-KEM-768 + X25519) or DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305,
//! all from the `hpke` crate; and the recipient key pair derived from a tenant's backup key.
//!
//! ```text
//! ikm        = HKDF-SHA256(salt = "", ikm = tenant backup key of version v,
//!                          info = L("atrest/v1/backup/recipient") || L(KEM name), 32)
//! (sk, pk)   = KEM.DeriveKeyPair(ikm)                      (HPKE's DeriveKeyPair)
//! enc, ct    = HPKE.SealBase(pk, info, aad, data key)      (sequence number 0)
//! ```
//!
//! The KEM name is "x-wing" or "x25519". Nothing here is written by hand: the KEMs, the
//! combiner, the key schedule and the AEAD are the `hpke` crate's.

use hpke::aead::{AeadTag, ChaCha20Poly1305};
use hpke::kdf::HkdfSha256;
use hpke::kem::{X25519HkdfSha256, XWing};
use hpke::rand_core::CryptoRng;
use hpke::{Deserializable, Kem as HpkeKem, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::encoding::put_lp;
use crate::secret::TenantKey;

/// The label of the recipient key derivation.
const LABEL_RECIPIENT: &[u8] = b"atrest/v1/backup/recipient";
/// The AEAD tag length (ChaCha20-Poly1305).
pub(crate) const TAG_LEN: usize = 16;

/// The key encapsulation mechanism of a backup recipient.
///
/// [`RecipientKem::XWing`] (the default) is the post-quantum hybrid ML-KEM-768 + X25519
/// (X-Wing, as age's `mlkem768x25519`): a stream's data key stays secret unless both
/// ML-KEM-768 and X25519 are broken. [`RecipientKem::X25519`] is classical only: a header
/// 1088 bytes shorter and a recipient of about 80 characters instead of about 2000, but a
/// future quantum computer could recover the data key from a recorded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RecipientKem {
    /// X-Wing (ML-KEM-768 + X25519), HPKE KEM id 0x647a.
    #[default]
    XWing,
    /// DHKEM(X25519, HKDF-SHA256), HPKE KEM id 0x0020.
    X25519,
}

impl RecipientKem {
    /// "x-wing" or "x25519".
    pub fn name(self) -> &'static str {
        match self {
            RecipientKem::XWing => "x-wing",
            RecipientKem::X25519 => "x25519",
        }
    }

    /// The KEM named `name` ("x-wing", "xwing" or "x25519").
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "x-wing" | "xwing" => Some(RecipientKem::XWing),
            "x25519" => Some(RecipientKem::X25519),
            _ => None,
        }
    }

    /// The byte that names the KEM: the stream header's wrapping method and the recipient
    /// text's KEM field (0x02 X-Wing, 0x03 X25519).
    pub(crate) fn id(self) -> u8 {
        match self {
            RecipientKem::XWing => 2,
            RecipientKem::X25519 => 3,
        }
    }

    /// The KEM whose [`id`](RecipientKem::id) is `id`.
    pub(crate) fn from_id(id: u8) -> Option<Self> {
        match id {
            2 => Some(RecipientKem::XWing),
            3 => Some(RecipientKem::X25519),
            _ => None,
        }
    }

    /// The length of a public key: 1216 bytes (X-Wing) or 32 (X25519).
    pub fn public_key_len(self) -> usize {
        match self {
            RecipientKem::XWing => <XWing as HpkeKem>::PublicKey::size(),
            RecipientKem::X25519 => <X25519HkdfSha256 as HpkeKem>::PublicKey::size(),
        }
    }

    /// The length of the encapsulated key a stream header holds: 1120 bytes (X-Wing) or 32
    /// (X25519).
    pub fn encapsulated_len(self) -> usize {
        match self {
            RecipientKem::XWing => <XWing as HpkeKem>::EncappedKey::size(),
            RecipientKem::X25519 => <X25519HkdfSha256 as HpkeKem>::EncappedKey::size(),
        }
    }

    /// Whether `bytes` is a valid public key of this KEM.
    pub(crate) fn accepts_public_key(self, bytes: &[u8]) -> bool {
        match self {
            RecipientKem::XWing => <XWing as HpkeKem>::PublicKey::from_bytes(bytes).is_ok(),
            RecipientKem::X25519 => <X25519HkdfSha256 as HpkeKem>::PublicKey::from_bytes(bytes).is_ok(),
        }
    }

    /// The input keying material of the recipient key pair of `backup_key`.
    pub(crate) fn ikm(self, backup_key: &TenantKey) -> Zeroizing<[u8; 32]> {
        let mut info = Vec::with_capacity(48);
        put_lp(&mut info, LABEL_RECIPIENT);
        put_lp(&mut info, self.name().as_bytes());
        let mut ikm = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit: this cannot fail.
        if crate::hazmat::hkdf_sha256(&[], backup_key.expose_secret(), &info, ikm.as_mut_slice()).is_err() {
            ikm.fill(0);
        }
        ikm
    }

    /// The public key of the recipient key pair derived from `backup_key`.
    pub(crate) fn public_key(self, backup_key: &TenantKey) -> Vec<u8> {
        self.public_key_from_ikm(self.ikm(backup_key).as_slice())
    }

    /// The public key of the pair `DeriveKeyPair(ikm)`.
    pub(crate) fn public_key_from_ikm(self, ikm: &[u8]) -> Vec<u8> {
        match self {
            RecipientKem::XWing => XWing::derive_keypair(ikm).1.to_bytes().to_vec(),
            RecipientKem::X25519 => X25519HkdfSha256::derive_keypair(ikm).1.to_bytes().to_vec(),
        }
    }

    /// HPKE-seals `buf` in place to `public_key` with `info` and the AAD `aad_of(enc)`
    /// (the AAD may bind the encapsulated key): returns the encapsulated key and the tag.
    /// `None` if the public key is not one of this KEM (checked when a recipient is parsed).
    pub(crate) fn seal_then(
        self,
        public_key: &[u8],
        info: &[u8],
        aad_of: impl FnOnce(&[u8]) -> Vec<u8>,
        buf: &mut [u8],
        rng: &mut impl CryptoRng,
    ) -> Option<(Vec<u8>, [u8; TAG_LEN])> {
        match self {
            RecipientKem::XWing => seal_with::<XWing>(public_key, info, aad_of, buf, rng),
            RecipientKem::X25519 => seal_with::<X25519HkdfSha256>(public_key, info, aad_of, buf, rng),
        }
    }

    /// HPKE-opens `buf` in place with the key pair `DeriveKeyPair(ikm)` (`ikm` from
    /// [`RecipientKem::ikm`]) and the info `info_of(public key)` (the info may bind the
    /// public key). `None` if anything does not verify (the caller reports one opaque
    /// authentication failure).
    pub(crate) fn open(
        self,
        ikm: &[u8],
        enc: &[u8],
        info_of: impl FnOnce(&[u8]) -> Vec<u8>,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Option<()> {
        match self {
            RecipientKem::XWing => open_with::<XWing>(ikm, enc, info_of, aad, buf, tag),
            RecipientKem::X25519 => open_with::<X25519HkdfSha256>(ikm, enc, info_of, aad, buf, tag),
        }
    }
}

fn seal_with<K: HpkeKem>(
    public_key: &[u8],
    info: &[u8],
    aad_of: impl FnOnce(&[u8]) -> Vec<u8>,
    buf: &mut [u8],
    rng: &mut impl CryptoRng,
) -> Option<(Vec<u8>, [u8; TAG_LEN])> {
    let pk = K::PublicKey::from_bytes(public_key).ok()?;
    let (enc, mut ctx) =
        hpke::setup_sender_with_rng::<ChaCha20Poly1305, HkdfSha256, K>(&OpModeS::Base, &pk, info, rng).ok()?;
    let enc = enc.to_bytes().to_vec();
    let tag = ctx.seal_inout_detached(buf.into(), &aad_of(&enc)).ok()?;
    let tag: [u8; TAG_LEN] = tag.to_bytes().as_slice().try_into().ok()?;
    Some((enc, tag))
}

fn open_with<K: HpkeKem>(
    ikm: &[u8],
    enc: &[u8],
    info_of: impl FnOnce(&[u8]) -> Vec<u8>,
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8],
) -> Option<()> {
    let (sk, pk) = K::derive_keypair(ikm);
    let enc = K::EncappedKey::from_bytes(enc).ok()?;
    let tag = AeadTag::<ChaCha20Poly1305>::from_bytes(tag).ok()?;
    hpke::single_shot_open_inout_detached::<ChaCha20Poly1305, HkdfSha256, K>(
        &OpModeR::Base,
        &sk,
        &enc,
        &info_of(&pk.to_bytes()),
        buf.into(),
        aad,
        &tag,
    )
    .ok()
}
