//! The streaming decryptor, in two explicit modes: [`Sequential`] on any `Read` (stdin,
//! pipes), and [`Random`] access on `Read + Seek` once the final chunk is authenticated.
//! Both verify chunks through the same [`Core`]: the chunk geometry ([`Frame`]), the chunk
//! cipher and the window of verified chunks. A failed switch to random access is final.

mod random;
mod sequential;

use std::io::{self, Read, Seek, SeekFrom, Write};

use zeroize::Zeroize;

use self::random::Random;
use self::sequential::Sequential;
use super::chunk::ChunkCipher;
use super::frame::{Frame, Run};
use super::header::Header;
use super::keys;
use super::pipeline::{Exec, give_buffer, take_buffer};
use super::{BackupContext, BackupOptions};
use crate::Tenant;
use crate::error::BackupError;

/// What both modes share: the chunk geometry and cipher, the two batch buffers, the window
/// of verified chunks and the read position.
struct Core {
    frame: Frame,
    cipher: ChunkCipher,
    exec: Exec,
    /// A batch of chunk slots as on disk; the window's verified slots hold plaintext in place.
    buf: Vec<u8>,
    /// The second batch buffer: the batch read ahead (ciphertext) or chunks in flight.
    spare: Vec<u8>,
    /// The verified chunks held in `buf`.
    win: Option<Run>,
    /// The plaintext position of the next read.
    pos: u64,
}

impl Core {
    /// The verified plaintext from `pos` to the end of its chunk, if the window holds `pos`.
    fn window_at(&self) -> Option<&[u8]> {
        self.buf.get(self.win?.plain_at(self.pos)?)
    }

    /// Copies verified plaintext at `pos` into `out`, if the window holds `pos`.
    fn copy_out(&mut self, out: &mut [u8]) -> Option<usize> {
        let src = self.window_at()?;
        let n = out.len().min(src.len());
        out.get_mut(..n)?.copy_from_slice(src.get(..n)?);
        self.pos += n as u64;
        Some(n)
    }

    /// Writes the window from `pos` on to `output`; returns the number of bytes.
    fn drain_window<W: Write>(&mut self, output: &mut W) -> Result<u64, BackupError> {
        let mut total = 0;
        while let Some(bytes) = self.window_at() {
            let n = bytes.len() as u64;
            output.write_all(bytes)?;
            self.pos += n;
            total += n;
        }
        Ok(total)
    }

    /// Wipes the window's plaintext and forgets it.
    fn wipe_window(&mut self) {
        if let Some(run) = self.win.take()
            && let Some(plain) = self.buf.get_mut(..run.bytes())
        {
            plain.zeroize();
        }
    }
}

