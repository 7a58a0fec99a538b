//! Choosing an index width: enough bits to keep false positives rare, few enough not to
//! single out values of a small domain.
//!
//! With `N` rows per tenant and `V` values per lookup (one per key version in use), a row
//! that does not hold the value looked up matches one of the lookup's values with
//! probability at most `V / 2^bits`, so a lookup returns about `N * V / 2^bits` false
//! positives. The planner picks the least `bits` that keeps this at or under the target.
//!
//! With `D` distinct values in the field, each index value stands for about `D / 2^bits`
//! of them. Below 2, an index value nearly names its plaintext: whoever reads the column
//! and knows the domain (years of birth, the 10,000 last-four-digit strings) can tell rows
//! apart by value and match frequencies against the known distribution. The largest width
//! that keeps at least 2 values per index value is `floor(log2(D / 2))`; the planner warns
//! when it chooses more.

use crate::error::IndexError;

/// Sizes a blind index from the expected rows per tenant and the false positives a lookup
/// may return (each one costs opening a record).
///
/// # Example
/// ```
/// use atrest::{IndexPlanner, IndexWarning};
/// // 50,000 contacts per tenant, at most 0.01 false positives per email lookup.
/// let plan = IndexPlanner::new(50_000, 0.01).plan()?;
/// assert_eq!(plan.bits, 24);
/// assert!(plan.warnings.is_empty());
/// // The last four digits of a phone number have only 10,000 values: 24 bits would name them.
/// let plan = IndexPlanner::new(50_000, 0.01).distinct_values(10_000).plan()?;
/// assert!(matches!(plan.warnings[0], IndexWarning::NearlyUnique { max_private_bits: 12, .. }));
/// # Ok::<(), atrest::IndexError>(())
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct IndexPlanner {
    rows: u64,
    false_positives: f64,
    distinct: Option<u64>,
    versions: u32,
}

/// What [`IndexPlanner::plan`] chose.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IndexPlan {
    /// The index width to use.
    pub bits: u16,
    /// False positives a lookup returns on average with that width.
    pub expected_false_positives: f64,
    /// What the width reveals that the application may not want.
    pub warnings: Vec<IndexWarning>,
}

/// A reason to think twice about an index width.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum IndexWarning {
    /// The field has so few distinct values that an index value of this width nearly
    /// identifies its plaintext (fewer than 2 values per index value): the column reveals
    /// which rows hold which value, up to naming them by frequency. Use at most
    /// `max_private_bits` (and accept `false_positives_at_max` per lookup), index a less
    /// predictable combination of fields, or do not index this field.
    NearlyUnique {
        /// The distinct values the caller expects.
        distinct_values: u64,
        /// The width the false-positive target needs.
        bits: u16,
        /// The widest index that keeps at least 2 values per index value (0: none does).
        max_private_bits: u16,
        /// False positives per lookup at `max_private_bits`.
        false_positives_at_max: f64,
    },
}

impl IndexPlanner {
    /// Plans for `rows_per_tenant` rows and at most `false_positives_per_lookup` false
    /// positives per lookup on average (for example 0.01, or 5 when opening a few records
    /// per lookup is cheap). Assumes lookups cover 2 key versions (a rotation in progress).
    pub fn new(rows_per_tenant: u64, false_positives_per_lookup: f64) -> Self {
        Self { rows: rows_per_tenant, false_positives: false_positives_per_lookup, distinct: None, versions: 2 }
    }

    /// How many distinct values the field has (its domain): enables the
    /// [`IndexWarning::NearlyUnique`] check. An estimate is enough.
    pub fn distinct_values(mut self, distinct: u64) -> Self {
        self.distinct = Some(distinct);
        self
    }

    /// How many key versions lookups cover at most (default 2; see
    /// [`Tenant::blind_index_versions`](crate::Tenant::blind_index_versions)).
    pub fn lookup_versions(mut self, versions: u32) -> Self {
        self.versions = versions.max(1);
        self
    }

    /// False positives per lookup at `bits` bits.
    fn false_positives_at(&self, bits: u16) -> f64 {
        self.rows as f64 * f64::from(self.versions) / 2f64.powi(i32::from(bits))
    }

    /// Chooses the width.
    ///
    /// # Errors
    /// [`IndexError::InvalidFalsePositives`] if the target is not a positive, finite number.
    pub fn plan(&self) -> Result<IndexPlan, IndexError> {
        if !(self.false_positives.is_finite() && self.false_positives > 0.0) {
            return Err(IndexError::InvalidFalsePositives);
        }
        let bits = (1..=super::MAX_INDEX_BITS)
            .find(|b| self.false_positives_at(*b) <= self.false_positives)
            .unwrap_or(super::MAX_INDEX_BITS);
        let mut warnings = Vec::new();
        if let Some(distinct) = self.distinct {
            // The largest b with distinct / 2^b >= 2.
            let max_private_bits = (0..=super::MAX_INDEX_BITS)
                .take_while(|b| distinct as f64 / 2f64.powi(i32::from(*b)) >= 2.0)
                .last()
                .unwrap_or(0);
            if bits > max_private_bits {
                warnings.push(IndexWarning::NearlyUnique {
                    distinct_values: distinct,
                    bits,
                    max_private_bits,
                    false_positives_at_max: self.false_positives_at(max_private_bits),
                });
            }
        }
        Ok(IndexPlan { bits, expected_false_positives: self.false_positives_at(bits), warnings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        // 2 * 1000 / 2^b <= 1  =>  b = 11.
        assert_eq!(IndexPlanner::new(1000, 1.0).plan().unwrap().bits, 11);
        assert_eq!(IndexPlanner::new(1000, 1.0).lookup_versions(1).plan().unwrap().bits, 10);
        assert_eq!(IndexPlanner::new(1, 1e9).plan().unwrap().bits, 1);
        assert_eq!(IndexPlanner::new(0, 1.0).plan().unwrap().bits, 1);
        // 265 bits would be needed: capped at the widest index.
        assert_eq!(IndexPlanner::new(u64::MAX, 1e-60).plan().unwrap().bits, 256);
        let p = IndexPlanner::new(1_000_000, 0.5).plan().unwrap();
        assert_eq!(p.bits, 22);
        assert!(p.expected_false_positives <= 0.5 && p.expected_false_positives > 0.25);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(IndexPlanner::new(10, bad).plan(), Err(IndexError::InvalidFalsePositives)));
        }
    }

    #[test]
    fn warns_on_small_domains() {
        let p = IndexPlanner::new(50_000, 1.0).distinct_values(100).plan().unwrap();
        assert_eq!(p.bits, 17);
        let [IndexWarning::NearlyUnique { max_private_bits, false_positives_at_max, .. }] = p.warnings[..] else {
            panic!("{p:?}");
        };
        assert_eq!(max_private_bits, 5); // 100 / 32 >= 2 > 100 / 64
        assert!((false_positives_at_max - 50_000.0 * 2.0 / 32.0).abs() < 1e-9);
        assert!(IndexPlanner::new(50_000, 1.0).distinct_values(1 << 40).plan().unwrap().warnings.is_empty());
        let one = IndexPlanner::new(10, 1.0).distinct_values(3).plan().unwrap();
        assert!(matches!(one.warnings[..], [IndexWarning::NearlyUnique { max_private_bits: 0, .. }]));
    }
}
