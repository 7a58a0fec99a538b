//! Backup repositories (issue 13): a store of objects plus an authenticated catalog per tenant.

pub mod store;
