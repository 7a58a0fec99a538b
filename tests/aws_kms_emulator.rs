//! The AWS KMS root key against a local KMS **emulator** (moto's server), not AWS.
//!
//! moto implements KMS `CreateKey`, `Encrypt`, `Decrypt` (with the encryption context as
//! associated data) and key states, but checks no request signatures and no IAM policies:
//! these tests show the provider's calls, formats and error mapping, not AWS's access
//! control. Every test name starts with `emulator_`.
//!
//! Each test starts `moto_server` on a free 127.0.0.1 port and stops it when it ends; the
//! provider reads its endpoint and credentials from the environment (`AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, ...), which a test cannot change in its own process (that needs
//! `unsafe`), so each body runs in a fresh copy of this test binary started with that
//! environment. `moto_server` comes from PyPI (`pip install 'moto[server]'`; scripts/test
//! installs it into `target/ci-venv`). Without it these tests fail when
//! `ATREST_REQUIRE_KMS_EMULATOR=1` (set by scripts/test) and are skipped with a message
//! otherwise. `ATREST_MOTO_SERVER` names another binary.
#![cfg(feature = "aws-kms")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::servers and common::child; the rest of the shared kit is unused here")]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atrest::{AwsKmsRoot, Context, Keyring, KeyringError, RootKeyError, RootKeyProvider, root_key_from_uri};
use common::servers::{Server, free_port, is_child, run_child};

const REGION: &str = "eu-west-1";

fn start_moto() -> Option<Server> {
    let moto = common::servers::find_tool(
        "moto_server",
        "ATREST_MOTO_SERVER",
        "ATREST_REQUIRE_KMS_EMULATOR",
        "pip install 'moto[server]'",
    )?;
    let port = free_port();
    let mut cmd = Command::new(moto);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    Some(Server::start("moto_server (KMS emulator)", cmd, port))
}

/// Runs `test` in a child whose AWS environment points at the emulator on `port`.
fn in_emulator(test: &str, port: u16, dir: &Path, extra: &[(&str, &str)]) {
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut envs = vec![
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ("ATREST_TEST_DIR", dir.to_str().unwrap()),
    ];
    envs.extend_from_slice(extra);
    run_child(test, &envs);
}

fn test_dir() -> PathBuf {
    PathBuf::from(std::env::var("ATREST_TEST_DIR").unwrap())
}

/// An admin client of the emulator (in a child: endpoint and credentials from the
/// environment), with a runtime of its own to drive it.
struct Admin {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_kms::Client,
}

impl Admin {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let config = rt.block_on(aws_config::defaults(aws_config::BehaviorVersion::latest()).load());
        Self { client: aws_sdk_kms::Client::new(&config), rt }
    }

    /// A new symmetric key's ARN.
    fn create_key(&self) -> String {
        let out = self.rt.block_on(self.client.create_key().description("atrest test").send()).unwrap();
        out.key_metadata.unwrap().arn.unwrap()
    }
}

fn ctx() -> Context {
    Context::new().with("table", "contacts")
}

#[test]
fn emulator_kms_root_creates_seals_and_reopens_by_uri() {
    if is_child("emulator_kms_root_creates_seals_and_reopens_by_uri") {
        let admin = Admin::new();
        let arn = admin.create_key();
        let path = test_dir().join("keyring.atrk");
        let root = AwsKmsRoot::new(&arn).unwrap();
        assert_eq!(root.key_id(), format!("aws-kms://{arn}"));
        let keyring = Keyring::create(&path, root).unwrap();
        keyring.rotate().unwrap();
        let sealed = keyring.tenant("acme").unwrap().seal(b"bob@example.com", &ctx()).unwrap();
        let reopened = Keyring::open(&path, root_key_from_uri(&format!("aws-kms://{arn}")).unwrap()).unwrap();
        assert_eq!(reopened.tenant("acme").unwrap().open(&sealed, &ctx()).unwrap(), b"bob@example.com");
        // Another KMS key is another root key.
        let other = AwsKmsRoot::new(&admin.create_key()).unwrap();
        assert!(matches!(Keyring::open(&path, other), Err(KeyringError::WrongRootKey { .. })));
        return;
    }
    let Some(moto) = start_moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    in_emulator("emulator_kms_root_creates_seals_and_reopens_by_uri", moto.port, dir.path(), &[]);
}

