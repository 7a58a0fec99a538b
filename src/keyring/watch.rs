//! The watcher: a background thread per keyring handle with a store, so that changes made
//! elsewhere reach the handle within its staleness bound without any cost per record.
//!
//! Every half bound it asks the store for a cheap fingerprint (a `stat` of the file; a
//! notification or a revision query in PostgreSQL) and re-reads the document only when the
//! fingerprint changed. While the store cannot be read (or offers a document the handle must
//! refuse), the handle serves its last verified state for at most `max_unavailable`, then
//! refuses keys until the store answers again (a check that panics counts as one that
//! failed; the thread goes on).
//!
//! A second thread, the watchdog, never calls the store: every half bound it marks the
//! handle unavailable if a store call of the watcher has been running for longer than
//! `max_unavailable`, or if no check has answered for longer than that plus one interval
//! while none is running (no watcher). So a store call that hangs (a file system that
//! stopped answering, a database connection without a timeout) or a watcher that could not be
//! started cannot leave the handle serving its old state for ever: it fails closed as for an
//! unreadable store, and recovers when a check (or `reload()`) succeeds again. Both threads hold only
//! a weak reference: they end within one interval after the last handle of the keyring is
//! dropped (the watcher once its store call returns).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::store::Store;
use super::{Inner, Keyring, lock};

/// When the watcher's current store call began (`None` between calls); the watchdog reads it.
type Calling = Arc<Mutex<Option<Instant>>>;

/// Starts the watcher and the watchdog of `inner`'s store, if it has one.
pub(super) fn spawn(inner: &Arc<Inner>) {
    let Some(store) = inner.store.clone() else { return };
    let calling = Calling::default();
    let interval = inner.options.staleness / 2;
    let id = hex::encode(inner.state.load().id.get(..4).unwrap_or_default());
    // Without a watcher the handle converges on its own changes and on `reload()`, and the
    // watchdog refuses keys once `max_unavailable` passes without either; without a
    // watchdog the watcher still applies every rule but the one for a hung store call.
    // Either failure is reported.
    let (weak, watched) = (Arc::downgrade(inner), calling.clone());
    if let Err(e) = std::thread::Builder::new()
        .name(format!("atrest-keyring-watch-{id}"))
        .spawn(move || run(&weak, store.as_ref(), interval, &watched))
    {
        tracing::error!(target: "atrest::audit", event = "keyring.watch_failed", error = %e);
    }
    #[cfg(test)]
    if inner.options.no_watchdog {
        return;
    }
    let weak = Arc::downgrade(inner);
    if let Err(e) = std::thread::Builder::new()
        .name(format!("atrest-keyring-watchdog-{id}"))
        .spawn(move || watchdog(&weak, interval, &calling))
    {
        tracing::error!(target: "atrest::audit", event = "keyring.watchdog_failed", error = %e);
    }
}

/// The watchdog's loop: fails the handle closed when a store call of the watcher has not
/// returned for longer than `max_unavailable`, or when no check has been made for longer than
/// that and one interval (no watcher), whatever the watcher is doing.
fn watchdog(weak: &Weak<Inner>, interval: Duration, calling: &Mutex<Option<Instant>>) {
    loop {
        std::thread::sleep(interval);
        let Some(inner) = weak.upgrade() else { return };
        let keyring = Keyring { inner };
        if keyring.inner.unavailable.load(Ordering::Acquire) {
            continue;
        }
        let limit = keyring.inner.options.max_unavailable;
        // Between two checks the last answer is up to one interval old, which is not the
        // store failing to answer (a limit shorter than the interval must not refuse keys
        // between two good checks); during a check, its own duration is what counts.
        let call = *lock(calling);
        let stuck = match call {
            Some(began) => {
                let running = began.elapsed();
                (running > limit).then(|| format!("a store call has not returned for {} s", running.as_secs()))
            }
            None => {
                let since = lock(&keyring.inner.last_ok).elapsed();
                (since > limit + interval).then(|| format!("the store has not been checked for {} s", since.as_secs()))
            }
        };
        if let Some(why) = stuck {
            keyring.mark_unavailable(&why);
        }
    }
}

/// Runs `f`, a store call, marked as in progress for the watchdog.
fn call<T>(calling: &Mutex<Option<Instant>>, f: impl FnOnce() -> T) -> T {
    *lock(calling) = Some(Instant::now());
    let r = f();
    *lock(calling) = None;
    r
}

fn run(weak: &Weak<Inner>, store: &dyn Store, interval: Duration, calling: &Mutex<Option<Instant>>) {
    let mut last = catch_unwind(AssertUnwindSafe(|| store.fingerprint())).ok().and_then(Result::ok);
    loop {
        // A panic in a store call (a bug in a store, its client library) fails that check
        // like an unreadable store does: the thread must not end, or the handle would serve
        // its last state until the watchdog stops it, and never learn of a change again.
        if catch_unwind(AssertUnwindSafe(|| store.wait(interval))).is_err() {
            std::thread::sleep(interval);
        }
        let Some(inner) = weak.upgrade() else { return };
        let keyring = Keyring { inner };
        let outcome = call(calling, || {
            catch_unwind(AssertUnwindSafe(|| {
                match store.fingerprint() {
                    Ok(fp) if Some(&fp) == last.as_ref() => Ok(()),
                    Ok(fp) => keyring.refresh().map(|_| last = Some(fp)),
                    Err(e) => Err(e),
                }
                .map_err(|e| e.to_string())
            }))
            .unwrap_or_else(|_| Err("the check panicked".to_owned()))
        });
        match outcome {
            Ok(()) => {
                keyring.mark_available();
                let revision = keyring.state().revision;
                if call(calling, || catch_unwind(AssertUnwindSafe(|| store.heartbeat(revision)))).is_err() {
                    tracing::warn!(target: "atrest::audit", event = "keyring.heartbeat_failed", keyring = %hex::encode(keyring.id()));
                }
            }
            Err(e) => keyring.mark_failed(&e),
        }
    }
}

impl Keyring {
    /// The store answered with a document this handle accepts (or nothing new).
    pub(super) fn mark_available(&self) {
        *lock(&self.inner.last_ok) = Instant::now();
        if self.inner.unavailable.swap(false, Ordering::AcqRel) {
            tracing::warn!(target: "atrest::audit", event = "keyring.available", keyring = %hex::encode(self.id()));
            self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The store could not be read, or offered a document the handle refuses: refused once
    /// that has lasted `max_unavailable` since the last good answer.
    fn mark_failed(&self, e: &str) {
        if lock(&self.inner.last_ok).elapsed() > self.inner.options.max_unavailable {
            self.mark_unavailable(e);
        } else {
            tracing::warn!(target: "atrest::audit", event = "keyring.refresh_failed", keyring = %hex::encode(self.id()), error = %e);
        }
    }

    /// Refuses keys from now until the store answers again.
    fn mark_unavailable(&self, e: &str) {
        if !self.inner.unavailable.swap(true, Ordering::AcqRel) {
            let since = lock(&self.inner.last_ok).elapsed();
            tracing::error!(target: "atrest::audit", event = "keyring.unavailable", keyring = %hex::encode(self.id()), seconds = since.as_secs(), error = %e);
            // Handles see the new epoch and ask again, which now refuses.
            self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }
}
