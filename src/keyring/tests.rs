use super::*;
use crate::context::Context;
use crate::error::OpenError;

fn ctx() -> Context {
    Context::new().with("table", "t").with("row", "1")
}

#[test]
fn create_open_round_trip_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.atrk");
    let root = Arc::new(LocalRootKey::generate().unwrap());
    let k = Keyring::create(&p, root.clone()).unwrap();
    assert!(matches!(Keyring::create(&p, root.clone()), Err(KeyringError::AlreadyExists(_))));
    let sealed = k.tenant("acme").unwrap().seal(b"x", &ctx()).unwrap();
    let k2 = Keyring::open(&p, root.clone()).unwrap();
    assert_eq!(k2.tenant("acme").unwrap().open(&sealed, &ctx()).unwrap(), b"x");

    let other = Arc::new(LocalRootKey::generate().unwrap());
    assert!(matches!(Keyring::open(&p, other), Err(KeyringError::WrongRootKey { .. })));

    let bytes = std::fs::read(&p).unwrap();
    for cut in [0, 5, 20, bytes.len() / 2, bytes.len() - 1] {
        let e = Keyring::from_bytes(&bytes[..cut], root.clone()).unwrap_err();
        assert!(matches!(e, KeyringError::Truncated(_)), "cut {cut}: {e:?}");
    }
    // An edited revision number: the MAC catches it.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let edited = text.replacen("\"revision\":0", "\"revision\":9", 1);
    assert_ne!(edited, text);
    assert!(matches!(Keyring::from_bytes(edited.as_bytes(), root.clone()), Err(KeyringError::Tampered(_))));
    assert!(matches!(
        Keyring::from_bytes(b"hello world, not a keyring", root.clone()),
        Err(KeyringError::NotAKeyring(_))
    ));
    let appended = format!("{text}garbage\n");
    assert!(matches!(Keyring::from_bytes(appended.as_bytes(), root.clone()), Err(KeyringError::Corrupted { .. })));
    let upper = text
        .replace(text.lines().last().unwrap(), &text.lines().last().unwrap().to_uppercase().replace("MAC ", "mac "));
    assert!(matches!(Keyring::from_bytes(upper.as_bytes(), root.clone()), Err(KeyringError::Tampered(_))));
    let v2 = text.replacen("atrest-keyring v1", "atrest-keyring v2", 1);
    assert!(matches!(Keyring::from_bytes(v2.as_bytes(), root), Err(KeyringError::UnsupportedFormat(2))));
}

#[test]
fn lifecycle_transitions() {
    let k = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let t = k.tenant("acme").unwrap();
    let old = t.seal(b"old", &ctx()).unwrap();
    let v1 = MasterVersion::new(1);
    assert!(matches!(k.set_state(v1, KeyState::Disabled), Err(KeyringError::PrimaryRefused(..))));
    let v2 = k.rotate().unwrap();
    assert_eq!(v2, MasterVersion::new(2));
    let new = t.seal(b"new", &ctx()).unwrap();
    assert_eq!(crate::record_info(&new).unwrap().key_version.master, v2);
    assert_eq!(t.open(&old, &ctx()).unwrap(), b"old");
    k.set_state(v1, KeyState::Disabled).unwrap();
    assert!(matches!(t.open(&old, &ctx()), Err(OpenError::KeyDisabled(v)) if v == v1));
    k.set_state(v1, KeyState::Enabled).unwrap();
    assert_eq!(t.open(&old, &ctx()).unwrap(), b"old");
    assert!(matches!(
        k.destroy(v1, DestroyConfirmation::data_under_this_version_is_lost(v2)),
        Err(KeyringError::NotConfirmed(_))
    ));
    // Destroying needs the version disabled first, for the grace period.
    let confirm = DestroyConfirmation::data_under_this_version_is_lost(v1);
    assert!(matches!(k.destroy(v1, confirm), Err(KeyringError::NotDisabled(v)) if v == v1));
    assert!(matches!(k.set_state(v1, KeyState::Destroyed), Err(KeyringError::NotConfirmed(_))));
    k.set_state(v1, KeyState::Disabled).unwrap();
    assert!(
        matches!(k.destroy(v1, confirm), Err(KeyringError::GracePeriod { remaining_secs, .. }) if remaining_secs > 86_000)
    );
    k.destroy(v1, confirm.skip_grace_period()).unwrap();
    assert!(matches!(t.open(&old, &ctx()), Err(OpenError::KeyDestroyed(_))));
    assert!(matches!(k.set_state(v1, KeyState::Enabled), Err(KeyringError::Destroyed(_))));
    assert_eq!(t.open(&new, &ctx()).unwrap(), b"new");

    // Tenant generations.
    assert_eq!(k.rotate_tenant("acme").unwrap(), 1);
    let g1 = t.seal(b"g1", &ctx()).unwrap();
    assert_eq!(crate::record_info(&g1).unwrap().key_version.generation, 1);
    assert_eq!(t.open(&new, &ctx()).unwrap(), b"new");

    // Shredding.
    let other = k.tenant("globex").unwrap();
    let og = other.seal(b"o", &ctx()).unwrap();
    let rev = k.status().revision;
    let typo = crate::ShredEvidence::Record { sealed: &g1, context: &ctx() };
    assert!(matches!(k.shred_tenant("acmee", typo), Err(KeyringError::ShredEvidence(_))));
    let wrong_ctx = Context::new();
    let bad = crate::ShredEvidence::Record { sealed: &g1, context: &wrong_ctx };
    assert!(matches!(k.shred_tenant("acme", bad), Err(KeyringError::ShredEvidence(_))));
    assert_eq!(k.status().revision, rev, "refused shreds write nothing");
    k.shred_tenant("acme", crate::ShredEvidence::Record { sealed: &g1, context: &ctx() }).unwrap();
    assert!(matches!(
        k.shred_tenant("acme", crate::ShredEvidence::Unverified),
        Err(KeyringError::AlreadyShredded { .. })
    ));
    assert!(matches!(t.open(&g1, &ctx()), Err(OpenError::TenantShredded { .. })));
    assert!(matches!(k.tenant("acme"), Err(KeyringError::TenantShredded { .. })));
    assert_eq!(other.open(&og, &ctx()).unwrap(), b"o");
    let st = k.status();
    let sh = st.tenants.iter().find(|x| x.id == "acme").unwrap().shred.clone().unwrap();
    assert!(!sh.complete);
    assert_eq!(sh.pending_versions, vec![v2]);
    let v3 = k.rotate().unwrap();
    k.set_state(v2, KeyState::Disabled).unwrap();
    k.destroy(v2, DestroyConfirmation::data_under_this_version_is_lost(v2).skip_grace_period()).unwrap();
    let sh = k.status().tenants.into_iter().find(|x| x.id == "acme").unwrap().shred.unwrap();
    assert!(sh.complete);
    assert_eq!(k.primary(), v3);
}