/// The reader's mode.
enum Mode<R> {
    /// Reading on from the input's current position, one byte ahead.
    Sequential(Sequential<R>),
    /// The final chunk is authenticated: the length is trusted, any offset is O(1).
    Random(Random<R>),
    /// After an error: refuses further use. `authentication`: the error was an
    /// authentication failure; `len`: the authenticated length at that point.
    Failed { authentication: bool, len: u64 },
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
    core: Core,
    mode: Mode<R>,
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
        let cipher = keys::open_stream(tenant, ctx, &header, opts.backend)?;
        let exec = Exec::new(opts.threads)?;
        let frame = Frame::new(header.chunk_size as usize);
        let len = exec.batch_chunks(frame.slot_len()) * frame.slot_len();
        let (buf, spare) = (take_buffer(len), take_buffer(len));
        let core = Core { frame, cipher, exec, buf, spare, win: None, pos: 0 };
        Ok(Self { core, mode: Mode::Sequential(Sequential::new(input)) })
    }

    fn check(&self) -> Result<(), BackupError> {
        match self.mode {
            Mode::Failed { authentication: true, .. } => Err(BackupError::Authentication),
            Mode::Failed { authentication: false, .. } => Err(BackupError::Finished),
            Mode::Sequential(_) | Mode::Random(_) => Ok(()),
        }
    }

    /// Records a failure: drops the input and everything buffered and refuses further use.
    fn fail(&mut self, e: BackupError) -> BackupError {
        let len = self.authenticated_len();
        self.mode = Mode::Failed { authentication: matches!(e, BackupError::Authentication), len };
        self.core.buf.as_mut_slice().zeroize();
        self.core.spare.as_mut_slice().zeroize();
        self.core.win = None;
        e
    }

    /// The plaintext length if the final chunk is authenticated, else the bytes verified.
    fn authenticated_len(&self) -> u64 {
        match &self.mode {
            Mode::Sequential(seq) => seq.verified(),
            Mode::Random(rnd) => rnd.len(),
            Mode::Failed { len, .. } => *len,
        }
    }

    /// Makes the window hold `pos`; `false` at the end of the stream.
    fn load(&mut self) -> Result<bool, BackupError> {
        match &mut self.mode {
            Mode::Sequential(seq) => seq.load(&mut self.core),
            Mode::Random(rnd) => rnd.load_pos(&mut self.core),
            Mode::Failed { .. } => self.check().map(|()| false),
        }
    }

    fn read_inner(&mut self, out: &mut [u8]) -> Result<usize, BackupError> {
        self.check()?;
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(n) = self.core.copy_out(out) {
                return Ok(n);
            }
            match self.load() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => return Err(self.fail(e)),
            }
        }
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
        self.copy_to_inner(&mut output).map_err(|e| self.fail(e))
    }

    fn copy_to_inner<W: Write>(&mut self, output: &mut W) -> Result<u64, BackupError> {
        if let Mode::Sequential(seq) = &mut self.mode {
            return seq.copy_to(&mut self.core, output);
        }
        // Random access: from the position on, one batch at a time.
        let mut total = 0;
        loop {
            total += self.core.drain_window(output)?;
            if !self.load()? {
                return Ok(total);
            }
        }
    }

    /// Verifies every remaining chunk; returns the plaintext length.
    pub(crate) fn verify_to_end(&mut self) -> Result<u64, BackupError> {
        self.check()?;
        self.copy_to_inner(&mut io::sink()).map_err(|e| self.fail(e))?;
        Ok(self.authenticated_len())
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
        self.check()?;
        let Mode::Sequential(seq) = &mut self.mode else { return Ok(()) };
        // An input that cannot seek (a pipe) fails here, before anything moved: the reader
        // stays usable sequentially.
        let here = seq.stream_position()?;
        // From here on a failure is final, and the length that was never authenticated is
        // never reported: until the switch succeeds the reader counts as failed.
        let failed = Mode::Failed { authentication: false, len: seq.verified() };
        let Mode::Sequential(seq) = std::mem::replace(&mut self.mode, failed) else {
            return Err(BackupError::Internal("reader mode changed during the switch"));
        };
        match Random::switch(seq, here, &mut self.core) {
            Ok(rnd) => {
                self.mode = Mode::Random(rnd);
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The plaintext length, authenticated.
    ///
    /// Exact for a reader made by [`open_seekable`](BackupReader::open_seekable), and for any
    /// reader after a seek or once the end was reached. For a reader made by
    /// [`new`](BackupReader::new) before that, it is the number of plaintext bytes verified so
    /// far (a lower bound).
    pub fn len(&self) -> u64 {
        self.authenticated_len()
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
        let saved = self.core.pos;
        self.core.pos = offset;
        let mut n = 0;
        let r = loop {
            match self.read_inner(buf.get_mut(n..).unwrap_or_default()) {
                Ok(0) => break Ok(n),
                Ok(k) => n += k,
                Err(e) => break Err(e),
            }
        };
        self.core.pos = saved;
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
            SeekFrom::Current(d) => self.core.pos.checked_add_signed(d),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek to a negative or overflowing position"))?;
        self.core.pos = target;
        Ok(target)
    }
}

impl<R: Read> Drop for BackupReader<R> {
    fn drop(&mut self) {
        // The window holds verified plaintext; the other buffer holds ciphertext (anything
        // verified in it is wiped as soon as it is written out).
        self.core.wipe_window();
        give_buffer(std::mem::take(&mut self.core.buf));
        give_buffer(std::mem::take(&mut self.core.spare));
    }
}

impl<R: Read> core::fmt::Debug for BackupReader<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BackupReader")
            .field("chunk_size", &self.core.frame.chunk_size())
            .field("position", &self.core.pos)
            .field("random_access", &matches!(self.mode, Mode::Random(_)))
            .field("failed", &matches!(self.mode, Mode::Failed { .. }))
            .finish_non_exhaustive()
    }
}
