//! The transit API over HTTP: one blocking client, retries for transient failures, and the
//! mapping of Vault's answers to typed [`RootKeyError`]s.

use std::thread::sleep;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use ureq::Agent;
use ureq::tls::{RootCerts, TlsConfig};
use zeroize::Zeroizing;

use super::config::{VaultTransitConfig, check_address, read_ca_certs};
use crate::error::RootKeyError;

/// Attempts per request: the first and two retries, for transient failures only.
const ATTEMPTS: u32 = 3;
/// Pause before the first retry; doubled before each next one.
const BACKOFF: Duration = Duration::from_millis(200);
/// Larger answers are refused (transit answers are a few hundred bytes).
const MAX_BODY: u64 = 64 * 1024;

/// Which transit operation a request is (decides how a 400 answer is read).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Encrypt,
    Decrypt,
    ReadKey,
}

/// A connection to one transit key.
pub(super) struct Transit {
    agent: Agent,
    base: String,
    mount: String,
    key: String,
    token: SecretString,
    namespace: Option<String>,
    /// For errors: `Vault transit at https://host:port`.
    pub(super) service: String,
}

/// `{"data": ..., "errors": [...]}`, the envelope of every Vault answer.
#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
    #[serde(default)]
    errors: Vec<String>,
}

/// Errors as the `errors` array alone (when `data` has an unexpected shape).
#[derive(Deserialize)]
struct ErrorsOnly {
    #[serde(default)]
    errors: Vec<String>,
}

/// One attempt's outcome.
enum Attempt<T> {
    Done(Result<T, RootKeyError>),
    /// Transient: retried while attempts remain; this error if none does.
    Retry(RootKeyError),
}

impl Transit {
    pub(super) fn new(config: &VaultTransitConfig) -> Result<Self, RootKeyError> {
        let (base, plain_http) = check_address(&config.address)?;
        let roots = match &config.ca_certs {
            Some(path) => RootCerts::new_with_certs(&read_ca_certs(path)?),
            None => RootCerts::PlatformVerifier,
        };
        let agent: Agent = Agent::config_builder()
            .https_only(!plain_http)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(config.timeout))
            .user_agent(concat!("atrest/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        Ok(Self {
            agent,
            service: format!("Vault transit at {base}"),
            base,
            mount: config.mount.trim_matches('/').to_owned(),
            key: config.key.clone(),
            token: config.token.clone(),
            namespace: config.namespace.clone(),
        })
    }

    /// The key's path, as errors name it.
    pub(super) fn key_path(&self) -> String {
        format!("{}/keys/{}", self.mount, self.key)
    }

    /// `POST {mount}/{op}/{key}` with `body`, or `GET {mount}/keys/{key}`; the answer's `data`.
    /// Transient failures are retried with backoff.
    pub(super) fn call<T: DeserializeOwned>(&self, op: Op, body: &[u8]) -> Result<T, RootKeyError> {
        let mut pause = BACKOFF;
        let mut attempt = 1;
        loop {
            match self.attempt(op, body) {
                Attempt::Done(out) => return out,
                Attempt::Retry(e) if attempt >= ATTEMPTS => return Err(e),
                Attempt::Retry(_) => {
                    sleep(pause);
                    pause = pause.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }

    fn attempt<T: DeserializeOwned>(&self, op: Op, body: &[u8]) -> Attempt<T> {
        let url = match op {
            Op::Encrypt => format!("{}/v1/{}/encrypt/{}", self.base, self.mount, self.key),
            Op::Decrypt => format!("{}/v1/{}/decrypt/{}", self.base, self.mount, self.key),
            Op::ReadKey => format!("{}/v1/{}/keys/{}", self.base, self.mount, self.key),
        };
        let sent = if op == Op::ReadKey {
            self.with_headers(self.agent.get(&url)).call()
        } else {
            self.with_headers(self.agent.post(&url)).content_type("application/json").send(body)
        };
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(self.unreachable(e.to_string())),
        };
        let status = response.status().as_u16();
        // The answer may hold an unwrapped key: keep it in memory that is zeroized.
        let text = match response.body_mut().with_config().limit(MAX_BODY).read_to_vec() {
            Ok(b) => Zeroizing::new(b),
            Err(e) => return Attempt::Retry(self.unreachable(format!("reading the answer: {e}"))),
        };
        if status == 200 {
            return Attempt::Done(self.data(&text));
        }
        let errors = serde_json::from_slice::<ErrorsOnly>(&text).map(|e| e.errors).unwrap_or_default();
        let reason = if errors.is_empty() { format!("HTTP {status}") } else { errors.join("; ") };
        match status {
            429 | 500 | 502 | 503 | 504 => Attempt::Retry(self.unreachable(format!("HTTP {status}: {reason}"))),
            _ => Attempt::Done(Err(self.refusal(op, status, reason))),
        }
    }

    fn with_headers<B>(&self, mut req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        req = req.header("X-Vault-Token", self.token.expose_secret()).header("X-Vault-Request", "true");
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        req
    }

    fn data<T: DeserializeOwned>(&self, text: &[u8]) -> Result<T, RootKeyError> {
        let envelope: Envelope<T> =
            serde_json::from_slice(text).map_err(|e| self.other(format!("malformed answer: {e}")))?;
        envelope.data.ok_or_else(|| self.other(format!("answer without data: {}", envelope.errors.join("; "))))
    }

    /// A non-transient error answer as a typed error.
    fn refusal(&self, op: Op, status: u16, reason: String) -> RootKeyError {
        let key = self.key_path();
        let service = self.service.clone();
        let has = |s: &str| reason.contains(s);
        match status {
            403 => RootKeyError::KmsPermissionDenied { service, key, reason },
            404 => RootKeyError::KmsKeyMissing { service, key },
            400 if has("encryption key not found") => RootKeyError::KmsKeyMissing { service, key },
            // Only these mean "this ciphertext is not authentic for this key and associated
            // data": a forged or modified wrapped key, or one from another key.
            400 if op == Op::Decrypt && (has("message authentication failed") || has("invalid ciphertext")) => {
                RootKeyError::Authentication
            }
            400 if has("disallowed by policy")
                || has("associated data")
                || has("does not support")
                || has("context") =>
            {
                RootKeyError::KmsKeyUnusable { service, key, reason }
            }
            _ => self.other(format!("HTTP {status}: {reason}")),
        }
    }

    fn unreachable(&self, reason: String) -> RootKeyError {
        RootKeyError::KmsUnreachable { service: self.service.clone(), reason }
    }

    pub(super) fn other(&self, reason: String) -> RootKeyError {
        RootKeyError::Kms { service: self.service.clone(), reason }
    }
}
