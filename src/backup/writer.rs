//! The streaming encryptor.

use std::io::{self, Write};

use zeroize::Zeroize;

use super::format::{self, ChunkCipher, MAX_CHUNKS};
use super::pipeline::Exec;
use super::{BackupContext, BackupOptions};
use crate::error::BackupError;
use crate::keyring::Tenant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Finished,
    Failed,
}

/// Encrypts a backup stream into `W` as it is written: `io::copy` your data in, then call
/// [`finish`](BackupWriter::finish).
///
/// Plaintext is gathered into a batch of whole chunks (two per thread), which is encrypted
/// in parallel and written out; memory stays bounded for any stream length. A chunk is known
/// to be non-final only when more data follows it, so the last batch is held until `finish`.
///
/// # Security
/// [`finish`](BackupWriter::finish) must be called: it writes the final chunk, without which
/// the stream never verifies. Dropping an unfinished writer leaves a stream that every reader
/// rejects as truncated (and emits a `tracing` warning). After any error the writer refuses
/// further use with [`BackupError::Finished`].
///
/// # Example
/// ```
/// use std::io::Write;
/// use atrest::{BackupContext, BackupOptions, BackupWriter, Keyring, LocalRootKey, verify_backup};
/// let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
/// let acme = keyring.tenant("acme")?;
/// let ctx = BackupContext::full("nightly-2026-05-01");
/// let mut w = BackupWriter::new(&acme, &ctx, BackupOptions::default(), Vec::new())?;
/// w.write_all(b"first part, ")?;
/// w.write_all(b"second part")?;
/// let stream = w.finish()?;
/// assert_eq!(verify_backup(&acme, &ctx, &stream[..])?, 23);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BackupWriter<W: Write> {
    out: Option<W>,
    cipher: ChunkCipher,
    exec: Exec,
    /// A batch of chunk slots laid out as on disk (plaintext, then room for the tag).
    buf: Vec<u8>,
    /// Plaintext bytes in the batch.
    filled: usize,
    /// Index of the batch's first chunk.
    pub(super) next_index: u64,
    state: State,
}

impl<W: Write> BackupWriter<W> {
    /// Starts a stream for `tenant` bound to `ctx` and writes its header to `out`.
    ///
    /// A fresh random data key is wrapped under the tenant's current backup key version.
    ///
    /// # Errors
    /// [`BackupError::InvalidParameter`] for a chunk size outside
    /// [`MIN_CHUNK_SIZE`](crate::MIN_CHUNK_SIZE) ..= [`MAX_CHUNK_SIZE`](crate::MAX_CHUNK_SIZE),
    /// an empty or over-long snapshot id, or an incremental context without a parent;
    /// [`BackupError::Seal`] (shredded tenant, unusable key); [`BackupError::Rng`];
    /// [`BackupError::Io`] from writing the header.
    pub fn new(tenant: &Tenant, ctx: &BackupContext, opts: BackupOptions, mut out: W) -> Result<Self, BackupError> {
        let chunk_size = opts.checked_chunk_size()?;
        ctx.validate()?;
        let exec = Exec::new(opts.threads)?;
        let (header, cipher) = format::seal_stream(tenant, ctx, chunk_size)?;
        out.write_all(&header)?;
        tracing::debug!(target: "atrest::backup", tenant = %tenant.id(), snapshot = ctx.snapshot_id(), chunk_size, threads = exec.threads(), "backup stream started");
        Ok(Self::from_parts(cipher, exec, out))
    }

    /// A writer whose header is already written to `out`.
    pub(crate) fn from_parts(cipher: ChunkCipher, exec: Exec, out: W) -> Self {
        let buf = vec![0u8; exec.batch_chunks(cipher.slot_len()) * cipher.slot_len()];
        Self { out: Some(out), cipher, exec, buf, filled: 0, next_index: 0, state: State::Open }
    }

    fn batch_capacity(&self) -> usize {
        self.buf.len() / self.cipher.slot_len() * self.cipher.chunk_size()
    }

