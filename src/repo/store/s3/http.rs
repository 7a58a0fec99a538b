//! Signed requests to the S3 API over one blocking HTTP client, and the mapping of the
//! service's answers and of network failures to typed [`StoreError`]s.
//!
//! Requests are signed with AWS Signature Version 4 in the query string (rusty-s3's presigned
//! URLs, valid for [`SIGNED_FOR`]); the secret key never leaves the process, and no error
//! names a signed URL.

use std::io::{self, Read};
use std::thread::sleep;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, Method, S3Action};
use ureq::Agent;
use ureq::http::{self, Response};

use super::super::StoreError;

/// How long a signed request stays valid: it is sent at once, so this only has to cover the
/// clock difference with the server.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);
/// Attempts for an idempotent request: the first and two retries, for transient failures.
const ATTEMPTS: u32 = 3;
/// Pause before the first retry; doubled before each next one.
const BACKOFF: Duration = Duration::from_millis(200);
/// The most of an answer read into memory (error documents, listings, upload ids).
pub(super) const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// A request's body.
#[derive(Clone, Copy)]
pub(super) enum Body<'a> {
    /// No body.
    Empty,
    /// These bytes, with their `Content-Length`.
    Bytes(&'a [u8]),
}

/// One bucket on one server, with the credentials that sign every request.
pub(super) struct Client {
    agent: Agent,
    pub(super) bucket: Bucket,
    pub(super) credentials: Credentials,
}