#[test]
fn destroyed_material_is_gone_from_file_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.atrk");
    let root = Arc::new(LocalRootKey::generate().unwrap());
    let k = Keyring::create(&p, root.clone()).unwrap();
    let before = std::fs::read_to_string(&p).unwrap();
    let body: serde_json::Value = serde_json::from_str(before.lines().nth(1).unwrap()).unwrap();
    let w1 = body["masters"][0]["wrapped"].as_str().unwrap().to_owned();
    k.rotate().unwrap();
    let v1 = MasterVersion::new(1);
    k.set_state(v1, KeyState::Disabled).unwrap();
    // A file keyring waits at least its staleness bound (1 s, whole seconds: up to 2 s).
    let confirm = DestroyConfirmation::data_under_this_version_is_lost(v1).skip_grace_period();
    while let Err(KeyringError::GracePeriod { .. }) = k.destroy(v1, confirm) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let after = std::fs::read_to_string(&p).unwrap();
    assert!(!after.contains(&w1));
    let k2 = Keyring::open(&p, root).unwrap();
    assert_eq!(k2.status().masters[0].state, KeyState::Destroyed);
}

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Keyring>();
    assert_send_sync::<crate::Tenant>();
    assert_send_sync::<LocalRootKey>();
    // Readers keep working on their snapshot while another thread rotates.
    let k = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let t = k.tenant("acme").unwrap();
    let sealed = t.seal(b"x", &ctx()).unwrap();
    std::thread::scope(|s| {
        let reader = s.spawn(|| (0..2000).all(|_| t.open(&sealed, &ctx()).is_ok()));
        for _ in 0..20 {
            k.rotate().unwrap();
        }
        assert!(reader.join().unwrap());
    });
    assert_eq!(k.primary(), MasterVersion::new(21));
}

#[test]
fn set_state_of_the_primary_to_primary_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.atrk");
    let root = Arc::new(LocalRootKey::generate().unwrap());
    let k = Keyring::create(&p, root.clone()).unwrap();
    let before = std::fs::read(&p).unwrap();
    k.set_state(MasterVersion::new(1), KeyState::Primary).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), before, "no change, no write");
    let k2 = Keyring::open(&p, root).unwrap();
    assert_eq!(k2.primary(), MasterVersion::new(1));
}

#[test]
fn inconsistent_states_are_never_written() {
    let k = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    k.rotate().unwrap();
    let bad = k.mutate("test", |s| {
        s.masters.get_mut(&MasterVersion::new(1)).unwrap().state = KeyState::Primary;
        Ok(())
    });
    assert!(matches!(bad, Err(KeyringError::Inconsistent(_))));
    assert_eq!(k.primary(), MasterVersion::new(2));
    assert_eq!(k.status().masters[0].state, KeyState::Enabled);
}

