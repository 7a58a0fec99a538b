//! Finding the root key and the keyring from the command line and the environment.

use std::path::Path;
use std::sync::Arc;

use atrest::{
    Keyring, KeyringLocation, KeyringOptions, LocalRootKey, ROOT_KEY_ENV, RootKeyError, RootKeyProvider, RootKeyUri,
};

use crate::args::{KeyArgs, Pkcs11Args};
use crate::failure::{Doing, Failure};

/// What the root key is used for: PKCS#11 keys are generated in the token only when a new
/// keyring (or a new root) is being set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Open an existing key.
    Open,
    /// Open the key, or generate it in the token if it does not exist yet.
    OpenOrGenerate,
}

/// The root key named by the global options.
pub fn root(keys: &KeyArgs, purpose: Purpose) -> Result<Arc<dyn RootKeyProvider>, Failure> {
    if let Some(uri) = &keys.root_key {
        if keys.root_key_file.is_some() || keys.pkcs11.any() {
            return Err(Failure::usage(
                "both a root key URI (--root-key / ATREST_ROOT_KEY_URI) and --root-key-file or --pkcs11-* options were \
                 given: choose one",
            ));
        }
        return root_uri(uri, purpose);
    }
    if keys.pkcs11.any() {
        if cfg!(not(feature = "pkcs11")) {
            return pkcs11(&keys.pkcs11, "ATREST_PKCS11_PIN", None, purpose);
        }
        if keys.root_key_file.is_some() {
            return Err(Failure::usage(
                "both a root key file (--root-key-file / ATREST_ROOT_KEY_FILE) and a PKCS#11 key were given: choose one",
            ));
        }
        return pkcs11(&keys.pkcs11, "ATREST_PKCS11_PIN", None, purpose);
    }
    if let Some(path) = &keys.root_key_file {
        return root_file(path);
    }
    if std::env::var_os(ROOT_KEY_ENV).is_some() {
        let k = LocalRootKey::from_env(ROOT_KEY_ENV).doing(|| "loading the root key".into())?;
        return Ok(Arc::new(k));
    }
    Err(Failure::usage(format!(
        "no root key: give --root-key URI (or ATREST_ROOT_KEY_URI), --root-key-file PATH (or ATREST_ROOT_KEY_FILE), set {ROOT_KEY_ENV}, or use --pkcs11-module/--pkcs11-token/--pkcs11-key"
    )))
}

/// The root key a URI names (`--root-key`, `--new-root-key`).
pub fn root_uri(uri: &str, purpose: Purpose) -> Result<Arc<dyn RootKeyProvider>, Failure> {
    // A URI that does not parse is not echoed: it may hold what it must not (a pin-value).
    let parsed = RootKeyUri::parse(uri).map_err(|e| Failure::usage(format!("root key URI: {e}")))?;
    let opened = match purpose {
        Purpose::Open => parsed.open(),
        Purpose::OpenOrGenerate => parsed.open_or_generate(),
    };
    match opened {
        // A scheme this build lacks: the command line asks for something unavailable.
        Err(RootKeyError::InvalidUri(e)) => Err(Failure::usage(format!("root key URI {parsed}: {e}"))),
        other => other.doing(|| format!("opening the root key {parsed}")),
    }
}

/// A root key file.
pub fn root_file(path: &Path) -> Result<Arc<dyn RootKeyProvider>, Failure> {
    let k = LocalRootKey::from_file(path).doing(|| "loading the root key".into())?;
    Ok(Arc::new(k))
}

/// A file path or a `postgres://` URL as a keyring location.
pub fn location(given: &Path) -> KeyringLocation {
    match given.to_str() {
        Some(text) => KeyringLocation::parse(text),
        None => KeyringLocation::File(given.to_path_buf()),
    }
}

/// The keyring location named by the global options.
pub fn keyring_location(keys: &KeyArgs) -> Result<KeyringLocation, Failure> {
    keys.keyring
        .as_deref()
        .map(location)
        .ok_or_else(|| Failure::usage("no keyring: give --keyring PATH|URL or set ATREST_KEYRING"))
}

/// Opens the keyring named by the global options.
pub fn keyring(keys: &KeyArgs) -> Result<Keyring, Failure> {
    let loc = keyring_location(keys)?;
    let root = root(keys, Purpose::Open)?;
    Keyring::open_at(&loc, root, KeyringOptions::default()).doing(|| "opening the keyring".into())
}

/// A PKCS#11 root key. `pin_env` names the PIN variable; `fallback_pin_env` is read if it is
/// unset.
#[cfg(feature = "pkcs11")]
pub fn pkcs11(
    args: &Pkcs11Args,
    pin_env: &str,
    fallback_pin_env: Option<&str>,
    purpose: Purpose,
) -> Result<Arc<dyn RootKeyProvider>, Failure> {
    use atrest::{Pkcs11Config, Pkcs11RootKey};

    let (Some(module), Some(token), Some(key)) = (&args.pkcs11_module, &args.pkcs11_token, &args.pkcs11_key) else {
        return Err(Failure::usage("a PKCS#11 root key needs all of: a module, a token label and a key label"));
    };
    let pin = match &args.pkcs11_pin_file {
        Some(p) => Pkcs11Config::pin_from_file(p).doing(|| "reading the PKCS#11 PIN".into())?,
        None => {
            let var = match fallback_pin_env {
                Some(f) if std::env::var_os(pin_env).is_none() => f,
                _ => pin_env,
            };
            Pkcs11Config::pin_from_env(var).doing(|| "reading the PKCS#11 PIN".into())?
        }
    };
    let cfg = Pkcs11Config::new(module, token, key, pin);
    let k = match purpose {
        Purpose::Open => Pkcs11RootKey::open(&cfg),
        Purpose::OpenOrGenerate => Pkcs11RootKey::open_or_generate(&cfg),
    }
    .doing(|| format!("opening PKCS#11 key '{key}' in token '{token}'"))?;
    Ok(Arc::new(k))
}

/// Without the `pkcs11` feature: a clear error.
#[cfg(not(feature = "pkcs11"))]
pub fn pkcs11(
    _args: &Pkcs11Args,
    _pin_env: &str,
    _fallback_pin_env: Option<&str>,
    _purpose: Purpose,
) -> Result<Arc<dyn RootKeyProvider>, Failure> {
    Err(Failure::usage(
        "this atrest was built without PKCS#11 support: rebuild with `--features cli,pkcs11` to use --pkcs11-* options",
    ))
}
