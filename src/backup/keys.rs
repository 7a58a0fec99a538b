//! Stream keys: the per-stream key schedule (chunk key, nonce prefix, key commitment,
//! header tag) derived from a fresh data key, and the wrapping of that data key under the
//! tenant's backup key. See the `backup` module documentation for the formulas.
//!
//! Starting a stream ([`seal_stream`], or [`seal_recipient_stream`] on an encrypt-only
//! host), opening one ([`open_stream`]) and rewrapping one ([`rewrap_header`]) are the only
//! ways in. The data key of a recipient stream (wrapping methods 0x02, 0x03) is wrapped and
//! unwrapped in `recipient::wrap`; everything else is shared.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::BackupContext;
use super::chunk::{ChunkCipher, NONCE_PREFIX_LEN};
use super::header::{Header, KeyWrap, SALT_LEN, WRAP_NONCE_LEN, WRAPPED_KEY_LEN, Wrap};
use super::recipient::{self, Recipient};
use super::stored::Stored;
use crate::encoding::put_lp;
use crate::error::{BackupError, OpenError};
use crate::hazmat::{SuiteCipher, expand32, extract};
use crate::secret::{DataKey, TenantKey, random_array};
use crate::{Backend, KeyVersion, Suite, Tenant, TenantId};

const LABEL_KDF: &[u8] = b"atrest/v1/backup";
const LABEL_HEADER: &[u8] = b"atrest/v1/backup/header";
const LABEL_WRAP: &[u8] = b"atrest/v1/backup/wrap";

/// The keys derived from one stream's data key and salt.
struct StreamKeys {
    chunk_key: Zeroizing<[u8; 32]>,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    commitment: [u8; 32],
    mac_key: Zeroizing<[u8; 32]>,
}

impl StreamKeys {
    fn derive(data_key: &DataKey, salt: &[u8; SALT_LEN]) -> Self {
        let prk = extract(salt, data_key.expose_secret());
        let info = |what: &[u8]| {
            let mut info = Vec::with_capacity(48);
            put_lp(&mut info, LABEL_KDF);
            put_lp(&mut info, what);
            info
        };
        let prefix = Zeroizing::new(expand32(&prk, &info(b"nonce prefix")));
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        for (d, s) in nonce_prefix.iter_mut().zip(prefix.iter()) {
            *d = *s;
        }
        Self {
            chunk_key: Zeroizing::new(expand32(&prk, &info(b"chunk key"))),
            nonce_prefix,
            commitment: expand32(&prk, &info(b"commitment")),
            mac_key: Zeroizing::new(expand32(&prk, &info(b"header mac"))),
        }
    }

    fn header_mac(&self, header: &Header) -> Result<Hmac<Sha256>, BackupError> {
        // HMAC accepts keys of any length: this cannot fail for a 32-byte key.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.mac_key.as_slice())
            .map_err(|_| BackupError::Internal("HMAC key length"))?;
        let mut input = Vec::with_capacity(80);
        put_lp(&mut input, LABEL_HEADER);
        header.put_fixed(&mut input);
        input.extend_from_slice(&self.commitment);
        mac.update(&input);
        Ok(mac)
    }

    /// Checks the key commitment (constant time) and the header tag.
    fn verify_header(&self, header: &Header) -> Result<(), BackupError> {
        if !bool::from(self.commitment.ct_eq(&header.commitment)) {
            return Err(BackupError::Authentication);
        }
        // verify_slice compares in constant time.
        self.header_mac(header)?.verify_slice(&header.tag).map_err(|_| BackupError::Authentication)
    }

    fn chunk_cipher(
        &self,
        header: &Header,
        tenant: &TenantId,
        ctx: &BackupContext,
        backend: Backend,
    ) -> Result<ChunkCipher, BackupError> {
        ChunkCipher::new(&self.chunk_key, self.nonce_prefix, header, tenant, ctx, backend)
    }
}

/// The AAD of the data key wrap: the immutable header and the key version, not the backup
/// context (so a rewrap touches only header bytes).
fn wrap_aad(header: &Header, tenant: &TenantId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(160 + tenant.as_str().len());
    put_lp(&mut aad, LABEL_WRAP);
    put_lp(&mut aad, tenant.as_str().as_bytes());
    header.put_fixed(&mut aad);
    header.put_key_version(&mut aad);
    aad.extend_from_slice(&header.commitment);
    aad.extend_from_slice(&header.tag);
    aad
}

