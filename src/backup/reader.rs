//! The streaming decryptor: sequential on any `Read`, random access on `Read + Seek`.

use std::io::{self, Read, Seek, SeekFrom, Write};

use zeroize::Zeroize;

use super::format::{self, ChunkCipher, Geometry, HEADER_LEN, Header, MAX_CHUNKS, TAG_LEN, read_full};
use super::pipeline::{Exec, give_buffer, take_buffer};
use super::{BackupContext, BackupOptions};
use crate::Tenant;
use crate::error::BackupError;

/// The decrypted chunks currently held in the buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    /// Index of the first chunk.
    first: u64,
    /// Number of chunks (0: nothing held).
    count: usize,
    /// Plaintext bytes of the last chunk held.
    last_len: usize,
}

/// Random access, once the final chunk is authenticated.
struct Random<R> {
    geo: Geometry,
    /// Offset of the stream's first byte in the input.
    base: u64,
    seek: fn(&mut R, u64) -> io::Result<()>,
}

/// Decrypts a backup stream: `Read` for sequential use (works on stdin and pipes), plus
/// `Seek` and [`read_at`](BackupReader::read_at) when the input can seek.
///
/// Chunks are read and verified in batches (four per thread) in parallel; while one batch is
/// verified, the next is read from the input (and, with
/// [`copy_to`](BackupReader::copy_to), the previous one written out). Memory stays bounded
/// for any stream length: two batches, allocated once.
///
/// # Security
/// No byte of a chunk is handed out before that chunk's tag verified. A stream that is cut
/// short, extended, reordered or spliced fails with an error whose kind is
/// [`io::ErrorKind::InvalidData`] (through `Read`) or [`BackupError::Authentication`] (from
/// [`read_at`](BackupReader::read_at)); a truncated stream is never reported as a clean end
/// of file. Bytes returned before such an error come from fully verified chunks, but the
/// stream as a whole is only authentic if reading reaches the end without error. After an
/// error the reader refuses further use.
///
/// # Example
/// ```
/// use std::io::{Read, Seek, SeekFrom};
/// use atrest::{BackupContext, BackupOptions, BackupReader, Keyring, LocalRootKey, encrypt_backup};
/// let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
/// let acme = keyring.tenant("acme")?;
/// let ctx = BackupContext::full("nightly-2026-05-01");
/// let stream = encrypt_backup(&acme, &ctx, b"hello, backup", BackupOptions::default())?;
///
/// let mut all = Vec::new();
/// BackupReader::new(&acme, &ctx, &stream[..])?.read_to_end(&mut all)?;
/// assert_eq!(all, b"hello, backup");
///
/// let mut r = BackupReader::open_seekable(&acme, &ctx, std::io::Cursor::new(&stream))?;
/// assert_eq!(r.len(), 13);
/// r.seek(SeekFrom::Start(7))?;
/// let mut word = [0u8; 6];
/// r.read_exact(&mut word)?;
/// assert_eq!(&word, b"backup");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BackupReader<R: Read> {
    input: R,
    cipher: ChunkCipher,
    exec: Exec,
    /// A batch of chunk slots as on disk; verified slots hold plaintext in place.
    buf: Vec<u8>,
    win: Window,
    /// Sequential mode: the batch after the window, read from the input into `ahead_buf`
    /// but not yet verified, or the error that reading it met (reported once the window is
    /// used up, so that verified bytes before it are still served).
    ahead: Option<Result<Batch, BackupError>>,
    ahead_buf: Vec<u8>,
    /// The plaintext position of the next read.
    pos: u64,
    /// Sequential mode: the index of the next chunk in the input.
    next_chunk: u64,
    /// Sequential mode: one byte read ahead to learn whether a chunk is the final one.
    peek: Option<u8>,
    /// Sequential mode: bytes consumed from the input, header included.
    consumed: u64,
    /// Sequential mode: the window holds the final chunk (or `copy_to` wrote it).
    at_end: bool,
    /// Sequential mode: plaintext bytes verified so far.
    verified: u64,
    random: Option<Random<R>>,
    /// After a failure: whether it was an authentication failure.
    failed: Option<bool>,
}

