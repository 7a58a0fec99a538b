//! An [`ObjectStore`] on S3-compatible object storage (feature `s3`): AWS S3, MinIO,
//! SeaweedFS, Ceph RGW, and any server that speaks the S3 API with Signature Version 4.
//!
//! Keys are stored under the configured prefix (`prefix/key`). Nothing is ever overwritten:
//! every write carries `If-None-Match: *` (see [`upload`] for multipart uploads). With
//! [`Retention`] set, every object is written under S3 Object Lock and cannot be deleted
//! before its date; [`ObjectStore::delete`] then fails with the service's refusal.
//!
//! Requests go through a small blocking HTTPS client (ureq, rustls), signed by rusty-s3;
//! idempotent requests are retried twice after a transient failure, conditional writes never
//! are. Every connection step and every socket read or write has a timeout, so a silent
//! server fails a request instead of hanging it.

mod config;
mod http;
mod upload;

use std::fmt;
use std::io::Read;

use rusty_s3::actions::ListObjectsV2;
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use secrecy::ExposeSecret as _;

pub use config::{
    DEFAULT_PART_SIZE, DEFAULT_REGION, DEFAULT_S3_TIMEOUT, MAX_PART_SIZE, MIN_PART_SIZE, Retention, RetentionMode,
    S3Config,
};
use http::{Body, Client, ObjectReader, header, read_answer, service_error};

use super::{ObjectMeta, ObjectStore, StoreError, check_key};

/// Objects in one bucket of an S3-compatible service, under one prefix.
///
/// # Never overwriting
/// [`ObjectStore::put_new`] sends bodies up to [`S3Config::part_size`] as one `PUT` and larger
/// ones as a multipart upload, both under `If-None-Match: *`. The single `PUT` is safe against
/// concurrent writers everywhere tested (AWS S3 documents it; SeaweedFS enforces it). For a
/// multipart upload the guarantee is the server's: AWS S3 checks the condition atomically;
/// SeaweedFS 4.48 does not, so two concurrent writers of one key larger than a part may both
/// succeed there (the store's ETag check after completing narrows this, it cannot close it).
/// Objects written concurrently under one key should fit in one part, or have unique keys.
///
/// Keys are those [`check_key`] accepts, without `\` (SeaweedFS stores it as `/`).
///
/// # Example
/// ```no_run
/// # fn main() -> Result<(), atrest::StoreError> {
/// use atrest::{ObjectStore, S3Store};
/// // AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY from the environment.
/// let store = S3Store::from_env("backups", "prod/eu")?;
/// store.put_new("tenants/acme/1.atrb", &mut &b"..."[..])?;
/// # Ok(())
/// # }
/// ```
pub struct S3Store {
    client: Client,
    /// The prefix with a trailing `/`, or empty.
    root: String,
    part_size: usize,
    list_page_size: u16,
    retention: Option<Retention>,
    /// For `Debug`: `s3://bucket/prefix at endpoint`.
    shown: String,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store").field("location", &self.shown).finish_non_exhaustive()
    }
}

impl S3Store {
    /// The store in `bucket` under `prefix` on the server, in the region and with the
    /// credentials named by the standard AWS environment variables (see [`S3Config`]).
    ///
    /// # Errors
    /// [`StoreError::Config`] if the credentials are missing or a setting is invalid.
    pub fn from_env(bucket: &str, prefix: &str) -> Result<S3Store, StoreError> {
        Self::new(S3Config::from_env(bucket, prefix)?)
    }

    /// The store `config` describes. Nothing is sent until the first request.
    ///
    /// # Errors
    /// [`StoreError::Config`] if a setting is invalid: the bucket name, the prefix, the
    /// endpoint (plain `http://` only to a loopback address), the part size, the region.
    pub fn new(config: S3Config) -> Result<S3Store, StoreError> {
        config.check()?;
        let (endpoint, path_style) = config.endpoint_url()?;
        let style = if path_style { UrlStyle::Path } else { UrlStyle::VirtualHost };
        let bucket = Bucket::new(endpoint.clone(), style, config.bucket.clone(), config.region.clone())
            .map_err(|e| StoreError::Config(format!("bucket '{}' at {endpoint}: {e}", config.bucket)))?;
        let secret = config.secret_access_key.expose_secret();
        let credentials = match &config.session_token {
            Some(token) => Credentials::new_with_token(&config.access_key_id, secret, token.expose_secret()),
            None => Credentials::new(&config.access_key_id, secret),
        };
        let https_only = endpoint.scheme() == "https";
        let root = if config.prefix.is_empty() { String::new() } else { format!("{}/", config.prefix) };
        Ok(S3Store {
            client: Client::new(bucket, credentials, config.timeout, https_only),
            shown: format!("s3://{}/{} at {endpoint}", config.bucket, config.prefix),
            root,
            part_size: config.part_size,
            list_page_size: config.list_page_size,
            retention: config.retention,
        })
    }

