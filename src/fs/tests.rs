use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use super::*;

/// Another user than the one running the tests (root can give files to it).
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn owner_group_mode(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[test]
fn replace_and_create_new() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    create_new(&p, b"one").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"one");
    let e = create_new(&p, b"two").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&p).unwrap(), b"one");
    replace(&p, b"three").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"three");
    assert_eq!(names(dir.path()), ["f"], "no temporary file is left behind");
    assert_eq!(owner_group_mode(&p).2, 0o600);
    // Dropped before commit: nothing appears.
    let mut pending = PendingFile::new(&dir.path().join("g")).unwrap();
    pending.write_all(b"partial").unwrap();
    assert!(pending.temp_path().exists());
    drop(pending);
    assert_eq!(names(dir.path()), ["f"]);
}

#[test]
fn replace_keeps_owner_group_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("keyring");
    create_new(&p, b"v1").unwrap();
    chmod(&p, 0o640);
    // As root: the file of another user and group (the case of a rotation run as root on
    // an application's keyring). Otherwise: our own uid and group, mode 0640.
    if is_root() {
        std::os::unix::fs::chown(&p, Some(NOBODY), Some(100)).unwrap();
    }
    let before = owner_group_mode(&p);
    replace(&p, b"v2").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"v2");
    assert_eq!(owner_group_mode(&p), before);
    chmod(&p, 0o604);
    replace(&p, b"v3").unwrap();
    assert_eq!(owner_group_mode(&p), (before.0, before.1, 0o604));
}

#[test]
fn strays_of_killed_writers_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.atrk");
    create_new(&p, b"x").unwrap();
    let mut stray = PendingFile::new(&p).unwrap();
    stray.write_all(b"half").unwrap();
    // A killed writer leaves its file behind.
    let (_, stray_path) = stray.tmp.keep().unwrap();
    assert!(stray_path.exists());
    for other in [".k.atrk.short.tmp", ".other.0123456789abcdef.tmp", "k.atrk.lock"] {
        std::fs::write(dir.path().join(other), b"").unwrap();
    }
    remove_strays(&p);
    assert_eq!(names(dir.path()), [".k.atrk.short.tmp", ".other.0123456789abcdef.tmp", "k.atrk", "k.atrk.lock"]);
}

/// The sweep before a new output file: a killed writer's file (unlocked, unmodified for
/// `DEAD_AFTER`) goes; a live writer's (locked, also when old), one created a moment ago and
/// not locked yet, a symlink and a FIFO under a stray's name stay, and the sweep never blocks.
#[test]
fn only_dead_writers_files_are_swept_before_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.atrb");
    let long_ago = std::time::SystemTime::now() - DEAD_AFTER - Duration::from_secs(5);
    let age = |path: &Path| File::options().write(true).open(path).unwrap().set_modified(long_ago).unwrap();
    let stray = |name: &str| dir.path().join(format!(".out.atrb.{name}.tmp"));
    // A killed writer's file, old: swept.
    std::fs::write(stray("AAAAAAAAAAAAAAAA"), b"plaintext").unwrap();
    age(&stray("AAAAAAAAAAAAAAAA"));
    // A writer's file created a moment ago, not locked yet: kept.
    std::fs::write(stray("BBBBBBBBBBBBBBBB"), b"").unwrap();
    // A live writer, its file old (a slow producer): kept.
    let live = PendingFile::new(&p).unwrap();
    age(live.temp_path());
    // A link to an old file and a FIFO under strays' names: neither followed nor removed.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    age(&victim);
    symlink(&victim, stray("CCCCCCCCCCCCCCCC")).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, stray("DDDDDDDDDDDDDDDD"), rustix::fs::FileType::Fifo, 0o600.into(), 0)
        .unwrap();
    remove_dead_strays(&p);
    let live_name = live.temp_path().file_name().unwrap().to_string_lossy().into_owned();
    let mut expected = vec![
        ".out.atrb.BBBBBBBBBBBBBBBB.tmp".to_owned(),
        ".out.atrb.CCCCCCCCCCCCCCCC.tmp".to_owned(),
        ".out.atrb.DDDDDDDDDDDDDDDD.tmp".to_owned(),
        live_name,
        "victim".to_owned(),
    ];
    expected.sort();
    assert_eq!(names(dir.path()), expected);
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    // Once the live writer is done, its file is the output.
    live.commit().unwrap();
    assert!(p.exists());
}

/// Writers of one file, each sweeping before it writes (as every CLI run does): a sweep must
/// never take a live writer's file in the moment between its creation and its lock (each
/// commit would then fail to find its file).
#[test]
fn concurrent_writers_sweeping_never_take_each_others_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("shared.out");
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let p = &p;
            s.spawn(move || {
                for i in 0..300u32 {
                    remove_dead_strays(p);
                    let mut f = PendingFile::new(p).unwrap();
                    f.write_all(&[t; 64]).unwrap();
                    f.commit().unwrap_or_else(|e| panic!("writer {t}, round {i}: {e}"));
                }
            });
        }
    });
    assert_eq!(names(dir.path()), ["shared.out"]);
}

