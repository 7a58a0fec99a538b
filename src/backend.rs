//! Which implementation of AES-256-GCM runs: a choice callers may make (for benchmarks,
//! or to pin the pure-Rust code), not a primitive.

use core::fmt;

/// An implementation of AES-256-GCM.
///
/// [`Backend::default()`] is the fastest one compiled in: [`Backend::AwsLc`] when the crate
/// is built with the `aws-lc` feature, [`Backend::RustCrypto`] otherwise. Every backend
/// produces byte-for-byte the same output, so data sealed with one opens with the other.
/// The backend applies to AES-256-GCM and XAES-256-GCM (whose subkey derivation always
/// uses the `aes` crate); XChaCha20-Poly1305 always comes from `chacha20poly1305`.
///
/// # Example
/// ```
/// use atrest::Backend;
/// assert!(Backend::RustCrypto.is_available());
/// assert!(Backend::available().contains(&Backend::default()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// RustCrypto's `aes-gcm` (pure Rust, with AES-NI/CLMUL when the CPU has them). Always
    /// available.
    RustCrypto,
    /// AWS-LC's assembly AES-256-GCM through `aws-lc-rs` (uses VAES/AVX-512 where present).
    /// Available only when the crate is built with the `aws-lc` feature.
    AwsLc,
}

impl Backend {
    /// The backends compiled into this build, the default first.
    pub const fn available() -> &'static [Backend] {
        #[cfg(feature = "aws-lc")]
        {
            &[Backend::AwsLc, Backend::RustCrypto]
        }
        #[cfg(not(feature = "aws-lc"))]
        {
            &[Backend::RustCrypto]
        }
    }

    /// Whether this backend is compiled into this build.
    pub const fn is_available(self) -> bool {
        match self {
            Backend::RustCrypto => true,
            Backend::AwsLc => cfg!(feature = "aws-lc"),
        }
    }

    /// A short name: `"rustcrypto"` or `"aws-lc"`.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::RustCrypto => "rustcrypto",
            Backend::AwsLc => "aws-lc",
        }
    }
}

impl Default for Backend {
    /// [`Backend::AwsLc`] with the `aws-lc` feature, [`Backend::RustCrypto`] without.
    fn default() -> Self {
        if cfg!(feature = "aws-lc") { Backend::AwsLc } else { Backend::RustCrypto }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The requested backend cannot be used: it is not compiled into this build (enable the
/// crate feature that provides it), or it does not implement the requested suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("backend {backend} is not available for {suite} in this build")]
pub struct BackendUnavailable {
    /// The backend that was asked for.
    pub backend: Backend,
    /// The suite it was asked for.
    pub suite: crate::Suite,
}
