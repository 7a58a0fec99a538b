//! The restore drill: a real PostgreSQL cluster is dumped through `atrest backup encrypt`,
//! restored through `atrest backup decrypt | psql` into a fresh database and compared; then a
//! dump with one flipped byte must fail to restore, visibly.
//!
//! Needs PostgreSQL's server binaries (Debian: `apt-get install postgresql`; found under
//! `/usr/lib/postgresql/*/bin`, or set `ATREST_PG_BINDIR`) and bash. The test fails, never
//! skips, when they are missing. PostgreSQL refuses to run as root: as root the server
//! binaries run as the `postgres` user (via `runuser`), clients run as the current user.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[allow(dead_code, reason = "uses only common::child; the rest of the shared kit is unused here")]
mod common;

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::child::{self, check};

const ATREST: &str = env!("CARGO_BIN_EXE_atrest");
const TABLES: [&str; 4] = ["blobs", "customers", "marker", "orders"];
const MARKER: &str = "ATREST-DRILL-PLAINTEXT-MARKER";

/// The directory holding initdb, pg_ctl, psql and pg_dump of one PostgreSQL version.
fn find_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ATREST_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(dir.join("initdb").is_file(), "ATREST_PG_BINDIR={} has no initdb", dir.display());
        return dir;
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
        return bin;
    }
    // Elsewhere: initdb on the PATH.
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return dir;
            }
        }
    }
    panic!(
        "\n\n*** The PostgreSQL restore drill needs PostgreSQL's server binaries and found none. ***\n\
         Install them (Debian/Ubuntu: `apt-get install postgresql`) or set ATREST_PG_BINDIR to the\n\
         directory holding initdb, pg_ctl, psql and pg_dump.\n\n"
    );
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// A throwaway PostgreSQL cluster in a temp dir: unix socket only, stopped on drop.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// The unprivileged user running the server when this process is root.
    server_user: Option<String>,
    started: bool,
}

impl Cluster {
    fn start() -> Self {
        let bin = find_bindir();
        // Unix socket paths are limited to ~100 bytes: keep the directory short.
        let tmp = std::env::temp_dir();
        let base = if tmp.as_os_str().len() < 40 { tmp } else { PathBuf::from("/tmp") };
        let dir = tempfile::Builder::new().prefix("atrest-drill-").tempdir_in(base).unwrap();
        let am_root = std::fs::metadata(dir.path()).unwrap().uid() == 0;
        let server_user = if am_root {
            let user = "postgres";
            let (Some(uid), Some(gid)) = (id_of(user, "-u"), id_of(user, "-g")) else {
                panic!(
                    "running as root, and there is no '{user}' user to run PostgreSQL as (Debian's postgresql package creates it)"
                );
            };
            std::fs::create_dir(dir.path().join("sock")).unwrap();
            for p in [dir.path().to_path_buf(), dir.path().join("sock")] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            }
            Some(user.to_owned())
        } else {
            std::fs::create_dir(dir.path().join("sock")).unwrap();
            None
        };
        // Only names the socket file (no TCP), but keep it unlikely to collide anyway.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut c = Self { bin, dir, port, server_user, started: false };

        let data = c.data();
        let out = c
            .server_cmd("initdb")
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .unwrap();
        check(&out, "initdb");
        let conf = format!(
            "\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {}\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\n",
            c.sock().display(),
            c.port
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();

        let log = c.dir.path().join("server.log");
        let out = c
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "120", "start"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        if !out.status.success() {
            panic!(
                "pg_ctl start failed: {}\nserver log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        c.started = true;
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
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

    /// A client binary (psql, pg_dump), run as the current user.
    fn client(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        self.client_env(&mut c);
        c.args(self.conn_args());
        c
    }

    fn client_env(&self, c: &mut Command) {
        for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSERVICE", "PGOPTIONS", "PGSSLMODE"] {
            c.env_remove(var);
        }
        c.env("PGCLIENTENCODING", "UTF8").current_dir(self.dir.path());
    }

    fn conn_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.sock().display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "postgres".into(),
        ]
    }

