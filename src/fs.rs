//! File safety, in one place: crash-safe creation and replacement of files, lock files, and
//! reads of secret files. The keyring, backup rewrap and the CLI use this module and nothing
//! else for these jobs.
//!
//! - **Atomic writes** ([`replace`], [`create_new`], [`PendingFile`]): the data goes to a
//!   temporary file `.<name>.<random>.tmp` (mode 0600) in the target's directory, which is
//!   fsynced, renamed over the target (or, for a new file, renamed only if the target does
//!   not exist), and then the directory is fsynced. After a crash at any point the target is
//!   the complete old file or the complete new one; at worst a temporary file is left,
//!   which [`remove_strays`] sweeps. A replaced file **keeps its owner, group and permission
//!   bits**: a rotation run as root leaves an application's `app:app 0640` keyring as it
//!   was. If they cannot be kept (a user who may not give the file that group), the write
//!   is refused and the target is untouched.
//! - **Lock files** ([`Lock`]): `<file>.lock`, opened without following a symbolic link,
//!   created with mode 0600, and refused unless it is a regular file owned by the caller
//!   (root may also take the lock of the file's owner; a lock file root creates is given to
//!   that owner). The wait is bounded ([`lock_wait`]); then a `TimedOut` error names the
//!   lock file.
//! - **Secret files** ([`read_private_file`]: root key, PKCS#11 PIN): opened once, then the
//!   *opened* file is checked (a regular file, owned by the caller or root, no group or
//!   other permission bits) and that same handle is read, so the file checked is the file
//!   read. A symbolic link as the last component is followed (secret mounts such as
//!   Kubernetes' are links); the checks apply to the file it leads to.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::error::RootKeyError;

/// The suffix of temporary files.
const TEMP_SUFFIX: &str = ".tmp";
/// Random characters in a temporary file name.
const TEMP_RAND: usize = 16;
/// How long [`Lock::acquire`] waits by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);
/// The environment variable that overrides [`DEFAULT_LOCK_WAIT`], in seconds.
pub const LOCK_WAIT_ENV: &str = "ATREST_LOCK_WAIT";
/// Secret files are small; a larger one is not a key or a PIN.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory so that a rename, link or removal in it is durable.
///
/// # Errors
/// Opening or syncing the directory failed.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Opens a new file (never an existing one) for writing with mode 0600.
///
/// # Errors
/// `AlreadyExists`, or any other I/O error.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

/// `.<name>.`: the start of the temporary files of `target`.
fn temp_prefix(target: &Path) -> io::Result<OsString> {
    let name = target.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a file name", target.display()))
    })?;
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    Ok(prefix)
}

/// A file being written beside its target: it takes the target's name only on
/// [`commit`](PendingFile::commit), and is deleted if dropped before.
pub struct PendingFile {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl PendingFile {
    /// Creates the temporary file (mode 0600) in `target`'s directory.
    ///
    /// # Errors
    /// `target` has no file name, or the file cannot be created.
    pub fn new(target: &Path) -> io::Result<Self> {
        let prefix = temp_prefix(target)?;
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(TEMP_SUFFIX)
            .rand_bytes(TEMP_RAND)
            .tempfile_in(parent_dir(target))?;
        // Held while the writer lives: tells a live writer's file from a killed one's (see
        // `remove_dead_strays`).
        tmp.as_file().try_lock().map_err(|e| match e {
            std::fs::TryLockError::Error(e) => e,
            std::fs::TryLockError::WouldBlock => io::Error::other("a new temporary file is locked"),
        })?;
        Ok(Self { tmp, target: target.to_path_buf() })
    }

    /// The temporary file's path (to delete it from a signal handler).
    #[cfg_attr(not(feature = "cli"), allow(dead_code, reason = "used by the atrest binary"))]
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Syncs the data and renames the file over the target, keeping the owner, group and
    /// permission bits of the file it replaces; then syncs the directory.
    ///
    /// # Errors
    /// `PermissionDenied` if the replaced file's owner or group cannot be kept (the target
    /// is then untouched), or any other I/O error.
    pub fn commit(self) -> io::Result<()> {
        match std::fs::symlink_metadata(&self.target) {
            Ok(old) if old.is_file() => keep_owner_and_mode(self.tmp.as_file(), &old, &self.target)?,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.tmp.as_file().sync_all()?;
        self.tmp.persist(&self.target).map_err(|e| e.error)?;
        sync_dir(parent_dir(&self.target))
    }

    /// Syncs the data and gives the file the target's name only if no file has it.
    ///
    /// # Errors
    /// `AlreadyExists` if the target exists (it is untouched), or any other I/O error.
    pub fn commit_new(self) -> io::Result<()> {
        self.tmp.as_file().sync_all()?;
        self.tmp.persist_noclobber(&self.target).map_err(|e| e.error)?;
        sync_dir(parent_dir(&self.target))
    }
}

impl Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.tmp.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// Gives `new` the owner, group and permission bits of `old` (the file it replaces).
#[cfg(unix)]
fn keep_owner_and_mode(new: &File, old: &std::fs::Metadata, target: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let cur = new.metadata()?;
    let uid = (cur.uid() != old.uid()).then_some(old.uid());
    let gid = (cur.gid() != old.gid()).then_some(old.gid());
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::fchown(new, uid, gid).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot give the new {} the owner {} and group {} of the file it replaces ({e}); nothing was changed",
                    target.display(),
                    old.uid(),
                    old.gid()
                ),
            )
        })?;
    }
    new.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o777))
}