/// Wraps `data_key` under `backup_key` (the tenant's backup key of `version`) into `header`,
/// setting its key version and wrap nonce. The rest of the header must already be final.
fn wrap_data_key(
    backup_key: &TenantKey,
    version: KeyVersion,
    tenant: &TenantId,
    header: &mut Header,
    data_key: &DataKey,
    nonce: [u8; WRAP_NONCE_LEN],
) -> Result<(), BackupError> {
    header.wrap = Wrap::Key(KeyWrap { key_version: version, nonce, wrapped: [0; WRAPPED_KEY_LEN] });
    let mut buf = Zeroizing::new(*data_key.expose_secret());
    let tag = SuiteCipher::new(Suite::XAes256Gcm, backup_key.expose_secret())
        .encrypt_detached(&nonce, &wrap_aad(header, tenant), buf.as_mut_slice())
        .map_err(|_| BackupError::Internal("wrapping the data key failed"))?;
    let mut wrapped = [0u8; WRAPPED_KEY_LEN];
    let (ct, t) = wrapped.split_at_mut(32);
    ct.copy_from_slice(buf.as_slice());
    t.copy_from_slice(&tag);
    header.wrap = Wrap::Key(KeyWrap { key_version: version, nonce, wrapped });
    Ok(())
}

/// Unwraps the data key of `header` for `tenant`, under the key version the header names.
/// An unknown version is an authentication failure like any other; disabled, destroyed
/// and shredded are reported.
fn unwrap_data_key(tenant: &Tenant, header: &Header) -> Result<DataKey, BackupError> {
    let key = tenant.backup_key_for_open(header.key_version()).map_err(|e| match e {
        OpenError::Authentication => BackupError::Authentication,
        other => BackupError::Key(other),
    })?;
    let wrap = match &header.wrap {
        Wrap::Key(wrap) => wrap,
        Wrap::Kem(kem) => return recipient::unwrap_data_key(&key.key, tenant.id(), header, kem),
    };
    let (ct, tag) = wrap.wrapped.split_at(32);
    let mut buf = Zeroizing::new([0u8; 32]);
    buf.copy_from_slice(ct);
    SuiteCipher::new(Suite::XAes256Gcm, key.key.expose_secret())
        .decrypt_detached(&wrap.nonce, &wrap_aad(header, tenant.id()), buf.as_mut_slice(), tag)
        .map_err(|_| BackupError::Authentication)?;
    Ok(DataKey::from_bytes(*buf))
}

/// Unwraps the data key of `header` and checks the commitment and header tag. A version 2
/// header that names another tenant fails with [`BackupError::ContextMismatch`] first.
fn open_data_key(tenant: &Tenant, header: &Header) -> Result<(DataKey, StreamKeys), BackupError> {
    if let Some(stored) = &header.stored {
        stored.check_tenant(tenant)?;
    }
    let data_key = unwrap_data_key(tenant, header)?;
    let stream = StreamKeys::derive(&data_key, &header.salt);
    stream.verify_header(header)?;
    Ok((data_key, stream))
}

/// The random values of one new stream.
pub(crate) struct StreamSecrets {
    pub(crate) data_key: DataKey,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) wrap_nonce: [u8; WRAP_NONCE_LEN],
}

impl StreamSecrets {
    fn generate() -> Result<Self, BackupError> {
        Ok(Self { data_key: DataKey::generate()?, salt: random_array()?, wrap_nonce: random_array()? })
    }
}

/// Starts a new stream: a fresh data key and salt, wrapped under the tenant's current key.
/// Returns the header bytes and the chunk cipher. `created` overrides the clock.
pub(crate) fn seal_stream(
    tenant: &Tenant,
    ctx: &BackupContext,
    chunk_size: usize,
    backend: Backend,
    created: Option<u64>,
) -> Result<(Vec<u8>, ChunkCipher), BackupError> {
    let key = tenant.backup_key_for_seal()?;
    let created = match created {
        Some(t) => t,
        None => now()?,
    };
    let stored = Stored { tenant: tenant.id().clone(), ctx: ctx.clone(), created };
    build_stream(&key.key, key.version, tenant.id(), ctx, chunk_size, StreamSecrets::generate()?, backend, Some(stored))
}

/// [`seal_stream`] with given key and random values (deterministic, for known-answer tests);
/// `stored` `None` writes a version 1 stream (only tests and golden files do).
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_stream(
    backup_key: &TenantKey,
    version: KeyVersion,
    tenant: &TenantId,
    ctx: &BackupContext,
    chunk_size: usize,
    secrets: StreamSecrets,
    backend: Backend,
    stored: Option<Stored>,
) -> Result<(Vec<u8>, ChunkCipher), BackupError> {
    let wrap = Wrap::Key(KeyWrap { key_version: version, nonce: [0; WRAP_NONCE_LEN], wrapped: [0; WRAPPED_KEY_LEN] });
    let (mut header, stream) = start_header(chunk_size, &secrets, wrap, stored)?;
    wrap_data_key(backup_key, version, tenant, &mut header, &secrets.data_key, secrets.wrap_nonce)?;
    Ok((header.encode(), stream.chunk_cipher(&header, tenant, ctx, backend)?))
}

