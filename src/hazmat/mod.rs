//! Low-level primitives. Easy to misuse: prefer the record and backup APIs.
//!
//! These are the tested building blocks the rest of the crate is made of, exposed so that
//! known-answer tests and interoperating implementations can reach them:
//! [`XAes256Gcm`] (the C2SP XAES-256-GCM AEAD on the `aes` and `aes-gcm` crates),
//! [`SuiteCipher`] (one AEAD of any [`Suite`](crate::Suite), on a chosen AES-GCM
//! [`Backend`](crate::Backend)) and [`hkdf_sha256`].

mod cipher;
mod gcm;
mod kdf;
mod xaes;

pub use cipher::{AeadError, SuiteCipher};
pub use kdf::{HkdfLengthError, hkdf_sha256};
pub use xaes::XAes256Gcm;

pub(crate) use gcm::Gcm;
pub(crate) use kdf::{Prk, expand32, expand32_parts, extract};