    /// Runs SQL in `db`, failing on the first error; returns unaligned tuples-only output.
    fn sql(&self, db: &str, sql: &str) -> String {
        let out = self
            .client("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql])
            .output()
            .unwrap();
        check(&out, &format!("psql -d {db}"))
    }

    /// Per-table row count and content checksum; `None` for a table that does not exist.
    fn fingerprint(&self, db: &str) -> Vec<(String, Option<String>)> {
        TABLES
            .iter()
            .map(|t| {
                let exists = self.sql(db, &format!("SELECT to_regclass('public.{t}') IS NOT NULL")).trim() == "t";
                let fp = exists.then(|| {
                    self.sql(db, &format!("SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x.id), '')) FROM {t} x"))
                        .trim()
                        .to_owned()
                });
                ((*t).to_owned(), fp)
            })
            .collect()
    }

    /// `pg_dump` of `db` in plain SQL, without the random `\restrict` key lines that newer
    /// pg_dump versions write (they differ on every run).
    fn dump(&self, db: &str) -> String {
        let out = self.client("pg_dump").args(["--no-owner", "-d", db]).output().unwrap();
        check(&out, &format!("pg_dump {db}"))
            .lines()
            .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
            .fold(String::new(), |mut s, l| {
                s.push_str(l);
                s.push('\n');
                s
            })
    }

    /// Runs a bash script with the cluster's tools and atrest's key settings in the environment.
    fn bash(&self, script: &str) -> Output {
        let mut c = Command::new("bash");
        self.client_env(&mut c);
        c.arg("-c")
            .arg(script)
            .env("ATREST", ATREST)
            .env("PG_DUMP", self.bin.join("pg_dump"))
            .env("PSQL", self.bin.join("psql"))
            .env("PGCONN", self.conn_args().join(" "))
            .env("DIR", self.dir.path())
            .env("ATREST_ROOT_KEY_FILE", self.path("root.key"))
            .env("ATREST_KEYRING", self.path("keyring.atrk"))
            .env_remove("ATREST_ROOT_KEY")
            .stdin(Stdio::null());
        c.output().unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            let data = self.data();
            let _ = self.server_cmd("pg_ctl").arg("-D").arg(&data).args(["-m", "immediate", "-w", "stop"]).output();
        }
    }
}

const LOAD: &str = r"
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text, note text, created timestamptz);
INSERT INTO customers
  SELECT i, 'Zoë Ægir-' || i || ' 🦀 日本語 ' || chr(1024 + i % 200), 'user' || i || '@example.com',
         repeat('ñ', i % 50) || E'\ttab\nnew line\\back''slash',
         timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute'
  FROM generate_series(1, 5000) i;
CREATE TABLE blobs (id int PRIMARY KEY, data bytea NOT NULL, digest bytea);
INSERT INTO blobs
  SELECT i, decode(repeat(md5(i::text), 1 + i % 40), 'hex') || '\x00ff0a0d5c'::bytea, sha256(int4send(i))
  FROM generate_series(1, 3000) i;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id),
                     amount numeric(12,2), tags text[], payload jsonb);
INSERT INTO orders
  SELECT i, 1 + i % 5000, (i * 37 % 100000) / 100.0, ARRAY['t' || (i % 7), 'ü' || (i % 3)],
         jsonb_build_object('n', i, 'msg', 'héllo ' || i, 'nested', jsonb_build_object('even', i % 2 = 0))
  FROM generate_series(1, 20000) i;
CREATE INDEX orders_customer ON orders (customer_id);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 500;
CREATE TABLE marker (id int PRIMARY KEY, secret text);
INSERT INTO marker VALUES (1, 'ATREST-DRILL-PLAINTEXT-MARKER');
";

