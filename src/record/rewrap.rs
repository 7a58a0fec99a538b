//! What a batch rewrap did, and which key versions a set of records still uses (from
//! headers alone). The rewrap methods themselves are `Tenant`'s.

use std::collections::BTreeMap;

use super::format::parse;
use crate::error::RewrapError;
use crate::id::KeyVersion;

/// What [`Tenant::rewrap_batch`](crate::Tenant::rewrap_batch) did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct RewrapReport {
    /// Records re-sealed under the current key version.
    pub rewrapped: usize,
    /// Records that were already under it.
    pub already_current: usize,
    /// Records that failed (index in the input, error); they were left unchanged.
    pub failed: Vec<(usize, RewrapError)>,
}

/// How many records name each key version (see [`key_version_census`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyVersionCensus {
    /// Records per key version.
    pub versions: BTreeMap<KeyVersion, u64>,
    /// Inputs that are not records of a known format.
    pub unreadable: u64,
}

/// Counts the key versions a set of sealed records uses, from their headers alone (no key
/// needed): after a rotation, shows what still needs a rewrap before a version can be
/// disabled or destroyed.
pub fn key_version_census<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> KeyVersionCensus {
    let mut census = KeyVersionCensus::default();
    for r in records {
        match parse(r) {
            Ok(p) => *census.versions.entry(p.info.key_version).or_default() += 1,
            Err(_) => census.unreadable += 1,
        }
    }
    census
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, DestroyConfirmation, KeyState, Keyring, LocalRootKey, MasterVersion, RecordSuite, Suite};

    #[test]
    fn batch_rewrap_then_destroy_old_version() {
        let k = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
        let t = k.tenant("acme").unwrap();
        let ctxs: Vec<Context> = (0..10).map(|i| Context::new().with("row", i.to_string())).collect();
        let mut recs: Vec<Vec<u8>> = ctxs.iter().map(|c| t.seal(b"v", c).unwrap()).collect();
        recs[3] = t.clone().with_suite(RecordSuite::XChaCha20Poly1305).seal(b"v", &ctxs[3]).unwrap();
        k.rotate().unwrap();
        recs[5] = t.seal(b"v", &ctxs[5]).unwrap();
        recs[7][40] ^= 1;
        let census = key_version_census(recs.iter().map(Vec::as_slice));
        assert_eq!(census.versions.values().sum::<u64>(), 10);
        assert_eq!(census.versions.len(), 2);

        let mut calls = 0;
        let report = t.rewrap_batch(recs.iter_mut().zip(ctxs.iter()), |n| calls = n);
        assert_eq!(calls, 10);
        assert_eq!(report.rewrapped, 8);
        assert_eq!(report.already_current, 1);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, 7);
        assert_eq!(crate::record_info(&recs[3]).unwrap().suite, Suite::XChaCha20Poly1305);

        let v1 = MasterVersion::new(1);
        k.set_state(v1, KeyState::Disabled).unwrap();
        k.destroy(v1, DestroyConfirmation::data_under_this_version_is_lost(v1).skip_grace_period()).unwrap();
        for (i, (r, c)) in recs.iter().zip(&ctxs).enumerate() {
            if i != 7 {
                assert_eq!(t.open(r, c).unwrap(), b"v");
            }
        }
        let census = key_version_census(recs.iter().map(Vec::as_slice));
        assert_eq!(census.versions.len(), 2, "the failed record still names v1");
    }
}
