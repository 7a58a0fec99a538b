//! [`DirStore`]: an object store in a local directory (the embedded default).
//!
//! An object `a/b/c` is the file `<root>/a/b/c`. A put writes a temporary file
//! `.<name>.<random>.tmp` (mode 0600) beside the target through [`crate::fs::PendingFile`],
//! fsyncs it, gives it the target's name only if no file has it (`renameat2` with
//! `RENAME_NOREPLACE`, or `link` + `unlink` where that is missing, as `tempfile` does), and
//! fsyncs the directory: an object is never overwritten, and after a crash the key holds
//! nothing or the complete object. Names starting with `.` are reserved for those temporary
//! files: such keys are refused, listing skips them, and a put removes the ones a killed
//! writer left in its directory (unmodified for a minute and not locked: a live writer holds
//! a lock on its file).
//!
//! Symbolic links are never followed below the root: a key whose path crosses one is
//! refused, listing skips them, and objects are opened with `O_NOFOLLOW`.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{ObjectMeta, ObjectStore, StoreError, check_key};
use crate::fs::{PendingFile, is_dead_temp, open_nofollow, parent_dir, sync_dir};

/// An object store in a local directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store rooted at `root`, created (mode 0700) if it does not exist.
    ///
    /// # Errors
    /// [`StoreError::Io`] if `root` cannot be created or is not a directory.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref().to_path_buf();
        let io = |source| StoreError::Io { key: root.display().to_string(), source };
        if !root.exists() {
            create_dirs(&root).map_err(io)?;
        }
        if !root.is_dir() {
            return Err(io(io::Error::new(io::ErrorKind::NotADirectory, "not a directory")));
        }
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `key`, checked: a valid key, no reserved name, no symbolic link on the
    /// way (the components that exist).
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        if key.split('/').any(|s| s.starts_with('.')) {
            return Err(StoreError::InvalidKey(key.to_owned()));
        }
        let mut path = self.root.clone();
        for seg in key.split('/') {
            path.push(seg);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => return Err(StoreError::InvalidKey(key.to_owned())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(source) => return Err(StoreError::Io { key: key.to_owned(), source }),
            }
        }
        Ok(self.root.join(key))
    }
}

fn io_err(key: &str) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { key: key.to_owned(), source }
}