#[test]
fn postgres_dump_restore_drill() {
    let pg = Cluster::start();

    // Keys.
    let out = pg.bash(r#""$ATREST" keygen --out "$DIR/root.key" && "$ATREST" keyring init"#);
    check(&out, "atrest keygen + keyring init");

    // Source data.
    pg.sql("postgres", "CREATE DATABASE source");
    pg.sql("source", LOAD);
    let source = pg.fingerprint("source");
    assert!(source.iter().all(|(_, fp)| fp.is_some()), "{source:?}");
    let plain_dump = pg.dump("source");
    assert!(plain_dump.contains(MARKER) && plain_dump.len() > 1_000_000, "dump of {} bytes", plain_dump.len());

    // Back up: pg_dump | atrest backup encrypt.
    let out = pg.bash(
        r#"set -o pipefail
        "$PG_DUMP" $PGCONN --no-owner -d source \
          | "$ATREST" backup encrypt --tenant acme --snapshot drill-1 --chunk-size 64K -o "$DIR/source.atrb""#,
    );
    check(&out, "pg_dump | atrest backup encrypt");
    let encrypted = std::fs::read(pg.path("source.atrb")).unwrap();
    assert!(encrypted.len() > 1_000_000);
    assert!(!encrypted.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()), "plaintext in the encrypted dump");
    check(&pg.bash(r#""$ATREST" backup verify --tenant acme --snapshot drill-1 -i "$DIR/source.atrb""#), "verify");

    // Restore: atrest backup decrypt | psql, into a fresh database.
    pg.sql("postgres", "CREATE DATABASE restored");
    let out = pg.bash(
        r#"set -o pipefail
        "$ATREST" backup decrypt --tenant acme --snapshot drill-1 -i "$DIR/source.atrb" \
          | "$PSQL" $PGCONN -X -q -v ON_ERROR_STOP=1 -d restored >/dev/null"#,
    );
    check(&out, "atrest backup decrypt | psql");
    assert_eq!(pg.fingerprint("restored"), source, "restored contents differ");
    let restored_dump = pg.dump("restored");
    if restored_dump != plain_dump {
        let (a, b): (Vec<&str>, Vec<&str>) = (plain_dump.lines().collect(), restored_dump.lines().collect());
        let first = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        panic!("pg_dump of the restored database differs at line {first}: {:?} vs {:?}", a.get(first), b.get(first));
    }
    // The view, index and foreign key came back too.
    assert_eq!(
        pg.sql("restored", "SELECT count(*) FROM big_orders").trim(),
        pg.sql("source", "SELECT count(*) FROM big_orders").trim()
    );
    assert_eq!(pg.sql("restored", "SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_customer'").trim(), "1");

    // Tamper: one flipped byte in the middle of the encrypted dump.
    let mut bad = encrypted.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x20;
    std::fs::write(pg.path("tampered.atrb"), &bad).unwrap();

    // The same restore pipeline must fail, and say so through its exit status.
    pg.sql("postgres", "CREATE DATABASE tampered");
    let out = pg.bash(
        r#"set -o pipefail
        "$ATREST" backup decrypt --tenant acme --snapshot drill-1 -i "$DIR/tampered.atrb" \
          | "$PSQL" $PGCONN -X -q -v ON_ERROR_STOP=1 -d tampered >/dev/null
        status=("${PIPESTATUS[@]}")
        echo "pipestatus ${status[*]}"
        [ "${status[0]}" = 0 ] && [ "${status[1]}" = 0 ]"#,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restore of a tampered dump succeeded: {stdout} {stderr}");
    let atrest_status = stdout.lines().find_map(|l| l.strip_prefix("pipestatus ")).expect("pipestatus line");
    assert_eq!(atrest_status.split(' ').next(), Some("3"), "atrest's exit status; stderr: {stderr}");
    assert!(stderr.contains("atrest: error:") && stderr.contains("authentication failed"), "stderr: {stderr}");
    // The tampered database does not silently hold the full data.
    let got = pg.fingerprint("tampered");
    assert_ne!(got, source, "a tampered dump restored completely");
    let mut report = String::new();
    for ((t, want), (_, have)) in source.iter().zip(&got) {
        let _ = write!(report, "{t}: {} ", if want == have { "complete" } else { "incomplete" });
    }
    eprintln!("tampered restore stopped early as it must: {report}");

    // The safe way, decrypting to a file first, leaves no file at all.
    let out = pg.bash(
        r#""$ATREST" backup decrypt --tenant acme --snapshot drill-1 -i "$DIR/tampered.atrb" -o "$DIR/tampered.sql""#,
    );
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!Path::new(&pg.path("tampered.sql")).exists());
    assert!(child::leftovers(pg.dir.path(), ".tmp").is_empty(), "a temporary file was left behind");

    // The wrong snapshot id does not restore either.
    let out = pg.bash(r#""$ATREST" backup verify --tenant acme --snapshot drill-2 -i "$DIR/source.atrb""#);
    assert_eq!(out.status.code(), Some(3));
}
