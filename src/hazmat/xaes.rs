//! XAES-256-GCM (<https://c2sp.org/XAES-256-GCM>): AES-256-GCM with 192-bit nonces.
//!
//! For a 256-bit key `K` and a 192-bit nonce `N`:
//!
//! ```text
//! L  = AES-256_K(0^128)
//! K1 = L << 1, xor 0x87 into the last byte if the top bit of L was set
//! M1 = 0x00 0x01 'X' 0x00 || N[0..12]      M2 = 0x00 0x02 'X' 0x00 || N[0..12]
//! Kx = AES-256_K(M1 ^ K1) || AES-256_K(M2 ^ K1)
//! XAES-256-GCM_K(N, P, A) = AES-256-GCM_Kx(N[12..24], P, A)
//! ```
//!
//! The derived key depends only on the first 96 bits of the nonce, which
//! [`XAes256Gcm::derive`] exposes so a caller can keep one derived AES-256-GCM instance per
//! nonce prefix (this is how the record sealer reaches pre-keyed AES-GCM speed).

use aead::consts::{U12, U16, U24, U32};
use zeroize::Zeroizing;

use super::gcm::Gcm;
use crate::backend::Backend;
use aead::{AeadCore, AeadInOut, Key, KeyInit, KeySizeUser, Nonce, Tag, TagPosition, inout::InOutBuf};
use aes::Aes256Enc;
use aes::cipher::{Array, BlockCipherEncrypt};
use aes_gcm::Aes256Gcm;
use core::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The XAES-256-GCM AEAD: a 256-bit key, 192-bit random-safe nonces, a 128-bit tag.
///
/// Implements the `aead` 0.6 traits ([`KeyInit`], [`AeadCore`], [`AeadInOut`]).
///
/// # Security
/// Random 192-bit nonces may be used for an effectively unlimited number of messages under
/// one key: each message gets its own derived AES-256-GCM key from the first 96 nonce bits,
/// and the remaining 96 bits are the GCM nonce.
///
/// # Example
/// ```
/// use atrest::hazmat::XAes256Gcm;
/// use aead::{Aead, KeyInit};
/// let cipher = XAes256Gcm::new(&[1u8; 32].into());
/// let nonce = *b"ABCDEFGHIJKLMNOPQRSTUVWX";
/// let ct = cipher.encrypt(&nonce.into(), &b"XAES-256-GCM"[..]).unwrap();
/// assert_eq!(hex::encode(&ct), "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271");
/// ```
pub struct XAes256Gcm {
    aes: Aes256Enc,
    k1: [u8; 16],
}

impl XAes256Gcm {
    /// Derives the AES-256-GCM key for a 96-bit nonce prefix (`N[0..12]`). The same instance
    /// then encrypts with the nonce suffix `N[12..24]` as its 96-bit GCM nonce.
    pub fn derive(&self, prefix: &[u8; 12]) -> Aes256Gcm {
        let kx = self.derive_key(prefix);
        Aes256Gcm::new((&*kx).into())
    }

    /// [`XAes256Gcm::derive`] on a chosen backend; [`None`] if it is not compiled in.
    pub(crate) fn derive_gcm(&self, prefix: &[u8; 12], backend: Backend) -> Option<Gcm> {
        Gcm::new(backend, &self.derive_key(prefix))
    }

    /// The derived AES-256-GCM key for a nonce prefix, zeroized on drop.
    pub(crate) fn derive_key(&self, prefix: &[u8; 12]) -> Zeroizing<[u8; 32]> {
        let mut kx = Zeroizing::new([0u8; 32]);
        let (b1, b2) = kx.split_at_mut(16);
        for (counter, half) in [(1u8, b1), (2u8, b2)] {
            let mut m = Array::<u8, U16>::default();
            let (head, tail) = m.split_at_mut(4);
            head.copy_from_slice(&[0x00, counter, b'X', 0x00]);
            tail.copy_from_slice(prefix);
            for (byte, k) in m.iter_mut().zip(self.k1.iter()) {
                *byte ^= k;
            }
            self.aes.encrypt_block(&mut m);
            half.copy_from_slice(&m);
            m.zeroize();
        }
        kx
    }

