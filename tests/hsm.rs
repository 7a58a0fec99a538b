//! The PKCS#11 root key against a real SoftHSM2 token (not a mock).
//!
//! Needs SoftHSM2 (`apt-get install softhsm2`): `softhsm2-util` on the PATH and the module at
//! `/usr/lib/softhsm/libsofthsm2.so`, or elsewhere named by `ATREST_TEST_PKCS11_MODULE`. If
//! either is missing these tests fail; they never skip.
//!
//! SoftHSM2 reads its configuration from `SOFTHSM2_CONF` when the module initialises, and
//! PKCS#11 state (initialisation, login) is per process. Changing the environment of the
//! running test process would need `unsafe` (forbidden in this crate), so every test that
//! talks to the token runs its body in a fresh copy of this test binary, started with
//! `SOFTHSM2_CONF` pointing at a token directory made for that test alone. The parent checks
//! that the child really ran exactly that one test and that it passed.
#![cfg(feature = "pkcs11")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::child; the rest of the shared kit is unused here")]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use atrest::secrecy::SecretString;
use atrest::{
    Context, Keyring, KeyringError, LocalRootKey, PKCS11_PIN_ENV, Pkcs11Config, Pkcs11RootKey, RootKeyError,
    RootKeyProvider,
};
use common::child;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::Session;

const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const MODULE_ENV: &str = "ATREST_TEST_PKCS11_MODULE";
/// Set in a child process to the name of the test it runs.
const CHILD_ENV: &str = "ATREST_HSM_TEST_CHILD";
/// The child's private working directory (holds the token directory too).
const DIR_ENV: &str = "ATREST_HSM_TEST_DIR";
/// A second-level phase inside one test (a grandchild process).
const PHASE_ENV: &str = "ATREST_HSM_TEST_PHASE";
const TOKEN: &str = "atrest-test";
const PIN: &str = "1234";
const SO_PIN: &str = "5678";

fn module_path() -> PathBuf {
    let module = std::env::var_os(MODULE_ENV).map_or_else(|| PathBuf::from(DEFAULT_MODULE), PathBuf::from);
    assert!(
        module.is_file(),
        "SoftHSM2 PKCS#11 module not found at {}: install SoftHSM2 (apt-get install softhsm2) or set {MODULE_ENV} \
         to the module's path. These tests need a real token and do not skip.",
        module.display()
    );
    module
}

/// What a test body gets: its own directory and the module path.
struct Hsm {
    dir: PathBuf,
    module: PathBuf,
}

impl Hsm {
    fn config(&self, key: &str) -> Pkcs11Config {
        Pkcs11Config::new(&self.module, TOKEN, key, SecretString::from(PIN))
    }

    fn root(&self, key: &str) -> Pkcs11RootKey {
        Pkcs11RootKey::open_or_generate(&self.config(key)).unwrap()
    }

    /// A raw cryptoki session on the test token (for creating keys atrest itself never makes).
    /// Call after a provider has logged in: the login is per process, shared by this session.
    fn raw_session(&self) -> (Pkcs11, Session) {
        let ctx = Pkcs11::new(&self.module).unwrap();
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => panic!("C_Initialize: {e}"),
        }
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label() == TOKEN)
            .unwrap();
        let session = ctx.open_rw_session(slot).unwrap();
        (ctx, session)
    }
}

/// Runs the test `name`'s `body` in a fresh process with its own SoftHSM2 token. `name` must be
/// the test function's name: the child runs `<this binary> <name> --exact`.
fn in_softhsm(name: &str, body: impl FnOnce(&Hsm)) {
    if let Some(who) = child::role(CHILD_ENV) {
        assert_eq!(who, name, "child process started for another test");
        let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("child without a directory"));
        body(&Hsm { dir, module: module_path() });
        return;
    }

    let module = module_path();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN, "--module"])
        .arg(&module)
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run softhsm2-util ({e}): install SoftHSM2 (apt-get install softhsm2); these tests do not skip"
            )
        });
    assert!(
        init.status.success(),
        "softhsm2-util --init-token failed: {}{}",
        String::from_utf8_lossy(&init.stdout),
        String::from_utf8_lossy(&init.stderr)
    );
    run_child(name, &[("SOFTHSM2_CONF", conf.as_os_str()), (DIR_ENV, dir.path().as_os_str())]);
}

