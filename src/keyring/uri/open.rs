//! Opening the root key a parsed URI names (per scheme, each behind its feature).

use std::sync::Arc;

use super::Kind;
use crate::error::RootKeyError;
use crate::keyring::root::{LocalRootKey, RootKeyProvider};

#[cfg(not(all(feature = "pkcs11", feature = "vault", feature = "aws-kms")))]
fn disabled(scheme: &'static str, feature: &'static str) -> RootKeyError {
    RootKeyError::InvalidUri(super::KeyUriError::FeatureDisabled { scheme, feature })
}

pub(super) fn open(kind: &Kind, generate: bool) -> Result<Arc<dyn RootKeyProvider>, RootKeyError> {
    match kind {
        Kind::File(path) => Ok(Arc::new(LocalRootKey::from_file(path)?)),
        Kind::Env(var) => Ok(Arc::new(LocalRootKey::from_env(var)?)),
        Kind::Pkcs11(uri) => pkcs11(uri, generate),
        Kind::HcVault { authority, mount, key } => vault(authority.as_deref(), mount, key),
        Kind::AwsKms { arn, region } => aws_kms(arn, region),
    }
}

#[cfg(feature = "pkcs11")]
fn pkcs11(uri: &super::Pkcs11Uri, generate: bool) -> Result<Arc<dyn RootKeyProvider>, RootKeyError> {
    use std::path::PathBuf;

    use crate::keyring::{PKCS11_PIN_ENV, Pkcs11Config, Pkcs11RootKey};

    /// Names the PKCS#11 module when the URI has no `module-path`.
    const PKCS11_MODULE_ENV: &str = "ATREST_PKCS11_MODULE";
    /// Names a PIN file when the URI has no `pin-source`.
    const PKCS11_PIN_FILE_ENV: &str = "ATREST_PKCS11_PIN_FILE";

    let module = match &uri.module {
        Some(m) => m.clone(),
        None => std::env::var_os(PKCS11_MODULE_ENV)
            .filter(|m| !m.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| RootKeyError::EnvMissing(format!("{PKCS11_MODULE_ENV} (or module-path= in the URI)")))?,
    };
    let pin = match (&uri.pin_source, std::env::var_os(PKCS11_PIN_FILE_ENV).filter(|f| !f.is_empty())) {
        (Some(file), _) => Pkcs11Config::pin_from_file(file)?,
        (None, Some(file)) => Pkcs11Config::pin_from_file(&PathBuf::from(file))?,
        (None, None) => Pkcs11Config::pin_from_env(PKCS11_PIN_ENV)?,
    };
    let config = Pkcs11Config::new(module, &uri.token, &uri.object, pin);
    let key = if generate { Pkcs11RootKey::open_or_generate(&config)? } else { Pkcs11RootKey::open(&config)? };
    if let Some(want) = &uri.id {
        // The provider's id is an RFC 7512 URI naming the key's CKA_ID.
        let found = key.key_id().strip_prefix("pkcs11:").and_then(|rest| super::Pkcs11Uri::parse(rest).ok());
        if found.and_then(|f| f.id).as_ref() != Some(want) {
            return Err(RootKeyError::KeyMissing(format!("{} (with the id the URI names)", uri.object)));
        }
    }
    Ok(Arc::new(key))
}

#[cfg(not(feature = "pkcs11"))]
fn pkcs11(_: &super::Pkcs11Uri, _: bool) -> Result<Arc<dyn RootKeyProvider>, RootKeyError> {
    Err(disabled("pkcs11", "pkcs11"))
}

#[cfg(feature = "vault")]
fn vault(authority: Option<&str>, mount: &str, key: &str) -> Result<Arc<dyn RootKeyProvider>, RootKeyError> {
    use crate::keyring::{VaultTransitConfig, VaultTransitRoot};
    Ok(Arc::new(VaultTransitRoot::new(&VaultTransitConfig::from_env_at(authority, mount, key)?)?))
}

#[cfg(not(feature = "vault"))]
fn vault(_: Option<&str>, _: &str, _: &str) -> Result<Arc<dyn RootKeyProvider>, RootKeyError> {
    Err(disabled("hcvault", "vault"))
}

#[cfg(feature = "aws-kms")]
fn aws_kms(arn: &str, region: &str) -> Result<Arc<dyn RootKeyProvider>, RootKeyError> {
    Ok(Arc::new(crate::keyring::AwsKmsRoot::with_region(arn, region)?))
}

#[cfg(not(feature = "aws-kms"))]
fn aws_kms(_: &str, _: &str) -> Result<Arc<dyn RootKeyProvider>, RootKeyError> {
    Err(disabled("aws-kms", "aws-kms"))
}