#[test]
fn lock_refuses_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.atrk");
    create_new(&p, b"x").unwrap();
    let victim = dir.path().join("x");
    symlink(&victim, lock_path(&p)).unwrap();
    let e = Lock::acquire(&p, Duration::ZERO).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("k.atrk.lock") && e.to_string().contains("symbolic link"), "{e}");
    assert!(!victim.exists(), "the link was followed");
    // A link to an existing file is refused too, and the file is untouched.
    std::fs::write(&victim, b"precious").unwrap();
    Lock::acquire(&p, Duration::ZERO).unwrap_err();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // Not a regular file.
    std::fs::remove_file(lock_path(&p)).unwrap();
    std::fs::create_dir(lock_path(&p)).unwrap();
    assert!(Lock::acquire(&p, Duration::ZERO).is_err());
}

#[test]
fn a_held_lock_times_out_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.atrk");
    create_new(&p, b"x").unwrap();
    let held = Lock::acquire(&p, Duration::ZERO).unwrap();
    assert_eq!(owner_group_mode(&lock_path(&p)).2, 0o600);
    let start = Instant::now();
    // flock(2) locks belong to the open file: a second open conflicts as another process's.
    let e = Lock::acquire(&p, Duration::from_millis(300)).unwrap_err();
    let waited = start.elapsed();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(e.to_string().contains(&lock_path(&p).display().to_string()), "{e}");
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(10), "{waited:?}");
    drop(held);
    drop(Lock::acquire(&p, Duration::from_millis(300)).unwrap());
}

#[test]
fn lock_file_of_another_user_is_refused() {
    if !is_root() {
        return; // Only root can make a file of another user.
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.atrk");
    create_new(&p, b"x").unwrap();
    std::fs::write(lock_path(&p), b"").unwrap();
    std::os::unix::fs::chown(lock_path(&p), Some(NOBODY), None).unwrap();
    let e = Lock::acquire(&p, Duration::ZERO).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("owned by uid 65534"), "{e}");
    // But root may take the lock of the guarded file's owner, and a lock file it creates
    // goes to that owner.
    std::os::unix::fs::chown(&p, Some(NOBODY), Some(100)).unwrap();
    drop(Lock::acquire(&p, Duration::ZERO).unwrap());
    std::fs::remove_file(lock_path(&p)).unwrap();
    drop(Lock::acquire(&p, Duration::ZERO).unwrap());
    assert_eq!(owner_group_mode(&lock_path(&p)), (NOBODY, 100, 0o600));
}

#[test]
fn private_files_are_checked_on_the_opened_handle() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("secret");
    create_new(&p, b"s3cret\n").unwrap();
    assert_eq!(read_private_file(&p).unwrap().as_str(), "s3cret\n");
    // A link is followed; the file it leads to is checked.
    let link = dir.path().join("link");
    symlink(&p, &link).unwrap();
    assert_eq!(read_private_file(&link).unwrap().as_str(), "s3cret\n");
    for mode in [0o640, 0o604, 0o660, 0o610] {
        chmod(&p, mode);
        let e = read_private_file(&p).unwrap_err();
        assert!(matches!(e, RootKeyError::InsecurePermissions { mode: m, .. } if m == mode), "{mode:o}: {e}");
        assert!(read_private_file(&link).is_err());
    }
    chmod(&p, 0o400);
    read_private_file(&p).unwrap();
    // Not regular files: a directory, a FIFO (refused without blocking on it).
    assert!(matches!(read_private_file(dir.path()), Err(RootKeyError::Io { .. })));
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::RUSR, 0).unwrap();
    let e = read_private_file(&fifo).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    // Too large to be a key or a PIN.
    let big = dir.path().join("big");
    create_new(&big, &vec![b'a'; 70_000]).unwrap();
    assert!(read_private_file(&big).unwrap_err().to_string().contains("larger than"));
}

#[test]
fn private_file_of_another_user_is_refused() {
    if !is_root() {
        return; // Only root can make a file of another user.
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("root.key");
    create_new(&p, b"key").unwrap();
    std::os::unix::fs::chown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
    // Root may read it, but the rule is "owned by the caller or root": refused.
    let e = read_private_file(&p).unwrap_err();
    assert!(matches!(&e, RootKeyError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied), "{e}");
    assert!(e.to_string().contains("owned by uid 65534"), "{e}");
    std::os::unix::fs::chown(&p, Some(0), Some(NOBODY)).unwrap();
    read_private_file(&p).unwrap();
}
