//! Where an S3 store lives and how to reach it: [`S3Config`], read from the standard AWS
//! environment or given explicitly, and the optional Object Lock [`Retention`].

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;

use super::super::{StoreError, check_key};

/// How long one step of a request may take (connecting, or one read or write on the socket)
/// unless configured otherwise.
pub const DEFAULT_S3_TIMEOUT: Duration = Duration::from_secs(30);

/// The size of each part of a multipart upload unless configured otherwise: bodies up to
/// this size are one `PUT`. The upload holds one part in memory.
pub const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;

/// The smallest part S3 accepts (every part but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// The largest part and the largest single `PUT` S3 accepts.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

/// The region when neither `AWS_REGION` nor `AWS_DEFAULT_REGION` names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The Object Lock mode of a [`Retention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetentionMode {
    /// Users with the `s3:BypassGovernanceRetention` permission may still delete the object.
    Governance,
    /// Nobody, the account's root user included, can delete the object before the date.
    Compliance,
}

impl RetentionMode {
    /// The value of the `x-amz-object-lock-mode` header.
    pub(super) fn header_value(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }
}

/// S3 Object Lock retention set on every object the store writes: the object can be neither
/// deleted nor overwritten until `days` days after it was written. The bucket must have been
/// created with Object Lock enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Governance or compliance.
    pub mode: RetentionMode,
    /// Days from the upload until the retention ends (at least 1).
    pub days: u32,
}

/// Where an S3-compatible store lives and how to log in.
///
/// # Environment
/// [`S3Config::from_env`] reads the variables the AWS tools read:
///
/// | variable | meaning |
/// | --- | --- |
/// | `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` | an S3-compatible server (path-style requests); unset: AWS S3 |
/// | `AWS_REGION`, else `AWS_DEFAULT_REGION` | the region ([`DEFAULT_REGION`] if neither is set) |
/// | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | the credentials (both required) |
/// | `AWS_SESSION_TOKEN` | a session token, for temporary credentials |
///
/// # Security
/// TLS is always verified, against the system's trust store. Plain `http://` is accepted only
/// to a loopback address (`127.0.0.0/8`, `::1`, `localhost`), a local test server. The secret
/// key and the session token are [`SecretString`]s and appear in no `Debug` output and no
/// error; requests are signed (AWS Signature Version 4) and never carry the secret.
#[derive(Clone)]
#[non_exhaustive]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// The prefix under which the store's keys live (`a/b` holds key `k` as `a/b/k`); empty
    /// for the bucket's root.
    pub prefix: String,
    /// An S3-compatible server such as `https://minio.example.com:9000` (then requests are
    /// path-style: `endpoint/bucket/key`); `None` for AWS S3 in [`S3Config::region`].
    pub endpoint: Option<String>,
    /// The region requests are signed for.
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// The session token of temporary credentials, if any.
    pub session_token: Option<SecretString>,
    /// How long connecting, or one read or write on the connection, may take
    /// ([`DEFAULT_S3_TIMEOUT`]). A stalled server fails the request after this long.
    pub timeout: Duration,
    /// Multipart part size ([`DEFAULT_PART_SIZE`], between [`MIN_PART_SIZE`] and
    /// [`MAX_PART_SIZE`]); bodies up to this size are one `PUT`.
    pub part_size: usize,
    /// Keys asked for per listing request (1 to 1000; 1000 by default).
    pub list_page_size: u16,
    /// Object Lock retention for every object written, if any.
    pub retention: Option<Retention>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("timeout", &self.timeout)
            .field("part_size", &self.part_size)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// A store in `bucket` under `prefix` on AWS S3 in [`DEFAULT_REGION`], with the default
    /// timeout, part size and no retention. Set [`S3Config::endpoint`] for another server.
    pub fn new(bucket: &str, prefix: &str, access_key_id: &str, secret_access_key: SecretString) -> Self {
        Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: None,
            region: DEFAULT_REGION.to_owned(),
            access_key_id: access_key_id.to_owned(),
            secret_access_key,
            session_token: None,
            timeout: DEFAULT_S3_TIMEOUT,
            part_size: DEFAULT_PART_SIZE,
            list_page_size: 1000,
            retention: None,
        }
    }

    /// A store in `bucket` under `prefix`, on the server, in the region and with the
    /// credentials of the environment (see the table above).
    ///
    /// # Errors
    /// [`StoreError::Config`] if the access key id or the secret key is missing or empty.
    pub fn from_env(bucket: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::from_vars(bucket, prefix, |name| std::env::var(name).ok())
    }

    /// [`S3Config::from_env`] over any source of variables; empty values count as unset.
    pub(super) fn from_vars(
        bucket: &str,
        prefix: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, StoreError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let key = var("AWS_ACCESS_KEY_ID");
        let secret = var("AWS_SECRET_ACCESS_KEY");
        let (Some(key), Some(secret)) = (key, secret) else {
            return Err(StoreError::Config(
                "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned(),
            ));
        };
        let mut config = Self::new(bucket, prefix, key.trim(), SecretString::from(secret));
        config.endpoint = var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL"));
        if let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            config.region = region.trim().to_owned();
        }
        config.session_token = var("AWS_SESSION_TOKEN").map(SecretString::from);
        Ok(config)
    }

    /// Checks every setting: the bucket name, the prefix, the endpoint, the sizes.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        let b = &self.bucket;
        let bucket_ok = (3..=63).contains(&b.len())
            && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
            && !b.starts_with(['-', '.'])
            && !b.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(config_error(format!(
                "'{}' is not a valid bucket name (3 to 63 lowercase letters, digits, '-' and '.')",
                b.escape_default()
            )));
        }
        if !self.prefix.is_empty() && (check_key(&self.prefix).is_err() || self.prefix.contains('\\')) {
            return Err(config_error(format!("'{}' is not a valid prefix", self.prefix.escape_default())));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(config_error(format!(
                "part size {} is outside {MIN_PART_SIZE}..={MAX_PART_SIZE} bytes",
                self.part_size
            )));
        }
        if !(1..=1000).contains(&self.list_page_size) {
            return Err(config_error(format!("list page size {} is outside 1..=1000", self.list_page_size)));
        }
        if self.retention.is_some_and(|r| r.days == 0) {
            return Err(config_error("Object Lock retention must be at least 1 day".to_owned()));
        }
        if self.region.is_empty() || !self.region.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
            return Err(config_error(format!("'{}' is not a valid region", self.region.escape_default())));
        }
        Ok(())
    }

    /// The endpoint as a URL and whether requests are path-style: a custom endpoint (`http`
    /// only to loopback), else AWS S3's regional endpoint with virtual-host requests.
    pub(super) fn endpoint_url(&self) -> Result<(url::Url, bool), StoreError> {
        let Some(endpoint) = &self.endpoint else {
            let aws = format!("https://s3.{}.amazonaws.com", self.region);
            let url = url::Url::parse(&aws).map_err(|e| config_error(format!("endpoint '{aws}': {e}")))?;
            return Ok((url, false));
        };
        let shown = endpoint.escape_default();
        let url = url::Url::parse(endpoint.trim()).map_err(|e| config_error(format!("endpoint '{shown}': {e}")))?;
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
            return Err(config_error(format!("endpoint '{shown}' must not carry a user, password or query")));
        }
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => return Err(config_error(format!("endpoint '{shown}' has no host"))),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(config_error(format!(
                    "endpoint '{shown}' is plain http to a host that is not loopback: use https:// (plain http is \
                     accepted only for 127.0.0.1, ::1 and localhost)"
                )));
            }
            other => return Err(config_error(format!("endpoint '{shown}': scheme '{other}' is not http(s)"))),
        }
        Ok((url, true))
    }
}