/// Runs exactly the test `name` in a new process of this binary and checks it passed.
fn run_child(name: &str, env: &[(&str, &std::ffi::OsStr)]) {
    let mut cmd = child::rerun(name, CHILD_ENV, name);
    cmd.env(PKCS11_PIN_ENV, PIN);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Shown with --nocapture (measurements); captured otherwise.
    child::run_one_test(&mut cmd, &format!("child process for '{name}'"));
}

fn ctx(row: &str) -> Context {
    Context::new().with("table", "contacts").with("row", row)
}

#[test]
fn keyring_on_hsm_root_and_reopen_in_new_process() {
    in_softhsm("keyring_on_hsm_root_and_reopen_in_new_process", |hsm| {
        let path = hsm.dir.join("keyring.atrk");
        if std::env::var(PHASE_ENV).as_deref() == Ok("reopen") {
            // A new process: only `open` (never generate), PIN from the environment.
            let pin = Pkcs11Config::pin_from_env(PKCS11_PIN_ENV).unwrap();
            let root = Pkcs11RootKey::open(&Pkcs11Config::new(&hsm.module, TOKEN, "root", pin)).unwrap();
            let keyring = Keyring::open(&path, root).unwrap();
            let acme = keyring.tenant("acme").unwrap();
            let rec1 = std::fs::read(hsm.dir.join("rec1")).unwrap();
            assert_eq!(acme.open(&rec1, &ctx("1")).unwrap(), b"sealed in the first process");
            let rec2 = acme.seal(b"sealed in the second process", &ctx("2")).unwrap();
            std::fs::write(hsm.dir.join("rec2"), rec2).unwrap();
            return;
        }

        let root = hsm.root("root");
        let id = root.key_id();
        assert!(id.starts_with("pkcs11:token=atrest-test;object=root;id=%"), "{id}");
        assert_eq!(id.len(), "pkcs11:token=atrest-test;object=root;id=".len() + 16 * 3, "16-byte CKA_ID: {id}");
        // Generating again finds the same key; `open` finds it too.
        assert_eq!(hsm.root("root").key_id(), id);
        assert_eq!(Pkcs11RootKey::open(&hsm.config("root")).unwrap().key_id(), id);
        let debug = format!("{root:?}");
        assert!(debug.contains("atrest-test") && debug.contains("root") && !debug.contains(PIN), "{debug}");

        let keyring = Keyring::create(&path, root).unwrap();
        assert_eq!(keyring.status().root_key_id, id);
        let acme = keyring.tenant("acme").unwrap();
        let rec1 = acme.seal(b"sealed in the first process", &ctx("1")).unwrap();
        assert_eq!(acme.open(&rec1, &ctx("1")).unwrap(), b"sealed in the first process");
        std::fs::write(hsm.dir.join("rec1"), &rec1).unwrap();
        // A rotation wraps a new master key in the token.
        let v2 = keyring.rotate().unwrap();
        assert_eq!(keyring.primary(), v2);

        run_child(
            "keyring_on_hsm_root_and_reopen_in_new_process",
            &[(PHASE_ENV, "reopen".as_ref()), (DIR_ENV, hsm.dir.as_os_str())],
        );

        let rec2 = std::fs::read(hsm.dir.join("rec2")).unwrap();
        assert_eq!(acme.open(&rec2, &ctx("2")).unwrap(), b"sealed in the second process");
        assert!(acme.open(&rec2, &ctx("1")).is_err());
    });
}

