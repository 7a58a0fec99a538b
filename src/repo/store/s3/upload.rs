//! [`ObjectStore::put_new`](super::super::ObjectStore::put_new) on S3: a body that fits in
//! one part is one conditional `PUT`; a larger one is a multipart upload whose completion is
//! conditional. Either way `If-None-Match: *` makes the service refuse to replace an object.
//!
//! # What the condition covers
//! - A single `PUT` (bodies up to the part size, 16 MiB by default): the service checks the
//!   condition atomically with the write, on AWS S3 and on SeaweedFS (tested: exactly one of
//!   several concurrent writers wins, in hundreds of rounds; the others get HTTP 412).
//! - `CompleteMultipartUpload` (larger bodies): AWS S3 checks it atomically (HTTP 412, or 409
//!   `ConditionalRequestConflict` for a concurrent completion). SeaweedFS (4.48) refuses a
//!   completion over an existing object (HTTP 412) but checks the condition before, not under,
//!   its write: overlapping completions of one key can all be accepted, the last replacing the
//!   others. After completing, the store therefore reads the object's ETag back and reports
//!   [`StoreError::AlreadyExists`] if it is not its own. **Residual race** on such servers:
//!   when a writer's ETag check comes before a concurrent completion of the same key lands,
//!   both writers are told they stored the object, and the later one's body replaces the
//!   earlier. Only concurrent uploads of one key larger than a part are exposed; keys that
//!   are unique per writer, and small objects such as catalog entries, are not.
//!
//! A multipart upload first asks `HEAD` whether the key is taken, only to spare the upload of
//! a body that would be refused. A failed or refused multipart upload is aborted, so no part
//! stays stored.

use std::io::{self, Read};

use rusty_s3::S3Action as _;
use rusty_s3::actions::{CompleteMultipartUploadResponse, CreateMultipartUpload};

use super::super::StoreError;
use super::S3Store;
use super::http::{Body, header, io_error, read_answer, service_error};

/// S3's limit on the number of parts of one upload.
const MAX_PARTS: u16 = 10_000;

impl S3Store {
    /// Stores `body` under the full key `full` unless an object is there.
    pub(super) fn upload(&self, key: &str, full: &str, body: &mut dyn Read) -> Result<u64, StoreError> {
        let mut carry = None;
        let first = read_part(body, self.part_size, &mut carry).map_err(|e| io_error(key, e))?;
        if carry.is_none() {
            return self.put_single(key, full, &first);
        }
        if self.client_head(key, full)?.is_some() {
            return Err(StoreError::AlreadyExists(key.to_owned()));
        }
        let upload_id = self.create_upload(key, full)?;
        let result = self.upload_parts(key, full, &upload_id, first, body, carry);
        if result.is_err() {
            // Best effort: the error that stopped the upload is the one to report.
            let mut abort = self.client.bucket.abort_multipart_upload(Some(&self.client.credentials), full, &upload_id);
            let _ = self.client.send_idempotent(key, &mut abort, Body::Empty);
        }
        result
    }

    /// One `PUT` with `If-None-Match: *`.
    fn put_single(&self, key: &str, full: &str, bytes: &[u8]) -> Result<u64, StoreError> {
        let mut action = self.client.bucket.put_object(Some(&self.client.credentials), full);
        action.headers_mut().insert("if-none-match", "*");
        self.add_retention(action.headers_mut())?;
        self.add_md5(action.headers_mut(), bytes);
        let response = self.client.send(key, &mut action, Body::Bytes(bytes))?;
        match response.status().as_u16() {
            200 => Ok(bytes.len() as u64),
            _ => Err(refusal(key, response)),
        }
    }

    fn create_upload(&self, key: &str, full: &str) -> Result<String, StoreError> {
        let mut action = self.client.bucket.create_multipart_upload(Some(&self.client.credentials), full);
        self.add_retention(action.headers_mut())?;
        let response = self.client.send(key, &mut action, Body::Empty)?;
        if response.status().as_u16() != 200 {
            return Err(service_error(key, response));
        }
        let text = read_answer(key, response)?;
        let parsed =
            CreateMultipartUpload::parse_response(&text).map_err(|_| malformed(key, "CreateMultipartUpload"))?;
        Ok(parsed.upload_id().to_owned())
    }

