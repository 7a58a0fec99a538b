//! A root key in AWS KMS (feature `aws-kms`), through the official AWS SDK.
//!
//! # Wrapped key format (version 1)
//!
//! ```text
//! 0x01 || KMS CiphertextBlob (opaque, as Encrypt returned it)
//! ```
//!
//! `Encrypt` and `Decrypt` name the key ARN and the encryption context
//! `{"atrest-aad": hex(aad)}`, where `aad` is the keyring's associated data for the wrapped
//! secret (it names the keyring id and the master version: see the keyring file format).
//! KMS authenticates the context and writes it to CloudTrail; it holds no secret.
//!
//! # Runtime
//! The SDK is async. The provider owns a dedicated thread (`atrest-aws-kms`) running a
//! current-thread tokio runtime with the KMS client; `wrap` and `unwrap` send it a request
//! over a channel and block until the answer. The caller needs no runtime, and calling from
//! inside one (async code, a tokio worker) does not panic or deadlock: the calling thread
//! just blocks for the round trip, as any blocking I/O would; prefer `spawn_blocking` for
//! keyring opens and reloads in async code, as for their file I/O. The thread ends when the
//! provider is dropped.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::Duration;

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{BehaviorVersion, Region};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::Blob;
use zeroize::Zeroizing;

use super::root::RootKeyProvider;
use super::uri::key_arn_region;
use crate::error::RootKeyError;
use crate::secret::SecretBytes;

const WRAP_VERSION: u8 = 1;
/// The encryption context entry that carries the associated data.
const CONTEXT_KEY: &str = "atrest-aad";
/// Each attempt's deadline, and the whole operation's (the SDK retries throttling and
/// transient errors, 3 attempts in all).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug)]
enum Op {
    Encrypt,
    Decrypt,
}

struct Job {
    op: Op,
    input: Zeroizing<Vec<u8>>,
    context: String,
    reply: SyncSender<Result<Zeroizing<Vec<u8>>, RootKeyError>>,
}

/// A root key that never leaves AWS KMS: master keys are wrapped and unwrapped by KMS
/// `Encrypt` and `Decrypt` on one symmetric key, with the keyring slot as encryption
/// context.
///
/// The key is named by its ARN (`arn:aws:kms:REGION:ACCOUNT:key/ID`), never an alias; the
/// region is the ARN's. Credentials come from the standard AWS chain (environment, profile,
/// SSO, web identity, container and instance roles); `AWS_ENDPOINT_URL` or
/// `AWS_ENDPOINT_URL_KMS` point the client at another endpoint (a VPC endpoint, a local
/// emulator). Its [`key_id`](RootKeyProvider::key_id) is the key URI `aws-kms://ARN`.
///
/// # Network use
/// The keyring calls KMS only when it loads a keyring document (open, reload, a refresh
/// after the document changed, and the re-read before every change) and when it wraps a
/// new master key; sealing and opening records and backups never reach KMS.
/// - **Unreachable at open**: [`Keyring::open`](crate::Keyring::open) fails with a typed
///   error ([`RootKeyError::KmsUnreachable`], [`RootKeyError::KmsPermissionDenied`], ...),
///   never [`RootKeyError::Authentication`].
/// - **Unreachable at reload**: [`Keyring::reload`](crate::Keyring::reload) returns the
///   error and the handle keeps serving its last verified state; if the document changed
///   and cannot be verified, for at most
///   [`KeyringOptions::max_unavailable`](crate::KeyringOptions::max_unavailable), then it
///   refuses keys until KMS answers again.
///
/// Each attempt times out after 10 s and the whole call after 30 s; the SDK retries
/// throttling and transient errors (3 attempts).
///
/// # Access
/// The credentials need `kms:Encrypt` and `kms:Decrypt` on the key, ideally conditioned on
/// `kms:EncryptionContextKeys` = `atrest-aad`.
///
/// # Toolchain
/// The AWS SDK is the largest dependency of any feature, and its newest releases need a
/// newer Rust than atrest's minimum; Cargo's MSRV-aware resolver picks SDK releases that
/// build with atrest's `rust-version` (the committed `Cargo.lock` holds them). Without the
/// feature none of it is built.
///
/// # Security
/// - Unwrapping fails with [`RootKeyError::Authentication`] only when KMS says the
///   ciphertext or context does not authenticate (`InvalidCiphertextException`,
///   `IncorrectKeyException`) or the stored bytes lack the format's version byte.
/// - Master keys travel to KMS and back inside TLS; the SDK's buffers are not zeroized.
pub struct AwsKmsRoot {
    arn: String,
    service: String,
    jobs: Sender<Job>,
}