#[test]
fn wrong_pin_is_refused_even_when_already_logged_in() {
    in_softhsm("wrong_pin_is_refused_even_when_already_logged_in", |hsm| {
        let wrong = |pin: &str| Pkcs11Config::new(&hsm.module, TOKEN, "root", SecretString::from(pin));
        // Before any login in this process: the token itself refuses.
        assert!(matches!(Pkcs11RootKey::open_or_generate(&wrong("0000")), Err(RootKeyError::WrongPin)));
        assert!(matches!(Pkcs11RootKey::open_or_generate(&wrong("")), Err(RootKeyError::WrongPin)));
        let good = hsm.root("root");
        // The token is now logged in for this process; a wrong PIN is still refused.
        let err = Pkcs11RootKey::open(&wrong("9999")).unwrap_err();
        assert!(matches!(err, RootKeyError::WrongPin), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("9999"));
        assert_eq!(Pkcs11RootKey::open(&hsm.config("root")).unwrap().key_id(), good.key_id());
        let w = good.wrap(&[7; 32], b"aad").unwrap();
        assert_eq!(good.unwrap(&w, b"aad").unwrap().expose_secret(), &[7; 32]);
    });
}

#[test]
fn pin_changed_under_provider_is_wrong_pin() {
    in_softhsm("pin_changed_under_provider_is_wrong_pin", |hsm| {
        let root = hsm.root("root");
        let w = root.wrap(&[2; 32], b"a").unwrap();
        let (_ctx, raw) = hsm.raw_session();
        raw.set_pin(&SecretString::from(PIN), &SecretString::from("4321")).unwrap();
        // Still logged in: works.
        assert_eq!(root.unwrap(&w, b"a").unwrap().expose_secret(), &[2; 32]);
        // Logged out: the reconnection's login is refused, and not retried.
        raw.logout().unwrap();
        for _ in 0..3 {
            assert!(matches!(root.unwrap(&w, b"a"), Err(RootKeyError::WrongPin)));
        }
        let config = Pkcs11Config::new(&hsm.module, TOKEN, "root", SecretString::from("4321"));
        let again = Pkcs11RootKey::open(&config).unwrap();
        assert_eq!(again.unwrap(&w, b"a").unwrap().expose_secret(), &[2; 32]);
    });
}

#[test]
fn missing_key_is_refused_and_not_created_by_open() {
    in_softhsm("missing_key_is_refused_and_not_created_by_open", |hsm| {
        for _ in 0..2 {
            let err = Pkcs11RootKey::open(&hsm.config("absent")).unwrap_err();
            assert!(matches!(&err, RootKeyError::KeyMissing(l) if l == "absent"), "{err:?}");
        }
    });
}

#[test]
fn token_label_wrong_is_token_not_found() {
    in_softhsm("token_label_wrong_is_token_not_found", |hsm| {
        let config = Pkcs11Config::new(&hsm.module, "no-such-token", "root", SecretString::from(PIN));
        let err = Pkcs11RootKey::open_or_generate(&config).unwrap_err();
        assert!(matches!(&err, RootKeyError::TokenNotFound(l) if l == "no-such-token"), "{err:?}");
    });
}

