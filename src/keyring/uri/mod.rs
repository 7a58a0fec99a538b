//! One syntax for every root key: a key URI names where the root key lives, Tink-style
//! where a convention exists.
//!
//! | form | root key |
//! | --- | --- |
//! | `/path/to/root.key`, `./root.key`, `file:/path`, `file:///path` | a key file ([`LocalRootKey::from_file`]) |
//! | `env:VAR` | the key text in an environment variable ([`LocalRootKey::from_env`]) |
//! | `pkcs11:token=T;object=K[;id=%..][;type=secret-key][?module-path=M&pin-source=file:P]` | a PKCS#11 token (RFC 7512; feature `pkcs11`) |
//! | `hcvault://HOST[:PORT]/MOUNT/keys/NAME`, `hcvault:///MOUNT/keys/NAME` | a Vault / OpenBao transit key (feature `vault`) |
//! | `aws-kms://arn:PARTITION:kms:REGION:ACCOUNT:key/ID` | an AWS KMS key (feature `aws-kms`) |
//!
//! A string without a scheme (no `name:` before the first `/`) is a file path, taken
//! literally; a `file:` URI is percent-decoded (RFC 8089). A relative path whose first
//! segment holds a colon must be written `./a:b` or `file:a:b`.
//!
//! **PKCS#11.** Path attributes `token` and `object` (labels) are required; `id` (the key's
//! `CKA_ID`), if given, must match the key found; `type` may only be `secret-key`. Query
//! attributes: `module-path` (else `ATREST_PKCS11_MODULE`) and `pin-source=file:PATH` or a
//! path (else the PIN file named by `ATREST_PKCS11_PIN_FILE`, else the PIN in
//! `ATREST_PKCS11_PIN`). `pin-value` is refused: a PIN does not belong on a command line.
//! Other attributes are refused rather than ignored.
//!
//! **Vault / OpenBao.** The path is the transit key's path, its mount first
//! (`transit/keys/atrest`, `team/transit/keys/atrest`). With a host, the server is
//! `https://HOST[:PORT]` (port 443 if none, as Tink does); it is `http://HOST:PORT` only if
//! `VAULT_ADDR` (or `BAO_ADDR`) is exactly that and the host is a loopback address (tests,
//! a local Vault Agent). Without a host (`hcvault:///...`) the server is `VAULT_ADDR`. The
//! token, CA certificates and namespace come from the environment
//! ([`VaultTransitConfig`](crate::VaultTransitConfig) lists the variables).
//!
//! **AWS KMS.** A key ARN, not an alias (an alias can be moved to another key). The region
//! is the ARN's; credentials come from the standard AWS chain; `AWS_ENDPOINT_URL` (or
//! `AWS_ENDPOINT_URL_KMS`) points the client elsewhere, for example at a local emulator.
//!
//! [`LocalRootKey::from_file`]: crate::LocalRootKey::from_file
//! [`LocalRootKey::from_env`]: crate::LocalRootKey::from_env

mod open;
mod pkcs11;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use thiserror::Error;

use super::root::RootKeyProvider;
use crate::error::RootKeyError;

pub(crate) use pkcs11::Pkcs11Uri;

