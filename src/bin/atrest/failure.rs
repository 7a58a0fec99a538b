//! Failures of a command: a one-line message with the error's source chain, and an exit code.

use std::error::Error;
use std::fmt;
use std::io::{self, Write as _};
use std::process::ExitCode;

use atrest::{BackupError, KeyringError, OpenError, RepoError, RootKeyError};

type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// The exit status classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Any other failure: 1.
    General,
    /// Bad command line: 2 (as clap).
    Usage,
    /// The data or key did not authenticate: 3.
    Authentication,
    /// An authentic backup of another context than expected: 4.
    ContextMismatch,
    /// A producer command failed: its exit status (128 + n for signal n).
    Producer(u8),
}

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    class: Class,
    /// What was being done, e.g. "opening keyring k.atrk".
    what: Option<String>,
    error: Option<BoxError>,
}

impl Failure {
    /// A usage error with a message.
    pub fn usage(msg: impl Into<String>) -> Self {
        Self { class: Class::Usage, what: Some(msg.into()), error: None }
    }

    /// Any other failure, with a message.
    pub fn general(msg: impl Into<String>) -> Self {
        Self { class: Class::General, what: Some(msg.into()), error: None }
    }

    /// Data that did not authenticate or verify, with a message (exit 3).
    pub fn authentication(msg: impl Into<String>) -> Self {
        Self { class: Class::Authentication, what: Some(msg.into()), error: None }
    }

    /// A producer command that failed with exit status `status` (already 128 + n for a
    /// signal n; 1 if it was 0, which never happens for a failure).
    pub fn producer(status: u8, msg: impl Into<String>) -> Self {
        Self { class: Class::Producer(status.max(1)), what: Some(msg.into()), error: None }
    }

    /// Whether the failure comes from writing to a closed pipe (EPIPE).
    pub fn is_broken_pipe(&self) -> bool {
        let mut cur: Option<&(dyn Error + 'static)> = self.error.as_deref().map(|e| e as &(dyn Error + 'static));
        while let Some(e) = cur {
            if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
                return true;
            }
            cur = e.source();
        }
        false
    }

    /// The exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self.class {
            Class::General => 1,
            Class::Usage => 2,
            Class::Authentication => 3,
            Class::ContextMismatch => 4,
            Class::Producer(n) => n,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.what.clone().unwrap_or_default();
        if let Some(e) = &self.error {
            let chain = render_chain(e.as_ref());
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&chain);
        }
        f.write_str(&line)
    }
}

/// The error's message followed by its sources, skipping a source whose message is already
/// part of the line (thiserror messages often embed their source).
fn render_chain(e: &(dyn Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !m.is_empty() && !line.contains(&m) {
            line.push_str(": ");
            line.push_str(&m);
        }
        cur = s.source();
    }
    // One line, whatever the messages contain.
    line.replace(['\n', '\r'], " ")
}

/// An error a command can fail with, and whether it is an authentication failure (exit 3):
/// the library's own `is_authentication()` for its error types.
pub trait Classify: Error + Send + Sync + 'static {
    /// Whether the data or a key did not authenticate.
    fn is_authentication(&self) -> bool {
        false
    }

    /// Whether an authentic backup is of another context than expected.
    fn is_context_mismatch(&self) -> bool {
        false
    }
}

/// The library's error types answer for themselves.
macro_rules! classify_by_the_library {
    ($($t:ty),*) => {$(
        impl Classify for $t {
            fn is_authentication(&self) -> bool {
                <$t>::is_authentication(self)
            }
        }
    )*};
}
classify_by_the_library!(KeyringError, OpenError, RootKeyError);

impl Classify for BackupError {
    fn is_authentication(&self) -> bool {
        BackupError::is_authentication(self)
    }

    fn is_context_mismatch(&self) -> bool {
        matches!(self, BackupError::ContextMismatch { .. })
    }
}

impl Classify for RepoError {
    fn is_authentication(&self) -> bool {
        RepoError::is_authentication(self)
    }

    fn is_context_mismatch(&self) -> bool {
        matches!(self, RepoError::Backup(BackupError::ContextMismatch { .. }))
    }
}

/// Files, pipes: never an authentication failure (the library reports those as its own
/// error types).
impl Classify for std::io::Error {}

impl Classify for serde_json::Error {}

impl<E: Classify> From<E> for Failure {
    fn from(e: E) -> Self {
        let class = if e.is_authentication() {
            Class::Authentication
        } else if e.is_context_mismatch() {
            Class::ContextMismatch
        } else {
            Class::General
        };
        Self { class, what: None, error: Some(Box::new(e)) }
    }
}

/// Adds what was being done to an error, like `anyhow::Context`.
pub trait Doing<T> {
    /// Wraps the error with `what()` as the start of its message.
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, Failure>;
}

impl<T, E: Classify> Doing<T> for Result<T, E> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|e| {
            let mut f = Failure::from(e);
            f.what = Some(what());
            f
        })
    }
}

/// The exit status when stdout is a closed pipe: 128 + SIGPIPE, as a shell reports a
/// process killed by it.
pub const BROKEN_PIPE_STATUS: u8 = 141;

/// Writes one line to stdout; a closed pipe ends the process quietly with
/// [`BROKEN_PIPE_STATUS`] (after deleting pending temporary files), any other error with 1.
pub fn say(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()) {
        crate::stream::delete_pending();
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(BROKEN_PIPE_STATUS));
        }
        eprintln!("atrest: error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_messages() {
        let f = Failure::from(BackupError::Authentication);
        assert_eq!(f.class, Class::Authentication);
        let io: std::io::Error = BackupError::Authentication.into();
        assert_eq!(Failure::from(BackupError::Io(io)).class, Class::Authentication);
        let f: Result<(), _> = Err(BackupError::Authentication);
        let f = f.doing(|| "decrypting x".into()).unwrap_err();
        assert_eq!(f.class, Class::Authentication);
        assert!(f.to_string().starts_with("decrypting x: backup authentication failed"), "{f}");

        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let f = Failure::from(KeyringError::Io { path: "k".into(), source: io });
        assert_eq!(f.class, Class::General);
        // The embedded source is not repeated.
        assert_eq!(f.to_string(), "keyring file k: gone");

        let f = Failure::from(BackupError::Key(OpenError::Authentication));
        assert_eq!(f.class, Class::Authentication);
        let f = Failure::from(KeyringError::Root(RootKeyError::Authentication));
        assert_eq!(f.class, Class::Authentication);
        assert_eq!(Failure::from(std::io::Error::other("x")).class, Class::General);
        assert_eq!(Failure::usage("x").class, Class::Usage);
    }
}
