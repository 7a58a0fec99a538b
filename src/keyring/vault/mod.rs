//! A root key in a HashiCorp Vault or OpenBao transit secrets engine (feature `vault`).
//!
//! # Wrapped key format (version 1)
//!
//! ```text
//! 0x01 || transit ciphertext, ASCII: "vault:v" N ":" base64(nonce || AEAD ciphertext || tag)
//! ```
//!
//! The transit string is stored exactly as the server returned it from
//! `POST {mount}/encrypt/{key}` with `plaintext = base64(master key)` and
//! `associated_data = base64(aad)`, where `aad` is the keyring's associated data for the
//! wrapped secret (it names the keyring id and the master version: see the keyring file
//! format). `N` is the transit key version that encrypted it: after a transit key rotation,
//! [`Keyring::rewrap_root`](crate::Keyring::rewrap_root) with the same provider re-encrypts
//! every master under the latest version (`vault:v2:` ...), and the old version can then be
//! retired with the key's `min_decryption_version`.
//!
//! Associated data (not key derivation with `context`) binds the wrap to its keyring slot:
//! it works with an ordinary `aes256-gcm96` (or `aes128-gcm96`, `chacha20-poly1305`,
//! `xchacha20-poly1305`) key, needs no `derived` key, and is authenticated by the AEAD
//! itself. Transit accepts it since Vault 1.13 and in every OpenBao release.

mod config;
mod http;

use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use zeroize::Zeroizing;

use self::http::{Op, Transit};
use super::root::RootKeyProvider;
use crate::error::RootKeyError;
use crate::secret::SecretBytes;

pub use config::{DEFAULT_VAULT_TIMEOUT, VaultTransitConfig};

const WRAP_VERSION: u8 = 1;
/// Transit key types that authenticate associated data.
const AEAD_TYPES: [&str; 4] = ["aes128-gcm96", "aes256-gcm96", "chacha20-poly1305", "xchacha20-poly1305"];

/// A root key that never leaves a Vault or OpenBao transit engine: master keys are wrapped
/// and unwrapped by the server's `encrypt` and `decrypt` endpoints of one transit key.
///
/// Its [`key_id`](RootKeyProvider::key_id) is the key URI without the host,
/// `hcvault:///{mount}/keys/{name}`: the same key reached through another address (a load
/// balancer, a local Vault Agent, a new port) keeps its id, and the id opens the key again
/// with the address from `VAULT_ADDR`. A keyring opened against another server whose key
/// has the same path fails to unwrap and is reported as tampered.
///
/// # Network use
/// The keyring calls the server only when it loads a keyring document (open, reload, a
/// refresh after the document changed, and the re-read before every change) and when it
/// wraps a new master key; it keeps the unwrapped master keys in memory, so sealing and
/// opening records and backups never reach the server.
/// - **Unreachable at open** (or a sealed server, a revoked token): [`Keyring::open`]
///   fails with a typed error ([`RootKeyError::KmsUnreachable`],
///   [`RootKeyError::KmsPermissionDenied`], ...), never [`RootKeyError::Authentication`].
/// - **Unreachable at reload**: [`Keyring::reload`] returns the error and the handle keeps
///   serving its last verified state. While the document is unchanged a handle makes no
///   call at all; if it changed and cannot be verified, the handle serves its last state
///   for at most [`KeyringOptions::max_unavailable`] (5 minutes by default), then refuses
///   keys until the server answers again.
///
/// Each request has a timeout ([`VaultTransitConfig::timeout`], 10 s by default);
/// connection failures, timeouts, HTTP 429 and 5xx are retried twice with backoff
/// (200 ms, 400 ms). Redirects are not followed.
///
/// # Access
/// The token needs `update` on `{mount}/encrypt/{name}` and `{mount}/decrypt/{name}`. With
/// `read` on `{mount}/keys/{name}` too, the first wrap checks that the key exists and
/// authenticates associated data (without it, a token that may also `create` would make a
/// new key on a misspelled name, as transit's `encrypt` does).
///
/// # Security
/// - Unwrapping fails with [`RootKeyError::Authentication`] only when the server says the
///   ciphertext does not authenticate (`message authentication failed`, `invalid
///   ciphertext`) or the stored bytes are not a transit ciphertext; refused tokens,
///   missing keys and retired key versions have their own variants.
/// - Master keys travel to the server and back base64-encoded inside TLS. The answers are
///   read into zeroizing buffers; the HTTP client's own buffers are not zeroized.
///
/// [`Keyring::open`]: crate::Keyring::open
/// [`Keyring::reload`]: crate::Keyring::reload
/// [`KeyringOptions::max_unavailable`]: crate::KeyringOptions::max_unavailable
///
/// # Example
/// ```no_run
/// use atrest::{Keyring, VaultTransitConfig, VaultTransitRoot};
/// // VAULT_ADDR=https://vault.example.com:8200 and VAULT_TOKEN from the environment.
/// let root = VaultTransitRoot::new(&VaultTransitConfig::from_env("transit", "atrest")?)?;
/// let keyring = Keyring::create(std::path::Path::new("keyring.atrk"), root)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct VaultTransitRoot {
    transit: Transit,
    id: String,
    /// Set once the key was found to exist and support associated data (or could not be
    /// read for lack of permission).
    checked: AtomicBool,
}

