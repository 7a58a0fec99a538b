//! Inputs, outputs (files appear only when complete, through `atrest::fs`), and a progress
//! line for long streams.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use atrest::fs::PendingFile;

use crate::failure::{Doing, Failure};

/// Copy buffer size.
const BUF: usize = 256 * 1024;

/// Where a stream comes from.
pub struct Input {
    source: Source,
    /// "stdin" or the file name, for messages.
    pub name: String,
    /// The length, when known (a regular file).
    pub len: Option<u64>,
}

enum Source {
    File(File),
    Stdin(io::StdinLock<'static>),
    Child(std::process::ChildStdout),
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
                Ok(Self { source: Source::File(f), name, len })
            }
        }
    }

    /// The stdout of a producer process.
    pub fn child(out: std::process::ChildStdout, name: String) -> Self {
        Self { source: Source::Child(out), name, len: None }
    }

    fn stdin() -> Self {
        Self { source: Source::Stdin(io::stdin().lock()), name: "stdin".into(), len: None }
    }

    /// This input as a file that can be read twice (to authenticate the whole stream before
    /// any plaintext is released): a regular file as it is, anything else (a pipe, a FIFO)
    /// spooled into an anonymous private temporary file in `$TMPDIR` (mode 0600, unlinked
    /// from the start, so it is gone on exit or any signal), or refused if `spool` is false.
    pub fn rewindable(self, spool: bool) -> Result<Self, Failure> {
        let Self { source, name, len } = self;
        let mut from = match source {
            Source::File(f) if len.is_some() => return Ok(Self { source: Source::File(f), name, len }),
            other => other,
        };
        if !spool {
            return Err(Failure::usage(format!(
                "{name} is not a regular file: it cannot be authenticated before decrypting without spooling it \
                 (drop --no-spool, decrypt with -i FILE, or pass --stream-unverified and check the exit status)"
            )));
        }
        let mut tmp = tempfile::tempfile().doing(|| "creating a spool file in $TMPDIR".into())?;
        let n = match &mut from {
            Source::File(f) => io::copy(f, &mut tmp),
            Source::Stdin(s) => io::copy(s, &mut tmp),
            Source::Child(c) => io::copy(c, &mut tmp),
        }
        .doing(|| format!("spooling {name} to a temporary file"))?;
        tmp.seek(SeekFrom::Start(0)).doing(|| "rewinding the spool file".into())?;
        Ok(Self { source: Source::File(tmp), name, len: Some(n) })
    }

    /// Back to the start (after [`Input::rewindable`]).
    pub fn rewind(&mut self) -> Result<(), Failure> {
        match &mut self.source {
            Source::File(f) => f.seek(SeekFrom::Start(0)).map(|_| ()).doing(|| format!("rewinding {}", self.name)),
            Source::Stdin(_) | Source::Child(_) => Err(Failure::usage("a pipe cannot be rewound")),
        }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.source {
            Source::File(f) => f.read(buf),
            Source::Stdin(s) => s.read(buf),
            Source::Child(c) => c.read(buf),
        }
    }
}

/// Deletes the pending temporary output files (before exiting without unwinding).
pub fn delete_pending() {
    for p in PENDING.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
        let _ = std::fs::remove_file(p);
    }
}