/// A batch read from the input in sequential mode.
#[derive(Debug, Clone, Copy)]
struct Batch {
    /// Index of its first chunk.
    first: u64,
    /// Bytes read (whole slots, the last one possibly short).
    used: usize,
    /// The input ended after this batch: its last chunk is the stream's final chunk.
    eof: bool,
}

impl Batch {
    fn count(&self, slot: usize) -> usize {
        self.used.div_ceil(slot)
    }

    fn final_index(&self, slot: usize) -> Option<u64> {
        self.eof.then(|| self.first + self.count(slot) as u64 - 1)
    }
}

/// The sequential input state: everything [`Input::read_batch`] reads and advances.
struct Input<'a, R> {
    input: &'a mut R,
    peek: &'a mut Option<u8>,
    consumed: &'a mut u64,
    next_chunk: &'a mut u64,
}

impl<R: Read> Input<'_, R> {
    /// Reads the next batch into `buf` (sized for whole slots); learns from one byte ahead
    /// whether the input ends after it.
    fn read_batch(self, buf: &mut [u8], slot: usize) -> Result<Batch, BackupError> {
        let mut have = 0;
        if let Some(b) = self.peek.take()
            && let Some(first) = buf.first_mut()
        {
            *first = b;
            have = 1;
        }
        let n = read_full(self.input, buf.get_mut(have..).unwrap_or_default())?;
        have += n;
        *self.consumed += n as u64;
        let eof = if have < buf.len() {
            true
        } else {
            let mut one = [0u8; 1];
            let k = read_full(self.input, &mut one)?;
            *self.consumed += k as u64;
            *self.peek = (k == 1).then_some(one[0]);
            k == 0
        };
        let count = have.div_ceil(slot);
        if count == 0 {
            // The input ended where a chunk should start: the final chunk is missing.
            return Err(BackupError::Authentication);
        }
        let first = *self.next_chunk;
        if eof {
            let last_slot = have - (count - 1) * slot;
            // The final chunk holds at least one byte, except in the empty stream.
            let min = if first == 0 && count == 1 { TAG_LEN } else { TAG_LEN + 1 };
            if last_slot < min {
                return Err(BackupError::Authentication);
            }
        }
        if first + count as u64 > MAX_CHUNKS {
            return Err(BackupError::Authentication);
        }
        *self.next_chunk += count as u64;
        Ok(Batch { first, used: have, eof })
    }
}

impl<R: Read> BackupReader<R> {
    /// Reads the stream header from `input`, unwraps the data key (under the key version the
    /// header names) and checks the key commitment and header tag. Chunks are verified as
    /// they are read, in parallel on all cores.
    ///
    /// # Errors
    /// [`BackupError::NotABackup`], [`BackupError::UnsupportedFormat`],
    /// [`BackupError::Authentication`] (modified header, other tenant or keyring),
    /// [`BackupError::Key`] (disabled or destroyed key version, shredded tenant),
    /// [`BackupError::InvalidParameter`] (malformed context), [`BackupError::Io`].
    pub fn new(tenant: &Tenant, ctx: &BackupContext, input: R) -> Result<Self, BackupError> {
        Self::with_options(tenant, ctx, input, BackupOptions::default())
    }

    /// [`BackupReader::new`] with a thread count: 0 = all cores, 1 = the calling thread only.
    ///
    /// # Errors
    /// As [`BackupReader::new`].
    pub fn with_threads(tenant: &Tenant, ctx: &BackupContext, input: R, threads: usize) -> Result<Self, BackupError> {
        Self::with_options(tenant, ctx, input, BackupOptions::default().threads(threads))
    }

