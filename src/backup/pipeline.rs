//! Where chunks are encrypted and decrypted: the calling thread, the global rayon pool, or
//! a pool of a chosen size. Work is handed over in batches of whole chunks laid out exactly
//! as on disk, so each chunk is processed in place and the result does not depend on the
//! number of threads.

use rayon::prelude::*;

use crate::error::BackupError;

/// The most bytes a batch buffer holds (unless a single chunk is larger): bounds memory with
/// large chunks on machines with many cores.
const MAX_BATCH_BYTES: usize = 256 << 20;

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

    /// How many chunks of `slot_len` bytes a batch holds: two per thread (one chunk on a
    /// single thread), within [`MAX_BATCH_BYTES`].
    pub(crate) fn batch_chunks(&self, slot_len: usize) -> usize {
        let wanted = match self.threads() {
            1 => 1,
            n => n.saturating_mul(2),
        };
        wanted.min(MAX_BATCH_BYTES / slot_len.max(1)).max(1)
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

impl core::fmt::Debug for Exec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Exec {{ threads: {} }}", self.threads())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(Exec::new(3).unwrap().batch_chunks(1 << 20), 6);
        assert_eq!(Exec::new(16).unwrap().batch_chunks((16 << 20) + 16), 15);
    }
}
