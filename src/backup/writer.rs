//! The streaming encryptor.

use std::io::{self, Read, Write};

use zeroize::Zeroize;

use super::format::{self, ChunkCipher, MAX_CHUNKS, read_full};
use super::pipeline::{Exec, give_buffer, take_buffer};
use super::{BackupContext, BackupOptions};
use crate::Tenant;
use crate::error::BackupError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Finished,
    Failed,
}

/// Encrypts a backup stream into `W` as it is written: `io::copy` your data in (or, faster,
/// [`copy_from`](BackupWriter::copy_from) a reader), then call
/// [`finish`](BackupWriter::finish).
///
/// Plaintext is gathered into a batch of whole chunks (four per thread), which is encrypted
/// in parallel while the previous batch is written out; memory stays bounded for any stream
/// length (two batches, allocated once). A write of more than a batch is encrypted straight
/// from the caller's buffer, without a copy. A chunk is known to be non-final only when more
/// data follows it, so the last batch is held until `finish`.
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
    pub(super) out: Option<W>,
    cipher: ChunkCipher,
    exec: Exec,
    /// The batch being gathered, laid out as on disk (plaintext, then room for the tag).
    buf: Vec<u8>,
    /// Plaintext bytes in the batch.
    filled: usize,
    /// The previous batch, encrypted, waiting to be written out: `ready[..ready_len]`.
    ready: Vec<u8>,
    ready_len: usize,
    /// Index of the gathered batch's first chunk.
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
    /// an empty or over-long snapshot id, an incremental context without a parent, or a
    /// backend not compiled in; [`BackupError::Seal`] (shredded tenant, unusable key);
    /// [`BackupError::Rng`]; [`BackupError::Io`] from writing the header.
    pub fn new(tenant: &Tenant, ctx: &BackupContext, opts: BackupOptions, mut out: W) -> Result<Self, BackupError> {
        let chunk_size = opts.checked_chunk_size()?;
        ctx.validate()?;
        let exec = Exec::new(opts.threads)?;
        let (header, cipher) = format::seal_stream(tenant, ctx, chunk_size, opts.backend)?;
        out.write_all(&header)?;
        tracing::debug!(target: "atrest::backup", tenant = %tenant.id(), snapshot = ctx.snapshot_id(), chunk_size, threads = exec.threads(), backend = %opts.backend, "backup stream started");
        Ok(Self::from_parts(cipher, exec, out))
    }

    /// A writer whose header is already written to `out`.
    pub(crate) fn from_parts(cipher: ChunkCipher, exec: Exec, out: W) -> Self {
        let len = exec.batch_chunks(cipher.slot_len()) * cipher.slot_len();
        Self {
            out: Some(out),
            cipher,
            exec,
            buf: take_buffer(len),
            filled: 0,
            ready: take_buffer(len),
            ready_len: 0,
            next_index: 0,
            state: State::Open,
        }
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

    /// The layout of a batch of `plain` plaintext bytes: (chunks, bytes including tags).
    fn layout(&self, plain: usize) -> Result<(usize, usize), BackupError> {
        let cs = self.cipher.chunk_size();
        let chunks = plain.div_ceil(cs).max(1);
        if self.next_index + chunks as u64 > MAX_CHUNKS {
            return Err(BackupError::TooLong);
        }
        Ok((chunks, plain + chunks * format::TAG_LEN))
    }

    /// Encrypts the batch that starts at `next_index` (from `src` if given, else the gathered
    /// plaintext in place) while the calling thread writes the ready batch out, then makes
    /// the new batch the ready one. `last`: the batch holds the stream's final chunk.
    fn seal_batch(&mut self, src: Option<&[u8]>, last: bool) -> Result<(), BackupError> {
        let plain = src.map_or(self.filled, <[u8]>::len);
        let (chunks, used) = self.layout(plain)?;
        let first = self.next_index;
        let (cs, slot) = (self.cipher.chunk_size(), self.cipher.slot_len());
        let (cipher, exec) = (&self.cipher, &self.exec);
        let batch = self.buf.get_mut(..used).ok_or(BackupError::InvalidParameter("batch overflow".into()))?;
        let is_last = move |i: usize| last && i + 1 == chunks;
        let mut work = move || match src {
            Some(src) if !src.is_empty() => exec.for_each_pair(src, cs, batch, slot, |i, p, s| {
                cipher.seal_slot_from(first + i as u64, is_last(i), p, s)
            }),
            _ => exec.for_each_slot(batch, slot, |i, s| cipher.seal_slot(first + i as u64, is_last(i), s)),
        };
        let (out, ready) = (&mut self.out, self.ready.get(..self.ready_len).unwrap_or_default());
        let io = move || match out.as_mut() {
            Some(out) => out.write_all(ready).map_err(BackupError::from),
            None => Err(BackupError::Finished),
        };
        let (sealed, written) = if self.ready_len == 0 { (work(), Ok(())) } else { self.exec.overlap(work, io) };
        sealed?;
        written?;
        std::mem::swap(&mut self.buf, &mut self.ready);
        self.ready_len = used;
        self.filled = 0;
        self.next_index += chunks as u64;
        Ok(())
    }

    /// Writes the ready batch out.
    fn write_ready(&mut self) -> Result<(), BackupError> {
        let out = self.out.as_mut().ok_or(BackupError::Finished)?;
        out.write_all(self.ready.get(..self.ready_len).unwrap_or_default())?;
        self.ready_len = 0;
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
        let cap = self.batch_capacity();
        let cs = self.cipher.chunk_size();
        let mut taken = 0;
        while let Some(rest) = data.get(taken..).filter(|r| !r.is_empty()) {
            if self.filled == cap {
                // More data follows, so every chunk of the full batch is non-final.
                self.seal_batch(None, false)?;
            } else if self.filled == 0 && rest.len() > cs && self.exec.can_stream() {
                // Whole chunks with more data after them: encrypt them where they are, in a
                // pipeline with the output.
                let n = (rest.len() - 1) / cs * cs;
                self.stream_slice(rest.get(..n).unwrap_or_default())?;
                taken += n;
            } else if self.filled == 0
                && rest.len() > cap
                && let Some(direct) = rest.get(..cap)
            {
                // A whole batch with more data after it: encrypt it where it is.
                self.seal_batch(Some(direct), false)?;
                taken += cap;
            } else {
                taken += self.fill(rest);
            }
        }
        Ok(taken)
    }

    /// Encrypts whole, non-final chunks from `data` (a multiple of the chunk size) into the
    /// output: each chunk is sealed from `data` into a free slot of the spare batch buffer on
    /// the pool, and written out in order as soon as it and the ones before it are done.
    fn stream_slice(&mut self, data: &[u8]) -> Result<(), BackupError> {
        self.write_ready()?;
        let (cs, slot_len) = (self.cipher.chunk_size(), self.cipher.slot_len());
        let chunks = data.len() / cs;
        // At least one chunk (the final one) follows these.
        if self.next_index + chunks as u64 >= MAX_CHUNKS {
            return Err(BackupError::TooLong);
        }
        let first = self.next_index;
        let (cipher, out) = (&self.cipher, &mut self.out);
        let slots: Vec<&mut [u8]> = self.ready.chunks_mut(slot_len).collect();
        let mut pieces = data.chunks(cs).zip(first..);
        self.exec.stream(
            slots,
            |slot| Ok(pieces.next().map(|(piece, index)| ((index, piece), slot))),
            |(index, piece), slot| cipher.seal_slot_from(*index, false, piece, slot),
            |_, slot| out.as_mut().ok_or(BackupError::Finished)?.write_all(slot).map_err(BackupError::from),
        )?;
        self.next_index += chunks as u64;
        Ok(())
    }

    /// Reads `input` to its end and encrypts everything into the stream, reading straight
    /// into the batch buffer in batch-sized reads while the previous batch is encrypted and
    /// written out. Returns the number of plaintext bytes read. Call
    /// [`finish`](BackupWriter::finish) afterwards, as after writing.
    ///
    /// # Errors
    /// [`BackupError::Io`] from reading or writing; [`BackupError::TooLong`];
    /// [`BackupError::Finished`] if the writer failed earlier. After an error the writer
    /// refuses further use.
    pub fn copy_from<R: Read>(&mut self, mut input: R) -> Result<u64, BackupError> {
        self.check_open()?;
        let r = self.copy_inner(&mut input);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    fn copy_inner<R: Read>(&mut self, input: &mut R) -> Result<u64, BackupError> {
        let cap = self.batch_capacity();
        let mut total = 0u64;
        let mut carry = None;
        if self.filled > 0 || !self.exec.can_stream() {
            // Complete what is gathered (the batch path), then stream the rest.
            loop {
                total += self.fill_from(input)? as u64;
                if self.filled < cap {
                    return Ok(total);
                }
                // A full batch: it is non-final only if more data follows.
                let mut one = [0u8; 1];
                if read_full(input, &mut one)? == 0 {
                    return Ok(total);
                }
                self.seal_batch(None, false)?;
                total += 1;
                if self.exec.can_stream() {
                    carry = Some(one[0]);
                    break;
                }
                self.fill(&one);
            }
        }
        total += self.stream_reader(input, carry)?;
        Ok(total)
    }

    /// Reads `input` to its end chunk by chunk into free slots of the spare batch buffer and
    /// seals the chunks on the pool while the calling thread writes finished ones out in
    /// order and reads the next. The chunk the input ends with is the final one: it is left
    /// gathered for `finish`. `carry`: a byte already read from `input` (and counted by the
    /// caller), which comes first. Returns the number of bytes it read.
    fn stream_reader<R: Read>(&mut self, input: &mut R, mut carry: Option<u8>) -> Result<u64, BackupError> {
        self.write_ready()?;
        let (cs, slot_len) = (self.cipher.chunk_size(), self.cipher.slot_len());
        let mut index = self.next_index;
        let mut total = 0u64;
        let mut tail: Option<(&mut [u8], usize)> = None;
        let (cipher, out) = (&self.cipher, &mut self.out);
        let slots: Vec<&mut [u8]> = self.ready.chunks_mut(slot_len).collect();
        let r = self.exec.stream(
            slots,
            |slot| {
                if tail.is_some() {
                    return Ok(None);
                }
                let mut have = 0;
                if let Some(b) = carry.take()
                    && let Some(first) = slot.first_mut()
                {
                    *first = b;
                    have = 1;
                }
                let n = read_full(input, slot.get_mut(have..cs).unwrap_or_default())?;
                have += n;
                total += n as u64;
                // A full chunk is non-final only if more data follows it.
                let mut one = [0u8; 1];
                if have < cs || read_full(input, &mut one)? == 0 {
                    tail = Some((slot, have));
                    return Ok(None);
                }
                carry = Some(one[0]);
                total += 1;
                if index + 1 >= MAX_CHUNKS {
                    return Err(BackupError::TooLong);
                }
                index += 1;
                Ok(Some((index - 1, slot)))
            },
            |index, slot| cipher.seal_slot(*index, false, slot),
            |_, slot| out.as_mut().ok_or(BackupError::Finished)?.write_all(slot).map_err(BackupError::from),
        );
        // The final chunk goes to the (empty) gathered batch.
        if let Some((slot, len)) = tail
            && let (Some(dst), Some(src)) = (self.buf.get_mut(..len), slot.get(..len))
        {
            dst.copy_from_slice(src);
            self.filled = len;
            slot.zeroize();
        }
        r?;
        self.next_index = index;
        Ok(total)
    }

    /// Reads from `input` into the gathered batch until it is full or `input` ends.
    fn fill_from<R: Read>(&mut self, input: &mut R) -> Result<usize, BackupError> {
        let (cs, slot) = (self.cipher.chunk_size(), self.cipher.slot_len());
        let cap = self.batch_capacity();
        let start = self.filled;
        while self.filled < cap {
            let (chunk, off) = (self.filled / cs, self.filled % cs);
            let at = chunk * slot + off;
            let dst = self.buf.get_mut(at..at + (cs - off)).ok_or(BackupError::InvalidParameter("batch".into()))?;
            let n = read_full(input, dst)?;
            self.filled += n;
            if n < cs - off {
                break;
            }
        }
        Ok(self.filled - start)
    }

    /// Encrypts and writes the buffered data and the final chunk, flushes `out` and returns it.
    ///
    /// # Errors
    /// [`BackupError::Finished`] if the writer failed earlier; [`BackupError::TooLong`];
    /// [`BackupError::Io`] from writing or flushing.
    pub fn finish(mut self) -> Result<W, BackupError> {
        self.check_open()?;
        let r = self.seal_batch(None, true).and_then(|()| self.write_ready()).and_then(|()| {
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

    /// Writes out the batch already encrypted, then flushes the underlying writer. The batch
    /// still being gathered (up to four chunks per thread) is encrypted and written only when
    /// it fills and more data follows, or at [`finish`](BackupWriter::finish).
    fn flush(&mut self) -> io::Result<()> {
        self.check_open()?;
        let r = self.write_ready().and_then(|()| match self.out.as_mut() {
            Some(out) => out.flush().map_err(BackupError::from),
            None => Err(BackupError::Finished),
        });
        if r.is_err() {
            self.state = State::Failed;
        }
        r.map_err(io::Error::from)
    }
}

impl<W: Write> Drop for BackupWriter<W> {
    fn drop(&mut self) {
        // After a clean finish both buffers hold only ciphertext; otherwise the batch being
        // gathered, or slots read but not sealed, may hold plaintext.
        if self.state != State::Finished {
            self.buf.as_mut_slice().zeroize();
            self.ready.as_mut_slice().zeroize();
        }
        give_buffer(std::mem::take(&mut self.buf));
        give_buffer(std::mem::take(&mut self.ready));
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
