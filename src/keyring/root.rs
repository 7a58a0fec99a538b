//! Root key providers: where the key that wraps a keyring's master keys lives.

use std::path::Path;

use zeroize::Zeroizing;

use crate::Suite;
use crate::error::RootKeyError;
use crate::fs;
use crate::hazmat::{SuiteCipher, expand32, extract};
use crate::secret::{RootKey, SecretBytes, random_array};

/// The environment variable [`LocalRootKey::from_env`] reads by default.
pub const ROOT_KEY_ENV: &str = "ATREST_ROOT_KEY";

const KEY_FILE_PREFIX: &str = "ATREST-ROOT-KEY-V1:";
const WRAP_VERSION: u8 = 1;

/// Holds a root key and wraps / unwraps master key material under it.
///
/// A root key only ever wraps keyring secrets (master keys and the keyring's integrity
/// key); it never touches data. Implementations must be safe to call from several threads.
///
/// Implementations in this crate: [`LocalRootKey`] (key file or environment variable) and,
/// with feature `pkcs11`, `Pkcs11RootKey` (an AES-256 key inside an HSM, used through
/// `CKM_AES_GCM`).
///
/// # Security
/// `wrap` must be an authenticated encryption that binds `aad`: `unwrap` with any other
/// `aad`, or of modified bytes, must fail with [`RootKeyError::Authentication`] and never
/// return unauthenticated key material.
///
/// # Cloud KMS providers (not implemented)
/// A network KMS fits the same three methods; no such provider ships with this crate.
/// What one would need:
/// - **Binding `aad`.** AWS KMS `Encrypt`/`Decrypt` with `EncryptionContext` (a string map:
///   put `aad` in one entry, hex or base64 encoded; KMS authenticates it and logs it in
///   CloudTrail, so it must stay non-secret, which the keyring's `aad` is). GCP Cloud KMS
///   `encrypt`/`decrypt` with `additional_authenticated_data`. HashiCorp Vault transit
///   `encrypt`/`decrypt` with `associated_data` (or `context` for derived keys). `wrap`
///   returns the service's ciphertext blob behind a provider-specific version byte, as the
///   local and PKCS#11 formats do.
/// - **Errors.** A rejected ciphertext or context (AWS `InvalidCiphertextException`, GCP
///   `INVALID_ARGUMENT` on decrypt, Vault "cipher: message authentication failed") must map
///   to [`RootKeyError::Authentication`]; network failures, timeouts, throttling and
///   permission denials must *not* (the keyring would report a tampered file): they need
///   their own variants (unavailable / access denied, with the service's request id),
///   retries with backoff for the transient ones, and a deadline.
/// - **Latency and caching.** Every call is a network round trip (milliseconds, and
///   billed). The keyring only calls `unwrap` when it loads or reloads a file and `wrap`
///   when it changes one, and keeps the unwrapped master keys in memory (zeroized on drop)
///   for as long as it lives, so records never reach the KMS. A provider should add no
///   cache of its own for unwrapped keys beyond that; it may reuse its HTTP client and
///   credentials.
/// - **Key id.** `key_id` must be stable and public, and name the key, not a version
///   alias that rotates silently: an AWS key ARN (not an alias), a GCP
///   `projects/.../cryptoKeys/...` name (decrypt picks the key version from the
///   ciphertext), a Vault `transit/keys/<name>` path with its mount. A KMS-side key
///   rotation then keeps the id and old ciphertexts still decrypt; moving to another key
///   is [`Keyring::rewrap_root`](crate::Keyring::rewrap_root).
/// - **Access control.** The process needs only encrypt and decrypt on that one key
///   (AWS `kms:Encrypt`/`kms:Decrypt`, GCP `roles/cloudkms.cryptoKeyEncrypterDecrypter`,
///   a Vault policy on `transit/encrypt/<name>` and `transit/decrypt/<name>`), ideally
///   conditioned on the encryption context; credentials come from the platform (instance
///   role, workload identity, Vault agent), never from the keyring file.
pub trait RootKeyProvider: Send + Sync {
    /// A public, stable identifier of the root key. It is stored in the keyring file so that
    /// a keyring opened with another root key is reported as such. It must not reveal key
    /// material.
    fn key_id(&self) -> String;