#[test]
fn module_path_wrong_is_module_not_found() {
    // No token needed: nothing of SoftHSM2 is loaded.
    let pin = SecretString::from(PIN);
    for module in
        [Path::new("/nonexistent/libpkcs11.so"), Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml").as_path()]
    {
        let config = Pkcs11Config::new(module, TOKEN, "root", pin.clone());
        let err = Pkcs11RootKey::open(&config).unwrap_err();
        assert!(matches!(&err, RootKeyError::ModuleNotFound { path, .. } if path == module), "{err:?}");
        assert!(!format!("{err}").contains(PIN));
    }
}

#[test]
fn extractable_or_unsuitable_keys_are_refused() {
    in_softhsm("extractable_or_unsuitable_keys_are_refused", |hsm| {
        let _logged_in = hsm.root("root");
        let (_ctx, session) = hsm.raw_session();
        let make = |label: &str, bytes: u64, extractable: bool, sensitive: bool, decrypt: bool| {
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(bytes.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(sensitive),
                Attribute::Extractable(extractable),
                Attribute::Encrypt(true),
                Attribute::Decrypt(decrypt),
                Attribute::Label(label.as_bytes().to_vec()),
            ];
            session.generate_key(&Mechanism::AesKeyGen, &template).unwrap();
        };
        make("exportable", 32, true, true, true);
        make("readable", 32, false, false, true);
        make("aes128", 16, false, true, true);
        make("encrypt-only", 32, false, true, false);
        make("twin", 32, false, true, true);
        make("twin", 32, false, true, true);

        for label in ["exportable", "readable"] {
            let err = Pkcs11RootKey::open(&hsm.config(label)).unwrap_err();
            assert!(matches!(&err, RootKeyError::KeyExtractable(l) if l == label), "{label}: {err:?}");
            // open_or_generate never replaces an existing key.
            let err = Pkcs11RootKey::open_or_generate(&hsm.config(label)).unwrap_err();
            assert!(matches!(&err, RootKeyError::KeyExtractable(_)), "{label}: {err:?}");
            // Explicitly allowed: usable.
            let mut config = hsm.config(label);
            config.allow_extractable = true;
            let root = Pkcs11RootKey::open(&config).unwrap();
            let w = root.wrap(&[1; 32], b"x").unwrap();
            assert_eq!(root.unwrap(&w, b"x").unwrap().expose_secret(), &[1; 32]);
        }
        for label in ["aes128", "encrypt-only", "twin"] {
            let err = Pkcs11RootKey::open(&hsm.config(label)).unwrap_err();
            assert!(matches!(err, RootKeyError::Pkcs11(_)), "{label}: {err:?}");
        }
        let err = Pkcs11RootKey::open(&hsm.config("twin")).unwrap_err();
        assert!(err.to_string().contains("2 secret keys are labelled 'twin'"), "{err}");
    });
}

#[test]
fn once_extractable_key_is_refused_unless_allowed() {
    in_softhsm("once_extractable_key_is_refused_unless_allowed", |hsm| {
        let generated = hsm.root("root");
        let (_ctx, session) = hsm.raw_session();
        let facts = [AttributeType::Extractable, AttributeType::NeverExtractable, AttributeType::AlwaysSensitive];
        // A key atrest generates never was extractable nor readable: accepted by default.
        let handle = |label: &str| {
            let found = session
                .find_objects(&[Attribute::Label(label.as_bytes().to_vec()), Attribute::Class(ObjectClass::SECRET_KEY)])
                .unwrap();
            assert_eq!(found.len(), 1, "{label}");
            found[0]
        };
        let attrs = session.get_attributes(handle("root"), &facts).unwrap();
        assert!(
            attrs.contains(&Attribute::NeverExtractable(true)) && attrs.contains(&Attribute::AlwaysSensitive(true))
        );
        drop(generated);

        // Created extractable (or readable), then locked in with C_SetAttributeValue: the token
        // remembers in CKA_NEVER_EXTRACTABLE (or CKA_ALWAYS_SENSITIVE).
        let make = |label: &str, extractable: bool, sensitive: bool| {
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(sensitive),
                Attribute::Extractable(extractable),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ];
            let key = session.generate_key(&Mechanism::AesKeyGen, &template).unwrap();
            let lock_in = if extractable { Attribute::Extractable(false) } else { Attribute::Sensitive(true) };
            session.update_attributes(key, &[lock_in]).unwrap();
        };
        make("was-extractable", true, true);
        make("was-readable", false, false);
        let attrs = session.get_attributes(handle("was-extractable"), &facts).unwrap();
        assert!(attrs.contains(&Attribute::Extractable(false)) && attrs.contains(&Attribute::NeverExtractable(false)));
        let attrs = session.get_attributes(handle("was-readable"), &facts).unwrap();
        assert!(
            attrs.contains(&Attribute::NeverExtractable(true)) && attrs.contains(&Attribute::AlwaysSensitive(false))
        );

        for label in ["was-extractable", "was-readable"] {
            let err = Pkcs11RootKey::open(&hsm.config(label)).unwrap_err();
            assert!(matches!(&err, RootKeyError::KeyWasExtractable(l) if l == label), "{label}: {err:?}");
            assert!(err.to_string().contains("CKA_NEVER_EXTRACTABLE or CKA_ALWAYS_SENSITIVE"), "{err}");
            // open_or_generate never replaces an existing key.
            let err = Pkcs11RootKey::open_or_generate(&hsm.config(label)).unwrap_err();
            assert!(matches!(&err, RootKeyError::KeyWasExtractable(_)), "{label}: {err:?}");
            // Explicitly allowed: usable.
            let mut config = hsm.config(label);
            config.allow_extractable = true;
            let root = Pkcs11RootKey::open(&config).unwrap();
            let w = root.wrap(&[6; 32], b"y").unwrap();
            assert_eq!(root.unwrap(&w, b"y").unwrap().expose_secret(), &[6; 32]);
        }
    });
}

