//! The recipient's text: one line of Bech32m (BIP-350) with the human-readable part
//! `atrestr`, so every recipient starts with `atrestr1`. See the `recipient` module
//! documentation for the payload.
//!
//! Like age's recipients, the text is longer than Bech32m's 1023-character limit (an X-Wing
//! public key alone is 1216 bytes), so the checksum is Bech32m's without that limit: it
//! still detects any error in up to 4 characters in short texts, and any other error
//! except with probability about 2^-30.

use bech32::primitives::decode::{CheckedHrpstring, CheckedHrpstringError};
use bech32::{Bech32m, Checksum, Hrp};

use super::{Recipient, RecipientKem};
use crate::error::RecipientError;
use crate::id::MAX_TENANT_ID_LEN;
use crate::{KeyVersion, MasterVersion, TenantId};

/// The human-readable part.
const HRP: Hrp = Hrp::parse_unchecked("atrestr");
/// The recipient text format version.
pub(super) const TEXT_VERSION: u8 = 1;
/// The bytes before the tenant id: version, KEM, master version, generation, tenant length.
const FIXED_LEN: usize = 7;

/// Bech32m without its length limit (as age does for Bech32).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Bech32mLong {}

impl Checksum for Bech32mLong {
    type MidstateRepr = u32;
    const CODE_LENGTH: usize = usize::MAX;
    const CHECKSUM_LENGTH: usize = Bech32m::CHECKSUM_LENGTH;
    const GENERATOR_SH: [u32; 5] = Bech32m::GENERATOR_SH;
    const TARGET_RESIDUE: u32 = Bech32m::TARGET_RESIDUE;
}