/// Ids on both sides of the inline limit (56 bytes) and ids that share their first 56
/// bytes: each tenant finds its own cached key, on a new handle and on a kept one.
#[test]
fn long_and_short_ids_find_their_own_keys() {
    let k = Keyring::in_memory(LocalRootKey::generate().unwrap()).unwrap();
    let base = "t".repeat(56);
    let ids = [base.clone(), format!("{base}a"), format!("{base}b"), "t".repeat(128), "t".repeat(55)];
    let sealed: Vec<Vec<u8>> =
        ids.iter().map(|id| k.tenant(id).unwrap().seal(id.as_bytes(), &ctx()).unwrap()).collect();
    for (i, id) in ids.iter().enumerate() {
        // A new handle now starts from the cached key and its id.
        let t = k.tenant(id).unwrap();
        assert_eq!(t.id().as_str(), id);
        for (j, s) in sealed.iter().enumerate() {
            let opened = t.open(s, &ctx());
            if i == j {
                assert_eq!(opened.unwrap(), id.as_bytes());
            } else {
                assert!(matches!(opened, Err(OpenError::Authentication)), "{i} opened {j}'s record");
            }
        }
        let again = t.seal(b"again", &ctx()).unwrap();
        assert_eq!(k.tenant(id).unwrap().open(&again, &ctx()).unwrap(), b"again");
    }
}

/// A file store whose checks panic while `panic` is set (a bug in a store or its client)
/// and hang while `hang` is set (a store that stopped answering).
struct PanickingStore {
    inner: store::FileStore,
    panic: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    /// How many times the document was read.
    reads: Arc<AtomicU64>,
    /// Each check takes 200 ms while set (a slow but answering store).
    slow: Arc<AtomicBool>,
    /// The watcher's wait between checks does not return while set.
    stall: Arc<AtomicBool>,
}

impl Store for PanickingStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn read(&self) -> Result<Vec<u8>, KeyringError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read()
    }
    fn create(&self, doc: &[u8], revision: u64) -> Result<(), KeyringError> {
        self.inner.create(doc, revision)
    }
    fn update(&self, change: &mut store::Change<'_>) -> Result<(), KeyringError> {
        self.inner.update(change)
    }
    fn wait(&self, timeout: Duration) {
        std::thread::sleep(timeout);
        while self.stall.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    fn fingerprint(&self) -> Result<Vec<u8>, KeyringError> {
        assert!(!self.panic.load(Ordering::SeqCst), "a bug in the store");
        while self.hang.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.slow.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
        self.inner.fingerprint()
    }
}

/// A keyring file with a handle on it through a [`PanickingStore`], checked every 50 ms and
/// refusing keys after 300 ms without an answer, and a tenant of it that has sealed.
struct Faulty {
    dir: tempfile::TempDir,
    root: Arc<LocalRootKey>,
    panic: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    slow: Arc<AtomicBool>,
    stall: Arc<AtomicBool>,
    keyring: Keyring,
    acme: crate::Tenant,
}

fn faulty() -> Faulty {
    faulty_with(Duration::from_millis(100), Duration::from_millis(300))
}

fn faulty_with(staleness: Duration, max_unavailable: Duration) -> Faulty {
    faulty_opts(KeyringOptions::default().staleness(staleness).max_unavailable(max_unavailable))
}

fn faulty_opts(opts: KeyringOptions) -> Faulty {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.atrk");
    let root = Arc::new(LocalRootKey::generate().unwrap());
    Keyring::create(&path, root.clone()).unwrap();
    let (panic, hang) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (reads, slow) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let stall = Arc::new(AtomicBool::new(false));
    let store: Arc<dyn Store> = Arc::new(PanickingStore {
        inner: store::FileStore::new(path),
        panic: panic.clone(),
        hang: hang.clone(),
        reads: reads.clone(),
        slow: slow.clone(),
        stall: stall.clone(),
    });
    let (state, digest) = persist::load(store.as_ref(), root.clone()).unwrap();
    let keyring = Keyring::from_state(Some(store), state, digest, opts);
    let acme = keyring.tenant("acme").unwrap();
    acme.seal(b"x", &ctx()).unwrap();
    Faulty { dir, root, panic, hang, reads, slow, stall, keyring, acme }
}