    /// [`BackupReader::new`] with the thread count and backend of `opts` (its chunk size is
    /// ignored: the stream names its own).
    ///
    /// # Errors
    /// As [`BackupReader::new`]; [`BackupError::InvalidParameter`] for a backend not compiled
    /// in.
    pub fn with_options(
        tenant: &Tenant,
        ctx: &BackupContext,
        mut input: R,
        opts: BackupOptions,
    ) -> Result<Self, BackupError> {
        ctx.validate()?;
        let header = Header::read_from(&mut input)?;
        let cipher = format::open_stream(tenant, ctx, &header, opts.backend)?;
        let exec = Exec::new(opts.threads)?;
        let len = exec.batch_chunks(cipher.slot_len()) * cipher.slot_len();
        Ok(Self {
            input,
            cipher,
            exec,
            buf: take_buffer(len),
            win: Window::default(),
            ahead: None,
            ahead_buf: take_buffer(len),
            pos: 0,
            next_chunk: 0,
            peek: None,
            consumed: HEADER_LEN as u64,
            at_end: false,
            verified: 0,
            random: None,
            failed: None,
        })
    }

    fn check(&self) -> Result<(), BackupError> {
        match self.failed {
            None => Ok(()),
            Some(true) => Err(BackupError::Authentication),
            Some(false) => Err(BackupError::Finished),
        }
    }

    /// Records a failure: drops everything buffered and refuses further use.
    fn fail(&mut self, e: BackupError) -> BackupError {
        self.failed = Some(matches!(e, BackupError::Authentication));
        self.buf.as_mut_slice().zeroize();
        self.ahead_buf.as_mut_slice().zeroize();
        self.ahead = None;
        self.win = Window::default();
        e
    }

    fn window_start(&self) -> u64 {
        self.win.first * self.cipher.chunk_size() as u64
    }

    /// One past the last plaintext byte verified so far (the window's end).
    fn window_end(&self) -> u64 {
        match self.win.count {
            0 => self.window_start(),
            n => self.window_start() + ((n - 1) * self.cipher.chunk_size() + self.win.last_len) as u64,
        }
    }

    /// The plaintext in the window from `pos` to the end of its chunk, if the window holds
    /// `pos`.
    fn window_at(&self) -> Option<&[u8]> {
        if self.pos < self.window_start() || self.pos >= self.window_end() {
            return None;
        }
        let cs = self.cipher.chunk_size();
        let rel = usize::try_from(self.pos - self.window_start()).ok()?;
        let (j, off) = (rel / cs, rel % cs);
        let len = if j + 1 == self.win.count { self.win.last_len } else { cs };
        let at = j * self.cipher.slot_len();
        self.buf.get(at + off..at + len)
    }

    /// Copies plaintext at `pos` from the window, if the window holds it.
    fn copy_out(&mut self, out: &mut [u8]) -> Option<usize> {
        let src = self.window_at()?;
        let n = out.len().min(src.len());
        out.get_mut(..n)?.copy_from_slice(src.get(..n)?);
        Some(n)
    }

    /// Verifies the chunks in `buf[..used]`, the first of which has index `first`;
    /// `final_index` is the index of the stream's final chunk if it is known.
    fn open_batch(&mut self, first: u64, used: usize, final_index: Option<u64>) -> Result<(), BackupError> {
        let slot = self.cipher.slot_len();
        let count = used.div_ceil(slot);
        if count == 0 || first + count as u64 > MAX_CHUNKS {
            return Err(BackupError::Authentication);
        }
        let cipher = &self.cipher;
        let batch = self.buf.get_mut(..used).ok_or(BackupError::Authentication)?;
        self.exec.for_each_slot(batch, slot, |i, s| {
            let index = first + i as u64;
            cipher.open_slot(index, Some(index) == final_index, s)
        })?;
        let last_slot = used - (count - 1) * slot;
        self.win = Window { first, count, last_len: last_slot - TAG_LEN };
        Ok(())
    }

