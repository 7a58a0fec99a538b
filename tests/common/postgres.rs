//! A throwaway PostgreSQL server for one test (or example): a fresh cluster in a temp
//! directory, listening on 127.0.0.1 only (a free port, password authentication with a
//! random password), stopped and deleted on drop.
//!
//! Needs PostgreSQL's server binaries (Debian: `apt-get install postgresql`; found under
//! `/usr/lib/postgresql/*/bin`, on the `PATH`, or in `ATREST_PG_BINDIR`). When they are
//! missing, [`PgServer::start`] fails the test if `ATREST_REQUIRE_POSTGRES=1` (as
//! `scripts/test` sets) and otherwise returns `None` with a note, so a plain `cargo test`
//! on a machine without PostgreSQL still runs everything else. PostgreSQL refuses to run as
//! root: as root the server binaries run as the `postgres` user (via `runuser`).
//!
//! Include it with `#[path = "common/postgres.rs"] mod pg;` (it depends on nothing else in
//! `tests/common`).
#![allow(dead_code, reason = "each test or example uses part of it")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The variable that turns missing PostgreSQL binaries into a failure.
pub const REQUIRE_ENV: &str = "ATREST_REQUIRE_POSTGRES";

/// A running throwaway cluster; dropped = stopped (`pg_ctl stop -m immediate`) and deleted.
pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    /// The unprivileged user running the server when this process is root.
    server_user: Option<String>,
    started: bool,
}

/// The directory holding `initdb` and `pg_ctl` of one PostgreSQL version, if any.
pub fn find_bindir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ATREST_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(dir.join("initdb").is_file(), "ATREST_PG_BINDIR={} has no initdb", dir.display());
        return Some(dir);
    }
    // Debian and Ubuntu: /usr/lib/postgresql/<major>/bin; take the newest.
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

impl PgServer {
    /// Starts a cluster, or returns `None` (with a note on stderr) when PostgreSQL's binaries
    /// are missing and [`REQUIRE_ENV`] is not `1`.
    ///
    /// # Panics
    /// When the binaries are missing and [`REQUIRE_ENV`] is `1`, or when the cluster does
    /// not start.
    pub fn start(what: &str) -> Option<Self> {
        let Some(bin) = find_bindir() else {
            let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
            assert!(
                !required,
                "\n\n*** {what} needs PostgreSQL's server binaries and found none ({REQUIRE_ENV}=1). ***\n\
                 Install them (Debian/Ubuntu: `apt-get install postgresql`) or set ATREST_PG_BINDIR to the\n\
                 directory holding initdb and pg_ctl.\n\n"
            );
            eprintln!("note: {what} did not run: no PostgreSQL binaries (set {REQUIRE_ENV}=1 to fail instead)");
            return None;
        };
        Some(Self::start_with(bin))
    }

    fn start_with(bin: PathBuf) -> Self {
        // Unix socket paths are limited to ~100 bytes: keep the directory short.
        let tmp = std::env::temp_dir();
        let base = if tmp.as_os_str().len() < 40 { tmp } else { PathBuf::from("/tmp") };
        let dir = tempfile::Builder::new().prefix("atrest-pg-").tempdir_in(base).unwrap();
        std::fs::create_dir(dir.path().join("sock")).unwrap();
        let mut secret = [0u8; 18];
        getrandom::fill(&mut secret).unwrap();
        let password = hex::encode(secret);
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).unwrap();
        let am_root = std::fs::metadata(dir.path()).unwrap().uid() == 0;
        let server_user = am_root.then(|| {
            let user = "postgres";
            let (Some(uid), Some(gid)) = (id_of(user, "-u"), id_of(user, "-g")) else {
                panic!("running as root, and there is no '{user}' user to run PostgreSQL as (Debian's postgresql package creates it)");
            };
            for p in [dir.path().to_path_buf(), dir.path().join("sock"), pwfile.clone()] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            }
            user.to_owned()
        });
        // A free port on 127.0.0.1 (released just before the server binds it).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut s = Self { bin, dir, port, password, server_user, started: false };

        let data = s.data();
        let out = s
            .server_cmd("initdb")
            .arg("-D")
            .arg(&data)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-U", "postgres", "-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .unwrap();
        check(&out, "initdb");
        std::fs::remove_file(&pwfile).unwrap();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\nmax_connections = 50\n",
            s.port,
            s.dir.path().join("sock").display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();

        s.resume();
        s
    }

    /// Starts the server (again, after [`PgServer::stop`]): same data, same port.
    pub fn resume(&mut self) {
        let log = self.dir.path().join("server.log");
        let out = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "120", "start"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.started = true;
    }

    /// Stops the server (fast shutdown: open connections are terminated), keeping its data.
    pub fn stop(&mut self) {
        let out =
            self.server_cmd("pg_ctl").arg("-D").arg(self.data()).args(["-m", "fast", "-w", "stop"]).output().unwrap();
        check(&out, "pg_ctl stop");
        self.started = false;
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A server binary, run as the unprivileged user when we are root.
    fn server_cmd(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        let mut c = match &self.server_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        c.current_dir(self.dir.path()).env("LC_ALL", "C");
        c
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory with PostgreSQL's binaries (`psql`, `pg_dump`...).
    pub fn bindir(&self) -> &Path {
        &self.bin
    }

    /// The `postgres` superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A `postgres://` URL for `db` as the `postgres` superuser (password included).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres:{}@127.0.0.1:{}/{db}", self.password, self.port)
    }

    /// A libpq-style connection string for `db` as the `postgres` superuser.
    pub fn conn_str(&self, db: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres password={} dbname={db}", self.port, self.password)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.started {
            let data = self.data();
            let _ = self.server_cmd("pg_ctl").arg("-D").arg(&data).args(["-m", "immediate", "-w", "stop"]).output();
        }
    }
}