#[cfg(not(unix))]
fn keep_owner_and_mode(new: &File, old: &std::fs::Metadata, _target: &Path) -> io::Result<()> {
    new.set_permissions(old.permissions())
}

/// Writes `contents` to `target` atomically, keeping the owner, group and mode of the file
/// it replaces (a new file gets mode 0600).
///
/// # Errors
/// As [`PendingFile::commit`].
pub fn replace(target: &Path, contents: &[u8]) -> io::Result<()> {
    let mut f = PendingFile::new(target)?;
    f.write_all(contents)?;
    f.commit()
}

/// Writes `contents` to a new file `target` (mode 0600) atomically; never over an existing
/// file.
///
/// # Errors
/// `AlreadyExists` if `target` exists, or any other I/O error.
pub fn create_new(target: &Path, contents: &[u8]) -> io::Result<()> {
    let mut f = PendingFile::new(target)?;
    f.write_all(contents)?;
    f.commit_new()
}

/// Removes the temporary files that writers of `target` left when they were killed (they
/// may hold plaintext): files unmodified for a minute that no live writer holds a lock on
/// (every [`PendingFile`] locks its file just after creating it). Younger files are kept: one
/// may be a concurrent writer's that has not locked it yet.
#[cfg_attr(not(feature = "cli"), allow(dead_code, reason = "used by the atrest binary"))]
pub fn remove_dead_strays(target: &Path) {
    for path in strays(target) {
        if is_dead_temp(&path) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// How long a temporary file must be unmodified before a sweep may take it for a killed
/// writer's. A live writer locks its file just after creating it; without this margin a
/// sweep by a concurrent writer could lock and delete the file in that moment (seen with
/// four writers in one directory: the live writer's rename then failed).
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(60);

/// Whether the temporary file at `path` was left by a killed writer: unmodified for
/// [`DEAD_AFTER`] and not locked (every live [`PendingFile`] holds a lock on its file). A
/// symbolic link is not followed (and never taken for a dead writer's file).
pub(crate) fn is_dead_temp(path: &Path) -> bool {
    let old_file = |m: std::fs::Metadata| {
        m.is_file() && m.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= DEAD_AFTER)
    };
    open_nofollow(path).is_ok_and(|f| f.metadata().is_ok_and(old_file) && f.try_lock().is_ok())
}

/// Opens a file for reading without following a symbolic link, and without blocking if it
/// is a FIFO planted under the name (regular files read as usual).
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = rustix::fs::open(path, flags, Mode::empty())?;
        Ok(File::from(fd))
    }
    #[cfg(not(unix))]
    File::open(path)
}

/// The temporary files of `target`'s writers, as named by [`PendingFile::new`].
fn strays(target: &Path) -> Vec<PathBuf> {
    let (Ok(prefix), Ok(entries)) = (temp_prefix(target), std::fs::read_dir(parent_dir(target))) else {
        return Vec::new();
    };
    let prefix = prefix.to_string_lossy().into_owned();
    entries
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(&prefix)
                && n.ends_with(TEMP_SUFFIX)
                && n.len() == prefix.len() + TEMP_RAND + TEMP_SUFFIX.len()
        })
        .map(|e| e.path())
        .collect()
}

/// Removes the temporary files that writers of `target` left when they were killed.
///
/// Call only while holding a lock that excludes every other writer of `target`.
pub fn remove_strays(target: &Path) {
    for path in strays(target) {
        let _ = std::fs::remove_file(path);
    }
}