fn flip_hex_field(path: &Path, field: impl Fn(&mut serde_json::Value) -> &mut serde_json::Value) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut body: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    let target = field(&mut body);
    let mut hex = target.as_str().unwrap().to_owned();
    // Flip one bit inside the ciphertext part (after the version byte and the IV).
    let pos = 2 * (1 + 12) + 3;
    let c = u8::from_str_radix(&hex[pos..=pos], 16).unwrap() ^ 0x4;
    hex.replace_range(pos..=pos, &format!("{c:x}"));
    *target = serde_json::Value::String(hex);
    lines[1] = serde_json::to_string(&body).unwrap();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn tampered_wrapped_keys_are_refused() {
    in_softhsm("tampered_wrapped_keys_are_refused", |hsm| {
        let root = Arc::new(hsm.root("root"));

        // The provider alone: format, then every modification is an authentication failure.
        let w = root.wrap(&[9; 32], b"slot 1").unwrap();
        assert_eq!(w.len(), 1 + 12 + 32 + 16);
        assert_eq!(w[0], 1);
        let w2 = root.wrap(&[9; 32], b"slot 1").unwrap();
        assert_ne!(w[1..13], w2[1..13], "fresh IV per wrap");
        assert_eq!(root.unwrap(&w, b"slot 1").unwrap().expose_secret(), &[9; 32]);
        let auth = |r: Result<atrest::SecretBytes, RootKeyError>| matches!(r, Err(RootKeyError::Authentication));
        assert!(auth(root.unwrap(&w, b"slot 2")));
        assert!(auth(root.unwrap(&w, b"")));
        for i in 0..w.len() {
            let mut bad = w.clone();
            bad[i] ^= 0x01;
            assert!(auth(root.unwrap(&bad, b"slot 1")), "bit flip at {i}");
            assert!(auth(root.unwrap(&w[..i], b"slot 1")), "truncated to {i}");
        }
        let mut longer = w.clone();
        longer.push(0);
        assert!(auth(root.unwrap(&longer, b"slot 1")));
        let other = hsm.root("other");
        assert_ne!(other.key_id(), root.key_id());
        assert!(auth(other.unwrap(&w, b"slot 1")));
        // Empty keys round-trip too (the tag alone).
        let e = root.wrap(&[], b"a").unwrap();
        assert!(root.unwrap(&e, b"a").unwrap().is_empty());
        assert!(auth(root.unwrap(&e, b"b")));

        // In a keyring file: the wrapped integrity key, then a wrapped master key.
        let path = hsm.dir.join("keyring.atrk");
        let keyring = Keyring::create(&path, root.clone()).unwrap();
        keyring.rotate().unwrap();
        drop(keyring);
        let pristine = std::fs::read(&path).unwrap();
        Keyring::open(&path, root.clone()).unwrap();

        flip_hex_field(&path, |b| &mut b["integrity_key"]);
        let err = Keyring::open(&path, root.clone()).unwrap_err();
        assert!(matches!(err, KeyringError::Tampered(_)), "{err:?}");

        std::fs::write(&path, &pristine).unwrap();
        flip_hex_field(&path, |b| &mut b["masters"][0]["wrapped"]);
        let err = Keyring::open(&path, root.clone()).unwrap_err();
        assert!(matches!(err, KeyringError::Tampered(_)), "{err:?}");

        std::fs::write(&path, &pristine).unwrap();
        Keyring::open(&path, root).unwrap();
    });
}

