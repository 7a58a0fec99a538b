//! Producer mode: `atrest backup encrypt ... -- pg_dump -Fc crm` runs the producer and
//! encrypts its stdout; the backup is committed only if the producer exits 0.

use std::process::{Child, Command, Stdio};

use crate::failure::{Doing, Failure};
use crate::stream::Input;

/// A running producer command.
pub struct Producer {
    child: Child,
    name: String,
}

impl Producer {
    /// Starts `argv` (if not empty) with its stdout piped to us; stdin and stderr inherited.
    pub fn spawn(argv: &[String]) -> Result<Option<Self>, Failure> {
        let Some((program, args)) = argv.split_first() else {
            return Ok(None);
        };
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .doing(|| format!("starting the producer {program}"))?;
        Ok(Some(Self { child, name: program.clone() }))
    }

    /// Its stdout, as the input to encrypt.
    pub fn input(&mut self) -> Result<Input, Failure> {
        let out = self.child.stdout.take().ok_or_else(|| Failure::general("the producer has no stdout"))?;
        Ok(Input::child(out, format!("the output of {}", self.name)))
    }

    /// Waits for the producer; any status but 0 is a failure with the producer's status (128
    /// + n for a signal n).
    pub fn wait(mut self) -> Result<(), Failure> {
        // Drop our end of the pipe first: a producer still writing gets EPIPE, not a hang.
        drop(self.child.stdout.take());
        let status = self.child.wait().doing(|| format!("waiting for the producer {}", self.name))?;
        if status.success() {
            return Ok(());
        }
        let code = status.code().and_then(|c| u8::try_from(c).ok());
        #[cfg(unix)]
        let signal = std::os::unix::process::ExitStatusExt::signal(&status);
        #[cfg(not(unix))]
        let signal: Option<i32> = None;
        let (exit, how) = match (code, signal) {
            (Some(c), _) => (c, format!("exited with status {c}")),
            (None, Some(n)) => (u8::try_from(128 + n).unwrap_or(255), format!("was killed by signal {n}")),
            (None, None) => (1, "failed".to_owned()),
        };
        Err(Failure::producer(exit, format!("the producer {} {how}: no backup was written", self.name)))
    }
}
