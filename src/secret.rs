//! Secret key newtypes.
//!
//! Every secret is a fixed-size array in a newtype that zeroizes on drop, prints no bytes in
//! `Debug`, has no `Display`, and compares in constant time. Bytes are reachable only through
//! an accessor whose name warns (`expose_secret`).

use core::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::RngError;

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), RngError> {
    getrandom::fill(buf).map_err(|_| RngError)
}

/// Returns `N` bytes from the operating system's CSPRNG.
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N], RngError> {
    let mut out = [0u8; N];
    fill_random(&mut out)?;
    Ok(out)
}

macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps existing key bytes. The caller's copy is not zeroized by this call.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// Generates a fresh key from the operating system's CSPRNG.
            ///
            /// # Errors
            /// [`RngError`] if the operating system's random source fails.
            #[allow(dead_code, reason = "tenant keys are derived, never generated")]
            pub fn generate() -> Result<Self, RngError> {
                let mut key = Self([0u8; 32]);
                fill_random(&mut key.0)?;
                Ok(key)
            }

            /// The raw key bytes.
            ///
            /// # Security
            /// Do not log, print or persist these bytes unprotected.
            pub fn expose_secret(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), " { .. }"))
            }
        }

        impl ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> subtle::Choice {
                self.0.ct_eq(&other.0)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.ct_eq(other).into()
            }
        }

        impl Eq for $name {}
    };
}

secret_key!(
    /// A root key: wraps and unwraps the master keys of a keyring, nothing else.
    ///
    /// Held in a key file, an environment variable, or (feature `pkcs11`) never outside an HSM.
    RootKey
);

secret_key!(
    /// A master key of a keyring version. Per-tenant keys are derived from it with HKDF-SHA256.
    MasterKey
);

secret_key!(
    /// A per-tenant, per-purpose key derived from a master key (records, backups).
    TenantKey
);

secret_key!(
    /// The key that authenticates a keyring file (HMAC-SHA256), wrapped by the root key.
    IntegrityKey
);

secret_key!(
    /// A fresh random data key of one backup stream, wrapped under the tenant's backup key.
    DataKey
);

/// Variable-length secret bytes (unwrapped key material), zeroized on drop, redacted in `Debug`.
#[derive(Zeroize, ZeroizeOnDrop, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    ///
    /// # Security
    /// Do not log, print or persist these bytes unprotected.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Copies into a 32-byte array if the length is exactly 32.
    pub(crate) fn to_array32(&self) -> Option<[u8; 32]> {
        <[u8; 32]>::try_from(self.0.as_slice()).ok()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes {{ len: {}, .. }}", self.0.len())
    }
}

impl ConstantTimeEq for SecretBytes {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.as_slice().ct_eq(other.0.as_slice())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for SecretBytes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let k = MasterKey::from_bytes([0xab; 32]);
        let s = format!("{k:?}");
        assert_eq!(s, "MasterKey { .. }");
        assert!(!s.to_lowercase().contains("ab"));
        let b = SecretBytes::new(vec![0xcd; 7]);
        assert_eq!(format!("{b:?}"), "SecretBytes { len: 7, .. }");
    }

    #[test]
    fn constant_time_eq_semantics() {
        let a = RootKey::from_bytes([1; 32]);
        let b = RootKey::from_bytes([1; 32]);
        let mut c_bytes = [1; 32];
        c_bytes[31] = 2;
        let c = RootKey::from_bytes(c_bytes);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(SecretBytes::new(vec![1, 2]), SecretBytes::new(vec![1, 2, 3]));
    }

    #[test]
    fn generate_is_random() {
        let a = TenantKey::generate().unwrap();
        let b = TenantKey::generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a.expose_secret(), &[0u8; 32]);
    }
}
