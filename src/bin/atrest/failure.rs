//! Failures of a command: a one-line message with the error's source chain, and an exit code.

use std::error::Error;
use std::fmt;
use std::process::ExitCode;

use atrest::{BackupError, KeyringError, OpenError, RootKeyError};

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

    /// The exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self.class {
            Class::General => 1,
            Class::Usage => 2,
            Class::Authentication => 3,
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

fn backup_auth(e: &BackupError) -> bool {
    match e {
        BackupError::Authentication => true,
        BackupError::Key(o) => open_auth(o),
        BackupError::Keyring(k) => keyring_auth(k),
        BackupError::Io(io) => io_auth(io),
        _ => false,
    }
}

fn open_auth(e: &OpenError) -> bool {
    matches!(e, OpenError::Authentication)
}

fn keyring_auth(e: &KeyringError) -> bool {
    matches!(e, KeyringError::Tampered(_) | KeyringError::Root(RootKeyError::Authentication))
}

fn io_auth(e: &std::io::Error) -> bool {
    // The backup reader reports authentication failures as InvalidData wrapping the
    // library's error; io::Error::source() skips the wrapped error itself, so look inside.
    e.get_ref().is_some_and(|inner| is_auth(inner))
}

/// Whether any error in the chain is an authentication failure.
fn is_auth(e: &(dyn Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(x) = cur {
        let hit = if let Some(b) = x.downcast_ref::<BackupError>() {
            backup_auth(b)
        } else if let Some(o) = x.downcast_ref::<OpenError>() {
            open_auth(o)
        } else if let Some(k) = x.downcast_ref::<KeyringError>() {
            keyring_auth(k)
        } else if let Some(r) = x.downcast_ref::<RootKeyError>() {
            matches!(r, RootKeyError::Authentication)
        } else if let Some(io) = x.downcast_ref::<std::io::Error>() {
            io_auth(io)
        } else {
            false
        };
        if hit {
            return true;
        }
        cur = x.source();
    }
    false
}

impl<E: Error + Send + Sync + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        let error: BoxError = Box::new(e);
        let class = if is_auth(error.as_ref()) { Class::Authentication } else { Class::General };
        Self { class, what: None, error: Some(error) }
    }
}

/// Adds what was being done to an error, like `anyhow::Context`.
pub trait Doing<T> {
    /// Wraps the error with `what()` as the start of its message.
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, Failure>;
}

impl<T, E: Error + Send + Sync + 'static> Doing<T> for Result<T, E> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|e| {
            let mut f = Failure::from(e);
            f.what = Some(what());
            f
        })
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
        let f: Result<(), _> = Err(io);
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
        assert_eq!(Failure::usage("x").class, Class::Usage);
    }
}