/// The payload: version, KEM, key version, tenant id and public key.
fn payload(r: &Recipient) -> Vec<u8> {
    let tenant = r.tenant.as_str().as_bytes();
    let mut out = Vec::with_capacity(FIXED_LEN + tenant.len() + r.public_key.len());
    out.push(TEXT_VERSION);
    out.push(r.kem.id());
    out.extend_from_slice(&r.version.master.get().to_be_bytes());
    out.extend_from_slice(&r.version.generation.to_be_bytes());
    // A tenant id is at most MAX_TENANT_ID_LEN (128) bytes.
    out.push(u8::try_from(tenant.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(tenant);
    out.extend_from_slice(&r.public_key);
    out
}

/// Writes the recipient text.
pub(super) fn write(f: &mut impl core::fmt::Write, r: &Recipient) -> core::fmt::Result {
    bech32::encode_lower_to_fmt::<Bech32mLong, _>(f, HRP, &payload(r)).map_err(|_| core::fmt::Error)
}

/// Parses a recipient text (surrounding whitespace ignored).
pub(super) fn parse(s: &str) -> Result<Recipient, RecipientError> {
    let checked = CheckedHrpstring::new::<Bech32mLong>(s.trim()).map_err(|e| match e {
        CheckedHrpstringError::Checksum(_) => RecipientError::Checksum,
        _ => RecipientError::Encoding,
    })?;
    if checked.hrp() != HRP {
        return Err(RecipientError::WrongPrefix(checked.hrp().to_lowercase()));
    }
    parse_payload(&checked.byte_iter().collect::<Vec<u8>>())
}

fn parse_payload(bytes: &[u8]) -> Result<Recipient, RecipientError> {
    let too_short = RecipientError::WrongLength { expected: FIXED_LEN, found: bytes.len() };
    let (&version, rest) = bytes.split_first().ok_or(too_short.clone())?;
    if version != TEXT_VERSION {
        return Err(RecipientError::UnknownVersion(version));
    }
    let (&kem, rest) = rest.split_first().ok_or(too_short.clone())?;
    let kem = RecipientKem::from_id(kem).ok_or(RecipientError::UnknownKem(kem))?;
    let (m, rest) = rest.split_first_chunk::<2>().ok_or(too_short.clone())?;
    let (g, rest) = rest.split_first_chunk::<2>().ok_or(too_short.clone())?;
    let (&tenant_len, rest) = rest.split_first().ok_or(too_short)?;
    let tenant_len = usize::from(tenant_len);
    let expected = FIXED_LEN + tenant_len + kem.public_key_len();
    if rest.len() != tenant_len + kem.public_key_len() || tenant_len > MAX_TENANT_ID_LEN {
        return Err(RecipientError::WrongLength { expected, found: bytes.len() });
    }
    let (tenant, public_key) = rest.split_at(tenant_len);
    let tenant = core::str::from_utf8(tenant).map_err(|_| RecipientError::InvalidTenant)?;
    let tenant = TenantId::new(tenant).map_err(|_| RecipientError::InvalidTenant)?;
    if !kem.accepts_public_key(public_key) {
        return Err(RecipientError::InvalidPublicKey);
    }
    let version = KeyVersion { master: MasterVersion::new(u16::from_be_bytes(*m)), generation: u16::from_be_bytes(*g) };
    Ok(Recipient { tenant, version, kem, public_key: public_key.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kem: RecipientKem) -> Recipient {
        let ikm = [7u8; 32];
        Recipient {
            tenant: TenantId::new("acme").unwrap(),
            version: KeyVersion { master: MasterVersion::new(3), generation: 1 },
            kem,
            public_key: kem.public_key_from_ikm(&ikm),
        }
    }

    #[test]
    fn payload_is_as_documented_and_round_trips() {
        for kem in [RecipientKem::XWing, RecipientKem::X25519] {
            let r = sample(kem);
            let p = payload(&r);
            assert_eq!(&p[..11], &[1, kem.id(), 0, 3, 0, 1, 4, b'a', b'c', b'm', b'e']);
            assert_eq!(p.len(), 11 + kem.public_key_len());
            let text = r.to_string();
            assert!(text.starts_with("atrestr1"), "{text}");
            assert!(!text.contains(char::is_whitespace));
            assert_eq!(parse(&text).unwrap(), r);
            assert_eq!(parse(&format!("  {text}\n")).unwrap(), r);
            assert_eq!(parse(&text.to_uppercase()).unwrap(), r);
        }
    }

    #[test]
    fn typed_errors() {
        let r = sample(RecipientKem::X25519);
        let text = r.to_string();
        // A changed character: the checksum catches it.
        let mut typo = text.clone().into_bytes();
        let at = 20;
        typo[at] = if typo[at] == b'q' { b'p' } else { b'q' };
        assert_eq!(parse(core::str::from_utf8(&typo).unwrap()), Err(RecipientError::Checksum));
        assert_eq!(parse(&text[..text.len() - 1]), Err(RecipientError::Checksum));
        assert_eq!(parse("atrestr1 not bech32"), Err(RecipientError::Encoding));
        assert_eq!(parse(""), Err(RecipientError::Encoding));
        let enc = |hrp: Hrp, p: &[u8]| {
            let mut s = String::new();
            bech32::encode_lower_to_fmt::<Bech32mLong, _>(&mut s, hrp, p).unwrap();
            s
        };
        let p = payload(&r);
        assert_eq!(parse(&enc(Hrp::parse("age").unwrap(), &p)), Err(RecipientError::WrongPrefix("age".into())));
        let mut v2 = p.clone();
        v2[0] = 2;
        assert_eq!(parse(&enc(HRP, &v2)), Err(RecipientError::UnknownVersion(2)));
        let mut kem = p.clone();
        kem[1] = 1;
        assert_eq!(parse(&enc(HRP, &kem)), Err(RecipientError::UnknownKem(1)));
        assert!(matches!(parse(&enc(HRP, &p[..p.len() - 1])), Err(RecipientError::WrongLength { .. })));
        assert!(matches!(parse(&enc(HRP, &[p.as_slice(), &[0]].concat())), Err(RecipientError::WrongLength { .. })));
        for cut in 0..7 {
            assert!(matches!(parse(&enc(HRP, &p[..cut])), Err(RecipientError::WrongLength { .. })), "{cut}");
        }
        // An X25519-sized key under the X-Wing KEM byte is the wrong length.
        let mut other = p.clone();
        other[1] = RecipientKem::XWing.id();
        assert!(matches!(parse(&enc(HRP, &other)), Err(RecipientError::WrongLength { .. })));
        let mut tenant = p.clone();
        tenant[7] = 0x01;
        assert_eq!(parse(&enc(HRP, &tenant)), Err(RecipientError::InvalidTenant));
        let mut tenant = p.clone();
        tenant[7] = 0xff;
        assert_eq!(parse(&enc(HRP, &tenant)), Err(RecipientError::InvalidTenant));
        // An X-Wing key whose ML-KEM part is not reduced modulo q.
        let x = payload(&sample(RecipientKem::XWing));
        let mut bad = x.clone();
        bad[11..11 + 384].fill(0xff);
        assert_eq!(parse(&enc(HRP, &bad)), Err(RecipientError::InvalidPublicKey));
    }
}