    fn split_nonce(nonce: &Nonce<Self>) -> ([u8; 12], &Nonce<Aes256Gcm>) {
        let (prefix, suffix) = nonce.split_ref::<U12>();
        let mut p = [0u8; 12];
        p.copy_from_slice(prefix);
        (p, suffix)
    }
}

impl KeySizeUser for XAes256Gcm {
    type KeySize = U32;
}

impl KeyInit for XAes256Gcm {
    fn new(key: &Key<Self>) -> Self {
        let aes = Aes256Enc::new(key);
        let mut l = Array::<u8, U16>::default();
        aes.encrypt_block(&mut l);
        let mut k1 = [0u8; 16];
        // K1 = L << 1 (big-endian), conditionally xor 0x87 without branching on the secret.
        let mut carry = 0u8;
        for (out, b) in k1.iter_mut().rev().zip(l.iter().rev()) {
            *out = (b << 1) | carry;
            carry = b >> 7;
        }
        k1[15] ^= 0x87 & 0u8.wrapping_sub(carry);
        l.zeroize();
        Self { aes, k1 }
    }
}

impl AeadCore for XAes256Gcm {
    type NonceSize = U24;
    type TagSize = U16;
    const TAG_POSITION: TagPosition = TagPosition::Postfix;
}

impl AeadInOut for XAes256Gcm {
    fn encrypt_inout_detached(
        &self,
        nonce: &Nonce<Self>,
        associated_data: &[u8],
        buffer: InOutBuf<'_, '_, u8>,
    ) -> aead::Result<Tag<Self>> {
        let (prefix, suffix) = Self::split_nonce(nonce);
        self.derive(&prefix).encrypt_inout_detached(suffix, associated_data, buffer)
    }

    fn decrypt_inout_detached(
        &self,
        nonce: &Nonce<Self>,
        associated_data: &[u8],
        buffer: InOutBuf<'_, '_, u8>,
        tag: &Tag<Self>,
    ) -> aead::Result<()> {
        let (prefix, suffix) = Self::split_nonce(nonce);
        self.derive(&prefix).decrypt_inout_detached(suffix, associated_data, buffer, tag)
    }
}

impl Drop for XAes256Gcm {
    fn drop(&mut self) {
        self.k1.zeroize();
    }
}

impl ZeroizeOnDrop for XAes256Gcm {}

impl fmt::Debug for XAes256Gcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("XAes256Gcm { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aead::Aead;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn spec_intermediates() {
        // Vector 2 of the spec has MSB(L) = 1, so it exercises the conditional xor.
        for (key, k1, kx) in [
            (
                [1u8; 32],
                "e531954aca063d5b8d9c47a47d4cc6f0",
                "c8612c9ed53fe43e8e005b828a1631a0bbcb6ab2f46514ec4f439fcfd0fa969b",
            ),
            (
                [3u8; 32],
                "23810ec50edb99f374409466ed1f4b7b",
                "e9c621d4cdd9b11b00a6427ad7e559aeedd66b3857646677748f8ca796cb3fd8",
            ),
        ] {
            let x = XAes256Gcm::new(&key.into());
            assert_eq!(x.k1.to_vec(), h(k1));
            let prefix: [u8; 12] = *b"ABCDEFGHIJKL";
            assert_eq!(x.derive_key(&prefix).to_vec(), h(kx));
        }
    }

    #[test]
    fn spec_vector_2_with_aad() {
        let x = XAes256Gcm::new(&[3u8; 32].into());
        let nonce = *b"ABCDEFGHIJKLMNOPQRSTUVWX";
        let payload = aead::Payload { msg: b"XAES-256-GCM", aad: b"c2sp.org/XAES-256-GCM" };
        let ct = x.encrypt(&nonce.into(), payload).unwrap();
        assert_eq!(ct, h("986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d"));
        let pt = x.decrypt(&nonce.into(), aead::Payload { msg: &ct, aad: b"c2sp.org/XAES-256-GCM" }).unwrap();
        assert_eq!(pt, b"XAES-256-GCM");
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(x.decrypt(&nonce.into(), &bad[..]).is_err());
    }
}