impl AwsKmsRoot {
    /// A provider for the KMS key `key_arn`. Starts the provider's thread and loads the AWS
    /// configuration (environment and profile files); makes no request to KMS.
    ///
    /// # Errors
    /// [`RootKeyError::InvalidUri`] if `key_arn` is not a key ARN;
    /// [`RootKeyError::KmsConfig`] if the thread or runtime cannot start.
    pub fn new(key_arn: &str) -> Result<Self, RootKeyError> {
        let region = key_arn_region(key_arn)?;
        Self::with_region(key_arn, &region)
    }

    pub(crate) fn with_region(arn: &str, region: &str) -> Result<Self, RootKeyError> {
        let service = format!("AWS KMS in {region}");
        let (jobs, inbox) = mpsc::channel();
        let (ready_tx, ready) = mpsc::sync_channel(1);
        let region = region.to_owned();
        let config_error = |reason: String| RootKeyError::KmsConfig { service: service.clone(), reason };
        std::thread::Builder::new()
            .name("atrest-aws-kms".into())
            .spawn({
                let (arn, service) = (arn.to_owned(), service.clone());
                move || worker(region, arn, service, inbox, ready_tx)
            })
            .map_err(|e| config_error(format!("cannot start the client thread: {e}")))?;
        ready
            .recv()
            .map_err(|_| config_error("the client thread stopped".into()))?
            .map_err(|e| config_error(format!("cannot start the async runtime: {e}")))?;
        Ok(Self { arn: arn.to_owned(), service, jobs })
    }

    fn call(&self, op: Op, input: Zeroizing<Vec<u8>>, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, RootKeyError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Job { op, input, context: hex::encode(aad), reply };
        let stopped =
            || RootKeyError::Kms { service: self.service.clone(), reason: "the client thread stopped".into() };
        self.jobs.send(job).map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

impl core::fmt::Debug for AwsKmsRoot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AwsKmsRoot").field("arn", &self.arn).finish_non_exhaustive()
    }
}

impl RootKeyProvider for AwsKmsRoot {
    fn key_id(&self) -> String {
        format!("aws-kms://{}", self.arn)
    }

    fn wrap(&self, key: &[u8], aad: &[u8]) -> Result<Vec<u8>, RootKeyError> {
        let blob = self.call(Op::Encrypt, Zeroizing::new(key.to_vec()), aad)?;
        let mut out = Vec::with_capacity(1 + blob.len());
        out.push(WRAP_VERSION);
        out.extend_from_slice(&blob);
        Ok(out)
    }

    fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretBytes, RootKeyError> {
        let blob = match wrapped.split_first() {
            Some((&WRAP_VERSION, blob)) if !blob.is_empty() => blob,
            _ => return Err(RootKeyError::Authentication),
        };
        let plain = self.call(Op::Decrypt, Zeroizing::new(blob.to_vec()), aad)?;
        Ok(SecretBytes::new(plain.to_vec()))
    }
}

/// What the provider's thread holds: the client, and the key and service for errors.
struct Kms {
    client: Client,
    arn: String,
    service: String,
}

/// The provider's thread: a current-thread runtime and one KMS client, serving jobs until
/// the provider (the sending side) is dropped.
fn worker(
    region: String,
    arn: String,
    service: String,
    inbox: Receiver<Job>,
    ready: SyncSender<Result<(), std::io::Error>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let client = runtime.block_on(async {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region))
            .timeout_config(timeouts)
            .load()
            .await;
        Client::new(&config)
    });
    let kms = Kms { client, arn, service };
    let _ = ready.send(Ok(()));
    while let Ok(job) = inbox.recv() {
        let result = runtime.block_on(kms.run(&job));
        let _ = job.reply.send(result);
    }
}

impl Kms {
    async fn run(&self, job: &Job) -> Result<Zeroizing<Vec<u8>>, RootKeyError> {
        let blob = match job.op {
            Op::Encrypt => {
                self.client
                    .encrypt()
                    .key_id(&self.arn)
                    .plaintext(Blob::new(job.input.to_vec()))
                    .encryption_context(CONTEXT_KEY, &job.context)
                    .send()
                    .await
                    .map_err(|e| kms_error(&self.service, &self.arn, e))?
                    .ciphertext_blob
            }
            Op::Decrypt => {
                self.client
                    .decrypt()
                    .key_id(&self.arn)
                    .ciphertext_blob(Blob::new(job.input.to_vec()))
                    .encryption_context(CONTEXT_KEY, &job.context)
                    .send()
                    .await
                    .map_err(|e| kms_error(&self.service, &self.arn, e))?
                    .plaintext
            }
        };
        let blob =
            blob.ok_or_else(|| RootKeyError::Kms { service: self.service.clone(), reason: "an empty answer".into() })?;
        Ok(Zeroizing::new(blob.into_inner()))
    }
}

