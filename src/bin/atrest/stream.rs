//! Inputs, outputs (files appear only when complete, through `atrest::fs`), and a progress
//! line for long streams.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use atrest::fs::PendingFile;

use crate::failure::{Doing, Failure};

/// Copy buffer size.
const BUF: usize = 256 * 1024;

/// Where a stream comes from.
pub struct Input {
    reader: Box<dyn Read>,
    /// "stdin" or the file name, for messages.
    pub name: String,
    /// The length, when known (a regular file).
    pub len: Option<u64>,
}

impl Input {
    /// Opens `path`, or stdin for `None` or `-`.
    pub fn open(path: Option<&Path>) -> Result<Self, Failure> {
        match path {
            None => Ok(Self::stdin()),
            Some(p) if p == Path::new("-") => Ok(Self::stdin()),
            Some(p) => {
                let name = p.display().to_string();
                let f = File::open(p).doing(|| format!("opening {name}"))?;
                let len = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
                Ok(Self { reader: Box::new(f), name, len })
            }
        }
    }

    fn stdin() -> Self {
        Self { reader: Box::new(io::stdin().lock()), name: "stdin".into(), len: None }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// Temporary output files to delete if the process is interrupted (SIGINT, SIGTERM, SIGHUP).
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// On SIGINT, SIGTERM or SIGHUP: delete pending temporary output files and exit with 130.
pub fn delete_temporary_files_on_interrupt() {
    // Failing to install the handler only loses the clean-up on interrupt.
    let _ = ctrlc::set_handler(|| {
        for p in PENDING.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let _ = std::fs::remove_file(p);
        }
        if io::stderr().is_terminal() {
            eprint!("\r\x1b[2K");
        }
        eprintln!("atrest: interrupted");
        std::process::exit(130);
    });
}

/// A temporary file registered for deletion on interrupt while this lives.
pub struct Pending(PathBuf);

impl Pending {
    fn new(p: &Path) -> Self {
        PENDING.lock().unwrap_or_else(PoisonError::into_inner).push(p.to_path_buf());
        Self(p.to_path_buf())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        PENDING.lock().unwrap_or_else(PoisonError::into_inner).retain(|p| *p != self.0);
    }
}

/// Where a stream goes: stdout, or a file that appears only when [`Output::commit`] succeeds.
pub enum Output {
    /// Standard output.
    Stdout(BufWriter<io::StdoutLock<'static>>),
    /// A temporary file beside the target, renamed over it on commit, deleted on drop.
    File {
        /// The temporary file.
        tmp: BufWriter<PendingFile>,
        /// The final name, for messages.
        target: PathBuf,
        /// Deletes the temporary file if the process is interrupted.
        _pending: Pending,
    },
}

impl Output {
    /// Stdout for `None` or `-`, otherwise a temporary file in the target's directory.
    pub fn create(path: Option<&Path>) -> Result<Self, Failure> {
        let target = match path {
            None => return Ok(Self::stdout()),
            Some(p) if p == Path::new("-") => return Ok(Self::stdout()),
            Some(p) => p,
        };
        if target.file_name().is_none() {
            return Err(Failure::usage(format!("{} is not a file name", target.display())));
        }
        let tmp = PendingFile::new(target)
            .doing(|| format!("creating a temporary file in {}", atrest::fs::parent_dir(target).display()))?;
        let pending = Pending::new(tmp.temp_path());
        Ok(Self::File { tmp: BufWriter::with_capacity(BUF, tmp), target: target.to_path_buf(), _pending: pending })
    }

    fn stdout() -> Self {
        Self::Stdout(BufWriter::with_capacity(BUF, io::stdout().lock()))
    }

    /// Whether this is stdout and stdout is a terminal.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Stdout(_)) && io::stdout().is_terminal()
    }

    /// The name for messages.
    pub fn name(&self) -> String {
        match self {
            Self::Stdout(_) => "stdout".into(),
            Self::File { target, .. } => target.display().to_string(),
        }
    }