    /// Sequential mode: makes the next batch the window. The batch read ahead (at the start,
    /// one read now) is verified on the pool while the calling thread writes what is left of
    /// the old window from `pos` to `sink` (if given) and then reads the batch after the new
    /// one into the old window's buffer. Returns the bytes written to `sink`.
    fn load_next<W: Write>(&mut self, sink: Option<&mut W>) -> Result<u64, BackupError> {
        let slot = self.cipher.slot_len();
        let pending = match self.ahead.take() {
            Some(b) => b?,
            None => Input {
                input: &mut self.input,
                peek: &mut self.peek,
                consumed: &mut self.consumed,
                next_chunk: &mut self.next_chunk,
            }
            .read_batch(&mut self.ahead_buf, slot)?,
        };
        let (cs, win, start, old_end) = (self.cipher.chunk_size(), self.win, self.window_start(), self.window_end());
        let had_sink = sink.is_some();
        let old_extent = win.count.saturating_mul(slot).min(self.buf.len());
        let skip = usize::try_from(self.pos.saturating_sub(start)).unwrap_or(usize::MAX);
        let old = &mut self.buf;
        let (input, peek, consumed, next_chunk) =
            (&mut self.input, &mut self.peek, &mut self.consumed, &mut self.next_chunk);
        let io = move || -> Result<(u64, Option<Result<Batch, BackupError>>), BackupError> {
            let mut written = 0u64;
            if let Some(w) = sink {
                for j in 0..win.count {
                    let len = if j + 1 == win.count { win.last_len } else { cs };
                    let from = skip.saturating_sub(j * cs).min(len);
                    let bytes = old.get(j * slot + from..j * slot + len).unwrap_or_default();
                    w.write_all(bytes)?;
                    written += bytes.len() as u64;
                }
            }
            let next = (!pending.eof).then(|| Input { input, peek, consumed, next_chunk }.read_batch(old, slot));
            // The old window's plaintext that the next batch did not overwrite is wiped now:
            // this buffer is read into next and must hold only ciphertext.
            let overwritten = match &next {
                Some(Ok(b)) => b.used,
                _ => 0,
            };
            if let Some(stale) = old.get_mut(overwritten..old_extent) {
                stale.zeroize();
            }
            Ok((written, next))
        };
        let (cipher, exec) = (&self.cipher, &self.exec);
        let final_index = pending.final_index(slot);
        let batch = self.ahead_buf.get_mut(..pending.used).ok_or(BackupError::Authentication)?;
        let work = move || {
            exec.for_each_slot(batch, slot, |i, s| {
                let index = pending.first + i as u64;
                cipher.open_slot(index, Some(index) == final_index, s)
            })
        };
        let (verified, io) = self.exec.overlap(work, io);
        verified?;
        let (written, next) = io?;
        // The verified batch is the new window; the old window's buffer holds the next batch.
        std::mem::swap(&mut self.buf, &mut self.ahead_buf);
        let count = pending.count(slot);
        self.win = Window { first: pending.first, count, last_len: pending.used - (count - 1) * slot - TAG_LEN };
        self.at_end = pending.eof;
        self.verified = self.window_end();
        self.ahead = next;
        if had_sink {
            // The sink took the rest of the old window.
            self.pos = self.pos.max(old_end);
        }
        Ok(written)
    }

    /// Reads the rest of the stream and writes its plaintext to `output`, straight from the
    /// verified batch buffer: while one batch is verified on the pool, the calling thread
    /// writes the previous one and reads the next. Returns the number of bytes written.
    ///
    /// Every byte written comes from a chunk whose tag verified; but as with `Read`, the
    /// stream as a whole is authentic only if this returns `Ok`: after an error, discard
    /// what was written.
    ///
    /// # Errors
    /// [`BackupError::Authentication`] (modified, truncated, extended or reordered stream);
    /// [`BackupError::Io`] from reading or writing; [`BackupError::Finished`] after an earlier
    /// failure. After an error the reader refuses further use.
    pub fn copy_to<W: Write>(&mut self, mut output: W) -> Result<u64, BackupError> {
        self.check()?;
        let r = self.copy_to_inner(&mut output);
        r.map_err(|e| self.fail(e))
    }

