//! Batches of records on all cores: sealing and opening a column of values, rewrapping a
//! table's rows after a rotation.
//!
//! Every batch method pulls its input in windows of [`BULK_WINDOW`] items, processes a
//! window in parallel on rayon's global pool (one shared handle: the record sealer and its
//! keys are shared, nothing is derived per item), and hands the results on in input order
//! before pulling the next window. Memory is therefore bounded by one window's inputs and
//! outputs however long the input is, and one item's failure is that item's result: it
//! never stops the batch.
//!
//! The audit counters of the keys used are added to once per batch and key version, not
//! once per record: a counter that every thread writes for every record would bounce its
//! cache line between the cores and stop all-core scaling.

use std::borrow::Borrow;

use rayon::prelude::*;

use super::Tenant;
use crate::context::Context;
use crate::error::{OpenError, RewrapError, SealError};
use crate::id::KeyVersion;
use crate::keyring::{Purpose, Use};
use crate::record::{self, RewrapReport};

/// How many items a batch method holds and processes in parallel at once.
pub const BULK_WINDOW: usize = 4096;

/// Pulls `items` in windows, maps each window in parallel with `f`, and feeds the results
/// to `sink` in input order with their index.
fn windowed<T: Send, R: Send>(
    items: impl IntoIterator<Item = T>,
    f: impl Fn(T) -> R + Sync,
    mut sink: impl FnMut(usize, R),
) -> usize {
    let mut items = items.into_iter();
    let mut index = 0;
    loop {
        let window: Vec<T> = items.by_ref().take(BULK_WINDOW).collect();
        if window.is_empty() {
            return index;
        }
        let results: Vec<R> = window.into_par_iter().map(&f).collect();
        for r in results {
            sink(index, r);
            index += 1;
        }
    }
}

/// How many records of a batch each key version sealed or opened.
#[derive(Default)]
struct Tally(Vec<(KeyVersion, u64)>);

impl Tally {
    fn add(&mut self, version: KeyVersion) {
        match self.0.iter_mut().find(|(v, _)| *v == version) {
            Some((_, n)) => *n += 1,
            None => self.0.push((version, 1)),
        }
    }

    /// Adds the tally to the keys' audit counters (a key no longer usable is not counted).
    fn flush(self, tenant: &Tenant, op: Use) {
        for (version, n) in self.0 {
            if let Ok(key) = tenant.keyring.derived_key(&tenant.id, version, Purpose::Records) {
                key.count_n(op, n);
            }
        }
    }
}

impl Tenant {
    /// A handle sharing this one's keys whose seals and opens do not count themselves.
    fn uncounted(&self) -> Tenant {
        Tenant { audit_each: false, ..self.clone() }
    }

    /// Seals every `(plaintext, context)` of `items` on all cores and passes each result to
    /// `sink` with its index, in input order. A failed item is reported as its `Err`; the
    /// others are sealed regardless. Returns how many items were processed.
    ///
    /// `items` is consumed [`BULK_WINDOW`] at a time, so a column of any length (a database
    /// cursor, an iterator over a file) is sealed in bounded memory.
    ///
    /// # Example
    /// ```
    /// # use atrest::{Context, Keyring, LocalRootKey};
    /// # let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
    /// let acme = keyring.tenant("acme")?;
    /// let rows: Vec<(String, Context)> =
    ///     (0..3).map(|i| (format!("value {i}"), Context::new().with("row", i.to_string()))).collect();
    /// let mut sealed = Vec::new();
    /// acme.seal_batch(rows.iter().map(|(v, c)| (v.as_bytes(), c)), |_, r| sealed.push(r));
    /// assert_eq!(acme.open(sealed[2].as_ref().unwrap(), &rows[2].1)?, b"value 2");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seal_batch<P, C>(
        &self,
        items: impl IntoIterator<Item = (P, C)>,
        sink: impl FnMut(usize, Result<Vec<u8>, SealError>),
    ) -> usize
    where
        P: AsRef<[u8]> + Send,
        C: Borrow<Context> + Send,
    {
        let quiet = self.uncounted();
        let mut tally = Tally::default();
        let mut sink = sink;
        let n = windowed(
            items,
            |(p, c)| {
                let mut out = Vec::with_capacity(p.as_ref().len() + record::RECORD_OVERHEAD);
                quiet.seal_with(quiet.suite, p.as_ref(), c.borrow(), &mut out).map(|v| (v, out))
            },
            |i, r| {
                sink(
                    i,
                    r.map(|(v, out)| {
                        tally.add(v);
                        out
                    }),
                );
            },
        );
        tally.flush(self, Use::Seal);
        n
    }

    /// Opens every `(sealed, context)` of `items` on all cores and passes each result to
    /// `sink` with its index, in input order; as [`Tenant::seal_batch`], a failed item is
    /// its own `Err` and never stops the batch. Returns how many items were processed.
    pub fn open_batch<S, C>(
        &self,
        items: impl IntoIterator<Item = (S, C)>,
        sink: impl FnMut(usize, Result<Vec<u8>, OpenError>),
    ) -> usize
    where
        S: AsRef<[u8]> + Send,
        C: Borrow<Context> + Send,
    {
        let quiet = self.uncounted();
        let mut tally = Tally::default();
        let mut sink = sink;
        let n = windowed(
            items,
            |(s, c)| {
                let parsed = record::parse(s.as_ref())?;
                let mut plain = Vec::new();
                quiet.open_parsed_into(&parsed, c.borrow(), &mut plain).map(|()| (parsed.info.key_version, plain))
            },
            |i, r| {
                sink(
                    i,
                    r.map(|(v, plain)| {
                        tally.add(v);
                        plain
                    }),
                );
            },
        );
        tally.flush(self, Use::Open);
        n
    }

    /// Rewraps many records in place, on all cores, [`BULK_WINDOW`] at a time. Records
    /// already under the current key version are left untouched; a record that fails is
    /// left as it was and reported with its index. `progress` is called after each record,
    /// in input order, with the number processed so far (once its window is done).
    pub fn rewrap_batch<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a mut Vec<u8>, &'a Context)>,
        mut progress: impl FnMut(usize),
    ) -> RewrapReport {
        let mut report = RewrapReport::default();
        let current = self.key_version();
        let quiet = self.uncounted();
        let (mut opened, mut sealed_under) = (Tally::default(), Tally::default());
        windowed(
            records,
            |(sealed, ctx)| match record::parse(sealed) {
                Ok(p) if p.info.key_version == current => Ok(None),
                Ok(p) => {
                    let old = p.info.key_version;
                    quiet.rewrap(sealed, ctx).map(|new| {
                        *sealed = new;
                        Some(old)
                    })
                }
                Err(e) => Err(RewrapError::Open(e)),
            },
            |i, r: Result<Option<KeyVersion>, RewrapError>| {
                match r {
                    Ok(Some(old)) => {
                        report.rewrapped += 1;
                        opened.add(old);
                        sealed_under.add(current);
                    }
                    Ok(None) => report.already_current += 1,
                    Err(e) => report.failed.push((i, e)),
                }
                progress(i + 1);
            },
        );
        opened.flush(self, Use::Open);
        sealed_under.flush(self, Use::Seal);
        tracing::info!(
            target: "atrest::audit",
            event = "record.rewrap_batch",
            tenant = %self.id(),
            rewrapped = report.rewrapped,
            already_current = report.already_current,
            failed = report.failed.len()
        );
        report
    }
}
