//! Sealing and opening records: a tenant's record key with its cached XAES-256-GCM state
//! (see the `record` module docs for the format and the nonce argument), the header and
//! associated data it authenticates.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use aead::KeyInit;
use arc_swap::ArcSwapOption;
use rand::Rng;

use super::RecordSuite;
use super::format::{self, AAD_LABEL, FORMAT_VERSION, HEADER_LEN, NONCE_LEN, Parsed};
use crate::Backend;
use crate::Suite;
use crate::context::Context;
use crate::error::{OpenError, SealError};
use crate::hazmat::{Gcm, SuiteCipher, XAes256Gcm};
use crate::id::{KeyVersion, TenantId};
use crate::secret::{TenantKey, random_array};

/// Records sealed under one nonce prefix before a new prefix is drawn.
pub(crate) const PREFIX_LIMIT: u64 = 1 << 28;

/// A sealing prefix with its derived AES-256-GCM instance (keyed once).
struct Prefix {
    /// Detects that this process is a fork of the one that drew the prefix.
    fork: ForkCheck,
    prefix: [u8; 12],
    gcm: Gcm,
    uses: AtomicU64,
}

impl Prefix {
    /// Counts one use if this prefix may still seal: drawn by this process, and fewer than
    /// [`PREFIX_LIMIT`] records sealed under it.
    fn take(&self) -> bool {
        !self.fork.forked() && self.uses.fetch_add(1, Ordering::Relaxed) < PREFIX_LIMIT
    }
}

/// An opening prefix with its derived AES-256-GCM instance.
struct Opened {
    prefix: [u8; 12],
    gcm: Gcm,
}

/// Whether the current process is a fork of the one that made this value.
///
/// The check runs on every seal, so it must not cost a system call: a `pthread_atfork`
/// child handler (from `forkguard`) bumps a counter in the child as part of `fork()`
/// itself, before `fork()` returns there, and the check compares that counter (one relaxed
/// atomic load). If the handler cannot be registered, the process id is compared instead
/// (`getpid`, a system call per seal).
pub(super) enum ForkCheck {
    Atfork(forkguard::Guard),
    Pid(u32),
}

impl ForkCheck {
    pub(super) fn new() -> Self {
        match forkguard::Guard::try_new() {
            Ok(g) => ForkCheck::Atfork(g),
            Err(_) => ForkCheck::Pid(std::process::id()),
        }
    }

    /// True in a process forked since this value was made.
    pub(super) fn forked(&self) -> bool {
        match self {
            // A copy, so the value keeps the count from when it was made.
            ForkCheck::Atfork(g) => g.clone().detected_fork(),
            ForkCheck::Pid(pid) => *pid != std::process::id(),
        }
    }
}

/// The record key of one tenant and key version.
///
/// Sealing and opening take no lock. The first sealing prefix is kept inline (a plain load,
/// counted with one atomic add): most keys never need another, and a cold tenant's first
/// seal then allocates nothing for it. Later prefixes (the limit reached, a fork) and the
/// opening cache live in `ArcSwap`s made on first need (dropping one walks every thread's
/// debt list, which a key evicted from the cache should not pay for nothing).
///
/// The XAES-256-GCM key schedule is not kept: it is needed only to derive a prefix's key
/// (once per prefix), so it is rebuilt then from the 32-byte key; a cached key is then about
/// 500 bytes instead of 1 KiB (the keyring caches 100,000 of them and wipes each on eviction).
pub(crate) struct RecordKey {
    key: TenantKey,
    first: OnceLock<Prefix>,
    later: OnceLock<Box<Later>>,
}

#[derive(Default)]
struct Later {
    /// The sealing prefix after the first.
    current: ArcSwapOption<Prefix>,
    /// The last prefix opened that was not a sealing prefix (records sealed together,
    /// by another process or under an earlier prefix, open together).
    last_opened: ArcSwapOption<Opened>,
}

impl RecordKey {
    pub(crate) fn new(key: &TenantKey) -> Self {
        Self { key: TenantKey::from_bytes(*key.expose_secret()), first: OnceLock::new(), later: OnceLock::new() }
    }

