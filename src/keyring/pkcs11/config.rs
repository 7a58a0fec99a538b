//! Where the root key lives and how to log in: [`Pkcs11Config`] and the PIN readers.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::error::RootKeyError;

/// The environment variable that holds the token's user PIN by convention (read it with
/// [`Pkcs11Config::pin_from_env`]).
pub const PKCS11_PIN_ENV: &str = "ATREST_PKCS11_PIN";

/// Where a PKCS#11 root key lives and how to log in to its token.
///
/// # Security
/// The PIN is a [`SecretString`]: zeroized on drop and never printed by `Debug`. Read it
/// from the environment ([`Pkcs11Config::pin_from_env`]) or from a file readable only by
/// its owner ([`Pkcs11Config::pin_from_file`]); never pass it on a command line.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (shared library), for example
    /// `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The label of the token that holds the root key.
    pub token_label: String,
    /// The label (`CKA_LABEL`) of the AES-256 root key object.
    pub key_label: String,
    /// The token's user PIN.
    pub pin: SecretString,
    /// Accept a root key that may leave the token or may have left it: `CKA_EXTRACTABLE`
    /// true or `CKA_SENSITIVE` false now, or `CKA_NEVER_EXTRACTABLE` or
    /// `CKA_ALWAYS_SENSITIVE` false (the key was extractable or readable once, so a copy may
    /// exist outside the token). Off by default: such a key is not protected by the HSM
    /// alone.
    pub allow_extractable: bool,
}

impl Pkcs11Config {
    /// A configuration that refuses extractable keys.
    pub fn new(module: impl Into<PathBuf>, token_label: &str, key_label: &str, pin: SecretString) -> Self {
        Self {
            module: module.into(),
            token_label: token_label.to_owned(),
            key_label: key_label.to_owned(),
            pin,
            allow_extractable: false,
        }
    }

    /// Reads the PIN from the environment variable `var` (for example [`PKCS11_PIN_ENV`]).
    ///
    /// # Errors
    /// [`RootKeyError::EnvMissing`] if the variable is unset, empty or not UTF-8.
    pub fn pin_from_env(var: &str) -> Result<SecretString, RootKeyError> {
        let value = Zeroizing::new(std::env::var(var).map_err(|_| RootKeyError::EnvMissing(var.to_owned()))?);
        if value.is_empty() {
            return Err(RootKeyError::EnvMissing(var.to_owned()));
        }
        Ok(SecretString::from(value.as_str()))
    }

    /// Reads the PIN from a file (one trailing newline is removed). On Unix, refuses a file
    /// that group or others may read.
    ///
    /// # Errors
    /// [`RootKeyError::InsecurePermissions`]; [`RootKeyError::Io`] if the file cannot be
    /// read, is not UTF-8 or holds an empty PIN.
    pub fn pin_from_file(path: &Path) -> Result<SecretString, RootKeyError> {
        let io = |source| RootKeyError::Io { path: path.to_path_buf(), source };
        let text = crate::fs::read_private_file(path)?;
        let pin = text.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(text.as_str());
        if pin.is_empty() {
            return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidData, "the PIN file is empty")));
        }
        Ok(SecretString::from(pin))
    }
}

impl core::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("allow_extractable", &self.allow_extractable)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn config_debug_hides_pin() {
        let c = Pkcs11Config::new("/m.so", "tok", "key", SecretString::from("s3cr3t-pin"));
        let d = format!("{c:?}");
        assert!(d.contains("tok") && d.contains("key") && !d.contains("s3cr3t"));
    }

    #[test]
    fn pin_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "1234\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(Pkcs11Config::pin_from_file(&p), Err(RootKeyError::InsecurePermissions { .. })));
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(Pkcs11Config::pin_from_file(&p).unwrap().expose_secret(), "1234");
        std::fs::write(&p, "12 34\r\n").unwrap();
        assert_eq!(Pkcs11Config::pin_from_file(&p).unwrap().expose_secret(), "12 34");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(Pkcs11Config::pin_from_file(&p), Err(RootKeyError::Io { .. })));
        assert!(matches!(Pkcs11Config::pin_from_file(&dir.path().join("missing")), Err(RootKeyError::Io { .. })));
        assert!(matches!(
            Pkcs11Config::pin_from_env("ATREST_TEST_SURELY_UNSET_VARIABLE"),
            Err(RootKeyError::EnvMissing(_))
        ));
    }
}