#[test]
fn emulator_other_context_and_modified_blobs_are_authentication_failures() {
    if is_child("emulator_other_context_and_modified_blobs_are_authentication_failures") {
        let admin = Admin::new();
        let root = AwsKmsRoot::new(&admin.create_key()).unwrap();
        let w = root.wrap(&[9; 32], b"slot 1").unwrap();
        assert_eq!(w[0], 1);
        assert_eq!(root.unwrap(&w, b"slot 1").unwrap().expose_secret(), &[9; 32]);
        assert!(matches!(root.unwrap(&w, b"slot 2"), Err(RootKeyError::Authentication)));
        let mut bad = w.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        assert!(matches!(root.unwrap(&bad, b"slot 1"), Err(RootKeyError::Authentication)));
        for junk in [&b""[..], b"\x01", b"\x02abc"] {
            assert!(matches!(root.unwrap(junk, b"slot 1"), Err(RootKeyError::Authentication)), "{junk:?}");
        }
        // Under another key. AWS answers IncorrectKeyException (an authentication failure);
        // moto answers AccessDeniedException instead, which the provider reports as such.
        let other = AwsKmsRoot::new(&admin.create_key()).unwrap();
        let e = other.unwrap(&w, b"slot 1").unwrap_err();
        assert!(matches!(e, RootKeyError::Authentication | RootKeyError::KmsPermissionDenied { .. }), "{e:?}");
        return;
    }
    let Some(moto) = start_moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    in_emulator("emulator_other_context_and_modified_blobs_are_authentication_failures", moto.port, dir.path(), &[]);
}

#[test]
fn emulator_missing_keys_are_typed_errors() {
    if is_child("emulator_missing_keys_are_typed_errors") {
        let admin = Admin::new();
        let arn = admin.create_key();
        let wrapped = AwsKmsRoot::new(&arn).unwrap().wrap(&[1; 32], b"slot").unwrap();
        let account = arn.split(':').nth(4).unwrap();
        let missing = format!("arn:aws:kms:{REGION}:{account}:key/00000000-0000-0000-0000-000000000000");
        let e = Keyring::in_memory(AwsKmsRoot::new(&missing).unwrap()).unwrap_err();
        assert!(matches!(e, KeyringError::Root(RootKeyError::KmsKeyMissing { .. })), "{e:?}");
        let e = AwsKmsRoot::new(&missing).unwrap().unwrap(&wrapped, b"slot").unwrap_err();
        assert!(matches!(e, RootKeyError::KmsKeyMissing { .. }), "{e:?}");
        // moto does not enforce key states (a disabled key still decrypts there), so
        // DisabledException and KMSInvalidStateException are covered by the unit tests of
        // the error mapping only.
        return;
    }
    let Some(moto) = start_moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    in_emulator("emulator_missing_keys_are_typed_errors", moto.port, dir.path(), &[]);
}

#[test]
fn emulator_unreachable_endpoint_fails_open_with_a_typed_error() {
    if is_child("emulator_unreachable_endpoint_fails_open_with_a_typed_error") {
        let dir = test_dir();
        if std::env::var("ATREST_TEST_PHASE").as_deref() == Ok("create") {
            let arn = Admin::new().create_key();
            Keyring::create(&dir.join("keyring.atrk"), AwsKmsRoot::new(&arn).unwrap()).unwrap();
            std::fs::write(dir.join("arn"), arn).unwrap();
            return;
        }
        let arn = std::fs::read_to_string(dir.join("arn")).unwrap();
        let started = Instant::now();
        let e = Keyring::open(&dir.join("keyring.atrk"), AwsKmsRoot::new(&arn).unwrap()).unwrap_err();
        assert!(matches!(e, KeyringError::Root(RootKeyError::KmsUnreachable { .. })), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(40), "took {:?}", started.elapsed());
        return;
    }
    let Some(mut moto) = start_moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    in_emulator(
        "emulator_unreachable_endpoint_fails_open_with_a_typed_error",
        moto.port,
        dir.path(),
        &[("ATREST_TEST_PHASE", "create")],
    );
    moto.stop();
    in_emulator("emulator_unreachable_endpoint_fails_open_with_a_typed_error", moto.port, dir.path(), &[]);
}

#[test]
fn emulator_provider_called_from_inside_a_tokio_runtime() {
    if is_child("emulator_provider_called_from_inside_a_tokio_runtime") {
        let arn = Admin::new().create_key();
        let path = test_dir().join("keyring.atrk");
        let root = Arc::new(AwsKmsRoot::new(&arn).unwrap());
        // A caller's own runtime: the provider's runtime lives on its own thread, so this
        // neither panics ("cannot start a runtime from within a runtime") nor deadlocks.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let keyring = Keyring::create(&path, Arc::clone(&root)).unwrap();
            keyring.reload().unwrap();
            Keyring::open(&path, Arc::clone(&root)).unwrap();
        });
        return;
    }
    let Some(moto) = start_moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    in_emulator("emulator_provider_called_from_inside_a_tokio_runtime", moto.port, dir.path(), &[]);
}