#[derive(Deserialize)]
struct EncryptData {
    ciphertext: String,
}

#[derive(Deserialize)]
struct DecryptData {
    plaintext: Zeroizing<String>,
}

#[derive(Deserialize)]
struct KeyData {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    derived: bool,
}

impl VaultTransitRoot {
    /// A provider for the transit key `config.mount/keys/config.key`. Makes no request: the
    /// server is first reached by a wrap or an unwrap.
    ///
    /// # Errors
    /// [`RootKeyError::KmsConfig`]: an address that is not `https://` (or `http://` to a
    /// loopback host), an empty mount or key name, unreadable CA certificates.
    pub fn new(config: &VaultTransitConfig) -> Result<Self, RootKeyError> {
        let mount = config.mount.trim_matches('/');
        let name_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !mount.split('/').all(name_ok) || !name_ok(&config.key) {
            return Err(config::config_error(format!(
                "mount '{}' and key '{}' must be non-empty names of letters, digits, '-', '_' and '.'",
                config.mount, config.key
            )));
        }
        let transit = Transit::new(config)?;
        let id = format!("hcvault:///{}", transit.key_path());
        Ok(Self { transit, id, checked: AtomicBool::new(false) })
    }

    /// The key `mount/keys/key` with the server, token and TLS settings of the environment
    /// ([`VaultTransitConfig::from_env`]).
    ///
    /// # Errors
    /// As [`VaultTransitConfig::from_env`] and [`VaultTransitRoot::new`].
    pub fn from_env(mount: &str, key: &str) -> Result<Self, RootKeyError> {
        Self::new(&VaultTransitConfig::from_env(mount, key)?)
    }

    /// Before the first encryption: the key must exist and authenticate associated data.
    fn check_key(&self) -> Result<(), RootKeyError> {
        if self.checked.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.transit.call::<KeyData>(Op::ReadKey, &[]) {
            Ok(k) if k.derived || !AEAD_TYPES.contains(&k.kind.as_str()) => {
                return Err(RootKeyError::KmsKeyUnusable {
                    service: self.transit.service.clone(),
                    key: self.transit.key_path(),
                    reason: format!(
                        "a {}{} key: atrest needs a non-derived key of type {}",
                        if k.derived { "derived " } else { "" },
                        k.kind,
                        AEAD_TYPES.join(", ")
                    ),
                });
            }
            // Not allowed to read the key: the policy is narrower than that; carry on.
            Ok(_) | Err(RootKeyError::KmsPermissionDenied { .. }) => {}
            Err(e) => return Err(e),
        }
        self.checked.store(true, Ordering::Release);
        Ok(())
    }
}

impl core::fmt::Debug for VaultTransitRoot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VaultTransitRoot")
            .field("id", &self.id)
            .field("service", &self.transit.service)
            .finish_non_exhaustive()
    }
}