#[test]
fn migrate_file_root_to_hsm_and_back() {
    in_softhsm("migrate_file_root_to_hsm_and_back", |hsm| {
        let path = hsm.dir.join("keyring.atrk");
        let key1 = hsm.dir.join("root1.key");
        let key2 = hsm.dir.join("root2.key");
        let local = LocalRootKey::generate_file(&key1).unwrap();
        let local_id = local.key_id();
        let keyring = Keyring::create(&path, local).unwrap();
        let acme = keyring.tenant("acme").unwrap();
        let sealed = acme.seal(b"survives two migrations", &ctx("m")).unwrap();

        // File -> HSM.
        let hsm_root: Arc<dyn RootKeyProvider> = Arc::new(hsm.root("root"));
        let hsm_id = hsm_root.key_id();
        keyring.rewrap_root(hsm_root.clone()).unwrap();
        assert_eq!(keyring.status().root_key_id, hsm_id);
        let err = Keyring::open(&path, LocalRootKey::from_file(&key1).unwrap()).unwrap_err();
        assert!(
            matches!(&err, KeyringError::WrongRootKey { expected, given } if *expected == hsm_id && *given == local_id)
        );
        let on_hsm = Keyring::open(&path, Pkcs11RootKey::open(&hsm.config("root")).unwrap()).unwrap();
        assert_eq!(on_hsm.tenant("acme").unwrap().open(&sealed, &ctx("m")).unwrap(), b"survives two migrations");
        // Changes made while on the HSM are wrapped by the token.
        on_hsm.rotate().unwrap();
        let sealed2 = on_hsm.tenant("acme").unwrap().seal(b"sealed under v2", &ctx("m2")).unwrap();

        // HSM -> another key file.
        let local2: Arc<dyn RootKeyProvider> = Arc::new(LocalRootKey::generate_file(&key2).unwrap());
        on_hsm.rewrap_root(local2.clone()).unwrap();
        let err = Keyring::open(&path, Pkcs11RootKey::open(&hsm.config("root")).unwrap()).unwrap_err();
        assert!(matches!(err, KeyringError::WrongRootKey { .. }), "{err:?}");
        let back = Keyring::open(&path, LocalRootKey::from_file(&key2).unwrap()).unwrap();
        assert_eq!(back.status().root_key_id, local2.key_id());
        let t = back.tenant("acme").unwrap();
        assert_eq!(t.open(&sealed, &ctx("m")).unwrap(), b"survives two migrations");
        assert_eq!(t.open(&sealed2, &ctx("m2")).unwrap(), b"sealed under v2");
    });
}

