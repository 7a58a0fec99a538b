//! The chunk cipher: AES-256-GCM under a stream's chunk key, with a nonce made of the
//! stream's nonce prefix and the chunk's [`ChunkId`], and associated data that binds every
//! chunk to the immutable header, the tenant and the backup context.

use sha2::{Digest, Sha256};

use super::BackupContext;
use super::frame::{ChunkId, Run, TAG_LEN};
use super::header::Header;
use super::pipeline::Exec;
use crate::encoding::put_lp;
use crate::error::BackupError;
use crate::hazmat::Gcm;
use crate::{Backend, TenantId};

/// Bytes of the per-stream nonce prefix (the rest is the chunk index and the final flag).
pub(crate) const NONCE_PREFIX_LEN: usize = 7;

const LABEL_CHUNK: &[u8] = b"atrest/v1/backup/chunk";

/// The associated data of every chunk of a stream: a digest of the immutable header, the
/// tenant and the backup context, computed once per stream.
fn chunk_aad(header: &Header, tenant: &TenantId, ctx: &BackupContext) -> [u8; 32] {
    let mut input = Vec::with_capacity(256);
    put_lp(&mut input, LABEL_CHUNK);
    header.put_immutable(&mut input);
    put_lp(&mut input, tenant.as_str().as_bytes());
    ctx.encode_into(&mut input);
    Sha256::digest(&input).into()
}

/// Seals and opens the chunks of one stream (keyed once per stream).
pub(crate) struct ChunkCipher {
    gcm: Gcm,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    aad: [u8; 32],
}

impl ChunkCipher {
    /// The cipher for the chunks of the stream with `header`, read or written for `tenant`
    /// and `ctx`.
    ///
    /// Errors: [`BackupError::InvalidParameter`] for a backend not compiled in.
    pub(crate) fn new(
        chunk_key: &[u8; 32],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
        header: &Header,
        tenant: &TenantId,
        ctx: &BackupContext,
        backend: Backend,
    ) -> Result<Self, BackupError> {
        let gcm = Gcm::new(backend, chunk_key).ok_or_else(|| {
            BackupError::InvalidParameter(format!("the {backend} backend is not available in this build"))
        })?;
        Ok(Self { gcm, nonce_prefix, aad: chunk_aad(header, tenant, ctx) })
    }

    /// `nonce = prefix (7) || index (u32) || final flag (1)`; `None` past 2^32 chunks.
    fn nonce(&self, id: ChunkId) -> Option<[u8; 12]> {
        let index = u32::try_from(id.index()).ok()?.to_be_bytes();
        let mut n = [0u8; 12];
        let (prefix, rest) = n.split_at_mut(NONCE_PREFIX_LEN);
        prefix.copy_from_slice(&self.nonce_prefix);
        let (idx, flag) = rest.split_at_mut(4);
        idx.copy_from_slice(&index);
        flag.fill(u8::from(id.is_final()));
        Some(n)
    }

    /// Encrypts a slot in place: `slot` holds the plaintext followed by 16 bytes that
    /// receive the tag.
    pub(crate) fn seal_slot(&self, id: ChunkId, slot: &mut [u8]) -> Result<(), BackupError> {
        let nonce = self.nonce(id).ok_or(BackupError::TooLong)?;
        let pt_len = slot.len().checked_sub(TAG_LEN).ok_or(BackupError::Internal("a slot shorter than a tag"))?;
        let (pt, tag) = slot.split_at_mut(pt_len);
        let t = self.gcm.seal(&nonce, &self.aad, pt).map_err(|_| BackupError::Internal("chunk encryption failed"))?;
        tag.copy_from_slice(&t);
        Ok(())
    }