fn config_error(msg: String) -> StoreError {
    StoreError::Config(msg)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn environment() {
        let c = S3Config::from_vars(
            "bkt",
            "p",
            vars(&[
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
                ("AWS_ENDPOINT_URL_S3", "http://localhost:9001"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_SESSION_TOKEN", "tok"),
            ]),
        )
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://localhost:9001"));
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.secret_access_key.expose_secret(), "s3cr3t");
        assert_eq!(c.session_token.as_ref().map(|t| t.expose_secret().to_owned()).as_deref(), Some("tok"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("tok") && !shown.contains("AKID"), "{shown}");
        assert!(c.endpoint_url().unwrap().1);

        let c = S3Config::from_vars("bkt", "", vars(&[("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")]))
            .unwrap();
        assert_eq!(c.region, DEFAULT_REGION);
        let (url, path_style) = c.endpoint_url().unwrap();
        assert_eq!((url.as_str(), path_style), ("https://s3.us-east-1.amazonaws.com/", false));

        for missing in
            [vec![("AWS_ACCESS_KEY_ID", "A")], vec![("AWS_ACCESS_KEY_ID", " "), ("AWS_SECRET_ACCESS_KEY", "S")]]
        {
            assert!(matches!(S3Config::from_vars("bkt", "", vars(&missing)), Err(StoreError::Config(_))));
        }
    }

    #[test]
    fn checks() {
        let base = S3Config::new("bkt", "a/b", "A", SecretString::from("S"));
        assert!(base.check().is_ok());
        let bad: [fn(&mut S3Config); 10] = [
            |c| c.bucket = "ab".into(),
            |c| c.bucket = "Upper".into(),
            |c| c.bucket = "-abc".into(),
            |c| c.prefix = "/a".into(),
            |c| c.prefix = "a/../b".into(),
            |c| c.prefix = "a\\b".into(),
            |c| c.part_size = MIN_PART_SIZE - 1,
            |c| c.list_page_size = 0,
            |c| c.region = "us east".into(),
            |c| c.retention = Some(Retention { mode: RetentionMode::Governance, days: 0 }),
        ];
        for change in bad {
            let mut c = base.clone();
            change(&mut c);
            assert!(matches!(c.check(), Err(StoreError::Config(_))), "{c:?}");
        }
        for (endpoint, ok) in [
            ("https://s3.example.com", true),
            ("http://127.0.0.1:8333", true),
            ("http://[::1]:8333", true),
            ("http://s3.example.com", false),
            ("ftp://127.0.0.1", false),
            ("https://user:pw@s3.example.com", false),
            ("https://s3.example.com/?x=1", false),
            ("not a url", false),
        ] {
            let mut c = base.clone();
            c.endpoint = Some(endpoint.into());
            assert_eq!(c.endpoint_url().is_ok(), ok, "{endpoint}");
        }
    }
}