    /// Copies as much of `data` as fits into the batch; returns the number of bytes taken.
    fn fill(&mut self, data: &[u8]) -> usize {
        let cs = self.cipher.chunk_size();
        let slot = self.cipher.slot_len();
        let mut taken = 0;
        while taken < data.len() && self.filled < self.batch_capacity() {
            let (chunk, off) = (self.filled / cs, self.filled % cs);
            let n = (cs - off).min(data.len() - taken);
            let at = chunk * slot + off;
            match (self.buf.get_mut(at..at + n), data.get(taken..taken + n)) {
                (Some(dst), Some(src)) => dst.copy_from_slice(src),
                _ => break,
            }
            self.filled += n;
            taken += n;
        }
        taken
    }

    /// Encrypts the batch and writes it. With `last`, its final chunk is the stream's final
    /// chunk (and may be short or, for an empty stream, empty); otherwise the batch is full.
    fn flush_batch(&mut self, last: bool) -> Result<(), BackupError> {
        let cs = self.cipher.chunk_size();
        let slot = self.cipher.slot_len();
        let chunks = self.filled.div_ceil(cs).max(1);
        let chunks_u64 = chunks as u64;
        if self.next_index + chunks_u64 > MAX_CHUNKS {
            return Err(BackupError::TooLong);
        }
        let last_len = self.filled - (chunks - 1) * cs;
        let used = (chunks - 1) * slot + last_len + format::TAG_LEN;
        let first = self.next_index;
        let cipher = &self.cipher;
        let batch = self.buf.get_mut(..used).ok_or(BackupError::InvalidParameter("batch overflow".into()))?;
        self.exec.for_each_slot(batch, slot, |i, s| cipher.seal_slot(first + i as u64, last && i + 1 == chunks, s))?;
        let out = self.out.as_mut().ok_or(BackupError::Finished)?;
        out.write_all(batch)?;
        self.next_index += chunks_u64;
        self.filled = 0;
        Ok(())
    }

    fn check_open(&self) -> Result<(), BackupError> {
        match self.state {
            State::Open => Ok(()),
            State::Finished | State::Failed => Err(BackupError::Finished),
        }
    }

    fn write_inner(&mut self, data: &[u8]) -> Result<usize, BackupError> {
        self.check_open()?;
        let mut taken = 0;
        while taken < data.len() {
            if self.filled == self.batch_capacity() {
                // More data follows, so every chunk of the full batch is non-final.
                self.flush_batch(false)?;
            }
            taken += self.fill(data.get(taken..).unwrap_or_default());
        }
        Ok(taken)
    }

    /// Encrypts and writes the buffered data and the final chunk, flushes `out` and returns it.
    ///
    /// # Errors
    /// [`BackupError::Finished`] if the writer failed earlier; [`BackupError::TooLong`];
    /// [`BackupError::Io`] from writing or flushing.
    pub fn finish(mut self) -> Result<W, BackupError> {
        self.check_open()?;
        let r = self.flush_batch(true).and_then(|()| {
            let out = self.out.as_mut().ok_or(BackupError::Finished)?;
            out.flush().map_err(BackupError::from)
        });
        if let Err(e) = r {
            self.state = State::Failed;
            return Err(e);
        }
        self.state = State::Finished;
        tracing::debug!(target: "atrest::backup", chunks = self.next_index, "backup stream finished");
        self.out.take().ok_or(BackupError::Finished)
    }
}

impl<W: Write> Write for BackupWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.write_inner(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                if self.state == State::Open {
                    self.state = State::Failed;
                }
                Err(e.into())
            }
        }
    }

    /// Flushes the underlying writer. Buffered plaintext (up to one batch) is encrypted and
    /// written only when the batch fills or at [`finish`](BackupWriter::finish).
    fn flush(&mut self) -> io::Result<()> {
        self.check_open()?;
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Err(BackupError::Finished.into()),
        }
    }
}

impl<W: Write> Drop for BackupWriter<W> {
    fn drop(&mut self) {
        self.buf.zeroize();
        if self.state == State::Open {
            tracing::warn!(target: "atrest::backup", "backup writer dropped without finish(): the stream is incomplete and will not verify");
        }
    }
}

impl<W: Write> core::fmt::Debug for BackupWriter<W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BackupWriter")
            .field("chunk_size", &self.cipher.chunk_size())
            .field("chunks_written", &self.next_index)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