    fn copy_to_inner<W: Write>(&mut self, output: &mut W) -> Result<u64, BackupError> {
        let mut total = 0;
        if self.random.is_some() {
            // Random access mode: from the position on, one batch at a time.
            let mut chunk = vec![0u8; self.cipher.chunk_size()];
            loop {
                let n = self.read_inner(&mut chunk)?;
                if n == 0 {
                    chunk.zeroize();
                    return Ok(total);
                }
                output.write_all(chunk.get(..n).unwrap_or_default())?;
                total += n as u64;
            }
        }
        if !self.exec.can_stream() {
            while !self.at_end {
                total += self.load_next(Some(&mut *output))?;
            }
        }
        // The rest of the window, then (once its plaintext is wiped) the rest of the stream.
        while let Some(bytes) = self.window_at() {
            let n = bytes.len();
            output.write_all(bytes)?;
            self.pos += n as u64;
            total += n as u64;
        }
        let extent = self.win.count.saturating_mul(self.cipher.slot_len());
        if let Some(plain) = self.buf.get_mut(..extent) {
            plain.zeroize();
        }
        self.win = Window::default();
        if !self.at_end {
            total += self.stream_rest(output)?;
        }
        self.pos = self.verified;
        Ok(total)
    }

    /// Sequential mode, the window written: verifies and writes the batch read ahead (if
    /// any), then the rest of the input chunk by chunk, in a pipeline: while the pool
    /// verifies chunks in free slots of the spare batch buffer, the calling thread writes
    /// finished ones to `output` in order and reads the next.
    fn stream_rest<W: Write>(&mut self, output: &mut W) -> Result<u64, BackupError> {
        let slot = self.cipher.slot_len();
        let mut total = 0u64;
        if let Some(b) = self.ahead.take() {
            let b = b?;
            let final_index = b.final_index(slot);
            let (cipher, exec) = (&self.cipher, &self.exec);
            let batch = self.ahead_buf.get_mut(..b.used).ok_or(BackupError::Authentication)?;
            exec.for_each_slot(batch, slot, |i, s| {
                let index = b.first + i as u64;
                cipher.open_slot(index, Some(index) == final_index, s)
            })?;
            for piece in batch.chunks(slot) {
                let plain = piece.get(..piece.len().saturating_sub(TAG_LEN)).unwrap_or_default();
                output.write_all(plain)?;
                total += plain.len() as u64;
            }
            batch.zeroize();
            self.verified += total;
            if b.eof {
                self.at_end = true;
                return Ok(total);
            }
        }
        let (cipher, verified) = (&self.cipher, &mut self.verified);
        let (input, peek, consumed, next_chunk) =
            (&mut self.input, &mut self.peek, &mut self.consumed, &mut self.next_chunk);
        let mut ended = false;
        let slots: Vec<&mut [u8]> = self.ahead_buf.chunks_mut(slot).collect();
        let r = self.exec.stream(
            slots,
            |s| {
                if ended {
                    return Ok(None);
                }
                let mut have = 0;
                if let Some(b) = peek.take()
                    && let Some(first) = s.first_mut()
                {
                    *first = b;
                    have = 1;
                }
                let n = read_full(input, s.get_mut(have..).unwrap_or_default())?;
                have += n;
                *consumed += n as u64;
                let last = if have < slot {
                    true
                } else {
                    let mut one = [0u8; 1];
                    let k = read_full(input, &mut one)?;
                    *consumed += k as u64;
                    *peek = (k == 1).then_some(one[0]);
                    k == 0
                };
                let index = *next_chunk;
                // The final chunk holds at least one byte, except in the empty stream; a
                // stream that ends where a chunk should start lacks its final chunk.
                let min = if index == 0 { TAG_LEN } else { TAG_LEN + 1 };
                if have < min || index >= MAX_CHUNKS {
                    return Err(BackupError::Authentication);
                }
                ended = last;
                *next_chunk += 1;
                Ok(Some(((index, have, last), s)))
            },
            |&(index, len, last), s| cipher.open_slot(index, last, s.get_mut(..len).unwrap_or_default()),
            |(_, len, _), s| {
                let plain = s.get(..len - TAG_LEN).unwrap_or_default();
                output.write_all(plain)?;
                total += plain.len() as u64;
                *verified += plain.len() as u64;
                Ok(())
            },
        );
        // The slots held plaintext after verification.
        self.ahead_buf.as_mut_slice().zeroize();
        r?;
        self.at_end = true;
        Ok(total)
    }

