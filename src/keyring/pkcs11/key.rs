//! The root key object: find it by label, generate it, and the policy a key must meet
//! (AES-256, usable for encryption and decryption, and unless explicitly allowed: not
//! extractable now and never extractable or readable before).

use std::sync::Mutex;

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;

use super::config::Pkcs11Config;
use super::connection::Connection;
use super::errors::to_root_error;
use super::pool::lock;
use crate::error::RootKeyError;
use crate::secret::random_array;

/// The root key's length in bytes (AES-256).
const KEY_LEN: usize = 32;
/// The length of the random `CKA_ID` of a generated key.
const CKA_ID_LEN: usize = 16;

/// Serializes key generation within this process (see
/// [`Pkcs11RootKey::open_or_generate`](super::Pkcs11RootKey::open_or_generate)).
static GENERATE: Mutex<()> = Mutex::new(());

impl Connection {
    /// The key labelled in `config`.
    ///
    /// # Errors
    /// [`RootKeyError::KeyMissing`] if there is none.
    pub(super) fn existing_key(&self, config: &Pkcs11Config) -> Result<ObjectHandle, RootKeyError> {
        self.find_key(config)?.ok_or_else(|| RootKeyError::KeyMissing(config.key_label.clone()))
    }

    /// The key labelled in `config`, generated if there is none.
    pub(super) fn key_or_generate(&self, config: &Pkcs11Config) -> Result<ObjectHandle, RootKeyError> {
        let _guard = lock(&GENERATE);
        match self.find_key(config)? {
            Some(key) => Ok(key),
            None => self.generate(config),
        }
    }

    fn find_key(&self, config: &Pkcs11Config) -> Result<Option<ObjectHandle>, RootKeyError> {
        let template =
            [Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(config.key_label.as_bytes().to_vec())];
        let found = self.with_session(|s| s.find_objects(&template).map_err(to_root_error))?;
        match found.as_slice() {
            [] => Ok(None),
            [key] => Ok(Some(*key)),
            _ => Err(RootKeyError::Pkcs11(format!(
                "{} secret keys are labelled '{}': the label must name exactly one key",
                found.len(),
                config.key_label
            ))),
        }
    }

    fn generate(&self, config: &Pkcs11Config) -> Result<ObjectHandle, RootKeyError> {
        let mechanisms = self.ctx.get_mechanism_list(self.slot).map_err(to_root_error)?;
        if !mechanisms.contains(&MechanismType::AES_KEY_GEN) {
            return Err(RootKeyError::MechanismUnsupported("CKM_AES_KEY_GEN".to_owned()));
        }
        let id: [u8; CKA_ID_LEN] = random_array()?;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(Ulong::try_from(KEY_LEN).map_err(to_root_error)?),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::Label(config.key_label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        // Token objects need a read-write session; it is closed again on return.
        let rw = self.ctx.open_rw_session(self.slot).map_err(to_root_error)?;
        let key = rw.generate_key(&Mechanism::AesKeyGen, &template).map_err(to_root_error)?;
        tracing::info!(
            target: "atrest::audit",
            event = "pkcs11.generate",
            token = %config.token_label,
            key = %config.key_label,
            id = %hex::encode(id)
        );
        Ok(key)
    }
}

/// A key that meets the policy.
pub(super) struct CheckedKey {
    /// Its [`key_id`](crate::RootKeyProvider::key_id): a PKCS#11 URI.
    pub(super) id: String,
    /// Whether it may leave the token or may have left it (accepted only because the
    /// configuration allows it).
    pub(super) exposed: bool,
}

/// What the token says about a key, as far as the policy needs. An attribute the token does
/// not report is `None`, and counts against the key.
#[derive(Default)]
struct KeyFacts {
    key_type: Option<KeyType>,
    value_len: Option<usize>,
    extractable: Option<bool>,
    sensitive: Option<bool>,
    never_extractable: Option<bool>,
    always_sensitive: Option<bool>,
    encrypt: bool,
    decrypt: bool,
    cka_id: Vec<u8>,
}

impl KeyFacts {
    fn read(session: &Session, key: ObjectHandle) -> Result<Self, RootKeyError> {
        let wanted = [
            AttributeType::KeyType,
            AttributeType::ValueLen,
            AttributeType::Extractable,
            AttributeType::Sensitive,
            AttributeType::NeverExtractable,
            AttributeType::AlwaysSensitive,
            AttributeType::Encrypt,
            AttributeType::Decrypt,
            AttributeType::Id,
        ];
        let mut facts = Self::default();
        for attr in session.get_attributes(key, &wanted).map_err(to_root_error)? {
            match attr {
                Attribute::KeyType(t) => facts.key_type = Some(t),
                Attribute::ValueLen(l) => facts.value_len = Some(usize::from(l)),
                Attribute::Extractable(b) => facts.extractable = Some(b),
                Attribute::Sensitive(b) => facts.sensitive = Some(b),
                Attribute::NeverExtractable(b) => facts.never_extractable = Some(b),
                Attribute::AlwaysSensitive(b) => facts.always_sensitive = Some(b),
                Attribute::Encrypt(b) => facts.encrypt = b,
                Attribute::Decrypt(b) => facts.decrypt = b,
                Attribute::Id(v) => facts.cka_id = v,
                _ => {}
            }
        }
        Ok(facts)
    }

