//! The keyring file format (version 1).
//!
//! A UTF-8 text file of exactly three lines, each ending in `\n`:
//!
//! ```text
//! atrest-keyring v1
//! {"keyring_id":"<32 hex>","revision":N,"created_at":T,"root_key_id":"...",
//!  "integrity_key":"<hex>","masters":[...],"tenants":[...]}      (one line of JSON)
//! mac <64 hex>
//! ```
//!
//! - `masters[]`: `{"version":u16,"state":"primary|enabled|disabled|destroyed",
//!   "created_at":T,"changed_at":T,"wrapped":"<hex>"|null}`. `wrapped` is the 32-byte master
//!   key wrapped by the root key provider with associated data
//!   `len||"atrest/v1/keyring/master" || keyring_id (16) || version (u16 BE)`; it is `null`
//!   exactly when the state is `destroyed`.
//! - `tenants[]`: `{"id":"...","generation":u16,"rotated_at":T|null,"shredded_at":T|null,
//!   "shred_pending":[u16...]}`; only tenants that were rotated or shredded appear.
//! - `integrity_key`: a random 32-byte key wrapped by the root key provider with associated
//!   data `len||"atrest/v1/keyring/integrity" || keyring_id`.
//! - `mac`: HMAC-SHA256 under the integrity key of
//!   `"atrest/v1/keyring-file\n" || line 1 || "\n" || line 2`.
//!
//! Times are seconds since the Unix epoch; `len||x` is a 4-byte big-endian length and `x`.
//! Loading checks, in order: the first line (not a keyring / unsupported version), a
//! complete final `mac` line (truncated), the JSON (corrupted), the root key id (wrong root
//! key), the integrity key and MAC (tampered), then every wrapped master key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::key_state::KeyState;
use super::root::RootKeyProvider;
use super::state::{MasterEntry, Shred, State, TenantEntry};
use crate::encoding::put_lp;
use crate::error::{KeyringError, RootKeyError};
use crate::id::MasterVersion;
use crate::id::TenantId;
use crate::secret::{IntegrityKey, MasterKey};

const MAGIC: &str = "atrest-keyring ";
const FIRST_LINE: &str = "atrest-keyring v1";
const MAC_PREFIX: &str = "mac ";
const MAC_LABEL: &[u8] = b"atrest/v1/keyring-file\n";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    keyring_id: String,
    revision: u64,
    created_at: u64,
    root_key_id: String,
    integrity_key: String,
    masters: Vec<FileMaster>,
    tenants: Vec<FileTenant>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMaster {
    version: MasterVersion,
    state: KeyState,
    created_at: u64,
    changed_at: u64,
    wrapped: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTenant {
    id: String,
    generation: u16,
    rotated_at: Option<u64>,
    shredded_at: Option<u64>,
    shred_pending: Vec<MasterVersion>,
}

/// Associated data binding a wrapped master key to its keyring and version.
pub(crate) fn master_aad(keyring_id: &[u8; 16], version: MasterVersion) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48);
    put_lp(&mut aad, b"atrest/v1/keyring/master");
    aad.extend_from_slice(keyring_id);
    aad.extend_from_slice(&version.get().to_be_bytes());
    aad
}

/// Associated data binding the wrapped integrity key to its keyring.
pub(crate) fn integrity_aad(keyring_id: &[u8; 16]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48);
    put_lp(&mut aad, b"atrest/v1/keyring/integrity");
    aad.extend_from_slice(keyring_id);
    aad
}

fn mac(key: &IntegrityKey, first: &str, body: &str) -> Result<Hmac<Sha256>, KeyringError> {
    // HMAC accepts keys of any length, so this never fails in practice.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose_secret())
        .map_err(|_| KeyringError::Corrupted { path: Default::default(), reason: "HMAC key".into() })?;
    m.update(MAC_LABEL);
    m.update(first.as_bytes());
    m.update(b"\n");
    m.update(body.as_bytes());
    Ok(m)
}

/// Serializes `state` into the file text.
pub(crate) fn encode(state: &State) -> Result<String, KeyringError> {
    let body = FileBody {
        keyring_id: hex::encode(state.id),
        revision: state.revision,
        created_at: state.created_at,
        root_key_id: state.root_key_id.clone(),
        integrity_key: hex::encode(&state.integrity_wrapped),
        masters: state
            .masters
            .iter()
            .map(|(v, m)| FileMaster {
                version: *v,
                state: m.state,
                created_at: m.created_at,
                changed_at: m.changed_at,
                wrapped: m.wrapped.as_ref().map(hex::encode),
            })
            .collect(),
        tenants: state
            .tenants
            .iter()
            .map(|(id, t)| FileTenant {
                id: id.as_str().to_owned(),
                generation: t.generation,
                rotated_at: t.rotated_at,
                shredded_at: t.shred.as_ref().map(|s| s.at),
                shred_pending: t.shred.as_ref().map(|s| s.pending.iter().copied().collect()).unwrap_or_default(),
            })
            .collect(),
    };
    let json = serde_json::to_string(&body)
        .map_err(|e| KeyringError::Corrupted { path: Default::default(), reason: e.to_string() })?;
    let tag = mac(&state.integrity_key, FIRST_LINE, &json)?.finalize().into_bytes();
    Ok(format!("{FIRST_LINE}\n{json}\n{MAC_PREFIX}{}\n", hex::encode(tag)))
}

fn corrupted(path: &Path, reason: impl Into<String>) -> KeyringError {
    KeyringError::Corrupted { path: path.to_path_buf(), reason: reason.into() }
}

fn tampered_or(path: &Path, e: RootKeyError) -> KeyringError {
    match e {
        RootKeyError::Authentication => KeyringError::Tampered(path.to_path_buf()),
        other => KeyringError::Root(other),
    }
}