/// Creates `dir` and its missing parents with mode 0700.
fn create_dirs(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Removes the temporary files that killed writers left in `dir` (see
/// [`is_dead_temp`]).
fn remove_dead_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") && e.file_type().is_ok_and(|t| t.is_file()) {
            let path = e.path();
            if is_dead_temp(&path) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl ObjectStore for DirStore {
    fn put_new(&self, key: &str, body: &mut dyn Read) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(StoreError::AlreadyExists(key.to_owned()));
        }
        let dir = parent_dir(&path);
        create_dirs(dir).map_err(io_err(key))?;
        // A directory created meanwhile must not be a link either.
        self.path(key)?;
        remove_dead_temp_files(dir);
        let mut tmp = PendingFile::new(&path).map_err(io_err(key))?;
        let n = io::copy(body, &mut tmp).map_err(io_err(key))?;
        tmp.commit_new().map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => StoreError::AlreadyExists(key.to_owned()),
            _ => StoreError::Io { key: key.to_owned(), source: e },
        })?;
        Ok(n)
    }

    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        let path = self.path(key)?;
        match open_nofollow(&path) {
            Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => Ok(Box::new(f)),
            Ok(_) => Err(StoreError::NotFound(key.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(key.to_owned())),
            Err(source) => Err(StoreError::Io { key: key.to_owned(), source }),
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path(key)?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta { key: key.to_owned(), size: m.len() })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { key: key.to_owned(), source }),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // Walk from the deepest directory the prefix names.
        let start = prefix.rfind('/').map_or("", |i| prefix.get(..i).unwrap_or(""));
        let dir = if start.is_empty() { self.root.clone() } else { self.path(start)? };
        let mut out = Vec::new();
        let mut todo = vec![(dir, start.to_owned())];
        while let Some((dir, rel)) = todo.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory => continue,
                Err(source) => return Err(StoreError::Io { key: rel, source }),
            };
            for e in entries {
                let e = e.map_err(io_err(&rel))?;
                let Some(name) = e.file_name().to_str().map(str::to_owned) else { continue };
                if name.starts_with('.') {
                    continue;
                }
                let key = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                let t = e.file_type().map_err(io_err(&key))?;
                if t.is_dir() && (key.starts_with(prefix) || prefix.starts_with(&format!("{key}/"))) {
                    todo.push((e.path(), key));
                } else if t.is_file() && key.starts_with(prefix) && check_key(&key).is_ok() {
                    let size = e.metadata().map_err(io_err(&key))?.len();
                    out.push(ObjectMeta { key, size });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(parent_dir(&path)).map_err(io_err(key)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { key: key.to_owned(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::new(d.path().join("repo")).unwrap();
        assert_eq!(s.put_new("a/b/c", &mut &b"hello"[..]).unwrap(), 5);
        assert!(matches!(s.put_new("a/b/c", &mut &b"other"[..]), Err(StoreError::AlreadyExists(_))));
        let mut got = Vec::new();
        s.get("a/b/c").unwrap().read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello");
        s.put_new("a/x", &mut &b"1"[..]).unwrap();
        s.put_new("ab", &mut &b"22"[..]).unwrap();
        let keys = |p: &str| s.list(p).unwrap().into_iter().map(|m| (m.key, m.size)).collect::<Vec<_>>();
        assert_eq!(keys(""), [("a/b/c".into(), 5), ("a/x".into(), 1), ("ab".into(), 2)]);
        assert_eq!(keys("a/"), [("a/b/c".to_owned(), 5), ("a/x".into(), 1)]);
        assert_eq!(keys("a"), [("a/b/c".to_owned(), 5), ("a/x".into(), 1), ("ab".into(), 2)]);
        assert_eq!(keys("a/b/"), [("a/b/c".to_owned(), 5)]);
        assert_eq!(keys("zz/"), []);
        assert_eq!(s.head("a/x").unwrap(), Some(ObjectMeta { key: "a/x".into(), size: 1 }));
        assert_eq!(s.head("a/y").unwrap(), None);
        s.delete("a/x").unwrap();
        s.delete("a/x").unwrap();
        assert!(matches!(s.get("a/x"), Err(StoreError::NotFound(_))));
        assert!(matches!(s.put_new(".hidden", &mut &b""[..]), Err(StoreError::InvalidKey(_))));
        assert!(matches!(s.put_new("a/../b", &mut &b""[..]), Err(StoreError::InvalidKey(_))));
    }

    #[test]
    fn failed_body_leaves_nothing_and_stale_temps_are_ignored_then_swept() {
        struct Fails;
        impl Read for Fails {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("producer died"))
            }
        }
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::new(d.path()).unwrap();
        assert!(s.put_new("t/obj", &mut Fails).is_err());
        assert_eq!(s.head("t/obj").unwrap(), None);
        // A killed writer's file, and one that a writer created a moment ago (not locked yet).
        let (old, young) =
            (d.path().join("t/.obj2.AAAAAAAAAAAAAAAA.tmp"), d.path().join("t/.obj3.BBBBBBBBBBBBBBBB.tmp"));
        std::fs::write(&old, b"partial").unwrap();
        std::fs::write(&young, b"partial").unwrap();
        let long_ago = std::time::SystemTime::now() - crate::fs::DEAD_AFTER - std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&old).unwrap().set_modified(long_ago).unwrap();
        assert!(s.list("").unwrap().is_empty());
        s.put_new("t/obj", &mut &b"ok"[..]).unwrap();
        let mut names: Vec<_> =
            std::fs::read_dir(d.path().join("t")).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, [".obj3.BBBBBBBBBBBBBBBB.tmp", "obj"]);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        let s = DirStore::new(d.path()).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("file")).unwrap();
        assert!(matches!(s.get("link/secret"), Err(StoreError::InvalidKey(_))));
        assert!(matches!(s.put_new("link/new", &mut &b"x"[..]), Err(StoreError::InvalidKey(_))));
        assert!(s.get("file").is_err());
        assert!(matches!(s.head("file"), Err(StoreError::InvalidKey(_))));
        assert!(s.list("").unwrap().is_empty());
        assert!(!outside.path().join("new").exists());
    }
}