    /// Random access: reads and verifies the batch that starts at chunk `c`.
    fn load_at(&mut self, c: u64) -> Result<(), BackupError> {
        // Plaintext of the window being replaced (an error makes the caller wipe everything).
        let old_extent = self.win.count.saturating_mul(self.cipher.slot_len());
        self.win = Window::default();
        let Some(rnd) = &self.random else { return Err(BackupError::Finished) };
        let geo = rnd.geo;
        let slot = self.cipher.slot_len();
        let batch = (self.buf.len() / slot) as u64;
        let count = batch.min(geo.chunks.checked_sub(c).ok_or(BackupError::Authentication)?);
        if count == 0 {
            return Err(BackupError::Authentication);
        }
        let tail = if c + count == geo.chunks { geo.last_slot } else { slot };
        let used = usize::try_from(count - 1).map_err(|_| BackupError::Authentication)? * slot + tail;
        let offset = c
            .checked_mul(slot as u64)
            .and_then(|o| o.checked_add(rnd.base))
            .and_then(|o| o.checked_add(HEADER_LEN as u64))
            .ok_or(BackupError::Authentication)?;
        (rnd.seek)(&mut self.input, offset)?;
        let n = read_full(&mut self.input, self.buf.get_mut(..used).ok_or(BackupError::Authentication)?)?;
        if n < used {
            // The input shrank since the final chunk was authenticated.
            return Err(BackupError::Authentication);
        }
        if let Some(stale) = self.buf.get_mut(used..old_extent) {
            stale.zeroize();
        }
        self.open_batch(c, used, Some(geo.chunks - 1))
    }

    fn read_inner(&mut self, out: &mut [u8]) -> Result<usize, BackupError> {
        self.check()?;
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(n) = self.copy_out(out) {
                self.pos += n as u64;
                return Ok(n);
            }
            let r = match &self.random {
                Some(rnd) if self.pos >= rnd.geo.plain_len => return Ok(0),
                Some(_) => self.load_at(self.pos / self.cipher.chunk_size() as u64),
                None if self.at_end => return Ok(0),
                None => self.load_next::<io::Sink>(None).map(|_| ()),
            };
            r.map_err(|e| self.fail(e))?;
        }
    }

    /// Sequential mode: verifies every remaining chunk; returns the plaintext length.
    pub(crate) fn verify_to_end(&mut self) -> Result<u64, BackupError> {
        self.check()?;
        self.copy_to_inner(&mut io::sink()).map_err(|e| self.fail(e))?;
        Ok(self.random.as_ref().map_or(self.verified, |r| r.geo.plain_len))
    }
}

impl<R: Read + Seek> BackupReader<R> {
    /// Opens a stream for random access: reads the header as [`BackupReader::new`] does, then
    /// authenticates the final chunk, so the length is trusted and every seek is O(1).
    ///
    /// The stream must extend from the input's current position to its end.
    ///
    /// # Errors
    /// As [`BackupReader::new`]; [`BackupError::Authentication`] if the stream was cut short
    /// or extended.
    pub fn open_seekable(tenant: &Tenant, ctx: &BackupContext, input: R) -> Result<Self, BackupError> {
        let mut r = Self::new(tenant, ctx, input)?;
        r.ensure_random()?;
        Ok(r)
    }

