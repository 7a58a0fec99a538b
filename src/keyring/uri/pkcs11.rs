//! `pkcs11:` root key URIs (RFC 7512), the subset atrest uses.

use std::path::PathBuf;

use super::{KeyUriError, file_path, percent_decode, percent_decode_bytes};

const SCHEME: &str = "pkcs11";

/// A parsed `pkcs11:` URI: which key in which token, and where the module and PIN are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pkcs11Uri {
    /// The token label.
    pub(crate) token: String,
    /// The key label (`CKA_LABEL`).
    pub(crate) object: String,
    /// The key's `CKA_ID`, if the URI names it: the key found must have it.
    pub(crate) id: Option<Vec<u8>>,
    /// The PKCS#11 module, if the URI names it.
    pub(crate) module: Option<PathBuf>,
    /// A file holding the PIN, if the URI names it.
    pub(crate) pin_source: Option<PathBuf>,
}

fn set<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), KeyUriError> {
    if slot.replace(value).is_some() {
        return Err(KeyUriError::DuplicateAttribute(name.to_owned()));
    }
    Ok(())
}

impl Pkcs11Uri {
    /// Parses what follows `pkcs11:`.
    pub(crate) fn parse(rest: &str) -> Result<Self, KeyUriError> {
        if rest.contains('#') {
            return Err(KeyUriError::UnexpectedQuery { scheme: SCHEME });
        }
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (mut token, mut object, mut id, mut kind) = (None, None, None, None);
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            match name {
                "token" => set(&mut token, name, percent_decode(value, SCHEME)?)?,
                "object" => set(&mut object, name, percent_decode(value, SCHEME)?)?,
                "id" => set(&mut id, name, percent_decode_bytes(value, SCHEME)?)?,
                "type" => set(&mut kind, name, percent_decode(value, SCHEME)?)?,
                _ => return Err(KeyUriError::UnknownAttribute(name.to_owned())),
            }
        }
        let (mut module, mut pin_source) = (None, None);
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            match name {
                "module-path" => set(&mut module, name, percent_decode(value, SCHEME)?)?,
                "pin-source" => set(&mut pin_source, name, percent_decode(value, SCHEME)?)?,
                "pin-value" => return Err(KeyUriError::PinInUri),
                _ => return Err(KeyUriError::UnknownAttribute(name.to_owned())),
            }
        }
        let token = token.filter(|t| !t.is_empty()).ok_or(KeyUriError::Missing { scheme: SCHEME, part: "token=" })?;
        let object =
            object.filter(|o| !o.is_empty()).ok_or(KeyUriError::Missing { scheme: SCHEME, part: "object=" })?;
        if kind.is_some_and(|k| k != "secret-key") {
            return Err(KeyUriError::InvalidAttribute {
                attribute: "type",
                problem: "must be secret-key (an AES key)",
            });
        }
        if id.as_ref().is_some_and(Vec::is_empty) {
            return Err(KeyUriError::InvalidAttribute { attribute: "id", problem: "is empty" });
        }
        if module.as_ref().is_some_and(String::is_empty) {
            return Err(KeyUriError::InvalidAttribute { attribute: "module-path", problem: "is empty" });
        }
        let pin_source = match pin_source {
            None => None,
            Some(p) if p.starts_with('/') => Some(PathBuf::from(p)),
            Some(p) => match p.strip_prefix("file:") {
                Some(rest) => Some(file_path(rest)?),
                None => {
                    return Err(KeyUriError::InvalidAttribute {
                        attribute: "pin-source",
                        problem: "must be file:PATH or an absolute path",
                    });
                }
            },
        };
        Ok(Self { token, object, id, module: module.map(PathBuf::from), pin_source })
    }
}
