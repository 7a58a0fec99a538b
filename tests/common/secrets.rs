//! The secret-rendering scanner: proves that `Debug`, `Display`, error and file output holds
//! none of a set of secrets (keys, or any other bytes that must not leak), in any of the
//! forms a careless `{:?}` or `hex::encode` would print them.
//!
//! ```ignore
//! let scan = SecretScan::new().with("root key", &key);
//! scan.assert_clean(&format!("{keyring:?}"));
//! let e = scan.checked(Keyring::from_bytes(bad, root).unwrap_err()); // Display, Debug, {:#?}
//! ```
//!
//! Each test file also shows that its scan can fail (finds a printed key), so a scanner that
//! silently stopped matching would be noticed.

use std::fmt::{Debug, Display};

/// Renderings of `secret` that must never appear in any output: every 6-byte window as hex
/// (lower and upper case; a random 48-bit collision is negligible) and every 4-byte window as
/// a `Debug`-style decimal list (`[u8]`, `Vec<u8>` and array `Debug`). A secret shorter than
/// 6 bytes has no hex rendering.
pub fn renderings(secret: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for w in secret.windows(6) {
        let hex = hex::encode(w);
        let upper = hex.to_uppercase();
        out.extend([hex, upper]);
    }
    for w in secret.windows(4) {
        out.push(format!("{}, {}, {}, {}", w[0], w[1], w[2], w[3]));
    }
    out
}

/// One named secret: its bytes and their renderings.
struct Secret {
    name: String,
    bytes: Vec<u8>,
    renderings: Vec<String>,
}

/// A set of named secrets to search rendered text (and raw bytes) for.
#[derive(Default)]
pub struct SecretScan {
    secrets: Vec<Secret>,
}

impl SecretScan {
    /// An empty scan: finds nothing until secrets are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the secret `bytes`, reported as `name` when found.
    pub fn with(mut self, name: impl Into<String>, bytes: &[u8]) -> Self {
        let renderings = renderings(bytes);
        self.secrets.push(Secret { name: name.into(), bytes: bytes.to_vec(), renderings });
        self
    }

    /// The first secret rendered in `text`, as (secret name, rendering found).
    pub fn find(&self, text: &str) -> Option<(&str, &str)> {
        self.secrets.iter().find_map(|s| {
            s.renderings.iter().find(|r| text.contains(r.as_str())).map(|r| (s.name.as_str(), r.as_str()))
        })
    }

    /// Panics, naming the secret, if `text` renders any of them.
    pub fn assert_clean(&self, text: &str) {
        if let Some((name, r)) = self.find(text) {
            panic!("{name} ({r}) printed in: {text}");
        }
    }

    /// Checks a value's `Display`, `Debug` and pretty `Debug` output (typically an error), and
    /// returns it for matching.
    pub fn checked<E: Display + Debug>(&self, e: E) -> E {
        self.assert_clean(&format!("{e}"));
        self.assert_clean(&format!("{e:?}"));
        self.assert_clean(&format!("{e:#?}"));
        e
    }

    /// The first secret with a 6-byte run in the raw `bytes` (a file, a stream), by name.
    pub fn find_in_bytes(&self, bytes: &[u8]) -> Option<&str> {
        let runs: std::collections::HashMap<&[u8], &str> =
            self.secrets.iter().flat_map(|s| s.bytes.windows(6).map(|w| (w, s.name.as_str()))).collect();
        bytes.windows(6).find_map(|w| runs.get(w).copied())
    }
}
