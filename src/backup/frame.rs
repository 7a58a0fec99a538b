//! Chunk geometry and finality: the one place that knows where chunk `i` sits, which chunk
//! is the final one, and what a valid final chunk holds.
//!
//! Every reader and writer path asks this module, never its own arithmetic:
//!
//! - [`Frame`] is the chunk size of a stream; it turns a run of bytes into a [`Run`] of
//!   chunks, checking the 2^32-chunk limit and the empty-stream rule.
//! - [`Run`] is a contiguous run of chunks laid out as on disk (plaintext or ciphertext,
//!   each followed by its tag); [`Run::chunk`] is the only source of a chunk's
//!   [`ChunkId`] (index and final flag), which is what the chunk cipher's nonce is made of.
//! - [`LookAhead`] reads a stream sequentially and decides, by reading one byte ahead,
//!   whether the bytes just read end the input: that is what makes a chunk final for a
//!   sequential reader and for the writer's `copy_from`.
//! - [`Layout`] is a stream whose length is known (random access): where chunk `i` starts
//!   and which chunk is the final one.

use std::io::{self, Read};
use std::ops::Range;

use crate::error::BackupError;

/// The bytes of a chunk's authentication tag.
pub(crate) const TAG_LEN: usize = 16;
/// At most 2^32 chunks per stream (the chunk index in the nonce is a u32).
pub(crate) const MAX_CHUNKS: u64 = 1 << 32;

/// The empty-stream rule: the final chunk holds at least one plaintext byte, unless it is
/// chunk 0 (the empty stream has exactly one chunk, holding only a tag).
fn valid_final_chunk(index: u64, plain_len: usize) -> bool {
    plain_len > 0 || index == 0
}

/// The chunk limit: a run of `count` chunks from `first` stays within 2^32 chunks.
fn within_limit(first: u64, count: usize) -> bool {
    u64::try_from(count).ok().and_then(|c| first.checked_add(c)).is_some_and(|end| end <= MAX_CHUNKS)
}

/// The index and final flag of one chunk: what its nonce authenticates. Made only by
/// [`Run::chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkId {
    index: u64,
    last: bool,
}

impl ChunkId {
    /// The chunk's index in its stream.
    pub(crate) fn index(self) -> u64 {
        self.index
    }

    /// Whether this is the stream's final chunk.
    pub(crate) fn is_final(self) -> bool {
        self.last
    }

    #[cfg(test)]
    pub(crate) fn new_for_test(index: u64, last: bool) -> Self {
        Self { index, last }
    }
}

/// The chunk size of a stream (validated by the caller: the options or the header parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    chunk_size: usize,
}

impl Frame {
    pub(crate) fn new(chunk_size: usize) -> Self {
        Self { chunk_size: chunk_size.max(1) }
    }

    /// Plaintext bytes per chunk.
    pub(crate) fn chunk_size(self) -> usize {
        self.chunk_size
    }

    /// A chunk with its tag.
    pub(crate) fn slot_len(self) -> usize {
        self.chunk_size + TAG_LEN
    }

    /// Where plaintext byte `plain` of a run sits in the run's buffer.
    pub(crate) fn slot_offset(self, plain: usize) -> usize {
        plain / self.chunk_size * self.slot_len() + plain % self.chunk_size
    }

    /// The chunk that holds plaintext position `pos`.
    pub(crate) fn chunk_of(self, pos: u64) -> u64 {
        pos / self.chunk_size as u64
    }

    /// The run of chunks the writer seals from `plain` plaintext bytes, starting at chunk
    /// `first`; `last`: the run ends the stream. A non-final run holds whole chunks.
    ///
    /// Errors: [`BackupError::TooLong`] past 2^32 chunks.
    pub(crate) fn sealing(self, first: u64, plain: usize, last: bool) -> Result<Run, BackupError> {
        let whole = plain.div_ceil(self.chunk_size);
        // The empty stream still has its final chunk.
        let count = if last { whole.max(1) } else { whole };
        if !within_limit(first, count) {
            return Err(BackupError::TooLong);
        }
        let tail = plain.saturating_sub(count.saturating_sub(1) * self.chunk_size);
        let valid = if last { valid_final_chunk(first + count as u64 - 1, tail) } else { tail == self.chunk_size };
        if !valid {
            return Err(BackupError::Internal("a sealed run breaks the chunk layout"));
        }
        Ok(Run { frame: self, first, count, bytes: plain + count * TAG_LEN, last })
    }