    /// The policy. The order matters for the error: a key that may leave the token now is
    /// [`RootKeyError::KeyExtractable`]; one that is locked in now but was not always is
    /// [`RootKeyError::KeyWasExtractable`] (a copy may exist outside the token).
    fn check(&self, config: &Pkcs11Config) -> Result<bool, RootKeyError> {
        let label = &config.key_label;
        if self.key_type != Some(KeyType::AES) || self.value_len != Some(KEY_LEN) {
            return Err(RootKeyError::Pkcs11(format!("key '{label}' is not an AES-256 key")));
        }
        if !(self.encrypt && self.decrypt) {
            return Err(RootKeyError::Pkcs11(format!("key '{label}' does not allow CKA_ENCRYPT and CKA_DECRYPT")));
        }
        let may_leave = self.extractable != Some(false) || self.sensitive != Some(true);
        let may_have_left = self.never_extractable != Some(true) || self.always_sensitive != Some(true);
        if !config.allow_extractable {
            if may_leave {
                return Err(RootKeyError::KeyExtractable(label.clone()));
            }
            if may_have_left {
                return Err(RootKeyError::KeyWasExtractable(label.clone()));
            }
        }
        Ok(may_leave || may_have_left)
    }
}

/// Reads the key's attributes on `session` and checks them against the policy.
///
/// # Errors
/// [`RootKeyError::KeyExtractable`], [`RootKeyError::KeyWasExtractable`] (unless allowed),
/// [`RootKeyError::Pkcs11`] if it is not an AES-256 key usable for encryption and decryption.
pub(super) fn check_key(
    session: &Session,
    key: ObjectHandle,
    config: &Pkcs11Config,
) -> Result<CheckedKey, RootKeyError> {
    let facts = KeyFacts::read(session, key)?;
    let exposed = facts.check(config)?;
    Ok(CheckedKey { id: key_uri(&config.token_label, &config.key_label, &facts.cka_id), exposed })
}

/// An RFC 7512 PKCS#11 URI: labels percent-encoded outside the unreserved set, every id byte
/// percent-encoded.
fn key_uri(token: &str, object: &str, id: &[u8]) -> String {
    fn push_encoded(out: &mut String, bytes: &[u8]) {
        for &b in bytes {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut out = String::from("pkcs11:token=");
    push_encoded(&mut out, token.as_bytes());
    out.push_str(";object=");
    push_encoded(&mut out, object.as_bytes());
    if !id.is_empty() {
        out.push_str(";id=");
        for b in id {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn key_uri_is_rfc7512() {
        assert_eq!(key_uri("atrest", "root", &[]), "pkcs11:token=atrest;object=root");
        assert_eq!(key_uri("my token", "a;b=c", &[0x01, 0xab]), "pkcs11:token=my%20token;object=a%3Bb%3Dc;id=%01%AB");
    }

    fn locked_in() -> KeyFacts {
        KeyFacts {
            key_type: Some(KeyType::AES),
            value_len: Some(KEY_LEN),
            extractable: Some(false),
            sensitive: Some(true),
            never_extractable: Some(true),
            always_sensitive: Some(true),
            encrypt: true,
            decrypt: true,
            cka_id: Vec::new(),
        }
    }

    #[test]
    fn policy() {
        let strict = Pkcs11Config::new("/m.so", "t", "k", SecretString::from("0"));
        let mut lenient = strict.clone();
        lenient.allow_extractable = true;
        assert!(!locked_in().check(&strict).unwrap());
        assert!(!locked_in().check(&lenient).unwrap());

        // May leave the token now (or the token does not say).
        for facts in [
            KeyFacts { extractable: Some(true), never_extractable: Some(false), ..locked_in() },
            KeyFacts { sensitive: Some(false), always_sensitive: Some(false), ..locked_in() },
            KeyFacts { extractable: None, ..locked_in() },
        ] {
            assert!(matches!(facts.check(&strict), Err(RootKeyError::KeyExtractable(k)) if k == "k"));
            assert!(facts.check(&lenient).unwrap());
        }
        // Locked in now, but not always (or the token does not say).
        for facts in [
            KeyFacts { never_extractable: Some(false), ..locked_in() },
            KeyFacts { always_sensitive: Some(false), ..locked_in() },
            KeyFacts { never_extractable: None, ..locked_in() },
            KeyFacts { always_sensitive: None, ..locked_in() },
        ] {
            assert!(matches!(facts.check(&strict), Err(RootKeyError::KeyWasExtractable(k)) if k == "k"));
            assert!(facts.check(&lenient).unwrap());
        }
        // Not an AES-256 encryption key: refused even when extractable keys are allowed.
        for facts in [
            KeyFacts { value_len: Some(16), ..locked_in() },
            KeyFacts { key_type: Some(KeyType::DES3), ..locked_in() },
            KeyFacts { decrypt: false, ..locked_in() },
        ] {
            assert!(matches!(facts.check(&lenient), Err(RootKeyError::Pkcs11(_))));
        }
    }
}