    /// Encrypts `plain` into `slot` (`plain.len() + 16` bytes: ciphertext, then tag), reading
    /// the plaintext where it is instead of copying it first.
    pub(crate) fn seal_slot_from(&self, id: ChunkId, plain: &[u8], slot: &mut [u8]) -> Result<(), BackupError> {
        let nonce = self.nonce(id).ok_or(BackupError::TooLong)?;
        let (ct, tag) = slot
            .split_at_mut_checked(plain.len())
            .filter(|(_, t)| t.len() == TAG_LEN)
            .ok_or(BackupError::Internal("a slot that does not fit its chunk"))?;
        let t = self
            .gcm
            .seal_to(&nonce, &self.aad, plain, ct)
            .map_err(|_| BackupError::Internal("chunk encryption failed"))?;
        tag.copy_from_slice(&t);
        Ok(())
    }

    /// Verifies a slot (ciphertext followed by its tag) and only then decrypts it in place.
    /// On failure the slot is zeroed.
    pub(crate) fn open_slot(&self, id: ChunkId, slot: &mut [u8]) -> Result<(), BackupError> {
        let (nonce, Some(ct_len)) = (self.nonce(id), slot.len().checked_sub(TAG_LEN)) else {
            slot.fill(0);
            return Err(BackupError::Authentication);
        };
        let (ct, tag) = slot.split_at_mut(ct_len);
        let r = match nonce {
            Some(nonce) => self.gcm.open(&nonce, &self.aad, ct, tag).map_err(|_| BackupError::Authentication),
            None => {
                ct.fill(0);
                Err(BackupError::Authentication)
            }
        };
        if r.is_err() {
            tag.fill(0);
        }
        r
    }

    /// Encrypts the chunks of `run`, laid out in `buf` (`run.bytes()` bytes) on `exec`: from
    /// `src` if given (the run's plaintext, contiguous), else from the plaintext already in
    /// place in `buf`.
    pub(crate) fn seal_run(
        &self,
        exec: &Exec,
        run: Run,
        src: Option<&[u8]>,
        buf: &mut [u8],
    ) -> Result<(), BackupError> {
        let buf = buf.get_mut(..run.bytes()).ok_or(BackupError::Internal("a run larger than its buffer"))?;
        let (cs, slot) = (run.frame().chunk_size(), run.frame().slot_len());
        match src {
            Some(src) if !src.is_empty() => {
                exec.for_each_pair(src, cs, buf, slot, |i, p, s| self.seal_slot_from(run.chunk(i), p, s))
            }
            _ => exec.for_each_slot(buf, slot, |i, s| self.seal_slot(run.chunk(i), s)),
        }
    }

    /// Verifies and decrypts, in place on `exec`, the chunks of `run` laid out in `buf`.
    /// No chunk is decrypted before its tag verified; a chunk that fails is zeroed.
    pub(crate) fn open_run(&self, exec: &Exec, run: Run, buf: &mut [u8]) -> Result<(), BackupError> {
        let buf = buf.get_mut(..run.bytes()).ok_or(BackupError::Internal("a run larger than its buffer"))?;
        exec.for_each_slot(buf, run.frame().slot_len(), |i, s| self.open_slot(run.chunk(i), s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_layout_and_index_limit() {
        let c = ChunkCipher { gcm: Gcm::new_default(&[0; 32]), nonce_prefix: [9; 7], aad: [0; 32] };
        let id = ChunkId::new_for_test;
        assert_eq!(c.nonce(id(0x0102_0304, true)).unwrap(), [9, 9, 9, 9, 9, 9, 9, 1, 2, 3, 4, 1]);
        assert_eq!(c.nonce(id(u64::from(u32::MAX), false)).unwrap()[7..], [0xff, 0xff, 0xff, 0xff, 0]);
        assert!(c.nonce(id(1 << 32, false)).is_none());
        let mut slot = vec![0u8; 32];
        assert!(matches!(c.seal_slot(id(1 << 32, false), &mut slot), Err(BackupError::TooLong)));
        assert!(matches!(c.open_slot(id(1 << 32, false), &mut slot), Err(BackupError::Authentication)));
    }
}