    /// The key as stored: the prefix, then `key`. Besides [`check_key`], a key must not hold
    /// `\`: some servers (SeaweedFS) store it as `/`, and the key would list as another one.
    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        if key.contains('\\') {
            return Err(StoreError::InvalidKey(key.escape_default().to_string()));
        }
        Ok(format!("{}{key}", self.root))
    }

    /// `HEAD` on a full key, or `None` if there is no object.
    fn client_head(&self, key: &str, full: &str) -> Result<Option<Head>, StoreError> {
        let mut action = self.client.bucket.head_object(Some(&self.client.credentials), full);
        let response = self.client.send_idempotent(key, &mut action, Body::Empty)?;
        match response.status().as_u16() {
            200 => {
                let size = header(&response, "content-length")
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| upload::malformed(key, "HeadObject (no Content-Length)"))?;
                let version = header(&response, "x-amz-version-id").filter(|v| *v != "null").map(str::to_owned);
                let etag = header(&response, "etag").map(|e| e.trim_matches('"').to_owned());
                Ok(Some(Head { size, version, etag }))
            }
            404 => Ok(None),
            _ => Err(service_error(key, response)),
        }
    }
}

/// What `HEAD` says of an object.
struct Head {
    size: u64,
    /// Its version id, in a versioned bucket.
    version: Option<String>,
    /// Its ETag, without quotes.
    etag: Option<String>,
}

impl ObjectStore for S3Store {
    fn put_new(&self, key: &str, body: &mut dyn Read) -> Result<u64, StoreError> {
        let full = self.full_key(key)?;
        self.upload(key, &full, body)
    }

    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        let full = self.full_key(key)?;
        let mut action = self.client.bucket.get_object(Some(&self.client.credentials), &full);
        let response = self.client.send_idempotent(key, &mut action, Body::Empty)?;
        match response.status().as_u16() {
            200 => Ok(Box::new(ObjectReader::new(response))),
            404 => Err(StoreError::NotFound(key.to_owned())),
            _ => Err(service_error(key, response)),
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let full = self.full_key(key)?;
        Ok(self.client_head(key, &full)?.map(|h| ObjectMeta { key: key.to_owned(), size: h.size }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let wanted = format!("{}{prefix}", self.root);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.client.bucket.list_objects_v2(Some(&self.client.credentials));
            action.with_prefix(wanted.as_str());
            action.with_max_keys(usize::from(self.list_page_size));
            if let Some(t) = &token {
                action.with_continuation_token(t.as_str());
            }
            let response = self.client.send_idempotent(prefix, &mut action, Body::Empty)?;
            if response.status().as_u16() != 200 {
                return Err(service_error(prefix, response));
            }
            let text = read_answer(prefix, response)?;
            let page = ListObjectsV2::parse_response(&text).map_err(|_| upload::malformed(prefix, "ListObjectsV2"))?;
            for item in page.contents {
                if let Some(key) = item.key.strip_prefix(&self.root) {
                    out.push(ObjectMeta { key: key.to_owned(), size: item.size.unwrap_or(0) });
                }
            }
            match page.next_continuation_token {
                // A service that hands back the token it was given would list forever.
                Some(next) if token.as_deref() == Some(next.as_str()) => {
                    return Err(upload::malformed(prefix, "ListObjectsV2 (repeated continuation token)"));
                }
                Some(next) => token = Some(next),
                None => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        // In a versioned bucket (every Object Lock bucket) a plain DELETE only hides the
        // object behind a delete marker: delete the version itself, which Object Lock refuses
        // while the retention lasts.
        let Some(Head { version, .. }) = self.client_head(key, &full)? else { return Ok(()) };
        let mut action = self.client.bucket.delete_object(Some(&self.client.credentials), &full);
        if let Some(v) = version {
            action.query_mut().insert("versionId", v);
        }
        let response = self.client.send_idempotent(key, &mut action, Body::Empty)?;
        match response.status().as_u16() {
            200 | 204 | 404 => Ok(()),
            _ => Err(service_error(key, response)),
        }
    }
}