impl Faulty {
    /// Seals until sealing succeeds (`ok`) or fails, for at most 10 s.
    fn until_seal(&self, ok: bool) {
        let start = Instant::now();
        while self.acme.seal(b"x", &ctx()).is_ok() != ok {
            let what = if ok { "usable" } else { "unusable" };
            assert!(start.elapsed() < Duration::from_secs(10), "the handle never became {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Seals every 5 ms for `span`: each must succeed.
    fn seals_for(&self, span: Duration) {
        let t = Instant::now();
        while t.elapsed() < span {
            self.acme.seal(b"x", &ctx()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Rotates through another handle on the same file and waits (at most 10 s) until this
    /// handle's primary is the new version 2.
    fn rotate_elsewhere_and_wait(&self) {
        Keyring::open(&self.dir.path().join("k.atrk"), self.root.clone()).unwrap().rotate().unwrap();
        let t = Instant::now();
        while self.keyring.primary() != MasterVersion::new(2) {
            assert!(t.elapsed() < Duration::from_secs(10), "the rotation never reached the handle");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sets `fault` and checks that the handle refuses keys, not before `max_unavailable`
    /// has about passed.
    fn refuses_after(&self, fault: &AtomicBool) {
        let start = Instant::now();
        fault.store(true, Ordering::SeqCst);
        self.until_seal(false);
        assert!(matches!(self.acme.seal(b"x", &ctx()), Err(crate::error::SealError::KeyringUnavailable)));
        assert!(start.elapsed() >= Duration::from_millis(150), "refused too soon: {:?}", start.elapsed());
    }
}

#[test]
fn a_check_that_panics_fails_like_an_unreadable_store_and_the_watcher_goes_on() {
    let f = faulty();
    // Every check panics: the handle serves its last state for `max_unavailable`, then refuses.
    f.refuses_after(&f.panic);
    // The watcher survived the panics: checks that pass again make the handle usable again,
    // and a change made through another handle reaches it.
    f.panic.store(false, Ordering::SeqCst);
    f.until_seal(true);
    f.rotate_elsewhere_and_wait();
}

#[test]
fn a_store_call_that_hangs_fails_the_handle_closed_until_the_store_answers() {
    let f = faulty();
    // The watcher's next check never returns: the watchdog refuses keys after
    // `max_unavailable` (a shred made meanwhile could otherwise never be seen).
    f.refuses_after(&f.hang);
    // A reload that succeeds makes it current again (the watcher is still stuck).
    f.keyring.reload().unwrap();
    f.acme.seal(b"x", &ctx()).unwrap();
    // Stuck for longer again: refused again; then the store answers and the watcher's check
    // makes the handle usable.
    f.until_seal(false);
    f.hang.store(false, Ordering::SeqCst);
    f.until_seal(true);
}

#[test]
fn the_watcher_reads_the_document_only_when_its_fingerprint_changed() {
    let f = faulty();
    // Ten checks of an unchanged file: no read.
    let before = f.reads.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(f.reads.load(Ordering::SeqCst), before, "the unchanged document was read again");
    // A change elsewhere: read (and installed) once it is seen.
    f.rotate_elsewhere_and_wait();
    assert!(f.reads.load(Ordering::SeqCst) > before);
}

#[test]
fn a_slow_store_that_answers_within_the_limit_is_never_refused() {
    // Checked every 300 ms, each check taking 200 ms, refused after 400 ms without an
    // answer: the last answer is up to 500 ms old just before a check returns, which is not
    // the store failing to answer.
    let f = faulty_with(Duration::from_millis(600), Duration::from_millis(400));
    f.slow.store(true, Ordering::SeqCst);
    f.seals_for(Duration::from_millis(3000));
    // And a hung store is still refused.
    f.slow.store(false, Ordering::SeqCst);
    f.refuses_after(&f.hang);
    f.hang.store(false, Ordering::SeqCst);
}

#[test]
fn a_watcher_that_stops_checking_fails_the_handle_closed() {
    // The watcher is stuck between checks (no store call running): after the limit plus one
    // interval without a check, the watchdog refuses keys; checks again, usable again.
    let f = faulty();
    f.refuses_after(&f.stall);
    f.stall.store(false, Ordering::SeqCst);
    f.until_seal(true);
}

#[test]
fn the_watcher_alone_refuses_keys_when_its_checks_keep_failing() {
    // Without the watchdog (whose no-check rule would also refuse, one interval later), the
    // watcher's own rule: checks that fail are served for `max_unavailable`, then refused;
    // a check that passes again makes the handle usable.
    let mut opts =
        KeyringOptions::default().staleness(Duration::from_millis(100)).max_unavailable(Duration::from_millis(300));
    opts.no_watchdog = true;
    let f = faulty_opts(opts);
    f.refuses_after(&f.panic);
    f.panic.store(false, Ordering::SeqCst);
    f.until_seal(true);
    // And a failing check before the limit refuses nothing: the checks fail for 100 ms
    // (about two of them), well under the 300 ms limit.
    f.panic.store(true, Ordering::SeqCst);
    f.seals_for(Duration::from_millis(100));
    f.panic.store(false, Ordering::SeqCst);
}
