//! The watcher: a background thread per keyring handle with a store, so that changes made
//! elsewhere reach the handle within its staleness bound without any cost per record.
//!
//! Every half bound it asks the store for a cheap fingerprint (a `stat` of the file; a
//! notification or a revision query in PostgreSQL) and re-reads the document only when the
//! fingerprint changed. While the store cannot be read (or offers a document the handle must
//! refuse), the handle serves its last verified state for at most `max_unavailable`, then
//! refuses keys until the store answers again (a check that panics counts as one that
//! failed; the thread goes on). The thread holds only a weak reference: it
//! ends within one interval after the last handle of its keyring is dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::store::Store;
use super::{Inner, Keyring, lock};

/// Starts the watcher of `inner`'s store, if it has one.
pub(super) fn spawn(inner: &Arc<Inner>) {
    let Some(store) = inner.store.clone() else { return };
    let weak = Arc::downgrade(inner);
    let interval = inner.options.staleness / 2;
    let name = format!("atrest-keyring-watch-{}", hex::encode(inner.state.load().id.get(..4).unwrap_or_default()));
    // A keyring without a watcher still works: it converges on its own changes and on
    // `reload()`; the failure is reported.
    if let Err(e) = std::thread::Builder::new().name(name).spawn(move || run(&weak, store.as_ref(), interval)) {
        tracing::error!(target: "atrest::audit", event = "keyring.watch_failed", error = %e);
    }
}

fn run(weak: &Weak<Inner>, store: &dyn Store, interval: std::time::Duration) {
    let mut last = catch_unwind(AssertUnwindSafe(|| store.fingerprint())).ok().and_then(Result::ok);
    loop {
        store.wait(interval);
        let Some(inner) = weak.upgrade() else { return };
        let keyring = Keyring { inner };
        // A panic in a check (a bug in a store, its client library) fails that check like an
        // unreadable store does: the thread must not end, or the handle would serve its last
        // state forever and never learn of a shred.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let outcome = match store.fingerprint() {
                Ok(fp) if Some(&fp) == last.as_ref() => Ok(()),
                Ok(fp) => keyring.refresh().map(|_| last = Some(fp)),
                Err(e) => Err(e),
            };
            if outcome.is_ok() {
                store.heartbeat(keyring.state().revision);
            }
            outcome.map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|_| Err("the check panicked".to_owned()));
        match outcome {
            Ok(()) => keyring.mark_available(),
            Err(e) => keyring.mark_failed(&e),
        }
    }
}

impl Keyring {
    /// The store answered with a document this handle accepts (or nothing new).
    fn mark_available(&self) {
        *lock(&self.inner.last_ok) = Instant::now();
        if self.inner.unavailable.swap(false, Ordering::AcqRel) {
            tracing::warn!(target: "atrest::audit", event = "keyring.available", keyring = %hex::encode(self.id()));
            self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The store could not be read, or offered a document the handle refuses.
    fn mark_failed(&self, e: &str) {
        let since = lock(&self.inner.last_ok).elapsed();
        if since > self.inner.options.max_unavailable && !self.inner.unavailable.swap(true, Ordering::AcqRel) {
            tracing::error!(target: "atrest::audit", event = "keyring.unavailable", keyring = %hex::encode(self.id()), seconds = since.as_secs(), error = %e);
            // Handles see the new epoch and ask again, which now refuses.
            self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        } else {
            tracing::warn!(target: "atrest::audit", event = "keyring.refresh_failed", keyring = %hex::encode(self.id()), error = %e);
        }
    }
}