/// Parses and fully verifies a keyring file's bytes (see the module documentation).
pub(crate) fn decode(bytes: &[u8], path: &Path, root: Arc<dyn RootKeyProvider>) -> Result<State, KeyringError> {
    // Structure first: magic and version line.
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.as_bytes().starts_with(bytes) {
            KeyringError::Truncated(path.to_path_buf())
        } else {
            KeyringError::NotAKeyring(path.to_path_buf())
        });
    }
    if !bytes.starts_with(MAGIC.as_bytes()) {
        return Err(KeyringError::NotAKeyring(path.to_path_buf()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| corrupted(path, "not UTF-8"))?;
    let Some((first, rest)) = text.split_once('\n') else {
        return Err(KeyringError::Truncated(path.to_path_buf()));
    };
    if first != FIRST_LINE {
        let v = first.strip_prefix("atrest-keyring v").and_then(|v| v.parse::<u32>().ok());
        return Err(match v {
            Some(v) => KeyringError::UnsupportedFormat(v),
            None => KeyringError::NotAKeyring(path.to_path_buf()),
        });
    }
    // A complete file ends with "\nmac <64 hex>\n"; anything cut short lacks it.
    let Some(rest) = rest.strip_suffix('\n') else {
        return Err(KeyringError::Truncated(path.to_path_buf()));
    };
    let Some((json, mac_line)) = rest.rsplit_once('\n') else {
        return Err(KeyringError::Truncated(path.to_path_buf()));
    };
    let Some(mac_hex) = mac_line.strip_prefix(MAC_PREFIX) else {
        // A mac line that is not the last line means bytes were appended, not cut off.
        return Err(if json.lines().any(|l| l.starts_with(MAC_PREFIX)) {
            corrupted(path, "data after the mac line")
        } else {
            KeyringError::Truncated(path.to_path_buf())
        });
    };
    // Exactly 64 lower-case hex digits, so the file has one valid spelling.
    if mac_hex.len() != 64 || !mac_hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(KeyringError::Tampered(path.to_path_buf()));
    }
    let mut file_mac = [0u8; 32];
    hex::decode_to_slice(mac_hex, &mut file_mac).map_err(|_| KeyringError::Tampered(path.to_path_buf()))?;

    let body: FileBody = serde_json::from_str(json).map_err(|e| {
        if e.is_eof() {
            KeyringError::Truncated(path.to_path_buf())
        } else {
            corrupted(path, format!("invalid JSON at column {}", e.column()))
        }
    })?;

    // Right root key?
    let given = root.key_id();
    if body.root_key_id != given {
        return Err(KeyringError::WrongRootKey { expected: body.root_key_id, given });
    }

    let mut id = [0u8; 16];
    hex::decode_to_slice(&body.keyring_id, &mut id).map_err(|_| KeyringError::Tampered(path.to_path_buf()))?;
    let integrity_wrapped = hex::decode(&body.integrity_key).map_err(|_| KeyringError::Tampered(path.to_path_buf()))?;
    let ik = root.unwrap(&integrity_wrapped, &integrity_aad(&id)).map_err(|e| tampered_or(path, e))?;
    let integrity_key =
        IntegrityKey::from_bytes(ik.to_array32().ok_or_else(|| KeyringError::Tampered(path.to_path_buf()))?);
    // verify_slice compares in constant time.
    mac(&integrity_key, first, json)?
        .verify_slice(&file_mac)
        .map_err(|_| KeyringError::Tampered(path.to_path_buf()))?;

    // Authentic from here on: structural problems are atrest bugs or foreign writers.
    let mut masters = BTreeMap::new();
    let mut primary = None;
    for m in body.masters {
        let material = match (&m.wrapped, m.state) {
            (None, KeyState::Destroyed) => None,
            (Some(w), s) if s != KeyState::Destroyed => {
                let w = hex::decode(w).map_err(|_| corrupted(path, "wrapped key is not hex"))?;
                let k = root.unwrap(&w, &master_aad(&id, m.version)).map_err(|e| tampered_or(path, e))?;
                let k = MasterKey::from_bytes(k.to_array32().ok_or_else(|| corrupted(path, "master key length"))?);
                Some((w, k))
            }
            _ => return Err(corrupted(path, format!("master {} has inconsistent material", m.version))),
        };
        if m.state == KeyState::Primary {
            if primary.is_some() {
                return Err(corrupted(path, "more than one primary master key"));
            }
            primary = Some(m.version);
        }
        let entry = MasterEntry::new(m.state, m.created_at, m.changed_at, material, &id);
        if masters.insert(m.version, entry).is_some() {
            return Err(corrupted(path, format!("master {} appears twice", m.version)));
        }
    }
    let primary = primary.ok_or_else(|| corrupted(path, "no primary master key"))?;

    let mut tenants = BTreeMap::new();
    for t in body.tenants {
        let tid = TenantId::new(&t.id).map_err(|_| corrupted(path, "invalid tenant id"))?;
        let shred =
            t.shredded_at.map(|at| Shred { at, pending: t.shred_pending.iter().copied().collect::<BTreeSet<_>>() });
        let entry = TenantEntry { generation: t.generation, rotated_at: t.rotated_at, shred };
        if tenants.insert(tid, entry).is_some() {
            return Err(corrupted(path, "a tenant appears twice"));
        }
    }

    Ok(State {
        id,
        revision: body.revision,
        created_at: body.created_at,
        root_key_id: body.root_key_id,
        root,
        primary,
        masters,
        tenants,
        integrity_wrapped,
        integrity_key: Arc::new(integrity_key),
    })
}
