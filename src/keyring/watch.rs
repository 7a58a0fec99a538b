//! The watcher: a background thread per keyring handle with a store, so that changes made
//! elsewhere reach the handle within its staleness bound without any cost per record.
//!
//! Every half bound it asks the store for a cheap fingerprint (a `stat` of the file; a
//! notification or a revision query in PostgreSQL) and re-reads the document only when the
//! fingerprint changed. While the store cannot be read (or offers a document the handle must
//! refuse), the handle serves its last verified state for at most `max_unavailable`, then
//! refuses keys until the store answers again. The thread holds only a weak reference: it
//! ends within one interval after the last handle of its keyring is dropped.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::store::Store;
use super::{Inner, Keyring, lock};
use crate::error::KeyringError;

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
    let mut last = store.fingerprint().ok();
    loop {
        store.wait(interval);
        let Some(inner) = weak.upgrade() else { return };
        let keyring = Keyring { inner };
        let fp = store.fingerprint();
        let outcome = match fp {
            Ok(fp) if Some(&fp) == last.as_ref() => Ok(()),
            Ok(fp) => keyring.refresh().map(|_| last = Some(fp)),
            Err(e) => Err(e),
        };
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
    fn mark_failed(&self, e: &KeyringError) {
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
