//! The backup context a version 2 header stores (tenant, snapshot id, parent, kind,
//! sequence, creation time): its encoding, its strict parse, and the comparison of what a
//! caller expects with what the stream says (see the `backup` module documentation).

use super::{BackupContext, BackupKind, MAX_SNAPSHOT_ID_LEN};
use crate::encoding::put_lp;
use crate::error::BackupError;
use crate::id::MAX_TENANT_ID_LEN;
use crate::{Tenant, TenantId};

/// The longest encoded context: tenant, snapshot, parent (each with a 4-byte length), the
/// parent flag, kind, sequence and creation time.
pub(crate) const MAX_STORED_LEN: usize = 4 + MAX_TENANT_ID_LEN + 2 * (4 + MAX_SNAPSHOT_ID_LEN) + 1 + 1 + 8 + 8;

/// The context stored in a version 2 header. Authenticated once the header's tag verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) tenant: TenantId,
    pub(crate) ctx: BackupContext,
    /// Seconds since the Unix epoch (UTC) when the stream was started.
    pub(crate) created: u64,
}

impl Stored {
    /// `L(tenant) || L(snapshot) || 0x00 | 0x01 L(parent) || kind || sequence (u64) ||
    /// created (u64)`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        put_lp(&mut out, self.tenant.as_str().as_bytes());
        self.ctx.encode_into(&mut out);
        out.extend_from_slice(&self.created.to_be_bytes());
        out
    }

    /// Parses exactly `bytes` (nothing may be left over); any deviation from what a writer
    /// produces is [`BackupError::Authentication`].
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, BackupError> {
        let mut rest = bytes;
        let tenant = take_str(&mut rest, MAX_TENANT_ID_LEN)?;
        let tenant = TenantId::new(&tenant).map_err(|_| BackupError::Authentication)?;
        let snapshot = take_str(&mut rest, MAX_SNAPSHOT_ID_LEN)?;
        let parent = match take_u8(&mut rest)? {
            0 => None,
            1 => Some(take_str(&mut rest, MAX_SNAPSHOT_ID_LEN)?),
            _ => return Err(BackupError::Authentication),
        };
        let kind = match take_u8(&mut rest)? {
            1 => BackupKind::Full,
            2 => BackupKind::Incremental,
            _ => return Err(BackupError::Authentication),
        };
        let sequence = u64::from_be_bytes(take::<8>(&mut rest)?);
        let created = u64::from_be_bytes(take::<8>(&mut rest)?);
        if !rest.is_empty() {
            return Err(BackupError::Authentication);
        }
        let ctx = BackupContext::new(&snapshot, parent.as_deref(), kind, sequence);
        ctx.validate().map_err(|_| BackupError::Authentication)?;
        Ok(Self { tenant, ctx, created })
    }

    /// The stream's tenant against the caller's (checked before any key is used: a stream
    /// of another tenant cannot authenticate for this one, and the error says whose it is).
    pub(crate) fn check_tenant(&self, tenant: &Tenant) -> Result<(), BackupError> {
        if self.tenant == *tenant.id() {
            Ok(())
        } else {
            Err(mismatch("tenant", self.tenant.as_str(), tenant.id().as_str()))
        }
    }

    /// What the caller expects against the (authenticated) stored context, field by field.
    pub(crate) fn check_expected(&self, expect: &BackupContext) -> Result<(), BackupError> {
        let found = &self.ctx;
        if found.snapshot_id() != expect.snapshot_id() {
            return Err(mismatch("snapshot", found.snapshot_id(), expect.snapshot_id()));
        }
        if found.parent() != expect.parent() {
            return Err(mismatch("parent", found.parent().unwrap_or("(none)"), expect.parent().unwrap_or("(none)")));
        }
        if found.kind() != expect.kind() {
            return Err(mismatch("kind", found.kind().name(), expect.kind().name()));
        }
        if found.sequence() != expect.sequence() {
            return Err(mismatch("sequence", &found.sequence().to_string(), &expect.sequence().to_string()));
        }
        Ok(())
    }
}

fn mismatch(field: &'static str, found: &str, expected: &str) -> BackupError {
    BackupError::ContextMismatch { field, found: found.to_owned(), expected: expected.to_owned() }
}

fn take<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], BackupError> {
    let (head, tail) = rest.split_first_chunk::<N>().ok_or(BackupError::Authentication)?;
    *rest = tail;
    Ok(*head)
}

fn take_u8(rest: &mut &[u8]) -> Result<u8, BackupError> {
    take::<1>(rest).map(|[b]| b)
}

fn take_str(rest: &mut &[u8], max: usize) -> Result<String, BackupError> {
    let len = usize::try_from(u32::from_be_bytes(take::<4>(rest)?)).map_err(|_| BackupError::Authentication)?;
    if len > max || len > rest.len() {
        return Err(BackupError::Authentication);
    }
    let (s, tail) = rest.split_at(len);
    *rest = tail;
    String::from_utf8(s.to_vec()).map_err(|_| BackupError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stored {
        Stored {
            tenant: TenantId::new("acme").unwrap(),
            ctx: BackupContext::incremental("s2", "s1", 3),
            created: 0x0102_0304_0506_0708,
        }
    }

    #[test]
    fn encoding_is_as_documented() {
        let b = sample().encode();
        let mut want = vec![0, 0, 0, 4];
        want.extend_from_slice(b"acme");
        want.extend_from_slice(&[0, 0, 0, 2, b's', b'2', 1, 0, 0, 0, 2, b's', b'1', 2]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(b, want);
        assert_eq!(Stored::parse(&b).unwrap(), sample());
        let full = Stored { ctx: BackupContext::full("n"), ..sample() };
        assert_eq!(Stored::parse(&full.encode()).unwrap(), full);
    }

    #[test]
    fn parse_is_strict() {
        let b = sample().encode();
        for cut in 0..b.len() {
            assert!(matches!(Stored::parse(&b[..cut]), Err(BackupError::Authentication)), "{cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(Stored::parse(&long).is_err());
        for (at, v) in [(10, 2u8), (14, 2), (21, 0), (21, 3), (3, 0)] {
            let mut bad = b.clone();
            bad[at] = v;
            assert!(Stored::parse(&bad).is_err(), "byte {at} = {v}");
        }
        // An incremental backup without a parent is not something a writer produces.
        let mut no_parent = Vec::new();
        put_lp(&mut no_parent, b"acme");
        put_lp(&mut no_parent, b"s");
        no_parent.extend_from_slice(&[0, 2]);
        no_parent.extend_from_slice(&[0; 16]);
        assert!(Stored::parse(&no_parent).is_err());
    }

    #[test]
    fn expectations_name_the_field() {
        let s = sample();
        assert!(s.check_expected(&BackupContext::incremental("s2", "s1", 3)).is_ok());
        let field = |e: BackupContext| match s.check_expected(&e) {
            Err(BackupError::ContextMismatch { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(BackupContext::incremental("s3", "s1", 3)), "snapshot");
        assert_eq!(field(BackupContext::incremental("s2", "s0", 3)), "parent");
        assert_eq!(field(BackupContext::new("s2", Some("s1"), BackupKind::Full, 3)), "kind");
        assert_eq!(field(BackupContext::incremental("s2", "s1", 4)), "sequence");
    }
}
