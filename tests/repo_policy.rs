//! The backup policy end to end on simulated time, into a directory repository: 8 days of
//! one full backup and 23 hourly incrementals, replicate, prune to 7 days, replicate again,
//! verify both, restore a chosen hour from the replica (see `common::repo::policy`), on
//! directories and (feature `s3`) on a real S3-compatible server (SeaweedFS, two buckets).
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

#[cfg(feature = "s3")]
#[test]
fn policy_on_s3() {
    let Some(s) = common::seaweed::server() else { return };
    let (primary, offsite) = (s.bucket(false), s.bucket(true));
    let mut a = Atrest::new();
    a.env = vec![
        ("AWS_ENDPOINT_URL".into(), s.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID".into(), s.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY".into(), s.secret_key.clone()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ];
    policy(&a, &format!("s3://{primary}/backups"), &format!("s3://{offsite}/copy"), 8);
}