impl Client {
    pub(super) fn new(bucket: Bucket, credentials: Credentials, timeout: Duration, https_only: bool) -> Self {
        let agent: Agent = Agent::config_builder()
            .https_only(https_only)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(timeout))
            .timeout_send_request(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .user_agent(concat!("atrest/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self { agent, bucket, credentials }
    }

    /// Signs `action` and sends it once with `body` and every header the action signed.
    /// Any answer is returned, whatever its status; a network failure is [`StoreError::Io`].
    pub(super) fn send<'a, A: S3Action<'a>>(
        &self,
        key: &str,
        action: &mut A,
        body: Body<'_>,
    ) -> Result<Response<ureq::Body>, StoreError> {
        let url = action.sign(SIGNED_FOR);
        let method = match A::METHOD {
            Method::Head => http::Method::HEAD,
            Method::Get => http::Method::GET,
            Method::Post => http::Method::POST,
            Method::Put => http::Method::PUT,
            Method::Delete => http::Method::DELETE,
        };
        let mut request = http::Request::builder().method(method).uri(url.as_str());
        for (name, value) in action.headers_mut().iter() {
            request = request.header(name, value);
        }
        // A POST or PUT without a body says `Content-Length: 0` (not an empty chunked body).
        let body = match (body, A::METHOD) {
            (Body::Empty, Method::Post | Method::Put) => Body::Bytes(&[]),
            (b, _) => b,
        };
        let sent = match body {
            Body::Empty => request.body(()).map(|r| self.agent.run(r)),
            Body::Bytes(bytes) => request.body(bytes).map(|r| self.agent.run(r)),
        };
        match sent {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(io_error(key, network_error(e))),
            Err(_) => Err(io_error(key, io::Error::new(io::ErrorKind::InvalidInput, "request could not be built"))),
        }
    }

    /// [`Client::send`], retried with backoff after a network failure or a transient answer
    /// (HTTP 429, 500, 502, 503, 504). Only for requests that may be repeated safely.
    pub(super) fn send_idempotent<'a, A: S3Action<'a>>(
        &self,
        key: &str,
        action: &mut A,
        body: Body<'_>,
    ) -> Result<Response<ureq::Body>, StoreError> {
        let mut pause = BACKOFF;
        let mut attempt = 1;
        loop {
            let last = attempt >= ATTEMPTS;
            match self.send(key, action, body) {
                Ok(r) if last || !matches!(r.status().as_u16(), 429 | 500 | 502 | 503 | 504) => return Ok(r),
                Err(e) if last => return Err(e),
                Ok(_) | Err(_) => {
                    sleep(pause);
                    pause = pause.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }
}

/// Reads an answer's body (at most [`MAX_ANSWER`] bytes) as text.
pub(super) fn read_answer(key: &str, response: Response<ureq::Body>) -> Result<String, StoreError> {
    let mut text = String::new();
    response
        .into_body()
        .into_reader()
        .take(MAX_ANSWER)
        .read_to_string(&mut text)
        .map_err(|e| io_error(key, sanitize(e)))?;
    Ok(text)
}

/// The typed error for an answer that is not a success: its status and the `<Code>` of the
/// S3 error document, if there is one (a `HEAD` answer has no body).
pub(super) fn service_error(key: &str, response: Response<ureq::Body>) -> StoreError {
    let status = response.status().as_u16();
    let code = read_answer(key, response).map(|text| error_code(&text)).unwrap_or_default();
    StoreError::Service { key: key.to_owned(), status, code }
}

/// The text of the first `<Code>` element, if it is short and plain; empty otherwise.
pub(super) fn error_code(xml: &str) -> String {
    let code = xml.split_once("<Code>").and_then(|(_, rest)| rest.split_once("</Code>")).map(|(code, _)| code.trim());
    match code {
        Some(c) if c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_') => {
            c.to_owned()
        }
        _ => String::new(),
    }
}

/// The value of header `name`, if present and text.
pub(super) fn header<'r>(response: &'r Response<ureq::Body>, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn io_error(key: &str, source: io::Error) -> StoreError {
    StoreError::Io { key: key.to_owned(), source }
}

/// A network failure as an [`io::Error`] that names no URL (URLs carry signatures).
fn network_error(e: ureq::Error) -> io::Error {
    match e {
        ureq::Error::Io(e) => sanitize(e),
        ureq::Error::Timeout(t) => io::Error::new(io::ErrorKind::TimedOut, format!("timed out ({t})")),
        ureq::Error::HostNotFound => io::Error::new(io::ErrorKind::NotFound, "host not found"),
        ureq::Error::ConnectionFailed => io::Error::new(io::ErrorKind::ConnectionRefused, "connection failed"),
        other => io::Error::other(redact(other.to_string())),
    }
}

/// An I/O error whose text might name a signed URL, made safe to show.
pub(super) fn sanitize(e: io::Error) -> io::Error {
    let text = e.to_string();
    if text.contains("X-Amz-") { io::Error::new(e.kind(), redact(text)) } else { e }
}

fn redact(text: String) -> String {
    if text.contains("X-Amz-") || text.contains("x-amz-") {
        "request failed (the details name a signed URL and are withheld)".to_owned()
    } else {
        text
    }
}

/// The body of a `GET` answer as a stream: errors made safe to show, and a body that ends
/// before its `Content-Length` is an error, never a short object.
pub(super) struct ObjectReader {
    inner: ureq::BodyReader<'static>,
    remaining: Option<u64>,
}

impl ObjectReader {
    pub(super) fn new(response: Response<ureq::Body>) -> Self {
        let remaining = header(&response, "content-length").and_then(|v| v.parse().ok());
        Self { inner: response.into_body().into_reader(), remaining }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(sanitize)?;
        if let Some(left) = self.remaining.as_mut() {
            if n == 0 && *left > 0 && !buf.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the object's body ended early"));
            }
            *left = left.saturating_sub(n as u64);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes() {
        let doc = "<?xml version=\"1.0\"?><Error><Code>PreconditionFailed</Code><Message>x</Message></Error>";
        assert_eq!(error_code(doc), "PreconditionFailed");
        for bad in ["", "<Code>", "</Code><Code>", "<Code>a b</Code>", "<Code><x/></Code>", "garbage\u{0}"] {
            assert_eq!(error_code(bad), "", "{bad:?}");
        }
        assert_eq!(error_code(&format!("<Code>{}</Code>", "A".repeat(65))), "");
    }

    #[test]
    fn redaction() {
        let e = io::Error::other("GET http://h/b/k?X-Amz-Signature=abc failed");
        assert!(!sanitize(e).to_string().contains("abc"));
        assert_eq!(sanitize(io::Error::other("plain")).to_string(), "plain");
    }
}
