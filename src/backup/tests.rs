//! Unit tests of the backup stream internals.