/// The lock file of `guarded`: `<guarded>.lock`.
pub fn lock_path(guarded: &Path) -> PathBuf {
    let mut p = guarded.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// How long to wait for a lock: [`LOCK_WAIT_ENV`] (seconds, fractions allowed) if it is set
/// and valid, else [`DEFAULT_LOCK_WAIT`].
pub fn lock_wait() -> Duration {
    std::env::var(LOCK_WAIT_ENV)
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s.trim().parse().ok()?).ok())
        .unwrap_or(DEFAULT_LOCK_WAIT)
}

/// An exclusive advisory lock on `<file>.lock`, released on drop.
#[derive(Debug)]
pub struct Lock(File);

impl Lock {
    /// Takes the lock of `guarded`, waiting at most `wait` for another holder to release it.
    ///
    /// # Errors
    /// `TimedOut` after `wait`; `InvalidInput` if the lock file is a symbolic link or not a
    /// regular file; `PermissionDenied` if it belongs to another user; other I/O errors. Each
    /// message names the lock file.
    pub fn acquire(guarded: &Path, wait: Duration) -> io::Result<Self> {
        let path = lock_path(guarded);
        let named = |e: io::Error| io::Error::new(e.kind(), format!("lock file {}: {e}", path.display()));
        let file = open_lock_file(&path, guarded).map_err(named)?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self(file)),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(named(e)),
            }
            let waited = start.elapsed();
            let Some(left) = wait.checked_sub(waited).filter(|d| !d.is_zero()) else {
                return Err(named(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("another process held it for more than {:.1} s; giving up", wait.as_secs_f64()),
                )));
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[cfg(unix)]
fn open_lock_file(path: &Path, guarded: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::fs::MetadataExt;
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::open(path, flags, Mode::from_raw_mode(0o600)).map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            io::Error::new(io::ErrorKind::InvalidInput, "is a symbolic link: refusing to follow it")
        } else {
            e.into()
        }
    })?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "is not a regular file"));
    }
    let me = rustix::process::geteuid().as_raw();
    let owner = std::fs::metadata(guarded).ok().map(|m| (m.uid(), m.gid()));
    match owner {
        // Root took the lock of another user's file: a lock file it created goes to that
        // user, who must be able to take it later.
        Some((uid, gid)) if me == 0 && uid != 0 && meta.uid() == 0 => {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        _ if meta.uid() == me => {}
        Some((uid, _)) if me == 0 && meta.uid() == uid => {}
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "is owned by uid {}, not by you (uid {me}): refusing a lock file another user controls",
                    meta.uid()
                ),
            ));
        }
    }
    Ok(file)
}

#[cfg(not(unix))]
fn open_lock_file(path: &Path, _guarded: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

/// Reads a secret text file (a root key file, a PIN file): opens it once, checks the opened
/// file and reads that same handle. On Unix the file must be a regular file owned by the
/// caller or root, with no permission bits for group or others.
///
/// # Errors
/// [`RootKeyError::InsecurePermissions`] for group or other bits; [`RootKeyError::Io`] if
/// the file cannot be read, is not a regular file, belongs to another user, is larger than
/// 64 KiB or is not UTF-8.
pub fn read_private_file(path: &Path) -> Result<Zeroizing<String>, RootKeyError> {
    let io = |source| RootKeyError::Io { path: path.to_path_buf(), source };
    let refuse = |kind, msg: String| io(io::Error::new(kind, msg));
    let file = open_secret(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(refuse(io::ErrorKind::InvalidInput, "not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me && meta.uid() != 0 {
            return Err(refuse(
                io::ErrorKind::PermissionDenied,
                format!(
                    "owned by uid {}: a secret file must belong to the user reading it (uid {me}) or to root",
                    meta.uid()
                ),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(RootKeyError::InsecurePermissions { path: path.to_path_buf(), mode: meta.mode() & 0o777 });
        }
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(refuse(io::ErrorKind::InvalidData, format!("larger than {MAX_SECRET_FILE} bytes")));
    }
    // Sized up front so the string never reallocates (a reallocation would leave a copy).
    let cap = usize::try_from(MAX_SECRET_FILE).unwrap_or(usize::MAX);
    let mut text = Zeroizing::new(String::with_capacity(cap + 1));
    (&file).take(MAX_SECRET_FILE).read_to_string(&mut text).map_err(io)?;
    Ok(text)
}

/// Opens a file for reading; on Unix without blocking on a FIFO (it is then refused as not
/// a regular file) and without acquiring a controlling terminal.
fn open_secret(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        Ok(File::from(rustix::fs::open(path, flags, Mode::empty())?))
    }
    #[cfg(not(unix))]
    File::open(path)
}

#[cfg(all(test, unix))]
mod tests;