    /// The run of chunks in `bytes` bytes read sequentially from chunk `first` on (whole
    /// slots, the last one possibly short); `ends`: the input ends after them, so the last
    /// of them is the stream's final chunk.
    ///
    /// Errors: [`BackupError::Authentication`] if no writer produces this: the input ends
    /// where a chunk should start, the final chunk breaks the empty-stream rule, or the
    /// stream goes past 2^32 chunks.
    pub(crate) fn received(self, first: u64, bytes: usize, ends: bool) -> Result<Run, BackupError> {
        let slot = self.slot_len();
        let count = bytes.div_ceil(slot);
        if count == 0 || !within_limit(first, count) {
            return Err(BackupError::Authentication);
        }
        let tail = bytes - (count - 1) * slot;
        let valid = match tail.checked_sub(TAG_LEN) {
            Some(plain) if ends => valid_final_chunk(first + count as u64 - 1, plain),
            _ => tail == slot,
        };
        if !valid {
            return Err(BackupError::Authentication);
        }
        Ok(Run { frame: self, first, count, bytes, last: ends })
    }

    /// The layout of a stream body (everything after the header) of `body_len` bytes.
    ///
    /// Errors: [`BackupError::Authentication`] if no writer produces that length.
    pub(crate) fn layout(self, body_len: u64) -> Result<Layout, BackupError> {
        let slot = self.slot_len() as u64;
        let chunks = body_len.div_ceil(slot);
        if chunks == 0 || chunks > MAX_CHUNKS {
            return Err(BackupError::Authentication);
        }
        let last_slot = usize::try_from(body_len - (chunks - 1) * slot).map_err(|_| BackupError::Authentication)?;
        match last_slot.checked_sub(TAG_LEN) {
            Some(plain) if valid_final_chunk(chunks - 1, plain) => {}
            _ => return Err(BackupError::Authentication),
        }
        let plain_len = (chunks - 1) * self.chunk_size as u64 + (last_slot - TAG_LEN) as u64;
        Ok(Layout { frame: self, chunks, last_slot, plain_len })
    }
}

/// A contiguous run of chunks, laid out as on disk: each chunk followed by its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    frame: Frame,
    first: u64,
    count: usize,
    /// Bytes including tags.
    bytes: usize,
    /// The run ends with the stream's final chunk.
    last: bool,
}

impl Run {
    /// The chunk size of the run's stream.
    pub(crate) fn frame(&self) -> Frame {
        self.frame
    }

    /// The index and final flag of chunk `i` of the run (the one place they are computed).
    pub(crate) fn chunk(&self, i: usize) -> ChunkId {
        ChunkId { index: self.first + i as u64, last: self.last && i + 1 == self.count }
    }

    /// Number of chunks (at least one).
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Bytes of the run including tags.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the run ends with the stream's final chunk.
    pub(crate) fn is_final(&self) -> bool {
        self.last
    }

    /// The index of the chunk after the run.
    pub(crate) fn next(&self) -> u64 {
        self.first + self.count as u64
    }

    /// The plaintext position of the run's first byte.
    pub(crate) fn plain_start(&self) -> u64 {
        self.first * self.frame.chunk_size as u64
    }

    /// One past the plaintext position of the run's last byte.
    pub(crate) fn plain_end(&self) -> u64 {
        self.plain_start() + (self.bytes - self.count * TAG_LEN) as u64
    }

    /// Where the plaintext of chunk `j` of the run sits in the run's buffer.
    pub(crate) fn chunk_plain(&self, j: usize) -> Range<usize> {
        let slot = self.frame.slot_len();
        let start = j * slot;
        let end = if j + 1 == self.count { self.bytes.saturating_sub(TAG_LEN) } else { start + self.frame.chunk_size };
        start..end.max(start)
    }

    /// Where the plaintext from position `pos` to the end of its chunk sits in the run's
    /// buffer, if the run holds `pos`.
    pub(crate) fn plain_at(&self, pos: u64) -> Option<Range<usize>> {
        if pos < self.plain_start() || pos >= self.plain_end() {
            return None;
        }
        let rel = usize::try_from(pos - self.plain_start()).ok()?;
        let chunk = self.chunk_plain(rel / self.frame.chunk_size);
        Some(chunk.start + rel % self.frame.chunk_size..chunk.end)
    }
}

/// The chunks of a stream whose body length is known (and, once its final chunk verified,
/// trusted): random access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    frame: Frame,
    chunks: u64,
    /// Bytes of the final chunk including its tag.
    last_slot: usize,
    plain_len: u64,
}

