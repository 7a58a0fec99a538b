//! Where new XAES-256-GCM nonce prefixes come from: a per-thread buffer of OS randomness,
//! refilled in bulk, so that a cold tenant key's first seal makes no system call.
//!
//! Each thread keeps [`POOL_PREFIXES`] prefixes' worth of bytes from the operating system's
//! CSPRNG (`getrandom`, one call per refill) and hands each 12-byte slice out once, zeroing
//! it as it goes. The bytes are the same OS randomness a direct call would return, so each
//! prefix is uniformly random and independent of every other; the analysis in the `record`
//! module (prefix collisions are a 96-bit birthday event) is unchanged.
//!
//! The one new hazard is a fork: a child process inherits a copy of the forking thread's
//! buffer, and the parent and the child would then hand out the same prefixes. The buffer
//! therefore carries a fork check made when it was filled (the same check as the sealer's,
//! a `pthread_atfork` counter, or the process id where the handler cannot be registered);
//! a buffer filled before a fork is discarded and refilled before any prefix is taken from
//! it. Buffers are per thread, so two threads never take the same bytes.

use std::cell::RefCell;

use super::sealer::ForkCheck;
use crate::error::RngError;
use crate::secret::fill_random;

/// How many prefixes one refill draws (one `getrandom` call per 64 new record keys).
pub(crate) const POOL_PREFIXES: usize = 64;

const POOL_BYTES: usize = POOL_PREFIXES * 12;

struct Pool {
    /// Made when `bytes` was filled; `None` before the first fill.
    fork: Option<ForkCheck>,
    bytes: [u8; POOL_BYTES],
    /// How many bytes have been handed out.
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { fork: None, bytes: [0; POOL_BYTES], used: POOL_BYTES }) };
}

/// A fresh random 96-bit nonce prefix, never handed out before in this process or a parent.
///
/// # Errors
/// [`RngError`] if the OS CSPRNG fails on a refill.
pub(crate) fn next_prefix() -> Result<[u8; 12], RngError> {
    POOL.with_borrow_mut(|pool| {
        let stale = pool.fork.as_ref().is_none_or(ForkCheck::forked);
        if stale || pool.used + 12 > POOL_BYTES {
            pool.used = POOL_BYTES;
            // The check is made before the bytes are drawn: a fork in between is detected.
            let fork = ForkCheck::new();
            fill_random(&mut pool.bytes)?;
            pool.fork = Some(fork);
            pool.used = 0;
        }
        let mut out = [0u8; 12];
        if let Some(src) = pool.bytes.get_mut(pool.used..pool.used + 12) {
            out.copy_from_slice(src);
            src.fill(0);
        }
        pool.used += 12;
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_distinct_across_refills_and_threads() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * POOL_PREFIXES + 1 {
            assert!(seen.insert(next_prefix().unwrap()));
        }
        let other: Vec<[u8; 12]> =
            std::thread::spawn(|| (0..POOL_PREFIXES).map(|_| next_prefix().unwrap()).collect()).join().unwrap();
        for p in other {
            assert!(seen.insert(p));
        }
        // Handed-out bytes are zeroed in the buffer.
        POOL.with_borrow(|pool| {
            assert!(pool.bytes[..pool.used].iter().all(|b| *b == 0));
        });
    }
}
