//! Random-access mode: entered (once) by authenticating the final chunk, so the length is
//! trusted; after that every chunk sits at a computable offset and any position is reached
//! in O(1).

use std::io::{self, Read, Seek, SeekFrom};

use zeroize::Zeroize;

use super::Core;
use super::sequential::Sequential;
use crate::backup::frame::{Layout, read_full};
use crate::error::BackupError;

/// The random-access state.
pub(super) struct Random<R> {
    input: R,
    /// The chunk layout, trusted since the final chunk verified.
    layout: Layout,
    /// Offset of the stream's first chunk in the input.
    body: u64,
    seek: fn(&mut R, u64) -> io::Result<()>,
}

impl<R: Read + Seek> Random<R> {
    /// Switches from sequential reading, whose input is at `here`: learns the body length
    /// from the end of the input and authenticates the final chunk. The caller treats any
    /// error as final.
    pub(super) fn switch(seq: Sequential<R>, here: u64, core: &mut Core) -> Result<Self, BackupError> {
        let (mut input, consumed) = seq.into_input();
        let body = here.checked_sub(consumed).ok_or(BackupError::Authentication)?;
        let end = input.seek(SeekFrom::End(0))?;
        let layout = core.frame.layout(end.checked_sub(body).ok_or(BackupError::Authentication)?)?;
        let seek = |r: &mut R, off| r.seek(SeekFrom::Start(off)).map(|_| ());
        let mut rnd = Self { input, layout, body, seek };
        rnd.load(core, layout.final_chunk())?;
        Ok(rnd)
    }
}

impl<R: Read> Random<R> {
    /// The plaintext length (authenticated).
    pub(super) fn len(&self) -> u64 {
        self.layout.plain_len()
    }

    /// Makes the window hold the read position; `false` at or past the end.
    pub(super) fn load_pos(&mut self, core: &mut Core) -> Result<bool, BackupError> {
        if core.pos >= self.layout.plain_len() {
            return Ok(false);
        }
        self.load(core, core.frame.chunk_of(core.pos))?;
        Ok(true)
    }

    /// Reads and verifies the batch that starts at chunk `first` into the window.
    fn load(&mut self, core: &mut Core, first: u64) -> Result<(), BackupError> {
        // The window being replaced (an error makes the caller wipe everything).
        let old = core.win.take().map_or(0, |w| w.bytes());
        let run = self.layout.run_at(first, core.buf.len() / core.frame.slot_len())?;
        let offset = self.layout.offset(first).and_then(|o| o.checked_add(self.body));
        (self.seek)(&mut self.input, offset.ok_or(BackupError::Authentication)?)?;
        let buf = core.buf.get_mut(..run.bytes()).ok_or(BackupError::Internal("batch outside its buffer"))?;
        if read_full(&mut self.input, buf)? < run.bytes() {
            // The input shrank since the final chunk was authenticated.
            return Err(BackupError::Authentication);
        }
        if let Some(stale) = core.buf.get_mut(run.bytes()..old) {
            stale.zeroize();
        }
        core.cipher.open_run(&core.exec, run, &mut core.buf)?;
        core.win = Some(run);
        Ok(())
    }
}