/// The JSON body of an encrypt or decrypt request, in zeroizing memory. The values are
/// base64, which JSON needs no escape for.
fn body(field: &str, value: &str, aad: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut b = Zeroizing::new(Vec::with_capacity(64 + value.len() + aad.len() * 2));
    b.extend_from_slice(b"{\"");
    b.extend_from_slice(field.as_bytes());
    b.extend_from_slice(b"\":\"");
    b.extend_from_slice(value.as_bytes());
    b.extend_from_slice(b"\",\"associated_data\":\"");
    b.extend_from_slice(B64.encode(aad).as_bytes());
    b.extend_from_slice(b"\"}");
    b
}

/// The transit ciphertext inside a wrapped key, if it has the version byte and the shape
/// `vault:v<digits>:<base64>`.
fn transit_ciphertext(wrapped: &[u8]) -> Option<&str> {
    let (&version, rest) = wrapped.split_first()?;
    let text = std::str::from_utf8(rest).ok().filter(|_| version == WRAP_VERSION)?;
    let (n, b64) = text.strip_prefix("vault:v")?.split_once(':')?;
    let n_ok = !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit());
    let b64_ok = !b64.is_empty() && b64.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    (n_ok && b64_ok).then_some(text)
}

impl RootKeyProvider for VaultTransitRoot {
    fn key_id(&self) -> String {
        self.id.clone()
    }

    fn wrap(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, RootKeyError> {
        self.check_key()?;
        let plain = Zeroizing::new(B64.encode(key));
        let data: EncryptData = self.transit.call(Op::Encrypt, &body("plaintext", &plain, aad))?;
        let mut out = Vec::with_capacity(1 + data.ciphertext.len());
        out.push(WRAP_VERSION);
        out.extend_from_slice(data.ciphertext.as_bytes());
        if transit_ciphertext(&out).is_none() {
            return Err(self.transit.other("encrypt answered with something that is not a transit ciphertext".into()));
        }
        Ok(out)
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretBytes, RootKeyError> {
        let ciphertext = transit_ciphertext(wrapped).ok_or(RootKeyError::Authentication)?;
        let data: DecryptData = self.transit.call(Op::Decrypt, &body("ciphertext", ciphertext, aad))?;
        let plain = B64
            .decode(data.plaintext.as_bytes())
            .map_err(|_| self.transit.other("decrypt answered with a plaintext that is not base64".into()))?;
        Ok(SecretBytes::new(plain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_format_known_answers() {
        let ct = "vault:v12:I5xToq5qg4wAPl3GdpYLoEIRvzgj1R+K/7yqbKhVqYCF";
        let mut w = vec![1u8];
        w.extend_from_slice(ct.as_bytes());
        assert_eq!(hex::encode(&w[..10]), "017661756c743a763132");
        assert_eq!(transit_ciphertext(&w), Some(ct));
        let mut other_version = w.clone();
        other_version[0] = 2;
        for bad in [
            &[][..],
            &[1][..],
            &other_version[..],
            b"\x01vault:v1:",
            b"\x01vault:v:AAAA",
            b"\x01vault:vx:AAAA",
            b"\x01vault:v1AAAA",
            b"\x01vault:v1:AA AA",
            b"\x01vault:v1:AA\"}",
            b"\x01vault:v12345678901:AAAA",
            b"\x01\xffvault:v1:AAAA",
        ] {
            assert_eq!(transit_ciphertext(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn request_bodies_are_json() {
        let b = body("plaintext", "AAEC", b"\x00aad");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["plaintext"], "AAEC");
        assert_eq!(v["associated_data"], "AGFhZA==");
    }

    #[test]
    fn names_and_id() {
        let token = secrecy::SecretString::from("t");
        let ok =
            VaultTransitRoot::new(&VaultTransitConfig::new("https://v:8200", "/team/transit/", "k-1", token.clone()));
        assert_eq!(ok.unwrap().key_id(), "hcvault:///team/transit/keys/k-1");
        for (mount, key) in [("", "k"), ("transit", ""), ("tr ansit", "k"), ("transit", "a/b"), ("a//b", "k")] {
            let c = VaultTransitConfig::new("https://v:8200", mount, key, token.clone());
            assert!(matches!(VaultTransitRoot::new(&c), Err(RootKeyError::KmsConfig { .. })), "{mount} {key}");
        }
    }
}
