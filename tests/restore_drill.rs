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
#[path = "common/postgres.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::child::{self, check};
use pg::PgServer;

const ATREST: &str = env!("CARGO_BIN_EXE_atrest");
const TABLES: [&str; 4] = ["blobs", "customers", "marker", "orders"];
const MARKER: &str = "ATREST-DRILL-PLAINTEXT-MARKER";

/// The drill's PostgreSQL server (tests/common/postgres.rs: 127.0.0.1, password auth) and a
/// work directory for keys and streams.
struct Cluster {
    server: PgServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Self {
        // The drill never skips: without PostgreSQL it fails, whatever ATREST_REQUIRE_POSTGRES says.
        let server = PgServer::start("the PostgreSQL restore drill").unwrap_or_else(|| {
            panic!("the restore drill needs PostgreSQL's server binaries (apt-get install postgresql)")
        });
        Self { server, dir: tempfile::Builder::new().prefix("atrest-drill-").tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client binary (psql, pg_dump), run as the current user.
    fn client(&self, name: &str) -> Command {
        let mut c = Command::new(self.server.bindir().join(name));
        self.client_env(&mut c);
        c.args(self.conn_args());
        c
    }

    fn client_env(&self, c: &mut Command) {
        for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE", "PGOPTIONS", "PGSSLMODE"] {
            c.env_remove(var);
        }
        c.env("PGPASSWORD", self.server.password()).env("PGCLIENTENCODING", "UTF8").current_dir(self.dir.path());
    }

    fn conn_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.server.port().to_string(),
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
            .env("PG_DUMP", self.server.bindir().join("pg_dump"))
            .env("PSQL", self.server.bindir().join("psql"))
            .env("PGCONN", self.conn_args().join(" "))
            .env("DIR", self.dir.path())
            .env("ATREST_ROOT_KEY_FILE", self.path("root.key"))
            .env("ATREST_KEYRING", self.path("keyring.atrk"))
            .env_remove("ATREST_ROOT_KEY")
            .stdin(Stdio::null());
        c.output().unwrap()
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

    // Tamper: one flipped byte, in the middle and three quarters in. The documented recipe
    // (decrypt | psql --single-transaction) must fail and leave the target database exactly as
    // it was: decrypt authenticates the whole stream before psql sees a byte.
    for (i, at) in [encrypted.len() / 2, encrypted.len() * 3 / 4].into_iter().enumerate() {
        let mut bad = encrypted.clone();
        bad[at] ^= 0x20;
        std::fs::write(pg.path("tampered.atrb"), &bad).unwrap();
        let db = format!("tampered{i}");
        pg.sql("postgres", &format!("CREATE DATABASE {db}"));
        let out = pg.bash(&format!(
            r#"set -o pipefail
            "$ATREST" backup decrypt --tenant acme --snapshot drill-1 -i "$DIR/tampered.atrb" \
              | "$PSQL" $PGCONN -X -q --single-transaction -v ON_ERROR_STOP=1 -d {db} >/dev/null
            status=("${{PIPESTATUS[@]}}")
            echo "pipestatus ${{status[*]}}"
            [ "${{status[0]}}" = 0 ] && [ "${{status[1]}}" = 0 ]"#
        ));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "restore of a tampered dump succeeded: {stdout} {stderr}");
        let atrest_status = stdout.lines().find_map(|l| l.strip_prefix("pipestatus ")).expect("pipestatus line");
        assert_eq!(atrest_status.split(' ').next(), Some("3"), "atrest's exit status; stderr: {stderr}");
        assert!(stderr.contains("atrest: error:") && stderr.contains("authentication failed"), "stderr: {stderr}");
        // Exactly as it was: no table, no row.
        assert_eq!(pg.sql(&db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").trim(), "0");
        assert!(pg.fingerprint(&db).iter().all(|(_, fp)| fp.is_none()), "byte {at}: something was restored");
    }

    // The safe way, decrypting to a file first, leaves no file at all.
    let out = pg.bash(
        r#""$ATREST" backup decrypt --tenant acme --snapshot drill-1 -i "$DIR/tampered.atrb" -o "$DIR/tampered.sql""#,
    );
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!Path::new(&pg.path("tampered.sql")).exists());
    assert!(child::leftovers(pg.dir.path(), ".tmp").is_empty(), "a temporary file was left behind");

    // The wrong snapshot id does not restore either: a context mismatch (exit 4).
    let out = pg.bash(r#""$ATREST" backup verify --tenant acme --snapshot drill-2 -i "$DIR/source.atrb""#);
    assert_eq!(out.status.code(), Some(4));
}