impl Layout {
    /// The plaintext length.
    pub(crate) fn plain_len(&self) -> u64 {
        self.plain_len
    }

    /// The index of the final chunk.
    pub(crate) fn final_chunk(&self) -> u64 {
        self.chunks - 1
    }

    /// The offset of chunk `index` from the start of the body.
    pub(crate) fn offset(&self, index: u64) -> Option<u64> {
        index.checked_mul(self.frame.slot_len() as u64)
    }

    /// The run of at most `max` chunks from chunk `first` on.
    ///
    /// Errors: [`BackupError::Authentication`] if the stream has no chunk `first`.
    pub(crate) fn run_at(&self, first: u64, max: usize) -> Result<Run, BackupError> {
        let left = self.chunks.checked_sub(first).filter(|n| *n > 0).ok_or(BackupError::Authentication)?;
        let count = usize::try_from(left).unwrap_or(usize::MAX).min(max.max(1));
        let last = first + count as u64 == self.chunks;
        let tail = if last { self.last_slot } else { self.frame.slot_len() };
        Ok(Run { frame: self.frame, first, count, bytes: (count - 1) * self.frame.slot_len() + tail, last })
    }
}

/// What [`LookAhead::fill`] read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Filled {
    /// Bytes placed in the buffer.
    pub(crate) len: usize,
    /// The input ends right after them.
    pub(crate) ends: bool,
}

/// A sequential input that reads one byte ahead, to learn whether the bytes read so far
/// end it.
#[derive(Debug)]
pub(crate) struct LookAhead<R> {
    input: R,
    /// A byte read ahead, which comes next.
    held: Option<u8>,
    /// Bytes taken from the input, the held byte included.
    consumed: u64,
}

impl<R: Read> LookAhead<R> {
    pub(crate) fn new(input: R) -> Self {
        Self { input, held: None, consumed: 0 }
    }

