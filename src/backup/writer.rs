//! The streaming encryptor.

use std::io::{self, Read, Write};

use zeroize::Zeroize;

use super::chunk::ChunkCipher;
use super::frame::{Frame, LookAhead};
use super::keys;
use super::pipeline::{Exec, give_buffer, take_buffer};
use super::{BackupContext, BackupOptions, Recipient};
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
    frame: Frame,
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
        let (header, cipher) = keys::seal_stream(tenant, ctx, chunk_size, opts.backend, opts.created)?;
        out.write_all(&header)?;
        tracing::debug!(target: "atrest::backup", tenant = %tenant.id(), snapshot = ctx.snapshot_id(), chunk_size, threads = exec.threads(), backend = %opts.backend, "backup stream started");
        Ok(Self::from_parts(Frame::new(chunk_size), cipher, exec, out))
    }

    /// Starts a stream to `recipient` bound to `ctx` and writes its header to `out`: an
    /// encrypt-only writer, with no keyring and no root key. The stream is a version 2
    /// stream of the recipient's tenant whose fresh data key is sealed (HPKE) to the
    /// recipient's public key; chunks, context, commitment, seekable reads and parallelism
    /// are as for [`BackupWriter::new`]. The keyring opens it as any other stream.
    ///
    /// # Errors
    /// As [`BackupWriter::new`], without the key errors: [`BackupError::InvalidParameter`],
    /// [`BackupError::Rng`], [`BackupError::Io`].
    ///
    /// # Security
    /// Nothing on the writing side can decrypt the stream, not even this writer after it
    /// finished: the data key exists only in memory while the stream is written (then it is
    /// zeroized) and sealed to the recipient. Incrementals name their parent by its
    /// snapshot id: the writer never reads an earlier backup.
    pub fn to_recipient(
        recipient: &Recipient,
        ctx: &BackupContext,
        opts: BackupOptions,
        mut out: W,
    ) -> Result<Self, BackupError> {
        let chunk_size = opts.checked_chunk_size()?;
        ctx.validate()?;
        let exec = Exec::new(opts.threads)?;
        let (header, cipher) = keys::seal_recipient_stream(recipient, ctx, chunk_size, opts.backend, opts.created)?;
        out.write_all(&header)?;
        tracing::debug!(target: "atrest::backup", tenant = %recipient.tenant(), snapshot = ctx.snapshot_id(), kem = recipient.kem().name(), chunk_size, "backup stream to a recipient started");
        Ok(Self::from_parts(Frame::new(chunk_size), cipher, exec, out))
    }

    /// A writer whose header is already written to `out`.
    pub(crate) fn from_parts(frame: Frame, cipher: ChunkCipher, exec: Exec, out: W) -> Self {
        let len = exec.batch_chunks(frame.slot_len()) * frame.slot_len();
        Self {
            out: Some(out),
            frame,
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

    /// The chunk size of the stream.
    pub(crate) fn frame(&self) -> Frame {
        self.frame
    }

    fn batch_capacity(&self) -> usize {
        self.buf.len() / self.frame.slot_len() * self.frame.chunk_size()
    }

    /// The room in the gathered batch from `filled` to the end of its chunk (empty when the
    /// batch is full).
    fn room(&mut self) -> Result<&mut [u8], BackupError> {
        let n = if self.filled < self.batch_capacity() {
            self.frame.chunk_size() - self.filled % self.frame.chunk_size()
        } else {
            0
        };
        let at = self.frame.slot_offset(self.filled);
        self.buf.get_mut(at..at + n).ok_or(BackupError::Internal("batch room"))
    }

    /// Copies as much of `data` as fits into the batch; returns the number of bytes taken.
    fn fill(&mut self, data: &[u8]) -> Result<usize, BackupError> {
        let mut taken = 0;
        while let Some(src) = data.get(taken..).filter(|d| !d.is_empty()) {
            let room = self.room()?;
            let n = room.len().min(src.len());
            match (room.get_mut(..n), src.get(..n)) {
                (Some(dst), Some(src)) if n > 0 => dst.copy_from_slice(src),
                _ => break,
            }
            self.filled += n;
            taken += n;
        }
        Ok(taken)
    }

    /// Encrypts the batch that starts at `next_index` (from `src` if given, else the gathered
    /// plaintext in place) while the calling thread writes the ready batch out, then makes
    /// the new batch the ready one. `last`: the batch holds the stream's final chunk.
    fn seal_batch(&mut self, src: Option<&[u8]>, last: bool) -> Result<(), BackupError> {
        let run = self.frame.sealing(self.next_index, src.map_or(self.filled, <[u8]>::len), last)?;
        let (cipher, exec, batch) = (&self.cipher, &self.exec, &mut self.buf);
        let mut work = move || cipher.seal_run(exec, run, src, batch);
        let (out, ready) = (&mut self.out, self.ready.get(..self.ready_len).unwrap_or_default());
        let io = move || match out.as_mut() {
            Some(out) => out.write_all(ready).map_err(BackupError::from),
            None => Err(BackupError::Finished),
        };
        let (sealed, written) = if self.ready_len == 0 { (work(), Ok(())) } else { self.exec.overlap(work, io) };
        sealed?;
        written?;
        std::mem::swap(&mut self.buf, &mut self.ready);
        self.ready_len = run.bytes();
        self.filled = 0;
        self.next_index = run.next();
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

    /// Takes all of `data`; after an error the writer refuses further use.
    pub(super) fn write_all_of(&mut self, data: &[u8]) -> Result<usize, BackupError> {
        let r = self.write_inner(data);
        if r.is_err() && self.state == State::Open {
            self.state = State::Failed;
        }
        r
    }

    /// Takes all of `data`: a chunk is sealed (non-final) only once more data follows it.
    fn write_inner(&mut self, data: &[u8]) -> Result<usize, BackupError> {
        self.check_open()?;
        let cap = self.batch_capacity();
        let cs = self.frame.chunk_size();
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
                taken += self.fill(rest)?;
            }
        }
        Ok(taken)
    }

    /// Encrypts whole, non-final chunks from `data` (a multiple of the chunk size) into the
    /// output: each chunk is sealed from `data` into a free slot of the spare batch buffer on
    /// the pool, and written out in order as soon as it and the ones before it are done.
    fn stream_slice(&mut self, data: &[u8]) -> Result<(), BackupError> {
        self.write_ready()?;
        let run = self.frame.sealing(self.next_index, data.len(), false)?;
        let (cipher, out) = (&self.cipher, &mut self.out);
        let slots: Vec<&mut [u8]> = self.ready.chunks_mut(self.frame.slot_len()).collect();
        let mut pieces = data.chunks(self.frame.chunk_size()).enumerate();
        self.exec.stream(
            slots,
            |slot| Ok(pieces.next().map(|piece| (piece, slot))),
            |(i, piece), slot| cipher.seal_slot_from(run.chunk(*i), piece, slot),
            |_, slot| out.as_mut().ok_or(BackupError::Finished)?.write_all(slot).map_err(BackupError::from),
        )?;
        self.next_index = run.next();
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
    pub fn copy_from<R: Read>(&mut self, input: R) -> Result<u64, BackupError> {
        self.check_open()?;
        let mut input = LookAhead::new(input);
        let r = self.copy_inner(&mut input);
        if r.is_err() {
            self.state = State::Failed;
        }
        r.map(|()| input.consumed())
    }

    fn copy_inner<R: Read>(&mut self, input: &mut LookAhead<R>) -> Result<(), BackupError> {
        if self.filled > 0 || !self.exec.can_stream() {
            // Complete what is gathered (the batch path), then stream the rest.
            loop {
                if self.fill_from(input)? {
                    return Ok(());
                }
                // A full batch with more data after it: every chunk in it is non-final.
                self.seal_batch(None, false)?;
                if self.exec.can_stream() {
                    break;
                }
            }
        }
        self.stream_reader(input)
    }

    /// Reads from `input` into the gathered batch until it is full or `input` ends; returns
    /// whether it ended (then what is gathered holds the final chunk).
    fn fill_from<R: Read>(&mut self, input: &mut LookAhead<R>) -> Result<bool, BackupError> {
        loop {
            let got = input.fill(self.room()?)?;
            self.filled += got.len;
            if got.ends {
                return Ok(true);
            }
            if self.filled == self.batch_capacity() {
                return Ok(false);
            }
        }
    }

    /// Reads `input` to its end chunk by chunk into free slots of the spare batch buffer and
    /// seals the chunks on the pool while the calling thread writes finished ones out in
    /// order and reads the next. The chunk the input ends with is the final one: it is left
    /// gathered for `finish`.
    fn stream_reader<R: Read>(&mut self, input: &mut LookAhead<R>) -> Result<(), BackupError> {
        self.write_ready()?;
        let frame = self.frame;
        let mut index = self.next_index;
        let mut tail: Option<(&mut [u8], usize)> = None;
        let (cipher, out) = (&self.cipher, &mut self.out);
        let slots: Vec<&mut [u8]> = self.ready.chunks_mut(frame.slot_len()).collect();
        let r = self.exec.stream(
            slots,
            |slot| {
                if tail.is_some() {
                    return Ok(None);
                }
                let got = input.fill(slot.get_mut(..frame.chunk_size()).unwrap_or_default())?;
                if got.ends {
                    tail = Some((slot, got.len));
                    return Ok(None);
                }
                let run = frame.sealing(index, got.len, false)?;
                index = run.next();
                Ok(Some((run, slot)))
            },
            |run, slot| cipher.seal_slot(run.chunk(0), slot),
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
        Ok(())
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
        self.write_all_of(buf).map_err(io::Error::from)
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
            .field("chunk_size", &self.frame.chunk_size())
            .field("chunks_written", &self.next_index)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