    /// Encrypts `key` under the root key, bound to `aad`.
    ///
    /// # Errors
    /// A [`RootKeyError`] if the provider cannot wrap (unavailable token, RNG failure).
    fn wrap(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, RootKeyError>;

    /// Decrypts what [`wrap`](RootKeyProvider::wrap) produced with the same `aad`.
    ///
    /// # Errors
    /// [`RootKeyError::Authentication`] if `wrapped` or `aad` was changed or another root
    /// key wrapped it; other variants if the provider is unavailable.
    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretBytes, RootKeyError>;
}

/// A shared provider is a provider: `Keyring::create(path, Arc::clone(&root))` lets several
/// keyrings (or a keyring and the caller) use one HSM session pool or KMS client.
impl<T: RootKeyProvider + ?Sized> RootKeyProvider for std::sync::Arc<T> {
    fn key_id(&self) -> String {
        (**self).key_id()
    }

    fn wrap(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, RootKeyError> {
        (**self).wrap(key, aad)
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretBytes, RootKeyError> {
        (**self).unwrap(wrapped, aad)
    }
}

/// A root key held in process memory, loaded from a key file or an environment variable.
///
/// Wrapping uses XAES-256-GCM with a random 192-bit nonce:
/// `0x01 || nonce (24) || ciphertext || tag (16)`.
///
/// # Example
/// ```
/// use atrest::{LocalRootKey, RootKeyProvider};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("root.key");
/// let root = LocalRootKey::generate_file(&path)?;          // written with mode 0600
/// let again = LocalRootKey::from_file(&path)?;
/// assert_eq!(root.key_id(), again.key_id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LocalRootKey {
    cipher: SuiteCipher,
    id: String,
}

impl LocalRootKey {
    /// Uses `key` as the root key.
    pub fn new(key: RootKey) -> Self {
        let prk = extract(b"atrest/v1/root-key-id", key.expose_secret());
        let id_bytes = expand32(&prk, b"id");
        let id = format!("local:{}", hex::encode(id_bytes.get(..8).unwrap_or_default()));
        Self { cipher: SuiteCipher::new(Suite::XAes256Gcm, key.expose_secret()), id }
    }

    /// A fresh random root key (in memory only).
    ///
    /// # Errors
    /// [`RootKeyError::Rng`] if the random source fails.
    pub fn generate() -> Result<Self, RootKeyError> {
        Ok(Self::new(RootKey::generate()?))
    }