/// Why a root key URI was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyUriError {
    /// The URI is empty.
    #[error("the root key URI is empty")]
    Empty,
    /// The scheme is not one atrest knows.
    #[error("unknown root key URI scheme '{0}:' (expected a path, file:, env:, pkcs11:, hcvault:// or aws-kms://)")]
    UnknownScheme(String),
    /// The scheme needs a Cargo feature this build of atrest was compiled without.
    #[error("{scheme} root keys need atrest's `{feature}` feature, which this build lacks")]
    FeatureDisabled {
        /// The scheme, for example `hcvault`.
        scheme: &'static str,
        /// The Cargo feature, for example `vault`.
        feature: &'static str,
    },
    /// A required part is missing or empty.
    #[error("{scheme} root key URI: {part} is missing")]
    Missing {
        /// The scheme.
        scheme: &'static str,
        /// What is missing, for example `the variable name`.
        part: &'static str,
    },
    /// A `%XX` escape is malformed or decodes to invalid UTF-8.
    #[error("{scheme} root key URI: invalid percent-encoding")]
    BadPercentEncoding {
        /// The scheme.
        scheme: &'static str,
    },
    /// A PKCS#11 attribute atrest does not support (refused rather than ignored).
    #[error("pkcs11 root key URI: unsupported attribute '{0}'")]
    UnknownAttribute(String),
    /// A PKCS#11 attribute appears twice.
    #[error("pkcs11 root key URI: attribute '{0}' appears twice")]
    DuplicateAttribute(String),
    /// A PKCS#11 attribute has a value atrest cannot use.
    #[error("pkcs11 root key URI: {attribute} {problem}")]
    InvalidAttribute {
        /// The attribute.
        attribute: &'static str,
        /// What is wrong with its value.
        problem: &'static str,
    },
    /// `pin-value` in a PKCS#11 URI: the PIN would sit in command lines and logs.
    #[error(
        "pkcs11 root key URI: pin-value is refused (a PIN does not belong in a URI); use pin-source=file:PATH or ATREST_PKCS11_PIN"
    )]
    PinInUri,
    /// The environment variable name is not a valid name.
    #[error("env root key URI: '{0}' is not an environment variable name")]
    InvalidVariable(String),
    /// The host (or port) of a `file:` or `hcvault:` URI is not acceptable.
    #[error("{scheme} root key URI: invalid host '{host}'")]
    InvalidHost {
        /// The scheme.
        scheme: &'static str,
        /// The host as written.
        host: String,
    },
    /// An `hcvault:` path is not `MOUNT/keys/NAME` of plain names.
    #[error("hcvault root key URI: path '{0}' is not MOUNT/keys/NAME (names of letters, digits, '-', '_', '.')")]
    InvalidVaultPath(String),
    /// An `aws-kms:` URI does not hold a KMS key ARN.
    #[error("aws-kms root key URI: {0}")]
    InvalidArn(&'static str),
    /// A query (`?`) or fragment (`#`) where the scheme has none.
    #[error("{scheme} root key URI: unexpected query or fragment")]
    UnexpectedQuery {
        /// The scheme.
        scheme: &'static str,
    },
}

/// A parsed root key URI: where a root key lives, without any secret.
///
/// Parsing reads nothing and contacts nothing; [`open`](RootKeyUri::open) reads the key
/// file, the environment (PINs, tokens) and reaches the token or service.
///
/// # Example
/// ```
/// use atrest::RootKeyUri;
/// let uri: RootKeyUri = "hcvault://vault.example.com:8200/transit/keys/atrest".parse()?;
/// assert_eq!(uri.scheme(), "hcvault");
/// assert!("pkcs11:token=t;object=k?pin-value=1234".parse::<RootKeyUri>().is_err());
/// # Ok::<(), atrest::KeyUriError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootKeyUri {
    kind: Kind,
    /// The URI as given (it holds no secret: `pin-value` is refused).
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    File(PathBuf),
    Env(String),
    Pkcs11(Pkcs11Uri),
    HcVault { authority: Option<String>, mount: String, key: String },
    AwsKms { arn: String, region: String },
}

impl RootKeyUri {
    /// Parses a root key URI (see the module table for the forms).
    ///
    /// # Errors
    /// A [`KeyUriError`] saying what is wrong; never a panic.
    pub fn parse(uri: &str) -> Result<Self, KeyUriError> {
        let kind = match scheme_of(uri)? {
            None => Kind::File(PathBuf::from(uri)),
            Some(("file", rest)) => Kind::File(file_path(rest)?),
            Some(("env", rest)) => Kind::Env(env_name(rest)?),
            Some(("pkcs11", rest)) => Kind::Pkcs11(Pkcs11Uri::parse(rest)?),
            Some(("hcvault", rest)) => hcvault(rest)?,
            Some(("aws-kms", rest)) => aws_kms(rest)?,
            Some((other, _)) => return Err(KeyUriError::UnknownScheme(other.to_owned())),
        };
        Ok(Self { kind, text: uri.to_owned() })
    }