    /// Switches to random access (once): authenticates the final chunk.
    fn ensure_random(&mut self) -> Result<(), BackupError> {
        // Refuses after any failure, including a failed switch below: `random` may then hold
        // a geometry whose final chunk did not verify.
        self.check()?;
        if self.random.is_some() {
            return Ok(());
        }
        // An input that cannot seek (a pipe) fails here, before anything moved: the reader
        // stays usable sequentially.
        let here = self.input.stream_position()?;
        let r = (|| {
            let base = here.checked_sub(self.consumed).ok_or(BackupError::Authentication)?;
            let end = self.input.seek(SeekFrom::End(0))?;
            let body = end
                .checked_sub(base)
                .and_then(|l| l.checked_sub(HEADER_LEN as u64))
                .ok_or(BackupError::Authentication)?;
            let geo = Geometry::from_body_len(body, u32::try_from(self.cipher.chunk_size()).unwrap_or(u32::MAX))?;
            self.random = Some(Random { geo, base, seek: |r: &mut R, off| r.seek(SeekFrom::Start(off)).map(|_| ()) });
            self.peek = None;
            self.ahead = None;
            self.load_at(geo.chunks - 1)
        })();
        r.map_err(|e| {
            // The length was not authenticated: `len()` must not report it.
            self.random = None;
            self.fail(e)
        })
    }

    /// The plaintext length, authenticated.
    ///
    /// Exact for a reader made by [`open_seekable`](BackupReader::open_seekable), and for any
    /// reader after a seek or once the end was reached. For a reader made by
    /// [`new`](BackupReader::new) before that, it is the number of plaintext bytes verified so
    /// far (a lower bound).
    pub fn len(&self) -> u64 {
        match &self.random {
            Some(r) => r.geo.plain_len,
            None => self.verified,
        }
    }

    /// Whether [`len`](BackupReader::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads plaintext at `offset` into `buf` without moving the read position. Fills `buf`
    /// unless the stream ends first; returns the number of bytes read (0 at or past the end).
    ///
    /// # Errors
    /// [`BackupError::Authentication`] if a chunk does not verify; [`BackupError::Io`];
    /// [`BackupError::Finished`] after an earlier failure.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, BackupError> {
        self.ensure_random()?;
        let saved = self.pos;
        self.pos = offset;
        let mut n = 0;
        let r = loop {
            match self.read_inner(buf.get_mut(n..).unwrap_or_default()) {
                Ok(0) => break Ok(n),
                Ok(k) => n += k,
                Err(e) => break Err(e),
            }
        };
        self.pos = saved;
        r
    }
}

impl<R: Read> Read for BackupReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf).map_err(io::Error::from)
    }
}

impl<R: Read + Seek> Seek for BackupReader<R> {
    /// Moves the plaintext position. The first seek of a reader made by
    /// [`new`](BackupReader::new) authenticates the final chunk; every seek after that is
    /// O(1). Seeking past the end is allowed (reads there return 0 bytes).
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.ensure_random()?;
        let len = self.len();
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek to a negative or overflowing position"))?;
        self.pos = target;
        Ok(target)
    }
}

impl<R: Read> Drop for BackupReader<R> {
    fn drop(&mut self) {
        // The window holds verified plaintext; the batch read ahead is ciphertext.
        let window = self.win.count.saturating_mul(self.cipher.slot_len()).min(self.buf.len());
        if let Some(plain) = self.buf.get_mut(..window) {
            plain.zeroize();
        }
        give_buffer(std::mem::take(&mut self.buf));
        give_buffer(std::mem::take(&mut self.ahead_buf));
    }
}

impl<R: Read> core::fmt::Debug for BackupReader<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BackupReader")
            .field("chunk_size", &self.cipher.chunk_size())
            .field("position", &self.pos)
            .field("random_access", &self.random.is_some())
            .field("failed", &self.failed.is_some())
            .finish_non_exhaustive()
    }
}