    /// Fills `buf` (the held byte first) and learns whether the input ends right after:
    /// a short fill ends it; after a full one, one byte is read ahead and held. This is the
    /// finality decision for every sequential path: the bytes are the final chunk (or
    /// batch) exactly when `ends`.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) -> io::Result<Filled> {
        let mut len = 0;
        if let Some(first) = buf.first_mut()
            && let Some(b) = self.held.take()
        {
            *first = b;
            len = 1;
        }
        let n = read_full(&mut self.input, buf.get_mut(len..).unwrap_or_default())?;
        len += n;
        self.consumed += n as u64;
        let ends = if len < buf.len() {
            true
        } else if self.held.is_some() {
            false
        } else {
            let mut one = [0u8; 1];
            let k = read_full(&mut self.input, &mut one)?;
            self.consumed += k as u64;
            self.held = (k == 1).then_some(one[0]);
            k == 0
        };
        Ok(Filled { len, ends })
    }

    /// Bytes taken from the input so far (including a byte held ahead).
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    pub(crate) fn input_mut(&mut self) -> &mut R {
        &mut self.input
    }

    /// The input and the bytes taken from it (a held byte is dropped).
    pub(crate) fn into_parts(self) -> (R, u64) {
        (self.input, self.consumed)
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
pub(crate) fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match input.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k.min(rest.len()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CS: usize = 1 << 16;
    const SLOT: usize = CS + TAG_LEN;

    #[test]
    fn layout() {
        let f = Frame::new(CS);
        let slot = SLOT as u64;
        assert!(f.layout(0).is_err());
        assert!(f.layout(15).is_err());
        let empty = f.layout(16).unwrap();
        assert_eq!((empty.chunks, empty.last_slot, empty.plain_len), (1, 16, 0));
        assert_eq!(f.layout(17).unwrap().plain_len, 1);
        let one = f.layout(slot).unwrap();
        assert_eq!((one.chunks, one.last_slot, one.plain_len), (1, 65552, 65536));
        for extra in 1..=16 {
            assert!(f.layout(slot + extra).is_err(), "{extra}");
        }
        assert_eq!(f.layout(slot + 17).unwrap().plain_len, 65537);
        assert_eq!(f.layout(MAX_CHUNKS * slot).unwrap().chunks, MAX_CHUNKS);
        assert!(f.layout(MAX_CHUNKS * slot + 17).is_err());
        // Runs: the one that reaches the end is flagged final on its last chunk only.
        let l = f.layout(2 * slot + 20).unwrap();
        let r = l.run_at(1, 2).unwrap();
        assert_eq!((r.count(), r.bytes(), r.is_final()), (2, SLOT + 20, true));
        assert_eq!((r.chunk(0), r.chunk(1)), (ChunkId { index: 1, last: false }, ChunkId { index: 2, last: true }));
        assert_eq!((r.plain_start(), r.plain_end()), (CS as u64, 2 * CS as u64 + 4));
        assert!(!l.run_at(0, 2).unwrap().is_final());
        assert!(l.run_at(3, 2).is_err());
        assert_eq!(l.offset(2), Some(2 * slot));
    }

    #[test]
    fn received_runs() {
        let f = Frame::new(CS);
        // The input ends where a chunk should start: the final chunk is missing.
        assert!(matches!(f.received(0, 0, true), Err(BackupError::Authentication)));
        // The empty stream: chunk 0 with only a tag; any later final chunk holds a byte.
        assert!(f.received(0, TAG_LEN, true).unwrap().chunk(0).is_final());
        assert!(f.received(3, TAG_LEN, true).is_err());
        assert!(f.received(3, TAG_LEN + 1, true).is_ok());
        assert!(f.received(0, SLOT + TAG_LEN, true).is_err());
        assert!(f.received(0, TAG_LEN - 1, true).is_err());
        let r = f.received(5, 2 * SLOT, false).unwrap();
        assert_eq!((r.next(), r.chunk(1)), (7, ChunkId { index: 6, last: false }));
        assert!(f.received(MAX_CHUNKS - 2, 2 * SLOT, true).is_ok());
        assert!(f.received(MAX_CHUNKS - 1, 2 * SLOT, true).is_err());
    }

    #[test]
    fn sealed_runs() {
        let f = Frame::new(CS);
        let empty = f.sealing(0, 0, true).unwrap();
        assert_eq!((empty.count(), empty.bytes(), empty.chunk(0)), (1, TAG_LEN, ChunkId { index: 0, last: true }));
        assert!(matches!(f.sealing(4, 0, true), Err(BackupError::Internal(_))));
        let r = f.sealing(2, 2 * CS + 1, true).unwrap();
        assert_eq!((r.count(), r.bytes(), r.chunk(2).is_final(), r.chunk(1).is_final()), (3, 2 * CS + 49, true, false));
        assert!(matches!(f.sealing(0, CS + 1, false), Err(BackupError::Internal(_))));
        assert!(f.sealing(MAX_CHUNKS - 1, CS, true).is_ok());
        assert!(matches!(f.sealing(MAX_CHUNKS - 1, CS + 1, true), Err(BackupError::TooLong)));
        assert!(matches!(f.sealing(MAX_CHUNKS, 0, true), Err(BackupError::TooLong)));
        assert_eq!(f.slot_offset(CS + 3), SLOT + 3);
        assert_eq!(r.plain_at(3 * CS as u64 + 5), Some(SLOT + 5..SLOT + CS));
        assert_eq!(r.plain_at(4 * CS as u64), Some(2 * SLOT..2 * SLOT + 1));
        assert_eq!(r.plain_at(4 * CS as u64 + 1), None);
    }

    #[test]
    fn look_ahead_decides_finality() {
        let data: Vec<u8> = (0..10u8).collect();
        let mut l = LookAhead::new(&data[..]);
        let mut buf = [0u8; 4];
        let f = l.fill(&mut buf).unwrap();
        assert_eq!((f.len, f.ends, buf), (4, false, [0, 1, 2, 3]));
        assert_eq!(l.consumed(), 5, "one byte held ahead");
        let f = l.fill(&mut buf).unwrap();
        assert_eq!((f.len, f.ends, buf), (4, false, [4, 5, 6, 7]));
        // Exactly the rest: full, and the look-ahead finds the end.
        let mut two = [0u8; 2];
        let f = l.fill(&mut two).unwrap();
        assert_eq!((f.len, f.ends, two), (2, true, [8, 9]));
        assert_eq!(l.fill(&mut buf).unwrap().len, 0);
        // An empty buffer only asks whether more follows, and keeps what it peeked.
        let mut l = LookAhead::new(&data[..1]);
        assert!(!l.fill(&mut []).unwrap().ends);
        assert!(!l.fill(&mut []).unwrap().ends);
        let f = l.fill(&mut buf).unwrap();
        assert_eq!((f.len, f.ends, buf[0]), (1, true, 0));
    }
}
