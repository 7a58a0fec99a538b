//! Where chunks are encrypted and decrypted: the calling thread, the global rayon pool, or
//! a pool of a chosen size, in batches of whole chunks laid out as on disk (each chunk is
//! processed in place; the result does not depend on the number of threads).
//!
//! The streaming writer and reader keep two batch buffers and [`Exec::overlap`] them: while
//! the pool encrypts (or verifies) one batch, the calling thread writes the previous batch
//! out and reads the next one in. Memory in flight is two batches (eight chunks per thread),
//! allocated once per stream; when a stream ends its buffers are wiped and kept (up to
//! [`SPARE_BYTES`] in all) for the next stream.

use std::sync::{Mutex, PoisonError, mpsc};

use rayon::prelude::*;

use crate::error::BackupError;

/// Wiped batch buffers kept for the next stream, at most this many bytes in all (a new
/// buffer costs a page fault per 4 KiB page on first touch, about 1 us each on a VM).
pub(crate) const SPARE_BYTES: usize = 64 << 20;

static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of `len` bytes: a kept one if one has that length (holding zeros or ciphertext,
/// never plaintext), else a new zeroed one.
pub(crate) fn take_buffer(len: usize) -> Vec<u8> {
    let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    match spare.iter().position(|b| b.len() == len) {
        Some(i) => spare.swap_remove(i),
        None => {
            drop(spare);
            vec![0u8; len]
        }
    }
}

/// Keeps `buf` for a later stream if [`SPARE_BYTES`] allows (else frees it). The caller
/// must have wiped every byte of plaintext in it first (ciphertext may stay: it is what the
/// stream writes out anyway).
pub(crate) fn give_buffer(buf: Vec<u8>) {
    if buf.is_empty() {
        return;
    }
    let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    let held: usize = spare.iter().map(Vec::len).sum();
    if held + buf.len() <= SPARE_BYTES {
        spare.push(buf);
    }
}

/// The most bytes a batch buffer holds (unless a single chunk is larger): bounds memory with
/// large chunks on machines with many cores (a stream holds two batches).
const MAX_BATCH_BYTES: usize = 256 << 20;

/// Whether a kept buffer of length `len` contains `needle` (tests: no plaintext is kept).
#[cfg(test)]
pub(crate) fn spare_contains(len: usize, needle: &[u8]) -> bool {
    let spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    spare.iter().filter(|b| b.len() == len).any(|b| b.windows(needle.len()).any(|w| w == needle))
}

/// How many kept buffers have length `len` (tests).
#[cfg(test)]
pub(crate) fn spare_count(len: usize) -> usize {
    SPARE.lock().unwrap_or_else(PoisonError::into_inner).iter().filter(|b| b.len() == len).count()
}

/// How chunks are processed.
pub(crate) enum Exec {
    /// On the calling thread.
    Inline,
    /// On the global rayon pool.
    Global,
    /// On a pool of its own.
    Pool(rayon::ThreadPool),
}

impl Exec {
    /// `threads`: 0 = all cores (the global pool), 1 = the calling thread, n = a pool of n.
    pub(crate) fn new(threads: usize) -> Result<Self, BackupError> {
        Ok(match threads {
            0 if rayon::current_num_threads() > 1 => Exec::Global,
            0 | 1 => Exec::Inline,
            n => Exec::Pool(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("atrest-backup-{i}"))
                    .build()
                    .map_err(std::io::Error::other)?,
            ),
        })
    }

    /// The number of threads that work on a batch.
    pub(crate) fn threads(&self) -> usize {
        match self {
            Exec::Inline => 1,
            Exec::Global => rayon::current_num_threads(),
            Exec::Pool(p) => p.current_num_threads(),
        }
    }

    /// How many chunks of `slot_len` bytes a batch holds: four per thread (one chunk on a
    /// single thread), within [`MAX_BATCH_BYTES`]. Each batch ends in a wait for its slowest
    /// chunk; four chunks per thread keep that wait short next to the work, and the two
    /// batches a stream holds stay within eight chunks per thread.
    pub(crate) fn batch_chunks(&self, slot_len: usize) -> usize {
        let wanted = match self.threads() {
            1 => 1,
            n => n.saturating_mul(4),
        };
        wanted.min(MAX_BATCH_BYTES / slot_len.max(1)).max(1)
    }

    /// Runs `work` on the pool while the calling thread runs `io`, and returns both results
    /// once both are done. `io` need not be `Send` (it may hold the caller's reader or
    /// writer). On the calling-thread executor the two run one after the other.
    ///
    /// Inside `work`, [`Exec::for_each_slot`] runs on the same pool. No thread ever blocks
    /// waiting for a pool it belongs to: `in_place_scope` helps with pool work while it waits.
    pub(crate) fn overlap<T>(
        &self,
        work: impl FnOnce() -> Result<(), BackupError> + Send,
        io: impl FnOnce() -> T,
    ) -> (Result<(), BackupError>, T) {
        // `None` only if `work` panicked, which in_place_scope re-raises before returning.
        let mut done: Option<Result<(), BackupError>> = None;
        let t = match self {
            Exec::Inline => {
                done = Some(work());
                io()
            }
            Exec::Global => rayon::in_place_scope(|s| {
                s.spawn(|_| done = Some(work()));
                io()
            }),
            Exec::Pool(pool) => pool.in_place_scope(|s| {
                s.spawn(|_| done = Some(work()));
                io()
            }),
        };
        (done.unwrap_or(Err(BackupError::Internal("a pool job did not run"))), t)
    }

    /// Whether [`Exec::stream`] can run here: a pool of more than one thread that the
    /// calling thread is not part of (a worker of the global pool blocking on its own pool
    /// could deadlock; such callers take the batch path, whose waits help the pool).
    pub(crate) fn can_stream(&self) -> bool {
        match self {
            Exec::Inline => true,
            Exec::Global => rayon::current_thread_index().is_none(),
            Exec::Pool(pool) => pool.current_thread_index().is_none(),
        }
    }

    /// An ordered pipeline of units (chunks) without a barrier between batches: the calling
    /// thread prepares units with `next` (reading input into a free slot, say), the pool runs
    /// `work` on up to `slots.len()` of them at once, and the calling thread hands each
    /// finished unit to `done` in the order `next` made them (writing it out, say), after
    /// which its slot is free again. So the pool always has queued work while the calling
    /// thread does I/O, and a slow chunk delays only its own turn to be written.
    ///
    /// `next` returns `None` when there is nothing more. Stops at the first error (from any
    /// of the three, in order of units) after the units in flight finish. Needs
    /// [`Exec::can_stream`]. Nothing is allocated per unit: the pool runs one long-lived job
    /// per thread fed through bounded channels.
    pub(crate) fn stream<'s, T, N, W, D>(
        &self,
        slots: Vec<&'s mut [u8]>,
        mut next: N,
        work: W,
        mut done: D,
    ) -> Result<(), BackupError>
    where
        T: Send,
        N: FnMut(&'s mut [u8]) -> Result<Option<(T, &'s mut [u8])>, BackupError>,
        W: Fn(&T, &mut [u8]) -> Result<(), BackupError> + Sync,
        D: FnMut(T, &mut [u8]) -> Result<(), BackupError>,
    {
        let workers = match self {
            Exec::Inline => {
                // One unit at a time on this thread.
                let mut slots = slots;
                while let Some(slot) = slots.pop() {
                    let Some((t, slot)) = next(slot)? else { return Ok(()) };
                    work(&t, slot)?;
                    done(t, slot)?;
                    slots.push(slot);
                }
                return Ok(());
            }
            _ => self.threads(),
        };
        let depth = slots.len().max(1);
        let (to_pool, from_caller) = mpsc::sync_channel::<(usize, T, &'s mut [u8])>(depth);
        let (to_caller, from_pool) = mpsc::sync_channel::<(usize, Finished<'s, T>)>(depth);
        let from_caller = Mutex::new(from_caller);
        let (work, from_caller) = (&work, &from_caller);
        in_scope(self, move |s| {
            for _ in 0..workers {
                let to_caller = to_caller.clone();
                s.spawn(move |_| {
                    loop {
                        let unit = from_caller.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok((seq, t, slot)) = unit else { return };
                        let r = work(&t, slot);
                        if to_caller.send((seq, (t, slot, r))).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(to_caller);
            // The caller's side: feed the pool, then write finished units in order.
            let mut free = slots;
            let mut finished: Vec<Option<Finished<'s, T>>> = (0..depth).map(|_| None).collect();
            let (mut made, mut written, mut more) = (0usize, 0usize, true);
            let mut failure = None;
            let result = loop {
                while more && let Some(slot) = free.pop() {
                    match next(slot) {
                        Ok(Some((t, slot))) => {
                            if to_pool.send((made, t, slot)).is_err() {
                                more = false;
                            } else {
                                made += 1;
                            }
                        }
                        Ok(None) => more = false,
                        Err(e) => {
                            // Units made before the error are still handed to `done` first.
                            failure = Some(e);
                            more = false;
                        }
                    }
                }
                if made == written {
                    break failure.map_or(Ok(()), Err);
                }
                let at = written % depth;
                while finished.get(at).is_some_and(Option::is_none) {
                    let Ok((seq, unit)) = from_pool.recv() else { break };
                    if let Some(place) = finished.get_mut(seq % depth) {
                        *place = Some(unit);
                    }
                }
                let Some((t, slot, r)) = finished.get_mut(at).and_then(Option::take) else {
                    break Err(BackupError::Internal("the pool lost a unit"));
                };
                written += 1;
                if let Err(e) = r.and_then(|()| done(t, slot)) {
                    break Err(e);
                }
                free.push(slot);
            };
            // Workers finish the units they hold (their results have room in the channel),
            // then see the closed queue and return; the scope waits for them.
            drop(to_pool);
            drop(from_pool);
            result
        })
    }

    /// Calls `f(i, src_i, dst_i)` for the `src_len`-byte pieces of `src` and the matching
    /// `dst_len`-byte pieces of `dst` (the last ones may be shorter), in parallel when there
    /// is more than one thread. Used to encrypt or decrypt from one buffer into another
    /// without copying first.
    pub(crate) fn for_each_pair<F>(
        &self,
        src: &[u8],
        src_len: usize,
        dst: &mut [u8],
        dst_len: usize,
        f: F,
    ) -> Result<(), BackupError>
    where
        F: Fn(usize, &[u8], &mut [u8]) -> Result<(), BackupError> + Send + Sync,
    {
        let (src_len, dst_len) = (src_len.max(1), dst_len.max(1));
        let seq = |src: &[u8], dst: &mut [u8]| {
            src.chunks(src_len).zip(dst.chunks_mut(dst_len)).enumerate().try_for_each(|(i, (a, b))| f(i, a, b))
        };
        let par = |src: &[u8], dst: &mut [u8]| {
            src.par_chunks(src_len).zip(dst.par_chunks_mut(dst_len)).enumerate().try_for_each(|(i, (a, b))| f(i, a, b))
        };
        match self {
            Exec::Inline => seq(src, dst),
            _ if dst.len() <= dst_len => seq(src, dst),
            Exec::Global => par(src, dst),
            Exec::Pool(pool) => pool.install(|| par(src, dst)),
        }
    }

    /// Calls `f(i, slot)` for each consecutive `slot_len`-byte piece of `buf` (the last one
    /// may be shorter), in parallel when there is more than one thread. Stops at an error
    /// (with several threads, other pieces may still have been processed).
    pub(crate) fn for_each_slot<F>(&self, buf: &mut [u8], slot_len: usize, f: F) -> Result<(), BackupError>
    where
        F: Fn(usize, &mut [u8]) -> Result<(), BackupError> + Send + Sync,
    {
        let slot_len = slot_len.max(1);
        let par = |buf: &mut [u8]| buf.par_chunks_mut(slot_len).enumerate().try_for_each(|(i, s)| f(i, s));
        match self {
            Exec::Inline => buf.chunks_mut(slot_len).enumerate().try_for_each(|(i, s)| f(i, s)),
            // A single slot gains nothing from another thread.
            _ if buf.len() <= slot_len => buf.chunks_mut(slot_len).enumerate().try_for_each(|(i, s)| f(i, s)),
            Exec::Global => par(buf),
            Exec::Pool(pool) => pool.install(|| par(buf)),
        }
    }
}

/// A unit back from the pool: its description, its slot, and how `work` went.
type Finished<'s, T> = (T, &'s mut [u8], Result<(), BackupError>);

/// Runs `op` on the calling thread in a scope whose spawned jobs run on `exec`'s pool (the
/// global pool unless `exec` has its own).
fn in_scope<'scope, R>(exec: &Exec, op: impl FnOnce(&rayon::Scope<'scope>) -> R) -> R {
    match exec {
        Exec::Pool(pool) => pool.in_place_scope(op),
        _ => rayon::in_place_scope(op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_buffers_are_reused_and_bounded() {
        // A length no other test uses, so parallel tests do not take these buffers.
        let len = 3 * 4096 + 5;
        let mut b = take_buffer(len);
        assert_eq!(b.len(), len);
        assert!(b.iter().all(|x| *x == 0), "a new buffer is zeroed");
        b.fill(0xaa);
        let at = b.as_ptr();
        give_buffer(b);
        let b = take_buffer(len);
        assert_eq!((b.len(), b.as_ptr()), (len, at), "the kept buffer is reused");
        // Over the bound: not kept.
        give_buffer(vec![1u8; SPARE_BYTES + 1]);
        let held: usize = SPARE.lock().unwrap().iter().map(Vec::len).sum();
        assert!(held <= SPARE_BYTES);
        give_buffer(b);
    }

    /// The pipeline hands units to `done` in the order `next` made them, whatever order the
    /// pool finishes them in; stops at the first error in unit order; reuses its slots.
    #[test]
    fn stream_keeps_order_and_stops_at_the_first_error() {
        for exec in [Exec::new(1).unwrap(), Exec::new(2).unwrap(), Exec::new(3).unwrap(), Exec::new(0).unwrap()] {
            assert!(exec.can_stream());
            let run = |units: usize, fail_work: Option<usize>, fail_next: Option<usize>| {
                let mut buf = [0u8; 4 * 8];
                let slots: Vec<&mut [u8]> = buf.chunks_mut(8).collect();
                let (mut made, mut seen) = (0usize, Vec::new());
                let r = exec.stream(
                    slots,
                    |slot| {
                        if Some(made) == fail_next {
                            return Err(BackupError::TooLong);
                        }
                        if made == units {
                            return Ok(None);
                        }
                        slot.fill(u8::try_from(made).unwrap());
                        made += 1;
                        Ok(Some((made - 1, slot)))
                    },
                    |&i, slot| {
                        // Uneven work, so units finish out of order on a pool.
                        std::thread::sleep(std::time::Duration::from_micros(((i * 7919) % 5) as u64 * 200));
                        assert!(slot.iter().all(|b| usize::from(*b) == i), "the unit's own slot");
                        if Some(i) == fail_work { Err(BackupError::Authentication) } else { Ok(()) }
                    },
                    |i, _| {
                        seen.push(i);
                        Ok(())
                    },
                );
                (r, seen)
            };
            let (r, seen) = run(23, None, None);
            assert!(r.is_ok());
            assert_eq!(seen, (0..23).collect::<Vec<_>>(), "in order, each once");
            let (r, seen) = run(23, Some(9), None);
            assert!(matches!(r, Err(BackupError::Authentication)));
            assert_eq!(seen, (0..9).collect::<Vec<_>>(), "nothing after the failed unit");
            let (r, seen) = run(23, None, Some(11));
            assert!(matches!(r, Err(BackupError::TooLong)));
            assert_eq!(seen, (0..11).collect::<Vec<_>>(), "units made before the error are done first");
            let (r, seen) = run(0, None, None);
            assert!(r.is_ok() && seen.is_empty());
        }
    }

    #[test]
    fn slots_are_visited_once_with_their_index() {
        for exec in [Exec::new(1).unwrap(), Exec::new(2).unwrap(), Exec::new(0).unwrap()] {
            let mut buf = vec![0u8; 10 * 7 + 3];
            exec.for_each_slot(&mut buf, 7, |i, s| {
                s.fill(u8::try_from(i).unwrap() + 1);
                Ok(())
            })
            .unwrap();
            for (i, b) in buf.iter().enumerate() {
                assert_eq!(usize::from(*b), i / 7 + 1);
            }
            let e =
                exec.for_each_slot(&mut buf, 7, |i, _| if i == 5 { Err(BackupError::Authentication) } else { Ok(()) });
            assert!(matches!(e, Err(BackupError::Authentication)));
        }
        assert_eq!(Exec::new(1).unwrap().batch_chunks(1 << 20), 1);
        for exec in [Exec::new(1).unwrap(), Exec::new(2).unwrap(), Exec::new(0).unwrap()] {
            let src: Vec<u8> = (0..10 * 5 + 2u8).collect();
            let mut dst = vec![0u8; 10 * 7 + 4];
            exec.for_each_pair(&src, 5, &mut dst, 7, |i, a, b| {
                assert_eq!(a.len() + 2, b.len());
                b[..a.len()].copy_from_slice(a);
                b[a.len()..].fill(u8::try_from(i).unwrap());
                Ok(())
            })
            .unwrap();
            for (i, piece) in dst.chunks(7).enumerate() {
                let n = piece.len() - 2;
                assert_eq!(&piece[..n], &src[i * 5..i * 5 + n]);
                assert!(piece[n..].iter().all(|b| usize::from(*b) == i));
            }
            // Work and I/O both run, and each result comes back.
            let mut seen = Vec::new();
            let (r, t) = exec.overlap(
                || Err(BackupError::Authentication),
                || {
                    seen.push(1);
                    7
                },
            );
            assert!(matches!(r, Err(BackupError::Authentication)));
            assert_eq!((t, seen), (7, vec![1]));
        }
        assert_eq!(Exec::new(3).unwrap().batch_chunks(1 << 20), 12);
        assert_eq!(Exec::new(16).unwrap().batch_chunks((16 << 20) + 16), 15);
    }
}