/// A new header with its commitment and header tag (which do not depend on the wrapping:
/// `wrap` is a placeholder naming the method and key version), and its stream keys.
fn start_header(
    chunk_size: usize,
    secrets: &StreamSecrets,
    wrap: Wrap,
    stored: Option<Stored>,
) -> Result<(Header, StreamKeys), BackupError> {
    let chunk_size = u32::try_from(chunk_size).map_err(|_| BackupError::Internal("chunk size beyond u32"))?;
    let mut header = Header { chunk_size, salt: secrets.salt, wrap, commitment: [0; 32], tag: [0; 32], stored };
    let stream = StreamKeys::derive(&secrets.data_key, &header.salt);
    header.commitment = stream.commitment;
    header.tag = stream.header_mac(&header)?.finalize().into_bytes().into();
    Ok((header, stream))
}

/// Starts a new stream to `recipient` (encrypt-only: no keyring): a fresh data key and
/// salt, the data key HPKE-sealed to the recipient's public key. Returns the header bytes
/// and the chunk cipher. `created` overrides the clock.
pub(crate) fn seal_recipient_stream(
    recipient: &Recipient,
    ctx: &BackupContext,
    chunk_size: usize,
    backend: Backend,
    created: Option<u64>,
) -> Result<(Vec<u8>, ChunkCipher), BackupError> {
    let created = match created {
        Some(t) => t,
        None => now()?,
    };
    let stored = Stored { tenant: recipient.tenant().clone(), ctx: ctx.clone(), created };
    let mut rng = recipient::os_rng()?;
    build_recipient_stream(recipient, ctx, chunk_size, StreamSecrets::generate()?, backend, stored, &mut rng)
}

/// [`seal_recipient_stream`] with given random values (deterministic, for tests).
pub(crate) fn build_recipient_stream(
    recipient: &Recipient,
    ctx: &BackupContext,
    chunk_size: usize,
    secrets: StreamSecrets,
    backend: Backend,
    stored: Stored,
    rng: &mut impl hpke::rand_core::CryptoRng,
) -> Result<(Vec<u8>, ChunkCipher), BackupError> {
    let (mut header, stream) = start_header(chunk_size, &secrets, recipient::placeholder(recipient), Some(stored))?;
    recipient::wrap_data_key(recipient, &mut header, &secrets.data_key, rng)?;
    Ok((header.encode(), stream.chunk_cipher(&header, recipient.tenant(), ctx, backend)?))
}

/// Seconds since the Unix epoch.
fn now() -> Result<u64, BackupError> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| BackupError::InvalidParameter("the system clock is before 1970".into()))?
        .as_secs())
}

/// Opens an existing stream's header for reading. A version 2 stream is read with the
/// context it stores, which must match `expect` if given; a version 1 stream needs `expect`.
pub(crate) fn open_stream(
    tenant: &Tenant,
    expect: Option<&BackupContext>,
    header: &Header,
    backend: Backend,
) -> Result<ChunkCipher, BackupError> {
    if header.stored.is_none() && expect.is_none() {
        return Err(BackupError::InvalidParameter(
            "a version 1 backup stream does not store its context: give its snapshot, parent, kind and sequence".into(),
        ));
    }
    let (_, stream) = open_data_key(tenant, header)?;
    let ctx = match (&header.stored, expect) {
        (Some(stored), expect) => {
            if let Some(e) = expect {
                stored.check_expected(e)?;
            }
            &stored.ctx
        }
        (None, Some(e)) => e,
        (None, None) => return Err(BackupError::Internal("checked above")),
    };
    stream.chunk_cipher(header, tenant.id(), ctx, backend)
}

/// Re-wraps the data key of `header` (opened under the version it names) under the tenant's
/// current key version: for a recipient stream, to the recipient of the current version
/// with the same KEM. Returns `None` if the header already names that version.
pub(crate) fn rewrap_header(tenant: &Tenant, header: &Header) -> Result<Option<Header>, BackupError> {
    let (data_key, _) = open_data_key(tenant, header)?;
    let key = tenant.backup_key_for_seal()?;
    if key.version == header.key_version() {
        return Ok(None);
    }
    let mut new = header.clone();
    match &header.wrap {
        Wrap::Key(_) => wrap_data_key(&key.key, key.version, tenant.id(), &mut new, &data_key, random_array()?)?,
        Wrap::Kem(old) => {
            // To the same KEM's recipient of the current version: the header keeps its length.
            let to = Recipient::derive(tenant.id(), key.version, old.kem, &key.key);
            new.wrap = recipient::placeholder(&to);
            recipient::wrap_data_key(&to, &mut new, &data_key, &mut recipient::os_rng()?)?;
        }
    }
    Ok(Some(new))
}

/// Authenticates `header` for `tenant` (data key unwrap, commitment, header tag).
pub(crate) fn open_header(tenant: &Tenant, header: &Header) -> Result<(), BackupError> {
    open_data_key(tenant, header).map(|_| ())
}
