//! The streaming decryptor: sequential on any `Read`, random access on `Read + Seek`.

use std::io::{self, Read, Seek, SeekFrom};

use zeroize::Zeroize;

use super::BackupContext;
use super::format::{self, ChunkCipher, Geometry, HEADER_LEN, Header, MAX_CHUNKS, TAG_LEN, read_full};
use super::pipeline::Exec;
use crate::error::BackupError;
use crate::keyring::Tenant;

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
/// Chunks are read and verified in batches (two per thread) in parallel; memory stays
/// bounded for any stream length.
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
    /// The plaintext position of the next read.
    pos: u64,
    /// Sequential mode: the index of the next chunk in the input.
    next_chunk: u64,
    /// Sequential mode: one byte read ahead to learn whether a chunk is the final one.
    peek: Option<u8>,
    /// Sequential mode: bytes consumed from the input, header included.
    consumed: u64,
    /// Sequential mode: the final chunk was verified.
    at_end: bool,
    random: Option<Random<R>>,
    /// After a failure: whether it was an authentication failure.
    failed: Option<bool>,
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
        Self::with_threads(tenant, ctx, input, 0)
    }

    /// [`BackupReader::new`] with a thread count: 0 = all cores, 1 = the calling thread only.
    ///
    /// # Errors
    /// As [`BackupReader::new`].
    pub fn with_threads(
        tenant: &Tenant,
        ctx: &BackupContext,
        mut input: R,
        threads: usize,
    ) -> Result<Self, BackupError> {
        ctx.validate()?;
        let header = Header::read_from(&mut input)?;
        let cipher = format::open_stream(tenant, ctx, &header)?;
        let exec = Exec::new(threads)?;
        let buf = vec![0u8; exec.batch_chunks(cipher.slot_len()) * cipher.slot_len()];
        Ok(Self {
            input,
            cipher,
            exec,
            buf,
            win: Window::default(),
            pos: 0,
            next_chunk: 0,
            peek: None,
            consumed: HEADER_LEN as u64,
            at_end: false,
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
        self.buf.zeroize();
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

    /// Copies plaintext at `pos` from the window, if the window holds it.
    fn copy_out(&mut self, out: &mut [u8]) -> Option<usize> {
        if self.pos < self.window_start() || self.pos >= self.window_end() {
            return None;
        }
        let cs = self.cipher.chunk_size();
        let rel = usize::try_from(self.pos - self.window_start()).ok()?;
        let (j, off) = (rel / cs, rel % cs);
        let len = if j + 1 == self.win.count { self.win.last_len } else { cs };
        let n = out.len().min(len.checked_sub(off)?);
        let at = j * self.cipher.slot_len() + off;
        out.get_mut(..n)?.copy_from_slice(self.buf.get(at..at + n)?);
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

    /// Sequential mode: reads and verifies the next batch.
    fn load_next(&mut self) -> Result<(), BackupError> {
        self.win = Window::default();
        let mut have = 0;
        if let Some(b) = self.peek.take()
            && let Some(first) = self.buf.first_mut()
        {
            *first = b;
            have = 1;
        }
        let n = read_full(&mut self.input, self.buf.get_mut(have..).unwrap_or_default())?;
        have += n;
        self.consumed += n as u64;
        let eof = if have < self.buf.len() {
            true
        } else {
            let mut one = [0u8; 1];
            let k = read_full(&mut self.input, &mut one)?;
            self.consumed += k as u64;
            self.peek = (k == 1).then_some(one[0]);
            k == 0
        };
        let slot = self.cipher.slot_len();
        let count = have.div_ceil(slot);
        if count == 0 {
            // The input ended where a chunk should start: the final chunk is missing.
            return Err(BackupError::Authentication);
        }
        let final_index = if eof {
            let last_slot = have - (count - 1) * slot;
            // The final chunk holds at least one byte, except in the empty stream.
            let min = if self.next_chunk == 0 && count == 1 { TAG_LEN } else { TAG_LEN + 1 };
            if last_slot < min {
                return Err(BackupError::Authentication);
            }
            Some(self.next_chunk + count as u64 - 1)
        } else {
            None
        };
        self.open_batch(self.next_chunk, have, final_index)?;
        self.next_chunk += count as u64;
        self.at_end = eof;
        Ok(())
    }

    /// Random access: reads and verifies the batch that starts at chunk `c`.
    fn load_at(&mut self, c: u64) -> Result<(), BackupError> {
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
                None => self.load_next(),
            };
            r.map_err(|e| self.fail(e))?;
        }
    }

    /// Sequential mode: verifies every remaining chunk; returns the plaintext length.
    pub(crate) fn verify_to_end(&mut self) -> Result<u64, BackupError> {
        self.check()?;
        while !self.at_end {
            self.load_next().map_err(|e| self.fail(e))?;
        }
        Ok(self.window_end())
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
            None => self.window_end(),
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
        self.buf.zeroize();
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