    /// Uploads `first` and the rest of `body` as parts, then completes the upload under the
    /// `If-None-Match: *` condition.
    fn upload_parts(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        first: Vec<u8>,
        body: &mut dyn Read,
        mut carry: Option<u8>,
    ) -> Result<u64, StoreError> {
        let mut etags = Vec::new();
        let mut total = 0u64;
        let mut part = first;
        let mut number: u16 = 1;
        loop {
            let mut action = self.client.bucket.upload_part(Some(&self.client.credentials), full, number, upload_id);
            self.add_md5(action.headers_mut(), &part);
            let response = self.client.send_idempotent(key, &mut action, Body::Bytes(&part))?;
            if response.status().as_u16() != 200 {
                return Err(service_error(key, response));
            }
            let etag = header(&response, "etag").ok_or_else(|| malformed(key, "UploadPart (no ETag)"))?;
            etags.push(etag.to_owned());
            total += part.len() as u64;
            if carry.is_none() {
                break;
            }
            if number >= MAX_PARTS {
                return Err(StoreError::Config(format!(
                    "object '{key}' is larger than {MAX_PARTS} parts of {} bytes: raise the part size",
                    self.part_size
                )));
            }
            number += 1;
            part = read_part(body, self.part_size, &mut carry).map_err(|e| io_error(key, e))?;
        }
        let mut action = self.client.bucket.complete_multipart_upload(
            Some(&self.client.credentials),
            full,
            upload_id,
            etags.iter().map(String::as_str),
        );
        action.headers_mut().insert("if-none-match", "*");
        let xml = action.clone().body();
        let response = self.client.send(key, &mut action, Body::Bytes(xml.as_bytes()))?;
        if response.status().as_u16() != 200 {
            return Err(refusal(key, response));
        }
        // S3 may answer 200 and report a failure in the body.
        let text = read_answer(key, response)?;
        if text.contains("<Error>") {
            return Err(StoreError::Service { key: key.to_owned(), status: 200, code: super::http::error_code(&text) });
        }
        let done =
            CompleteMultipartUploadResponse::parse(&text).map_err(|_| malformed(key, "CompleteMultipartUpload"))?;
        // Where the service checks the condition outside its write (SeaweedFS), a concurrent
        // completion may have replaced this object already: then report the key as taken.
        let ours = done.etag().trim_matches('"');
        match self.client_head(key, full)? {
            Some(head) if head.etag.as_deref().is_some_and(|e| e != ours) => {
                Err(StoreError::AlreadyExists(key.to_owned()))
            }
            _ => Ok(total),
        }
    }

    /// `Content-MD5`, which AWS requires of every upload under Object Lock retention (and
    /// which costs a hash of the body, so only then).
    fn add_md5(&self, headers: &mut rusty_s3::Map<'_>, body: &[u8]) {
        if self.retention.is_some() {
            use base64::Engine as _;
            use md5::Digest as _;
            headers.insert("content-md5", base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body)));
        }
    }

    /// The Object Lock headers, if the store sets a retention.
    fn add_retention(&self, headers: &mut rusty_s3::Map<'_>) -> Result<(), StoreError> {
        let Some(retention) = self.retention else { return Ok(()) };
        let until = jiff::Timestamp::now()
            .as_second()
            .checked_add(i64::from(retention.days) * 86_400)
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .ok_or_else(|| StoreError::Config(format!("retention of {} days is too long", retention.days)))?;
        headers.insert("x-amz-object-lock-mode", retention.mode.header_value());
        headers.insert("x-amz-object-lock-retain-until-date", until.to_string());
        Ok(())
    }
}

/// Reads up to `size` bytes (after `carry`, the byte read ahead last time). On return `carry`
/// holds the next byte of the body, or `None` if the body has ended.
fn read_part(body: &mut dyn Read, size: usize, carry: &mut Option<u8>) -> io::Result<Vec<u8>> {
    let mut part = Vec::with_capacity(size.min(1024 * 1024));
    part.extend(carry.take());
    let wanted = u64::try_from(size.saturating_sub(part.len())).unwrap_or(u64::MAX);
    let mut limited = body.take(wanted);
    limited.read_to_end(&mut part)?;
    let body = limited.into_inner();
    let mut next = [0u8; 1];
    loop {
        match body.read(&mut next) {
            Ok(0) => break,
            Ok(_) => {
                *carry = next.first().copied();
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(part)
}

/// The error for a refused conditional write: the key taken (412, or 409
/// `ConditionalRequestConflict` when another write of the key raced this one), or the
/// service's error.
fn refusal(key: &str, response: ureq::http::Response<ureq::Body>) -> StoreError {
    match service_error(key, response) {
        StoreError::Service { status: 412, .. } => StoreError::AlreadyExists(key.to_owned()),
        StoreError::Service { status: 409, code, .. } if code == "ConditionalRequestConflict" => {
            StoreError::AlreadyExists(key.to_owned())
        }
        other => other,
    }
}

/// An answer that is not what the S3 API documents.
pub(super) fn malformed(key: &str, what: &str) -> StoreError {
    io_error(key, io::Error::new(io::ErrorKind::InvalidData, format!("malformed {what} answer from the service")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let data: Vec<u8> = (0..=255u8).cycle().take(25).collect();
        let mut body = &data[..];
        let mut carry = None;
        let mut got = Vec::new();
        loop {
            let part = read_part(&mut body, 10, &mut carry).unwrap();
            assert!(part.len() <= 10);
            got.extend_from_slice(&part);
            if carry.is_none() {
                break;
            }
        }
        assert_eq!(got, data);

        let mut exact = &data[..10];
        let part = read_part(&mut exact, 10, &mut carry).unwrap();
        assert_eq!((part.len(), carry), (10, None));
        let mut empty: &[u8] = &[];
        assert_eq!(read_part(&mut empty, 10, &mut carry).unwrap(), Vec::<u8>::new());
    }
}
