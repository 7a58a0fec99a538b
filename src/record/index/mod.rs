//! Blind indexes: find sealed values by equality without decrypting every row.
//!
//! A blind index value is a keyed, truncated PRF (HMAC-SHA256) of a transformed value. The
//! key is derived per tenant, per key version (master version and tenant generation) and per
//! index definition; nothing is stored. An application keeps the value in a plain database
//! column beside the sealed record (`bytea`, or `bigint` up to 64 bits) with an ordinary
//! btree index, and finds rows with `WHERE tenant = $1 AND idx = ANY($2)`, then opens the
//! candidates to drop the false positives that truncation makes on purpose.
//!
//! # Format (version 1)
//!
//! Keys, derived on demand and never stored:
//!
//! ```text
//! K_t  = the tenant's key for purpose "indexes" under key version (v, g) (see the keyring's
//!        derivation: HKDF-Expand(prk_v, len||"atrest/v1/tenant" || len||tenant id
//!        || g (u16 BE) || len||"indexes", 32))
//! K_i  = HKDF-SHA256(salt = empty, ikm = K_t, info = D, L = 32)
//! D    = len||"atrest/v1/blind-index" || len||name || bits (u16 BE) || n (u8)
//!        || len||transform id of field 1 || ... || len||transform id of field n
//! ```
//!
//! `len||x` is a 4-byte big-endian length followed by `x`. The definition `D` names
//! everything that decides a value, so two indexes differing in name, width, field count or
//! any transform have independent keys (a 16-bit index is not a prefix of a 32-bit one).
//! Transform ids: `identity`, `lowercase-trim`, `digits`, `last-digits:N` (N in decimal),
//! `custom:NAME` (the caller's name for its function).
//!
//! A value of fields `f_1 .. f_n`:
//!
//! ```text
//! input = len||T_1(f_1) || ... || len||T_n(f_n)          (T_i: field i's transform)
//! mac   = HMAC-SHA256(K_i, input)
//! value = the first `bits` bits of mac: mac[0 .. ceil(bits/8)], the low
//!         8*ceil(bits/8) - bits bits of the last byte cleared
//! int   = (bits <= 64) the first `bits` bits as an unsigned big-endian integer,
//!         u64::from_be_bytes(mac[0..8]) >> (64 - bits), in 0 .. 2^bits; stored as an i64
//!         (PostgreSQL `bigint`): non-negative up to 63 bits, two's complement at 64
//! ```
//!
//! Length prefixes make compound inputs unambiguous: `("ab", "c")` and `("a", "bc")` differ.
//! The domain separation lives in the key, so the PRF input of a one-field index of a short
//! value fits one SHA-256 block, as a raw HMAC of the value would.
//!
//! Transforms: `identity` keeps the bytes; `lowercase-trim` needs UTF-8, removes leading and
//! trailing Unicode white space and lowercases with Unicode's default case mapping (Rust's
//! `str::to_lowercase`; no normalization: apply NFC in a custom transform if inputs vary);
//! `digits` keeps the ASCII digits `0-9`; `last-digits:N` keeps the last N of those digits
//! (all of them if there are fewer); `custom:NAME` applies the caller's function.
//!
//! # Key versions and rotation
//!
//! An index value belongs to the key version of the record it is written with:
//! [`Tenant::seal_indexed`](crate::Tenant::seal_indexed) and
//! [`Tenant::rewrap_indexed`](crate::Tenant::rewrap_indexed) compute the values under the
//! very version that sealed the record, so the record header
//! ([`record_info`](crate::record_info)) tells which version a row's index values are under,
//! and [`Tenant::needs_rewrap`](crate::Tenant::needs_rewrap) on the record also says whether
//! they need recomputing. A lookup ([`Tenant::blind_index_lookup`](crate::Tenant::blind_index_lookup))
//! yields one value per key version still usable for the tenant (primary and enabled master
//! versions, each tenant generation up to the current one), so rows not yet migrated keep
//! matching while a rewrap pass moves them; once the old master version is disabled, lookups
//! stop computing its values. Other processes learn of a new version within the keyring's
//! staleness bound; until then their lookups miss only rows written under that version in
//! the meantime, so start the migration pass after the bound has passed.

mod definition;
mod key;
mod planner;
mod transform;
mod value;

pub use definition::{BlindIndex, BlindIndexBuilder, MAX_INDEX_BITS, MAX_INDEX_FIELDS, MAX_INDEX_NAME_LEN};
pub use planner::{IndexPlan, IndexPlanner, IndexWarning};
pub use transform::{CustomTransform, Transform};
pub use value::{IndexLookup, IndexValue, IndexedRecord};

pub(crate) use key::IndexKey;
