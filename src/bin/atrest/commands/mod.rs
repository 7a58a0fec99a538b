//! One module per command group.

pub mod backup;
pub mod keyring;
pub mod recipient;
pub mod repo;
pub mod summary;