    fn later(&self) -> &Later {
        self.later.get_or_init(Box::default)
    }

    /// Reads the first prefix's state (see `DerivedKey::warm`).
    pub(crate) fn warm(&self) {
        if let Some(p) = self.first.get() {
            std::hint::black_box((p.uses.load(Ordering::Relaxed), p.prefix[0]));
        }
    }

    fn derive(&self, prefix: &[u8; 12]) -> Gcm {
        let xaes = XAes256Gcm::new(self.key.expose_secret().into());
        match xaes.derive_gcm(prefix, Backend::default()) {
            Some(g) => g,
            None => Gcm::new_default(&xaes.derive_key(prefix)),
        }
    }

    /// Seals with the current prefix: fills `nonce` (24 bytes), encrypts `buf` in place,
    /// returns the tag. Draws a new prefix first if there is none, it reached
    /// [`PREFIX_LIMIT`], or this process is a fork of the one that drew it.
    fn seal_xaes(&self, nonce: &mut [u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16], SealError> {
        let too_large = |len| SealError::TooLarge { len, limit: super::MAX_RECORD_LEN };
        let (prefix_out, suffix_out) = nonce.split_at_mut(12);
        let mut suffix = [0u8; 12];
        rand::rng().fill_bytes(&mut suffix);
        suffix_out.copy_from_slice(&suffix);
        let seal = |p: &Prefix, prefix_out: &mut [u8], buf: &mut [u8]| {
            prefix_out.copy_from_slice(&p.prefix);
            p.gcm.seal(&suffix, aad, buf).map_err(|_| too_large(buf.len()))
        };
        if let Some(p) = self.first.get().filter(|p| p.take()) {
            return seal(p, prefix_out, buf);
        }
        if let Some(later) = self.later.get() {
            let cur = later.current.load();
            if let Some(p) = cur.as_ref().filter(|p| p.take()) {
                return seal(p, prefix_out, buf);
            }
        }
        // A new prefix. Two threads may both get here; each seals under its own fresh
        // prefix and the last one stored stays current. The prefix comes from this thread's
        // buffer of OS randomness (no system call; see `prefixes.rs` for its fork safety).
        let fork = ForkCheck::new();
        let prefix = super::prefixes::next_prefix()?;
        let fresh = Prefix { fork, prefix, gcm: self.derive(&prefix), uses: AtomicU64::new(1) };
        if let Err(fresh) = self.first.set(fresh) {
            // The first prefix exists (used up, from before a fork, or just set by another
            // thread): this one becomes the current later prefix.
            let fresh = Arc::new(fresh);
            let tag = seal(&fresh, prefix_out, buf);
            self.later().current.store(Some(fresh));
            return tag;
        }
        // Set just now, so present (a OnceLock once set stays set); its count holds this use.
        self.first.get().map_or(Err(SealError::Rng(crate::error::RngError)), |p| seal(p, prefix_out, buf))
    }

    /// Opens under `prefix`: with the sealing instance if it matches, else the last opened
    /// one if it matches, else a new one (which becomes the last opened).
    fn open_xaes(
        &self,
        prefix: &[u8; 12],
        suffix: &[u8; 12],
        aad: &[u8],
        tag: &[u8],
        buf: &mut [u8],
    ) -> Result<(), OpenError> {
        let open = |gcm: &Gcm, buf: &mut [u8]| gcm.open(suffix, aad, buf, tag).map_err(|_| OpenError::Authentication);
        if let Some(p) = self.first.get().filter(|p| &p.prefix == prefix) {
            return open(&p.gcm, buf);
        }
        if let Some(later) = self.later.get() {
            if let Some(p) = later.current.load().as_ref().filter(|p| &p.prefix == prefix) {
                return open(&p.gcm, buf);
            }
            if let Some(o) = later.last_opened.load().as_ref().filter(|o| &o.prefix == prefix) {
                return open(&o.gcm, buf);
            }
        }
        let fresh = Arc::new(Opened { prefix: *prefix, gcm: self.derive(prefix) });
        let r = open(&fresh.gcm, buf);
        self.later().last_opened.store(Some(fresh));
        r
    }

    /// Fills `nonce`, encrypts `buf` in place, returns the tag.
    fn seal_detached(
        &self,
        suite: RecordSuite,
        nonce: &mut [u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; 16], SealError> {
        match suite {
            RecordSuite::XAes256Gcm => self.seal_xaes(nonce, aad, buf),
            RecordSuite::XChaCha20Poly1305 => {
                *nonce = random_array()?;
                SuiteCipher::new(suite.into(), self.key.expose_secret())
                    .encrypt_detached(nonce, aad, buf)
                    .map_err(|_| SealError::TooLarge { len: buf.len(), limit: super::MAX_RECORD_LEN })
            }
        }
    }

    /// Verifies `tag` and decrypts `buf` in place (zeroed on failure).
    fn open_detached(
        &self,
        suite: RecordSuite,
        nonce: &[u8],
        aad: &[u8],
        tag: &[u8],
        buf: &mut [u8],
    ) -> Result<(), OpenError> {
        let r = match suite {
            RecordSuite::XAes256Gcm => match nonce.split_first_chunk::<12>() {
                Some((prefix, suffix)) => match <&[u8; 12]>::try_from(suffix) {
                    Ok(suffix) => self.open_xaes(prefix, suffix, aad, tag, buf),
                    Err(_) => Err(OpenError::Authentication),
                },
                None => Err(OpenError::Authentication),
            },
            RecordSuite::XChaCha20Poly1305 => SuiteCipher::new(suite.into(), self.key.expose_secret())
                .decrypt_detached(nonce, aad, buf, tag)
                .map_err(|_| OpenError::Authentication),
        };
        if r.is_err() {
            buf.fill(0);
        }
        r
    }

    /// Seals `plaintext` as a record of `tenant` bound to `context` under this key (named
    /// `version` in the header) and appends it to `out`; on error `out` is left as it was.
    #[allow(clippy::too_many_arguments, reason = "one call site; every value is part of the record")]
    pub(crate) fn seal_record(
        &self,
        suite: RecordSuite,
        version: KeyVersion,
        tenant: &TenantId,
        context: &Context,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        if plaintext.len() > super::MAX_RECORD_LEN {
            return Err(SealError::TooLarge { len: plaintext.len(), limit: super::MAX_RECORD_LEN });
        }
        let header = header(suite, version);
        let mut aad_buf = [0u8; AAD_INLINE];
        let aad = aad(&mut aad_buf, &header, tenant, context);
        let start = out.len();
        // Header, a nonce placeholder and the plaintext, then the plaintext is encrypted in
        // place (no zero-filling of the output first) and the tag appended.
        out.reserve(plaintext.len() + format::OVERHEAD);
        out.extend_from_slice(&header);
        out.extend_from_slice(&[0u8; NONCE_LEN]);
        out.extend_from_slice(plaintext);
        let record = out.get_mut(start + HEADER_LEN..).unwrap_or_default();
        let (nonce, body) = record.split_at_mut(NONCE_LEN.min(record.len()));
        let sealed = match <&mut [u8; NONCE_LEN]>::try_from(nonce) {
            Ok(nonce) => self.seal_detached(suite, nonce, &aad, body),
            Err(_) => Err(SealError::TooLarge { len: plaintext.len(), limit: super::MAX_RECORD_LEN }),
        };
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(())
            }
            Err(e) => {
                // No plaintext is left behind in the spare capacity.
                body.fill(0);
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Verifies and decrypts a parsed record of `tenant` bound to `context`, appending the
    /// plaintext to `out`; on error `out` is left as it was (no unauthenticated byte).
    pub(crate) fn open_record(
        &self,
        parsed: &Parsed<'_>,
        tenant: &TenantId,
        context: &Context,
        out: &mut Vec<u8>,
    ) -> Result<(), OpenError> {
        let mut aad_buf = [0u8; AAD_INLINE];
        let aad = aad(&mut aad_buf, parsed.header, tenant, context);
        let start = out.len();
        // The ciphertext is copied and decrypted in place (no zero-filling first).
        out.extend_from_slice(parsed.ciphertext);
        let body = out.get_mut(start..).unwrap_or_default();
        let r = self.open_detached(parsed.suite, parsed.nonce, &aad, parsed.tag, body);
        if r.is_err() {
            // open_detached already zeroed the bytes; drop them too.
            out.truncate(start);
        }
        r
    }
}

fn header(suite: RecordSuite, v: KeyVersion) -> [u8; HEADER_LEN] {
    let m = v.master.get().to_be_bytes();
    let g = v.generation.to_be_bytes();
    [FORMAT_VERSION, Suite::from(suite).id(), m[0], m[1], g[0], g[1]]
}

/// The most associated data kept on the stack; longer tenant ids and contexts spill to the
/// heap.
const AAD_INLINE: usize = 256;

/// The label's length prefix, the label, the header and the tenant id's length prefix: the
/// part of the associated data of fixed size, assembled with fixed-size copies.
const AAD_FIXED: usize = 4 + AAD_LABEL.len() + HEADER_LEN + 4;

/// The associated data of a record, built once per record in the caller's `buf` (no
/// allocation, nothing moved: a 64-byte record spent a tenth of its time copying a returned
/// buffer and its small parts) for typical tenant ids and contexts, on the heap for longer.
fn aad<'a>(
    buf: &'a mut [u8; AAD_INLINE],
    header: &[u8; HEADER_LEN],
    tenant: &TenantId,
    context: &Context,
) -> Cow<'a, [u8]> {
    let tenant = tenant.as_str().as_bytes();
    let context = context.canonical_bytes();
    let label_len = u32::try_from(AAD_LABEL.len()).unwrap_or(u32::MAX).to_be_bytes();
    let tenant_len = u32::try_from(tenant.len()).unwrap_or(u32::MAX).to_be_bytes();
    let mut fixed = [0u8; AAD_FIXED];
    let (l, rest) = fixed.split_at_mut(4);
    l.copy_from_slice(&label_len);
    let (label, rest) = rest.split_at_mut(AAD_LABEL.len());
    label.copy_from_slice(AAD_LABEL);
    let (h, t) = rest.split_at_mut(HEADER_LEN);
    h.copy_from_slice(header);
    t.copy_from_slice(&tenant_len);
    // Inline only when every part has exactly its place in `buf`; anything else (longer
    // than the buffer) is assembled on the heap. No path yields a partial value.
    let total = AAD_FIXED + tenant.len() + context.len();
    if let Some(dst) = buf.get_mut(..total)
        && let Some((f, rest)) = dst.split_at_mut_checked(AAD_FIXED)
        && let Some((t, c)) = rest.split_at_mut_checked(tenant.len())
        && c.len() == context.len()
    {
        f.copy_from_slice(&fixed);
        t.copy_from_slice(tenant);
        c.copy_from_slice(context);
        return Cow::Borrowed(&*dst);
    }
    Cow::Owned([&fixed[..], tenant, context].concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::MasterVersion;

    const V: KeyVersion = KeyVersion { master: MasterVersion::new(1), generation: 0 };

    fn seal(k: &RecordKey, t: &TenantId, pt: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        k.seal_record(RecordSuite::XAes256Gcm, V, t, &Context::new(), pt, &mut out).unwrap();
        out
    }

    fn open(k: &RecordKey, t: &TenantId, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut out = Vec::new();
        k.open_record(&format::parse(sealed)?, t, &Context::new(), &mut out).map(|()| out)
    }

    fn prefix(sealed: &[u8]) -> &[u8] {
        &sealed[HEADER_LEN..HEADER_LEN + 12]
    }

    /// The associated data is the spec's concatenation (length-prefixed label, header,
    /// length-prefixed tenant id, canonical context) whether it is built in the stack
    /// buffer or on the heap: sizes around the buffer's end and well past it. A record with a
    /// context past the buffer binds all of it.
    #[test]
    fn aad_is_the_same_inline_and_on_the_heap() {
        let t = TenantId::new("acme").unwrap();
        let header = header(RecordSuite::XAes256Gcm, V);
        let fixed_and_tenant = AAD_FIXED + 4;
        let one_pair = Context::new().with("k", "").canonical_bytes().len();
        let mut sizes = Vec::new();
        for extra in [0usize, 1, 2, 3, 4, 100, 400] {
            let room = AAD_INLINE - fixed_and_tenant - one_pair;
            let value = "v".repeat(room.saturating_sub(2) + extra);
            let ctx = Context::new().with("k", value.as_str());
            let mut expected = Vec::new();
            expected.extend_from_slice(&u32::try_from(AAD_LABEL.len()).unwrap().to_be_bytes());
            expected.extend_from_slice(AAD_LABEL);
            expected.extend_from_slice(&header);
            expected.extend_from_slice(&4u32.to_be_bytes());
            expected.extend_from_slice(b"acme");
            expected.extend_from_slice(ctx.canonical_bytes());
            let mut buf = [0u8; AAD_INLINE];
            let got = aad(&mut buf, &header, &t, &ctx);
            assert_eq!(&*got, &expected[..], "context of {} bytes", ctx.canonical_bytes().len());
            assert_eq!(matches!(got, Cow::Borrowed(_)), expected.len() <= AAD_INLINE);
            sizes.push(expected.len());
        }
        assert_eq!(sizes[..5], [AAD_INLINE - 2, AAD_INLINE - 1, AAD_INLINE, AAD_INLINE + 1, AAD_INLINE + 2]);
        let k = RecordKey::new(&TenantKey::from_bytes([3; 32]));
        let long = "x".repeat(500);
        let ctx = Context::new().with("note", long.as_str());
        let mut sealed = Vec::new();
        k.seal_record(RecordSuite::XAes256Gcm, V, &t, &ctx, b"pt", &mut sealed).unwrap();
        let mut out = Vec::new();
        k.open_record(&format::parse(&sealed).unwrap(), &t, &ctx, &mut out).unwrap();
        assert_eq!(out, b"pt");
        let other = Context::new().with("note", format!("{}y", &long[..499]).as_str());
        assert!(k.open_record(&format::parse(&sealed).unwrap(), &t, &other, &mut Vec::new()).is_err());
    }

    /// The first prefix serves until its limit, then a new one is drawn and kept; records
    /// of every prefix open, also with a second key built from the same material (another
    /// process), whose opening cache then holds the foreign prefix.
    #[test]
    fn prefix_is_renewed_at_its_limit_and_every_prefix_opens() {
        let material = TenantKey::from_bytes([9; 32]);
        let k = RecordKey::new(&material);
        let t = TenantId::new("acme").unwrap();
        let a = seal(&k, &t, b"a");
        let b = seal(&k, &t, b"b");
        assert_eq!(prefix(&a), prefix(&b));
        assert_ne!(a[HEADER_LEN + 12..HEADER_LEN + 24], b[HEADER_LEN + 12..HEADER_LEN + 24]);
        assert!(k.later.get().is_none(), "the first prefix needs no later slots");
        let first = k.first.get().unwrap();
        assert_eq!(first.uses.load(Ordering::Relaxed), 2);
        first.uses.store(PREFIX_LIMIT - 1, Ordering::Relaxed);
        let c = seal(&k, &t, b"c");
        assert_eq!(prefix(&c), prefix(&a), "the last use under the limit keeps the prefix");
        let d = seal(&k, &t, b"d");
        let e = seal(&k, &t, b"e");
        assert_ne!(prefix(&d), prefix(&a), "a prefix used past its limit");
        assert_eq!(prefix(&d), prefix(&e));
        for (r, pt) in [(&a, b"a"), (&c, b"c"), (&d, b"d"), (&e, b"e")] {
            assert_eq!(open(&k, &t, r).unwrap(), pt);
        }
        let other = RecordKey::new(&material);
        for (r, pt) in [(&a, b"a"), (&d, b"d"), (&a, b"a")] {
            assert_eq!(open(&other, &t, r).unwrap(), pt);
        }
        assert!(other.first.get().is_none(), "opening draws no sealing prefix");
        let opened = other.later.get().unwrap().last_opened.load_full().unwrap();
        assert_eq!(&opened.prefix[..], prefix(&a));
        // A wrong tenant or a flipped bit fails under any prefix.
        assert!(open(&k, &TenantId::new("other").unwrap(), &d).is_err());
        let mut bad = a.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(open(&k, &t, &bad).is_err());
    }
}