    /// The scheme: `file` (plain paths too), `env`, `pkcs11`, `hcvault` or `aws-kms`.
    pub fn scheme(&self) -> &'static str {
        match self.kind {
            Kind::File(_) => "file",
            Kind::Env(_) => "env",
            Kind::Pkcs11(_) => "pkcs11",
            Kind::HcVault { .. } => "hcvault",
            Kind::AwsKms { .. } => "aws-kms",
        }
    }

    /// Opens the root key: reads the key file or variable, logs in to the token, or sets up
    /// the client of the key management service (which is first reached by the keyring's
    /// first wrap or unwrap).
    ///
    /// # Errors
    /// The provider's own errors ([`RootKeyError::Io`], [`RootKeyError::EnvMissing`],
    /// [`RootKeyError::WrongPin`], [`RootKeyError::KmsConfig`], ...), and
    /// [`RootKeyError::InvalidUri`] with [`KeyUriError::FeatureDisabled`] when this build
    /// lacks the scheme's feature.
    pub fn open(&self) -> Result<Arc<dyn RootKeyProvider>, RootKeyError> {
        open::open(&self.kind, false)
    }

    /// As [`open`](RootKeyUri::open), but a PKCS#11 key that does not exist yet is generated
    /// in the token (for setting up a new keyring or a new root). Other schemes never create
    /// keys: key files come from `atrest keygen`, KMS keys from their service.
    ///
    /// # Errors
    /// As [`open`](RootKeyUri::open).
    pub fn open_or_generate(&self) -> Result<Arc<dyn RootKeyProvider>, RootKeyError> {
        open::open(&self.kind, true)
    }
}

impl FromStr for RootKeyUri {
    type Err = KeyUriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl core::fmt::Display for RootKeyUri {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses `uri` and opens the root key it names: `RootKeyUri::parse(uri)?.open()`.
///
/// # Errors
/// [`RootKeyError::InvalidUri`], then as [`RootKeyUri::open`].
///
/// # Example
/// ```
/// use atrest::{Keyring, LocalRootKey, root_key_from_uri};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("root.key");
/// LocalRootKey::generate_file(&path)?;
/// let root = root_key_from_uri(&format!("file:{}", path.display()))?;
/// let keyring = Keyring::create(&dir.path().join("keyring.atrk"), root)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn root_key_from_uri(uri: &str) -> Result<Arc<dyn RootKeyProvider>, RootKeyError> {
    RootKeyUri::parse(uri)?.open()
}

/// `Some((scheme, rest))` if `uri` starts with `scheme:` before any `/`.
fn scheme_of(uri: &str) -> Result<Option<(&str, &str)>, KeyUriError> {
    if uri.is_empty() {
        return Err(KeyUriError::Empty);
    }
    let Some((scheme, rest)) = uri.split_once(':') else { return Ok(None) };
    let mut chars = scheme.chars();
    let is_scheme = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    Ok(is_scheme.then_some((scheme, rest)))
}

/// Strict RFC 3986 percent-decoding.
pub(super) fn percent_decode_bytes(s: &str, scheme: &'static str) -> Result<Vec<u8>, KeyUriError> {
    let bad = || KeyUriError::BadPercentEncoding { scheme };
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next().ok_or_else(bad)?, bytes.next().ok_or_else(bad)?];
            let text = std::str::from_utf8(&hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(text, 16).map_err(|_| bad())?);
        } else {
            out.push(b);
        }
    }
    Ok(out)
}

/// Strict RFC 3986 percent-decoding into UTF-8.
pub(super) fn percent_decode(s: &str, scheme: &'static str) -> Result<String, KeyUriError> {
    String::from_utf8(percent_decode_bytes(s, scheme)?).map_err(|_| KeyUriError::BadPercentEncoding { scheme })
}

/// RFC 8089: `file:/p`, `file:///p`, `file://localhost/p`; also `file:relative`.
pub(super) fn file_path(rest: &str) -> Result<PathBuf, KeyUriError> {
    if rest.contains(['?', '#']) {
        return Err(KeyUriError::UnexpectedQuery { scheme: "file" });
    }
    let path = match rest.strip_prefix("//") {
        Some(after) => {
            let (host, path) = after.split_at_checked(after.find('/').unwrap_or(after.len())).unwrap_or((after, ""));
            if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                return Err(KeyUriError::InvalidHost { scheme: "file", host: host.to_owned() });
            }
            path
        }
        None => rest,
    };
    if path.is_empty() {
        return Err(KeyUriError::Missing { scheme: "file", part: "the path" });
    }
    Ok(PathBuf::from(percent_decode(path, "file")?))
}