    /// Flushes everything; a file is synced and renamed over the target (keeping the owner
    /// and mode of a file it replaces).
    pub fn commit(self) -> Result<(), Failure> {
        match self {
            Self::Stdout(mut w) => w.flush().doing(|| "writing to stdout".into()),
            Self::File { tmp, target, _pending } => {
                let name = target.display().to_string();
                let tmp =
                    tmp.into_inner().map_err(io::IntoInnerError::into_error).doing(|| format!("writing {name}"))?;
                tmp.commit().doing(|| format!("renaming the output to {name}"))
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(w) => w.write(buf),
            Self::File { tmp, .. } => tmp.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Stdout(w) => w.write_all(buf),
            Self::File { tmp, .. } => tmp.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(w) => w.flush(),
            Self::File { tmp, .. } => tmp.flush(),
        }
    }
}

/// A progress line on stderr, drawn only when stderr is a terminal.
pub struct Progress {
    label: &'static str,
    total: Option<u64>,
    done: u64,
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
}

impl Progress {
    /// A progress line for `label`, over `total` bytes if known.
    pub fn new(label: &'static str, total: Option<u64>) -> Self {
        Self { label, total, done: 0, start: Instant::now(), last: None, enabled: io::stderr().is_terminal() }
    }

    /// Adds `n` processed bytes, redrawing at most five times a second.
    pub fn add(&mut self, n: usize) {
        self.done = self.done.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < Duration::from_millis(200)) {
            return;
        }
        // Short jobs stay quiet.
        if now.duration_since(self.start) < Duration::from_millis(500) {
            return;
        }
        self.last = Some(now);
        self.draw(now);
    }

    fn draw(&self, now: Instant) {
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-3);
        #[allow(clippy::cast_precision_loss)] // display only
        let rate = self.done as f64 / secs;
        let mut line = format!("{}: {}", self.label, human_bytes(self.done));
        if let Some(t) = self.total.filter(|&t| t > 0) {
            #[allow(clippy::cast_precision_loss)] // display only
            let pct = (self.done as f64 / t as f64 * 100.0).min(100.0);
            line.push_str(&format!(" / {} ({pct:.0}%)", human_bytes(t)));
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // display only, rate >= 0
        let rate = rate as u64;
        line.push_str(&format!(", {}/s", human_bytes(rate)));
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    /// Clears the line (if one was drawn).
    pub fn finish(self) {
        if self.enabled && self.last.is_some() {
            let _ = write!(io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

/// `1234567` -> `1.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)] // display only
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        unit = u;
        if v < 1024.0 || u == "TiB" {
            break;
        }
        v /= 1024.0;
    }
    if unit == "B" { format!("{n} B") } else { format!("{v:.1} {unit}") }
}

/// A reader or writer that feeds a [`Progress`] line with the bytes passing through, and
/// remembers whether it failed (to tell a read or write failure from a crypto one).
pub struct Counting<T> {
    inner: T,
    progress: Progress,
    failed: bool,
}

impl<T> Counting<T> {
    /// Counts the bytes through `inner` into `progress`.
    pub fn new(inner: T, progress: Progress) -> Self {
        Self { inner, progress, failed: false }
    }

    /// Whether a read or write of the inner stream failed.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Clears the progress line and returns the inner stream.
    pub fn finish(self) -> T {
        self.progress.finish();
        self.inner
    }

    fn count(&mut self, r: io::Result<usize>) -> io::Result<usize> {
        match &r {
            Ok(n) => self.progress.add(*n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.failed = true,
        }
        r
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        self.count(r)
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.count(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.count(r.map(|()| 0)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_humans() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
    }

    #[test]
    fn output_file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let mut o = Output::create(Some(&target)).unwrap();
        o.write_all(b"partial").unwrap();
        drop(o);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut o = Output::create(Some(&target)).unwrap();
        o.write_all(b"complete").unwrap();
        assert!(!target.exists());
        o.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"complete");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
