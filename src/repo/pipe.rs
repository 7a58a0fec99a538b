//! A bounded in-memory pipe from a [`BackupWriter`](crate::BackupWriter) to an object
//! store's `put_new` (which reads its body): the stream is uploaded as it is encrypted,
//! never buffered whole. The writing side hashes and counts the bytes and keeps the header.
//!
//! The reading side ends cleanly only after [`PipeWriter::finish`]: if the writer is dropped
//! unfinished (encryption failed, the producer failed, the caller gave up), the reader
//! returns an error, so the store discards the partial object instead of storing it.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use sha2::{Digest, Sha256};

/// Bytes gathered before a message is sent.
const MESSAGE: usize = 256 * 1024;
/// Messages in flight (memory: about `DEPTH * MESSAGE`).
const DEPTH: usize = 8;
/// How much of the stream's start is kept (a version 2 header is at most 2395 bytes).
pub(crate) const HEAD_LEN: usize = 4096;

enum Msg {
    Data(Vec<u8>),
    End,
}

/// What the writer saw: SHA-256, length and the first [`HEAD_LEN`] bytes.
pub(crate) struct Written {
    pub(crate) digest: [u8; 32],
    pub(crate) size: u64,
    pub(crate) head: Vec<u8>,
}

/// The writing end.
pub(crate) struct PipeWriter {
    tx: SyncSender<Msg>,
    buf: Vec<u8>,
    hash: Sha256,
    size: u64,
    head: Vec<u8>,
}

/// The reading end.
pub(crate) struct PipeReader {
    rx: Receiver<Msg>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

/// A new pipe.
pub(crate) fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(DEPTH);
    let w = PipeWriter { tx, buf: Vec::with_capacity(MESSAGE), hash: Sha256::new(), size: 0, head: Vec::new() };
    (w, PipeReader { rx, cur: Vec::new(), pos: 0, done: false })
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the object store stopped reading the stream")
}

impl PipeWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(MESSAGE));
            self.tx.send(Msg::Data(full)).map_err(|_| closed())?;
        }
        Ok(())
    }

    /// Sends what is left and the end marker: the reader now ends cleanly.
    pub(crate) fn finish(mut self) -> io::Result<Written> {
        self.send_buf()?;
        self.tx.send(Msg::End).map_err(|_| closed())?;
        let hash = std::mem::take(&mut self.hash);
        Ok(Written { digest: hash.finalize().into(), size: self.size, head: std::mem::take(&mut self.head) })
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hash.update(data);
        self.size = self.size.saturating_add(data.len() as u64);
        let room = HEAD_LEN.saturating_sub(self.head.len());
        self.head.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
        self.buf.extend_from_slice(data);
        if self.buf.len() >= MESSAGE {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(rest) = self.cur.get(self.pos..).filter(|r| !r.is_empty()) {
                let n = rest.len().min(out.len());
                out.get_mut(..n).unwrap_or_default().copy_from_slice(rest.get(..n).unwrap_or_default());
                self.pos += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Msg::Data(d)) => {
                    self.cur = d;
                    self.pos = 0;
                }
                Ok(Msg::End) => self.done = true,
                Err(_) => return Err(io::Error::other("the backup stream was abandoned before it was complete")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_stream_arrives_whole_abandoned_one_fails() {
        let (mut w, mut r) = pipe();
        let t = std::thread::spawn(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        });
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        w.write_all(&data).unwrap();
        let written = w.finish().unwrap();
        assert_eq!(t.join().unwrap().unwrap(), data);
        assert_eq!(written.size, 1_000_000);
        assert_eq!(written.digest, <[u8; 32]>::from(Sha256::digest(&data)));
        assert_eq!(written.head, &data[..HEAD_LEN]);

        let (mut w, mut r) = pipe();
        let t = std::thread::spawn(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v)
        });
        w.write_all(&data).unwrap();
        drop(w);
        assert!(t.join().unwrap().is_err());
    }
}