#[test]
fn concurrent_use_from_eight_threads() {
    in_softhsm("concurrent_use_from_eight_threads", |hsm| {
        const THREADS: usize = 8;
        const ROUNDS: usize = 40;
        let root = Arc::new(hsm.root("root"));
        let path = hsm.dir.join("keyring.atrk");
        let keyring = Keyring::create(&path, root.clone()).unwrap();
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (root, keyring, path) = (root.clone(), keyring.clone(), path.clone());
                s.spawn(move || {
                    let tenant = keyring.tenant(&format!("tenant-{t}")).unwrap();
                    for r in 0..ROUNDS {
                        let key = [u8::try_from((t * ROUNDS + r) & 0xff).unwrap(); 32];
                        let aad = format!("thread {t} round {r}");
                        let w = root.wrap(&key, aad.as_bytes()).unwrap();
                        assert_eq!(root.unwrap(&w, aad.as_bytes()).unwrap().expose_secret(), &key);
                        assert!(matches!(root.unwrap(&w, b"other"), Err(RootKeyError::Authentication)));

                        let plain = format!("record {t}/{r}");
                        let c = ctx(&aad);
                        let sealed = tenant.seal(plain.as_bytes(), &c).unwrap();
                        assert_eq!(tenant.open(&sealed, &c).unwrap(), plain.as_bytes());

                        if r % 10 == 0 {
                            if t == 0 {
                                keyring.rotate().unwrap();
                            } else {
                                // Loading unwraps every master key in the token.
                                Keyring::open(&path, root.clone()).unwrap();
                            }
                        }
                    }
                });
            }
        });
        let elapsed = started.elapsed();
        println!(
            "{THREADS} threads x {ROUNDS} rounds (wrap + unwrap + failed unwrap + seal/open, periodic reload/rotate): {elapsed:?}"
        );
        let reloaded = Keyring::open(&path, root.clone()).unwrap();
        assert_eq!(reloaded.status().masters.len(), 1 + ROUNDS / 10);
    });
}

#[test]
fn provider_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Pkcs11RootKey>();
    let _: Arc<dyn RootKeyProvider> = Arc::new(LocalRootKey::generate().unwrap());
}

#[test]
fn lost_sessions_reconnect_or_report_token_removed() {
    in_softhsm("lost_sessions_reconnect_or_report_token_removed", |hsm| {
        let root = hsm.root("root");
        let id = root.key_id();
        let w = root.wrap(&[3; 32], b"a").unwrap();

        // Other code in the process logs the token out: the provider logs in again.
        let (ctx, raw) = hsm.raw_session();
        raw.logout().unwrap();
        assert_eq!(root.unwrap(&w, b"a").unwrap().expose_secret(), &[3; 32]);
        let w2 = root.wrap(&[4; 32], b"b").unwrap();
        assert_eq!(root.key_id(), id);

        // Logged out again, then 8 threads at once: they share one reconnection.
        raw.logout().unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..5 {
                        assert_eq!(root.unwrap(&w, b"a").unwrap().expose_secret(), &[3; 32]);
                    }
                });
            }
        });

        // A key deleted under the provider is reported as missing, not as tampering.
        let doomed = hsm.root("doomed");
        let dw = doomed.wrap(&[5; 32], b"c").unwrap();
        let handle = raw
            .find_objects(&[Attribute::Label(b"doomed".to_vec()), Attribute::Class(ObjectClass::SECRET_KEY)])
            .unwrap()[0];
        raw.destroy_object(handle).unwrap();
        assert!(matches!(doomed.unwrap(&dw, b"c"), Err(RootKeyError::KeyMissing(l)) if l == "doomed"));
        assert!(matches!(doomed.wrap(&[5; 32], b"c"), Err(RootKeyError::KeyMissing(_))));
        drop(doomed);

        // Other code finalizes the module: the provider initializes it again and reconnects.
        drop(raw);
        ctx.finalize().unwrap();
        assert_eq!(root.unwrap(&w2, b"b").unwrap().expose_secret(), &[4; 32]);
        root.wrap(&[5; 32], b"c").unwrap();

        // The token disappears: TokenRemoved, for every call, never Authentication.
        std::fs::remove_dir_all(hsm.dir.join("tokens")).unwrap();
        std::fs::create_dir(hsm.dir.join("tokens")).unwrap();
        for _ in 0..2 {
            let err = root.unwrap(&w, b"a").unwrap_err();
            assert!(matches!(err, RootKeyError::TokenRemoved), "{err:?}");
            let err = root.wrap(&[3; 32], b"a").unwrap_err();
            assert!(matches!(err, RootKeyError::TokenRemoved), "{err:?}");
        }
    });
}
