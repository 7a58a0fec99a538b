//! Sequential mode: reads on from the input's current position. Which chunk is final is
//! learnt from the end of the input (the [`LookAhead`] reads one byte ahead), so a stream
//! cut anywhere fails at its end, never with a clean end of file.

use std::io::{self, Read, Seek, Write};

use zeroize::Zeroize;

use super::Core;
use crate::backup::frame::{Frame, LookAhead, Run};
use crate::error::BackupError;

/// The input from the next chunk on.
struct Source<R> {
    input: LookAhead<R>,
    /// The index of the next chunk in the input.
    next: u64,
}

impl<R: Read> Source<R> {
    /// Reads the next run of chunks into `buf` (sized for whole slots).
    fn read(&mut self, frame: Frame, buf: &mut [u8]) -> Result<Run, BackupError> {
        let got = self.input.fill(buf)?;
        let run = frame.received(self.next, got.len, got.ends)?;
        self.next = run.next();
        Ok(run)
    }
}

/// The sequential state.
pub(super) struct Sequential<R> {
    src: Source<R>,
    /// The run after the window, read into the spare buffer but not yet verified, or the
    /// error that reading it met (reported once the window is used up, so that verified
    /// bytes before it are still served).
    ahead: Option<Result<Run, BackupError>>,
    /// The final chunk was verified (it is in the window, or `copy_to` wrote it).
    at_end: bool,
    /// Plaintext bytes verified so far.
    verified: u64,
}

impl<R: Read> Sequential<R> {
    /// Reads `input` from the first chunk on.
    pub(super) fn new(input: R) -> Self {
        Self { src: Source { input: LookAhead::new(input), next: 0 }, ahead: None, at_end: false, verified: 0 }
    }

    pub(super) fn verified(&self) -> u64 {
        self.verified
    }

    /// The input, and how many bytes were read from it after the header.
    pub(super) fn into_input(self) -> (R, u64) {
        self.src.input.into_parts()
    }

    /// Makes the next run the window; `false` once the final chunk was reached.
    pub(super) fn load(&mut self, core: &mut Core) -> Result<bool, BackupError> {
        if self.at_end {
            return Ok(false);
        }
        self.load_next::<io::Sink>(core, None)?;
        Ok(true)
    }

    /// Makes the next run the window. The run read ahead (at the start, one read now) is
    /// verified on the pool while the calling thread writes what is left of the old window
    /// from `pos` to `sink` (if given) and then reads the run after the new one into the old
    /// window's buffer. Returns the bytes written to `sink`.
    fn load_next<W: Write>(&mut self, core: &mut Core, sink: Option<&mut W>) -> Result<u64, BackupError> {
        let frame = core.frame;
        let pending = match self.ahead.take() {
            Some(run) => run?,
            None => self.src.read(frame, &mut core.spare)?,
        };
        let (old, pos, had_sink) = (core.win.take(), core.pos, sink.is_some());
        let (buf, src) = (&mut core.buf, &mut self.src);
        let io = move || -> Result<(u64, Option<Result<Run, BackupError>>), BackupError> {
            let mut written = 0u64;
            if let (Some(w), Some(old)) = (sink, old) {
                let mut at = pos.max(old.plain_start());
                while let Some(range) = old.plain_at(at) {
                    let bytes = buf.get(range).ok_or(BackupError::Internal("window outside its buffer"))?;
                    w.write_all(bytes)?;
                    at += bytes.len() as u64;
                    written += bytes.len() as u64;
                }
            }
            let next = (!pending.is_final()).then(|| src.read(frame, buf));
            // The old window's plaintext that the next run did not overwrite is wiped now:
            // this buffer is read into next and must hold only ciphertext.
            let overwritten = match &next {
                Some(Ok(run)) => run.bytes(),
                _ => 0,
            };
            if let Some(stale) = buf.get_mut(overwritten..old.map_or(0, |w| w.bytes())) {
                stale.zeroize();
            }
            Ok((written, next))
        };
        let (cipher, exec, spare) = (&core.cipher, &core.exec, &mut core.spare);
        let work = move || cipher.open_run(exec, pending, spare);
        let (verified, io) = core.exec.overlap(work, io);
        verified?;
        let (written, next) = io?;
        // The verified run is the new window; the old window's buffer holds the next run.
        std::mem::swap(&mut core.buf, &mut core.spare);
        core.win = Some(pending);
        self.at_end = pending.is_final();
        self.verified = pending.plain_end();
        self.ahead = next;
        if had_sink {
            // The sink took the rest of the old window.
            core.pos = core.pos.max(old.map_or(0, |w| w.plain_end()));
        }
        Ok(written)
    }

    /// Writes the rest of the stream to `output`; returns the number of bytes.
    pub(super) fn copy_to<W: Write>(&mut self, core: &mut Core, output: &mut W) -> Result<u64, BackupError> {
        let mut total = 0;
        if !core.exec.can_stream() {
            while !self.at_end {
                total += self.load_next(core, Some(&mut *output))?;
            }
        }
        // The rest of the window, then (once its plaintext is wiped) the rest of the stream.
        total += core.drain_window(output)?;
        core.wipe_window();
        if !self.at_end {
            total += self.stream_rest(core, output)?;
        }
        core.pos = self.verified;
        Ok(total)
    }

    /// The window written: verifies and writes the run read ahead (if any), then the rest
    /// of the input chunk by chunk, in a pipeline: while the pool verifies chunks in free
    /// slots of the spare buffer, the calling thread writes finished ones to `output` in
    /// order and reads the next.
    fn stream_rest<W: Write>(&mut self, core: &mut Core, output: &mut W) -> Result<u64, BackupError> {
        let frame = core.frame;
        let mut total = 0u64;
        if let Some(run) = self.ahead.take() {
            let run = run?;
            let batch = core.spare.get_mut(..run.bytes()).ok_or(BackupError::Internal("run outside its buffer"))?;
            core.cipher.open_run(&core.exec, run, batch)?;
            for j in 0..run.count() {
                let plain = batch.get(run.chunk_plain(j)).unwrap_or_default();
                output.write_all(plain)?;
                total += plain.len() as u64;
            }
            batch.zeroize();
            self.verified = run.plain_end();
            if run.is_final() {
                self.at_end = true;
                return Ok(total);
            }
        }
        let (cipher, verified, src) = (&core.cipher, &mut self.verified, &mut self.src);
        let mut ended = false;
        let slots: Vec<&mut [u8]> = core.spare.chunks_mut(frame.slot_len()).collect();
        let r = core.exec.stream(
            slots,
            |s| {
                if ended {
                    return Ok(None);
                }
                let run = src.read(frame, s)?;
                ended = run.is_final();
                Ok(Some((run, s)))
            },
            |run, s| cipher.open_slot(run.chunk(0), s.get_mut(..run.bytes()).unwrap_or_default()),
            |run, s| {
                let plain = s.get(run.chunk_plain(0)).unwrap_or_default();
                output.write_all(plain)?;
                total += plain.len() as u64;
                *verified = run.plain_end();
                Ok(())
            },
        );
        // The slots held plaintext after verification.
        core.spare.as_mut_slice().zeroize();
        r?;
        self.at_end = true;
        Ok(total)
    }
}

impl<R: Read + Seek> Sequential<R> {
    /// The input's position (fails on an input that cannot seek).
    pub(super) fn stream_position(&mut self) -> io::Result<u64> {
        self.src.input.input_mut().stream_position()
    }
}
