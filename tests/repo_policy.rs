//! The backup policy end to end on simulated time, into a directory repository: 8 days of
//! one full backup and 23 hourly incrementals, replicate, prune to 7 days, replicate again,
//! verify both, restore a chosen hour from the replica (see `common::repo::policy`; an
//! `s3://` run calls the same function).
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::repo; the rest of the shared kit is unused here")]
mod common;

use common::repo::{Atrest, policy};

#[test]
fn policy_on_directories() {
    let a = Atrest::new();
    let (repo, replica) = (a.path("repo"), a.path("replica"));
    policy(&a, repo.to_str().unwrap(), replica.to_str().unwrap(), 8);
}
