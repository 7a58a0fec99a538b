//! A throwaway PostgreSQL server for a test: Debian's server binaries (or `ATREST_PG_BINDIR`),
//! a cluster in a temp dir, TCP on 127.0.0.1 only, trust authentication, stopped on drop.
//! Fails (never skips) when PostgreSQL is missing. As root the server runs as `postgres`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The directory holding initdb and pg_ctl.
pub fn find_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ATREST_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(dir.join("initdb").is_file(), "ATREST_PG_BINDIR={} has no initdb", dir.display());
        return dir;
    }
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
    found.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!(
            "\n\n*** This test needs PostgreSQL's server binaries and found none (ATREST_REQUIRE_POSTGRES={}). ***\n\
             Install them (Debian/Ubuntu: `apt-get install postgresql`, or run ./scripts/test as root) or set\n\
             ATREST_PG_BINDIR to the directory holding initdb and pg_ctl.\n\n",
            std::env::var("ATREST_REQUIRE_POSTGRES").unwrap_or_default()
        )
    })
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// A running (or stopped) throwaway server.
pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    server_user: Option<String>,
    running: bool,
}

impl PgServer {
    pub fn start() -> Self {
        let bin = find_bindir();
        let dir = tempfile::Builder::new().prefix("atrest-pg-").tempdir_in("/tmp").unwrap();
        let server_user = (std::fs::metadata(dir.path()).unwrap().uid() == 0).then(|| {
            let (Some(uid), Some(gid)) = (id_of("postgres", "-u"), id_of("postgres", "-g")) else {
                panic!("running as root, and there is no 'postgres' user to run PostgreSQL as");
            };
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
            "postgres".to_owned()
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut s = Self { bin, dir, port, server_user, running: false };
        let out = s
            .server_cmd("initdb")
            .arg("-D")
            .arg(s.data())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = ''\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n",
            s.port
        );
        let conf_path = s.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();
        s.resume();
        s
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

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
        c.current_dir(self.dir.path()).env("LC_ALL", "C").stdin(Stdio::null());
        c
    }

    /// Starts the (stopped) server again, same data and port.
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
        self.running = true;
    }

    /// Stops the server (fast shutdown: open connections are terminated).
    pub fn stop(&mut self) {
        let out =
            self.server_cmd("pg_ctl").arg("-D").arg(self.data()).args(["-m", "fast", "-w", "stop"]).output().unwrap();
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
        self.running = false;
    }

    /// A connection URL for database `postgres`, with atrest's query parameters.
    pub fn url(&self, table: &str, keyring: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?table={table}&keyring={keyring}", self.port)
    }

    /// A plain client for the test's own SQL.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(
            &format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port),
            postgres::NoTls,
        )
        .unwrap()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let _ =
                self.server_cmd("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]).output();
        }
    }
}