/// An SDK error as a typed error, by the service's error code.
fn kms_error<E, R>(service: &str, arn: &str, e: SdkError<E, R>) -> RootKeyError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
    SdkError<E, R>: RequestId,
{
    let (service, key) = (service.to_owned(), arn.to_owned());
    let reason = match &e {
        // The service's code and message (the raw answer is long and says no more).
        SdkError::ServiceError(_) => {
            let message = e.message().map(|m| format!(": {m}")).unwrap_or_default();
            let request = e.request_id().map(|id| format!(" (request id {id})")).unwrap_or_default();
            format!("{}{message}{request}", e.code().unwrap_or("unknown error"))
        }
        _ => DisplayErrorContext(&e).to_string(),
    };
    match &e {
        SdkError::ServiceError(_) => match e.code().unwrap_or_default() {
            "InvalidCiphertextException" | "IncorrectKeyException" => RootKeyError::Authentication,
            "NotFoundException" => RootKeyError::KmsKeyMissing { service, key },
            "DisabledException" | "KMSInvalidStateException" | "InvalidKeyUsageException" => {
                RootKeyError::KmsKeyUnusable { service, key, reason }
            }
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "IncompleteSignature"
            | "InvalidClientTokenId"
            | "ExpiredTokenException"
            | "MissingAuthenticationToken" => RootKeyError::KmsPermissionDenied { service, key, reason },
            "DependencyTimeoutException"
            | "KMSInternalException"
            | "KeyUnavailableException"
            | "ThrottlingException" => RootKeyError::KmsUnreachable { service, reason },
            _ => RootKeyError::Kms { service, reason },
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            RootKeyError::KmsUnreachable { service, reason }
        }
        SdkError::ConstructionFailure(_) => RootKeyError::KmsConfig { service, reason },
        _ => RootKeyError::Kms { service, reason },
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kms::config::http::HttpResponse;
    use aws_sdk_kms::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_kms::operation::decrypt::DecryptError;

    use super::*;

    fn service_error(code: &str) -> RootKeyError {
        let meta = ErrorMetadata::builder().code(code).message("the service's words").build();
        let raw = HttpResponse::new(400.try_into().unwrap(), "".into());
        kms_error("AWS KMS in eu-west-1", "arn", SdkError::service_error(DecryptError::generic(meta), raw))
    }

    #[test]
    fn service_errors_map_to_typed_errors() {
        for code in ["InvalidCiphertextException", "IncorrectKeyException"] {
            assert!(matches!(service_error(code), RootKeyError::Authentication), "{code}");
        }
        assert!(matches!(service_error("NotFoundException"), RootKeyError::KmsKeyMissing { .. }));
        for code in ["DisabledException", "KMSInvalidStateException", "InvalidKeyUsageException"] {
            assert!(matches!(service_error(code), RootKeyError::KmsKeyUnusable { .. }), "{code}");
        }
        for code in ["AccessDeniedException", "UnrecognizedClientException", "ExpiredTokenException"] {
            assert!(matches!(service_error(code), RootKeyError::KmsPermissionDenied { .. }), "{code}");
        }
        for code in ["KMSInternalException", "ThrottlingException", "KeyUnavailableException"] {
            assert!(matches!(service_error(code), RootKeyError::KmsUnreachable { .. }), "{code}");
        }
        match service_error("SomethingNew") {
            RootKeyError::Kms { reason, .. } => assert_eq!(reason, "SomethingNew: the service's words"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transport_errors_are_unreachable_and_construction_errors_config() {
        let e = |err: SdkError<DecryptError, HttpResponse>| kms_error("AWS KMS", "arn", err);
        assert!(matches!(e(SdkError::timeout_error("slow")), RootKeyError::KmsUnreachable { .. }));
        let refused = ConnectorError::io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
        assert!(matches!(e(SdkError::dispatch_failure(refused)), RootKeyError::KmsUnreachable { .. }));
        assert!(matches!(e(SdkError::construction_failure("no credentials")), RootKeyError::KmsConfig { .. }));
    }

    #[test]
    fn refuses_bytes_without_the_version_byte_before_any_call() {
        // The provider's thread starts without reaching KMS.
        let root = AwsKmsRoot::new("arn:aws:kms:eu-west-1:111122223333:key/k").unwrap();
        assert_eq!(root.key_id(), "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/k");
        for junk in [&b""[..], b"\x01", b"\x02blob"] {
            assert!(matches!(root.unwrap(junk, b"aad"), Err(RootKeyError::Authentication)));
        }
        assert!(matches!(
            AwsKmsRoot::new("arn:aws:kms:eu-west-1:111122223333:alias/a"),
            Err(RootKeyError::InvalidUri(_))
        ));
    }
}