fn env_name(rest: &str) -> Result<String, KeyUriError> {
    if rest.is_empty() {
        return Err(KeyUriError::Missing { scheme: "env", part: "the variable name" });
    }
    let mut chars = rest.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid { Ok(rest.to_owned()) } else { Err(KeyUriError::InvalidVariable(rest.to_owned())) }
}

fn vault_name_ok(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn hcvault(rest: &str) -> Result<Kind, KeyUriError> {
    let scheme = "hcvault";
    let after = rest.strip_prefix("//").ok_or(KeyUriError::Missing { scheme, part: "'//' after 'hcvault:'" })?;
    if after.contains(['?', '#']) {
        return Err(KeyUriError::UnexpectedQuery { scheme });
    }
    let (authority, path) = after.split_once('/').ok_or(KeyUriError::Missing { scheme, part: "the key path" })?;
    let authority = if authority.is_empty() {
        None
    } else {
        let invalid = || KeyUriError::InvalidHost { scheme, host: authority.to_owned() };
        let (host_ok, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (v6, after) = bracketed.split_once(']').ok_or_else(invalid)?;
                let port = if after.is_empty() { None } else { Some(after.strip_prefix(':').ok_or_else(invalid)?) };
                (v6.parse::<std::net::Ipv6Addr>().is_ok(), port)
            }
            None => {
                let (host, port) = authority.split_once(':').map_or((authority, None), |(h, p)| (h, Some(p)));
                (!host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)), port)
            }
        };
        let port_ok =
            port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0));
        if !(host_ok && port_ok) {
            return Err(invalid());
        }
        Some(authority.to_owned())
    };
    let segments: Vec<&str> = path.split('/').collect();
    let invalid_path = || KeyUriError::InvalidVaultPath(path.to_owned());
    let [mount @ .., keys, name] = segments.as_slice() else { return Err(invalid_path()) };
    if mount.is_empty() || *keys != "keys" || !vault_name_ok(name) || !mount.iter().all(|s| vault_name_ok(s)) {
        return Err(invalid_path());
    }
    Ok(Kind::HcVault { authority, mount: mount.join("/"), key: (*name).to_owned() })
}

fn aws_kms(rest: &str) -> Result<Kind, KeyUriError> {
    let arn =
        rest.strip_prefix("//").ok_or(KeyUriError::Missing { scheme: "aws-kms", part: "'//' after 'aws-kms:'" })?;
    if arn.contains(['?', '#']) {
        return Err(KeyUriError::UnexpectedQuery { scheme: "aws-kms" });
    }
    Ok(Kind::AwsKms { arn: arn.to_owned(), region: key_arn_region(arn)? })
}

/// The region of a KMS key ARN `arn:PARTITION:kms:REGION:ACCOUNT:key/ID`, if it is one.
pub(crate) fn key_arn_region(arn: &str) -> Result<String, KeyUriError> {
    let fields: Vec<&str> = arn.split(':').collect();
    let [prefix, partition, service, region, account, resource] = fields.as_slice() else {
        return Err(KeyUriError::InvalidArn("expected arn:PARTITION:kms:REGION:ACCOUNT:key/ID"));
    };
    let lower = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if *prefix != "arn" || !lower(partition) || *service != "kms" {
        return Err(KeyUriError::InvalidArn("expected arn:PARTITION:kms:... (a KMS ARN)"));
    }
    if !lower(region) {
        return Err(KeyUriError::InvalidArn("the ARN has no valid region"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyUriError::InvalidArn("the ARN's account is not 12 digits"));
    }
    if resource.starts_with("alias/") {
        return Err(KeyUriError::InvalidArn("an alias ARN: give the key ARN (an alias can be moved to another key)"));
    }
    let id = resource.strip_prefix("key/").ok_or(KeyUriError::InvalidArn("the ARN does not name a key (key/ID)"))?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(KeyUriError::InvalidArn("the key id is not letters, digits and '-'"));
    }
    Ok((*region).to_owned())
}

#[cfg(test)]
mod tests;
