//! The byte formats, rebuilt from their documentation with public primitives only: the
//! reference implementation the known-answer tests hold the crate to. Keyring files
//! (`src/keyring/file.rs`), tenant key derivation (`src/keyring/derive.rs`) and backup streams
//! (`src/backup/mod.rs`) are read here as the documentation says, never through the crate's
//! own format code, so the crate and its documentation cannot drift apart unnoticed.

use std::sync::Arc;

use atrest::hazmat::{SuiteCipher, hkdf_sha256};
use atrest::{BackupContext, BackupKind, Keyring, RootKeyProvider, Suite};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::golden as g;

/// `L(x)`: 4-byte big-endian length, then `x`.
pub fn lp(x: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(x.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(x);
    v
}

/// HKDF-SHA256 to 32 bytes.
pub fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    hkdf_sha256(salt, ikm, info, &mut okm).unwrap();
    okm
}

/// Every key of the golden keyring, recomputed from the committed files and the documented
/// derivations (keyring file format in `src/keyring/file.rs`, tenant keys in
/// `src/keyring/derive.rs`).
pub struct KeyringSecrets {
    /// The root key.
    pub root: [u8; 32],
    /// The keyring integrity (HMAC) key.
    pub integrity: Vec<u8>,
    /// (version, master key).
    pub masters: Vec<(u16, [u8; 32])>,
    /// The keyring id: the HKDF salt of every tenant key.
    pub keyring_id: Vec<u8>,
}

impl KeyringSecrets {
    /// Recovers the golden keyring's secrets from its committed files.
    pub fn load() -> Self {
        let text = String::from_utf8(g::read(g::KEYRING_FILE)).unwrap();
        let json: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        let keyring_id = hex::decode(json["keyring_id"].as_str().unwrap()).unwrap();
        assert_eq!(keyring_id, Keyring::from_bytes(&g::read(g::KEYRING_FILE), Arc::new(g::root())).unwrap().id());
        let provider = g::root();
        let integrity_aad = [lp(b"atrest/v1/keyring/integrity"), keyring_id.clone()].concat();
        let integrity = provider
            .unwrap(&hex::decode(json["integrity_key"].as_str().unwrap()).unwrap(), &integrity_aad)
            .unwrap()
            .expose_secret()
            .to_vec();
        let masters = json["masters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let version = u16::try_from(m["version"].as_u64().unwrap()).unwrap();
                let wrapped = hex::decode(m["wrapped"].as_str().unwrap()).unwrap();
                let aad =
                    [lp(b"atrest/v1/keyring/master"), keyring_id.clone(), version.to_be_bytes().to_vec()].concat();
                let key: [u8; 32] = provider.unwrap(&wrapped, &aad).unwrap().expose_secret().try_into().unwrap();
                (version, key)
            })
            .collect();
        Self { root: g::root_key_bytes(), integrity, masters, keyring_id }
    }

    /// The master key of `version`.
    pub fn master(&self, version: u16) -> [u8; 32] {
        self.masters.iter().find(|(v, _)| *v == version).unwrap().1
    }

    /// The key of `tenant` for `purpose` (`b"records"`, `b"backups"`) under master `master`,
    /// tenant generation `generation`.
    pub fn tenant_key(&self, tenant: &str, master: u16, generation: u16, purpose: &[u8]) -> [u8; 32] {
        let info =
            [lp(b"atrest/v1/tenant"), lp(tenant.as_bytes()), generation.to_be_bytes().to_vec(), lp(purpose)].concat();
        hkdf32(&self.keyring_id, &self.master(master), &info)
    }
}

/// The per-stream secrets recovered from a golden stream by following the documentation.
pub struct StreamSecrets {
    /// The stream's data key (wrapped in the header).
    pub data_key: [u8; 32],
    /// The AES-256-GCM key of every chunk.
    pub chunk_key: [u8; 32],
    /// The header MAC key.
    pub mac_key: [u8; 32],
}

/// Opens `stream` by the documented format with `backup_key`; returns its secrets and
/// plaintext.
pub fn open_by_spec(
    stream: &[u8],
    tenant: &str,
    backup_key: &[u8; 32],
    ctx: &BackupContext,
) -> (StreamSecrets, Vec<u8>) {
    let (header, body) = stream.split_at(186);
    let fixed = &header[..46];
    let (key_version, wrap_nonce, wrapped) = (&header[46..50], &header[50..74], &header[74..122]);
    let (commitment, tag) = (&header[122..154], &header[154..186]);
    let salt = &fixed[14..46];

    let wrap_aad = [
        lp(b"atrest/v1/backup/wrap"),
        lp(tenant.as_bytes()),
        fixed.to_vec(),
        key_version.to_vec(),
        commitment.to_vec(),
        tag.to_vec(),
    ]
    .concat();
    let data_key: [u8; 32] = SuiteCipher::new(Suite::XAes256Gcm, backup_key)
        .open(wrap_nonce, &wrap_aad, wrapped)
        .expect("the data key unwraps under the tenant's backup key")
        .try_into()
        .unwrap();
    let expand = |what: &[u8]| hkdf32(salt, &data_key, &[lp(b"atrest/v1/backup"), lp(what)].concat());
    let (chunk_key, prefix, mac_key) = (expand(b"chunk key"), expand(b"nonce prefix"), expand(b"header mac"));
    assert_eq!(commitment, expand(b"commitment"), "key commitment");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&mac_key).unwrap();
    mac.update(&[lp(b"atrest/v1/backup/header"), fixed.to_vec(), commitment.to_vec()].concat());
    assert_eq!(tag, &mac.finalize().into_bytes()[..], "header tag");

    let mut ctx_enc = lp(ctx.snapshot_id().as_bytes());
    match ctx.parent() {
        None => ctx_enc.push(0),
        Some(p) => {
            ctx_enc.push(1);
            ctx_enc.extend(lp(p.as_bytes()));
        }
    }
    ctx_enc.push(match ctx.kind() {
        BackupKind::Full => 1,
        BackupKind::Incremental => 2,
    });
    ctx_enc.extend(ctx.sequence().to_be_bytes());
    let aad = Sha256::digest(
        [
            lp(b"atrest/v1/backup/chunk"),
            fixed.to_vec(),
            commitment.to_vec(),
            tag.to_vec(),
            lp(tenant.as_bytes()),
            ctx_enc,
        ]
        .concat(),
    );

    let chunk_size = usize::try_from(u32::from_be_bytes(fixed[10..14].try_into().unwrap())).unwrap();
    let gcm = SuiteCipher::new(Suite::Aes256Gcm, &chunk_key);
    let slots: Vec<&[u8]> = body.chunks(chunk_size + 16).collect();
    let mut plaintext = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        let nonce =
            [&prefix[..7], &u32::try_from(i).unwrap().to_be_bytes()[..], &[u8::from(i + 1 == slots.len())]].concat();
        plaintext.extend(gcm.open(&nonce, &aad, slot).unwrap_or_else(|_| panic!("chunk {i} opens by the spec")));
    }
    (StreamSecrets { data_key, chunk_key, mac_key }, plaintext)
}