/// Temporary output files to delete if the process is interrupted (SIGINT, SIGTERM, SIGHUP).
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// On SIGINT, SIGTERM or SIGHUP: delete pending temporary output files and exit with 130.
pub fn delete_temporary_files_on_interrupt() {
    // Failing to install the handler only loses the clean-up on interrupt.
    let _ = ctrlc::set_handler(|| {
        delete_pending();
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

/// Where a stream goes: stdout, a FIFO or character device written directly, or a file
/// that appears only when [`Output::commit`] succeeds.
pub enum Output {
    /// Standard output.
    Stdout(BufWriter<io::StdoutLock<'static>>),
    /// A FIFO or character device (`/dev/null`, `/dev/full`), written in place: never
    /// replaced.
    Device {
        /// The opened device.
        file: BufWriter<File>,
        /// Its name, for messages.
        target: PathBuf,
    },
    /// A temporary file beside the target, renamed to it on commit, deleted on drop.
    File {
        /// The temporary file.
        tmp: BufWriter<PendingFile>,
        /// The final name, for messages.
        target: PathBuf,
        /// Replace an existing file (`--force`); otherwise commit only if none appeared.
        force: bool,
        /// Deletes the temporary file if the process is interrupted.
        _pending: Pending,
    },
}

impl Output {
    /// Stdout for `None` or `-`; a FIFO or character device as it is; otherwise a temporary
    /// file in the target's directory (an existing target is refused unless `force`). Stale
    /// temporary files of an earlier killed run to the same target are removed first.
    pub fn create(path: Option<&Path>, force: bool) -> Result<Self, Failure> {
        let target = match path {
            None => return Ok(Self::stdout()),
            Some(p) if p == Path::new("-") => return Ok(Self::stdout()),
            Some(p) => p,
        };
        if target.file_name().is_none() {
            return Err(Failure::usage(format!("{} is not a file name", target.display())));
        }
        let name = target.display().to_string();
        match std::fs::metadata(target) {
            Ok(m) if is_device(&m) => {
                let f = std::fs::OpenOptions::new().write(true).open(target).doing(|| format!("opening {name}"))?;
                return Ok(Self::Device { file: BufWriter::with_capacity(BUF, f), target: target.to_path_buf() });
            }
            Ok(_) if !force => {
                return Err(Failure::usage(format!(
                    "{name} exists: refusing to replace it (pass --force to replace it)"
                )));
            }
            _ => {}
        }
        atrest::fs::remove_dead_strays(target);
        let tmp = PendingFile::new(target)
            .doing(|| format!("creating a temporary file in {}", atrest::fs::parent_dir(target).display()))?;
        let pending = Pending::new(tmp.temp_path());
        Ok(Self::File {
            tmp: BufWriter::with_capacity(BUF, tmp),
            target: target.to_path_buf(),
            force,
            _pending: pending,
        })
    }

    fn stdout() -> Self {
        Self::Stdout(BufWriter::with_capacity(BUF, io::stdout().lock()))
    }

    /// Whether this is a file that appears only when complete (nothing unauthenticated can
    /// reach a reader of it).
    pub fn is_file(&self) -> bool {
        matches!(self, Self::File { .. })
    }

    /// Whether this is stdout and stdout is a terminal.
    pub fn is_terminal(&self) -> bool {
        // (A device named with -o is never treated as a terminal: it was asked for.)
        matches!(self, Self::Stdout(_)) && io::stdout().is_terminal()
    }

    /// The name for messages.
    pub fn name(&self) -> String {
        match self {
            Self::Stdout(_) => "stdout".into(),
            Self::Device { target, .. } | Self::File { target, .. } => target.display().to_string(),
        }
    }

    /// Flushes everything; a file is synced and renamed over the target (keeping the owner
    /// and mode of a file it replaces).
    pub fn commit(self) -> Result<(), Failure> {
        match self {
            Self::Stdout(mut w) => w.flush().doing(|| "writing to stdout".into()),
            Self::Device { mut file, target } => file.flush().doing(|| format!("writing {}", target.display())),
            Self::File { tmp, target, force, _pending } => {
                let name = target.display().to_string();
                let tmp =
                    tmp.into_inner().map_err(io::IntoInnerError::into_error).doing(|| format!("writing {name}"))?;
                if force {
                    tmp.commit().doing(|| format!("renaming the output to {name}"))
                } else {
                    // Never over a file that appeared meanwhile (another writer won the race).
                    tmp.commit_new()
                        .doing(|| format!("{name} appeared while it was being written; this output was discarded"))
                }
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(w) => w.write(buf),
            Self::Device { file, .. } => file.write(buf),
            Self::File { tmp, .. } => tmp.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Stdout(w) => w.write_all(buf),
            Self::Device { file, .. } => file.write_all(buf),
            Self::File { tmp, .. } => tmp.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(w) => w.flush(),
            Self::Device { file, .. } => file.flush(),
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

/// A FIFO or character device: written in place, never replaced.
#[cfg(unix)]
fn is_device(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_fifo() || m.file_type().is_char_device()
}

#[cfg(not(unix))]
fn is_device(_: &std::fs::Metadata) -> bool {
    false
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
        let mut o = Output::create(Some(&target), true).unwrap();
        o.write_all(b"partial").unwrap();
        drop(o);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut o = Output::create(Some(&target), true).unwrap();
        o.write_all(b"complete").unwrap();
        assert!(!target.exists());
        o.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"complete");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