    /// Generates a root key and writes it to a new key file with mode 0600, atomically.
    /// Never overwrites an existing file.
    ///
    /// # Errors
    /// [`RootKeyError::AlreadyExists`] if the file exists; [`RootKeyError::Io`] otherwise.
    pub fn generate_file(path: &Path) -> Result<Self, RootKeyError> {
        let key = RootKey::generate()?;
        let text = Self::encode(&key);
        fs::create_new(path, text.as_bytes()).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                RootKeyError::AlreadyExists(path.to_path_buf())
            } else {
                RootKeyError::Io { path: path.to_path_buf(), source }
            }
        })?;
        Ok(Self::new(key))
    }

    /// The text form of a root key, as stored in key files and environment variables:
    /// `ATREST-ROOT-KEY-V1:` followed by 64 hex digits.
    ///
    /// # Security
    /// The returned string is the key: it is zeroized on drop, but do not log it.
    pub fn encode(key: &RootKey) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(KEY_FILE_PREFIX.len() + 65));
        s.push_str(KEY_FILE_PREFIX);
        s.push_str(&Zeroizing::new(hex::encode(key.expose_secret())));
        s.push('\n');
        s
    }

    fn decode(text: &str, source: &str) -> Result<Self, RootKeyError> {
        let body =
            text.trim().strip_prefix(KEY_FILE_PREFIX).ok_or_else(|| RootKeyError::Malformed(source.to_owned()))?;
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(body, key.as_mut_slice()).map_err(|_| RootKeyError::Malformed(source.to_owned()))?;
        Ok(Self::new(RootKey::from_bytes(*key)))
    }

    /// Loads a root key file. On Unix the file must be a regular file owned by the caller or
    /// root that group and others may not access (mode 0600 or 0400); it is checked and read
    /// through one open handle. A symbolic link is followed, and the file it leads to is
    /// checked.
    ///
    /// # Errors
    /// [`RootKeyError::InsecurePermissions`] (group or other permission bits);
    /// [`RootKeyError::Io`] (unreadable, not a regular file, owned by another user);
    /// [`RootKeyError::Malformed`].
    pub fn from_file(path: &Path) -> Result<Self, RootKeyError> {
        let text = fs::read_private_file(path)?;
        Self::decode(&text, &path.display().to_string())
    }

    /// Loads the root key from the environment variable `var` (for example
    /// [`ROOT_KEY_ENV`]), in the key file's text form.
    ///
    /// # Errors
    /// [`RootKeyError::EnvMissing`] or [`RootKeyError::Malformed`].
    pub fn from_env(var: &str) -> Result<Self, RootKeyError> {
        let text = Zeroizing::new(std::env::var(var).map_err(|_| RootKeyError::EnvMissing(var.to_owned()))?);
        Self::decode(&text, &format!("environment variable {var}"))
    }
}

impl core::fmt::Debug for LocalRootKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalRootKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl RootKeyProvider for LocalRootKey {
    fn key_id(&self) -> String {
        self.id.clone()
    }

    fn wrap(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, RootKeyError> {
        let nonce: [u8; 24] = random_array()?;
        let mut out = Vec::with_capacity(1 + 24 + key.len() + 16);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&nonce);
        let sealed = self.cipher.seal(&nonce, aad, key).map_err(|_| RootKeyError::Authentication)?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretBytes, RootKeyError> {
        let (&version, rest) = wrapped.split_first().ok_or(RootKeyError::Authentication)?;
        if version != WRAP_VERSION {
            return Err(RootKeyError::Authentication);
        }
        let (nonce, sealed) = rest.split_at_checked(24).ok_or(RootKeyError::Authentication)?;
        let plain = self.cipher.open(nonce, aad, sealed).map_err(|_| RootKeyError::Authentication)?;
        Ok(SecretBytes::new(plain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_and_refusals() {
        let root = LocalRootKey::generate().unwrap();
        let w = root.wrap(&[5; 32], b"slot 1").unwrap();
        assert_eq!(root.unwrap(&w, b"slot 1").unwrap().expose_secret(), &[5; 32]);
        assert!(matches!(root.unwrap(&w, b"slot 2"), Err(RootKeyError::Authentication)));
        let other = LocalRootKey::generate().unwrap();
        assert_ne!(root.key_id(), other.key_id());
        assert!(matches!(other.unwrap(&w, b"slot 1"), Err(RootKeyError::Authentication)));
        for i in 0..w.len() {
            let mut bad = w.clone();
            bad[i] ^= 0x40;
            assert!(root.unwrap(&bad, b"slot 1").is_err());
            assert!(root.unwrap(&w[..i], b"slot 1").is_err());
        }
    }

    #[test]
    fn key_file_permissions_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.key");
        let k = LocalRootKey::generate_file(&p).unwrap();
        assert!(matches!(LocalRootKey::generate_file(&p), Err(RootKeyError::AlreadyExists(_))));
        assert_eq!(LocalRootKey::from_file(&p).unwrap().key_id(), k.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(LocalRootKey::from_file(&p), Err(RootKeyError::InsecurePermissions { .. })));
        }
        let bad = dir.path().join("bad.key");
        fs::create_new(&bad, b"not a key").unwrap();
        assert!(matches!(LocalRootKey::from_file(&bad), Err(RootKeyError::Malformed(_))));
        assert!(!format!("{k:?}").contains(KEY_FILE_PREFIX));
    }
}
