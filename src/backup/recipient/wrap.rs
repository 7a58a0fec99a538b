//! The data key of a recipient stream: HPKE-sealed to the recipient's public key, bound to
//! the header (see the `recipient` module documentation for `info` and `aad`).

use hpke::rand_core::{CryptoRng, SeedableRng};
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::Recipient;
use crate::TenantId;
use crate::backup::header::{Header, KemWrap, WRAPPED_KEY_LEN, Wrap};
use crate::encoding::put_lp;
use crate::error::BackupError;
use crate::secret::{DataKey, TenantKey, random_array};

const LABEL_WRAP: &[u8] = b"atrest/v1/backup/recipient-wrap";

/// A CSPRNG for one encapsulation, seeded from the operating system (a failing random
/// source is an error here, not a panic later).
pub(crate) fn os_rng() -> Result<StdRng, BackupError> {
    Ok(StdRng::from_seed(random_array()?))
}

/// The key-naming block of a stream to `recipient`, before its data key is sealed.
pub(crate) fn placeholder(recipient: &Recipient) -> Wrap {
    Wrap::Kem(KemWrap {
        key_version: recipient.key_version(),
        kem: recipient.kem(),
        enc: vec![0; recipient.kem().encapsulated_len()],
        wrapped: [0; WRAPPED_KEY_LEN],
    })
}

/// HPKE `info`: the tenant, the bound header, method and key version, and the public key.
fn info(header: &Header, tenant: &TenantId, key_hash: &[u8; 32]) -> Vec<u8> {
    let mut info = Vec::with_capacity(160 + tenant.as_str().len());
    put_lp(&mut info, LABEL_WRAP);
    put_lp(&mut info, tenant.as_str().as_bytes());
    header.put_fixed(&mut info);
    header.put_key_version(&mut info);
    info.extend_from_slice(key_hash);
    info
}

/// HPKE `aad`: the commitment, the header tag and the encapsulated key.
fn aad(header: &Header, enc: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + enc.len());
    aad.extend_from_slice(&header.commitment);
    aad.extend_from_slice(&header.tag);
    aad.extend_from_slice(enc);
    aad
}

/// Seals `data_key` to `recipient` into `header`, whose key-naming block must be
/// [`placeholder`]`(recipient)` and the rest final.
pub(crate) fn wrap_data_key(
    recipient: &Recipient,
    header: &mut Header,
    data_key: &DataKey,
    rng: &mut impl CryptoRng,
) -> Result<(), BackupError> {
    let kem = recipient.kem();
    let info = info(header, recipient.tenant(), &recipient.key_hash());
    // The encapsulated key enters the AAD, and only sealing makes it: seal with a
    // placeholder AAD is not possible, so HPKE's key schedule is set up first (in `seal`)
    // and the AAD is built from the `enc` it returns.
    let mut buf = Zeroizing::new(*data_key.expose_secret());
    let sealed = kem.seal_then(recipient.public_key(), &info, |enc| aad(header, enc), buf.as_mut_slice(), rng);
    let (enc, tag) = sealed.ok_or(BackupError::Internal("sealing the data key to the recipient failed"))?;
    let mut wrapped = [0u8; WRAPPED_KEY_LEN];
    let (ct, t) = wrapped.split_at_mut(32);
    ct.copy_from_slice(buf.as_slice());
    t.copy_from_slice(&tag);
    header.wrap = Wrap::Kem(KemWrap { key_version: recipient.key_version(), kem, enc, wrapped });
    Ok(())
}

/// Opens the data key of a recipient stream with `backup_key`, the tenant's backup key of
/// the version the header names. Any failure is [`BackupError::Authentication`].
pub(crate) fn unwrap_data_key(
    backup_key: &TenantKey,
    tenant: &TenantId,
    header: &Header,
    wrap: &KemWrap,
) -> Result<DataKey, BackupError> {
    let (ct, tag) = wrap.wrapped.split_at(32);
    let mut buf = Zeroizing::new([0u8; 32]);
    buf.copy_from_slice(ct);
    let info_of = |pk: &[u8]| info(header, tenant, &Sha256::digest(pk).into());
    wrap.kem
        .open(wrap.kem.ikm(backup_key).as_slice(), &wrap.enc, info_of, &aad(header, &wrap.enc), buf.as_mut_slice(), tag)
        .ok_or(BackupError::Authentication)?;
    Ok(DataKey::from_bytes(*buf))
}
