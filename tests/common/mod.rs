//! The kit shared by the integration tests (each file that uses it says `mod common;`):
//!
//! - [`golden`]: what the committed golden files contain (also included by
//!   `examples/make_golden.rs`, which made them);
//! - [`spec`]: the byte formats rebuilt from their documentation, the reference the
//!   known-answer tests hold the crate to;
//! - [`secrets`]: the scanner proving that no key reaches `Debug`, `Display` or error output;
//! - [`data`]: deterministic pseudo-random test data;
//! - [`child`]: re-running one test of the same binary in a child process (crash tests,
//!   per-process state), and checking what a finished command printed;
//! - `repo` (feature `cli`): backup repositories through the `atrest` binary, and the
//!   backup policy end to end on simulated time, for any repository location;
//! - [`servers`]: key management servers (OpenBao, the AWS KMS emulator) started on a free
//!   loopback port for one test and stopped when it ends;
//! - [`seaweed`] (feature `s3`): a real S3-compatible server (SeaweedFS) per test binary;
//! - [`store_conformance`]: what every object store must do, over `&dyn ObjectStore`.
//!
//! Each test crate compiles the whole kit and uses part of it, so `mod common;` carries
//! `#[allow(dead_code)]` where a file leaves some of it unused.

pub mod child;
pub mod data;
pub mod golden;
#[cfg(feature = "cli")]
pub mod repo;
#[cfg(feature = "s3")]
pub mod seaweed;
pub mod secrets;
pub mod servers;
pub mod spec;
pub mod store_conformance;
