//! Known-answer tests from third-party vectors, run through the crate's own code paths:
//!
//! - Wycheproof AES-GCM and XChaCha20-Poly1305 through [`SuiteCipher`], on every AES-GCM
//!   [`Backend`] compiled in (RustCrypto always, AWS-LC with the `aws-lc` feature);
//! - Wycheproof HKDF-SHA256 through [`hkdf_sha256`];
//! - the XAES-256-GCM specification vectors through [`XAes256Gcm`] (the `aead` traits) and
//!   [`SuiteCipher`] on every backend, plus the spec's 10,000-iteration accumulated
//!   randomized test (on every backend).
//!
//! The vectors live in `tests/data/vectors/` (see `PROVENANCE.md` there). Every test counts
//! what it checked and asserts the counts are what the files hold, so a vector file that
//! silently stops matching the filters fails the test instead of passing vacuously.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

use atrest::Backend;
use atrest::Suite;
use atrest::aead::{Aead, KeyInit, Payload};
use atrest::hazmat::{SuiteCipher, XAes256Gcm, hkdf_sha256};
use serde_json::Value;
use shake::{ExtendableOutput, Shake128, Update, XofReader};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors").join(name)
}

fn load_json(name: &str) -> Value {
    let text = std::fs::read_to_string(data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn hex_field(t: &Value, field: &str) -> Vec<u8> {
    hex::decode(t[field].as_str().unwrap_or_else(|| panic!("missing {field} in {t}"))).unwrap()
}

fn num(g: &Value, field: &str) -> u64 {
    g[field].as_u64().unwrap_or_else(|| panic!("missing {field}"))
}

/// One Wycheproof AEAD test case.
struct AeadCase {
    id: u64,
    key: Vec<u8>,
    iv: Vec<u8>,
    aad: Vec<u8>,
    msg: Vec<u8>,
    ct: Vec<u8>,
    tag: Vec<u8>,
    valid: bool,
}

impl AeadCase {
    fn parse(t: &Value) -> Self {
        let result = t["result"].as_str().unwrap();
        assert!(result == "valid" || result == "invalid", "unexpected result {result:?} (acceptable is not used here)");
        Self {
            id: num(t, "tcId"),
            key: hex_field(t, "key"),
            iv: hex_field(t, "iv"),
            aad: hex_field(t, "aad"),
            msg: hex_field(t, "msg"),
            ct: hex_field(t, "ct"),
            tag: hex_field(t, "tag"),
            valid: result == "valid",
        }
    }

    fn sealed(&self) -> Vec<u8> {
        [self.ct.as_slice(), self.tag.as_slice()].concat()
    }
}

#[derive(Debug, Default)]
struct AeadCounts {
    /// Cases in applicable groups (right key, nonce and tag size).
    applicable_valid: usize,
    applicable_invalid: usize,
    /// Cases with a 32-byte key but a nonce length the suite does not take: must be refused.
    refused_nonce: usize,
    /// Extra negative checks derived from valid cases (truncated tags, extended input).
    derived_rejections: usize,
    /// Cases with a key size `SuiteCipher` cannot even be handed (`&[u8; 32]` only).
    not_expressible: usize,
}

/// Runs every case of a Wycheproof AEAD file through `SuiteCipher::with_backend(suite, .., backend)`.
fn run_wycheproof_aead(file: &str, suite: Suite, backend: Backend) -> AeadCounts {
    let doc = load_json(file);
    let mut n = AeadCounts::default();
    let mut total = 0;
    for g in doc["testGroups"].as_array().unwrap() {
        let (key_bits, iv_bits, tag_bits) = (num(g, "keySize"), num(g, "ivSize"), num(g, "tagSize"));
        for t in g["tests"].as_array().unwrap() {
            total += 1;
            let c = AeadCase::parse(t);
            assert_eq!(c.key.len() * 8, usize::try_from(key_bits).unwrap());
            assert_eq!(c.iv.len() * 8, usize::try_from(iv_bits).unwrap());
            let Ok(key) = <[u8; 32]>::try_from(c.key.as_slice()) else {
                n.not_expressible += 1;
                continue;
            };
            let cipher = SuiteCipher::with_backend(suite, &key, backend).unwrap();
            assert_eq!(cipher.backend(), backend);
            let applicable = iv_bits == 8 * suite.nonce_len() as u64 && tag_bits == 128;
            if applicable {
                check_applicable(&cipher, &c, &mut n);
            } else {
                // 32-byte key, but a nonce (or tag) size the suite does not take: an Err on
                // every entry point, never a panic and never plaintext.
                assert!(cipher.seal(&c.iv, &c.aad, &c.msg).is_err(), "tc {}: seal accepted a {iv_bits}-bit IV", c.id);
                assert!(cipher.open(&c.iv, &c.aad, &c.sealed()).is_err(), "tc {}: open accepted it", c.id);
                let mut buf = c.msg.clone();
                assert!(cipher.encrypt_detached(&c.iv, &c.aad, &mut buf).is_err(), "tc {}", c.id);
                let mut buf = c.ct.clone();
                assert!(cipher.decrypt_detached(&c.iv, &c.aad, &mut buf, &c.tag).is_err(), "tc {}", c.id);
                assert!(buf.iter().all(|&b| b == 0), "tc {}: buffer not zeroed after a refusal", c.id);
                n.refused_nonce += 1;
            }
        }
    }
    assert_eq!(total, usize::try_from(num(&doc, "numberOfTests")).unwrap(), "{file}: case count");
    assert_eq!(total, n.applicable_valid + n.applicable_invalid + n.refused_nonce + n.not_expressible);
    n
}

fn check_applicable(cipher: &SuiteCipher, c: &AeadCase, n: &mut AeadCounts) {
    let id = c.id;
    let sealed = c.sealed();
    if c.valid {
        // One-shot paths.
        assert_eq!(cipher.seal(&c.iv, &c.aad, &c.msg).unwrap(), sealed, "tc {id}: seal");
        assert_eq!(cipher.open(&c.iv, &c.aad, &sealed).unwrap(), c.msg, "tc {id}: open");
        // Detached, in-place paths.
        let mut buf = c.msg.clone();
        let tag = cipher.encrypt_detached(&c.iv, &c.aad, &mut buf).unwrap();
        assert_eq!((buf.as_slice(), tag.as_slice()), (c.ct.as_slice(), c.tag.as_slice()), "tc {id}: detached");
        cipher.decrypt_detached(&c.iv, &c.aad, &mut buf, &tag).unwrap();
        assert_eq!(buf, c.msg, "tc {id}: decrypt_detached");

        // Derived rejections: truncated tags (Wycheproof's truncated-tag groups would have
        // these; this file has none) and an extended input.
        for keep in [0, 4, 8, 12, 15] {
            let cut = &sealed[..c.ct.len() + keep];
            assert!(cipher.open(&c.iv, &c.aad, cut).is_err(), "tc {id}: {keep}-byte tag accepted");
            let mut buf = c.ct.clone();
            assert!(cipher.decrypt_detached(&c.iv, &c.aad, &mut buf, &c.tag[..keep]).is_err(), "tc {id}");
            assert!(buf.iter().all(|&b| b == 0), "tc {id}: buffer not zeroed");
            n.derived_rejections += 2;
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(cipher.open(&c.iv, &c.aad, &longer).is_err(), "tc {id}: extended input accepted");
        n.derived_rejections += 1;
        n.applicable_valid += 1;
    } else {
        assert!(cipher.open(&c.iv, &c.aad, &sealed).is_err(), "tc {id}: invalid case opened");
        let mut buf = c.ct.clone();
        assert!(cipher.decrypt_detached(&c.iv, &c.aad, &mut buf, &c.tag).is_err(), "tc {id}");
        assert!(buf.iter().all(|&b| b == 0), "tc {id}: unauthenticated plaintext left in the buffer");
        // Sealing the same message gives the genuine ciphertext, never the invalid one.
        assert_ne!(cipher.seal(&c.iv, &c.aad, &c.msg).unwrap(), sealed, "tc {id}");
        n.applicable_invalid += 1;
    }
}

fn wycheproof_aes_256_gcm_on(backend: Backend) {
    let n = run_wycheproof_aead("aes_gcm_test.json", Suite::Aes256Gcm, backend);
    println!("wycheproof AES-GCM through SuiteCipher(Aes256Gcm, {backend}): {n:?}");
    // The 256/96/128 group of this file: 66 cases.
    assert_eq!(n.applicable_valid + n.applicable_invalid, 66);
    assert!(n.applicable_valid > 0 && n.applicable_invalid > 0);
    // Every other IV size with a 256-bit key: 128 bits (19 cases), 8, 16, 32, 48, 64 and 80
    // bits (2 each), 0 bits (2), 120, 160, 256, 512, 1024 and 2056 bits (1 each).
    assert_eq!(n.refused_nonce, 39);
    assert!(n.derived_rejections > 0);
    assert!(n.not_expressible > 0);
}

#[test]
fn wycheproof_aes_256_gcm_rustcrypto() {
    wycheproof_aes_256_gcm_on(Backend::RustCrypto);
}

/// With the `aws-lc` feature the same vectors run through AWS-LC; without it, the backend
/// must be refused (so this test cannot pass vacuously either way).
#[test]
fn wycheproof_aes_256_gcm_aws_lc() {
    if cfg!(feature = "aws-lc") {
        wycheproof_aes_256_gcm_on(Backend::AwsLc);
    } else {
        assert!(SuiteCipher::with_backend(Suite::Aes256Gcm, &[0; 32], Backend::AwsLc).is_err());
    }
}

#[test]
fn wycheproof_xchacha20_poly1305() {
    let n = run_wycheproof_aead("xchacha20_poly1305_test.json", Suite::XChaCha20Poly1305, Backend::RustCrypto);
    println!("wycheproof XChaCha20-Poly1305 through SuiteCipher(XChaCha20Poly1305): {n:?}");
    assert_eq!(n.applicable_valid + n.applicable_invalid, 306);
    assert!(n.applicable_valid > 0 && n.applicable_invalid > 0);
    assert_eq!(n.refused_nonce, 9);
    assert!(n.derived_rejections > 0);
    assert_eq!(n.not_expressible, 0);
}

#[test]
fn wycheproof_hkdf_sha256() {
    let doc = load_json("hkdf_sha256_test.json");
    let (mut valid, mut too_long, mut total) = (0usize, 0usize, 0usize);
    for g in doc["testGroups"].as_array().unwrap() {
        for t in g["tests"].as_array().unwrap() {
            total += 1;
            let id = num(t, "tcId");
            let (ikm, salt, info) = (hex_field(t, "ikm"), hex_field(t, "salt"), hex_field(t, "info"));
            let size = usize::try_from(num(t, "size")).unwrap();
            let mut okm = vec![0u8; size];
            let r = hkdf_sha256(&salt, &ikm, &info, &mut okm);
            match t["result"].as_str().unwrap() {
                "valid" => {
                    r.unwrap_or_else(|e| panic!("tc {id}: {e}"));
                    assert_eq!(okm, hex_field(t, "okm"), "tc {id}");
                    valid += 1;
                }
                "invalid" => {
                    assert!(size > 8160, "tc {id}: an invalid case that is not about the size");
                    assert!(r.is_err(), "tc {id}: {size}-byte output accepted");
                    too_long += 1;
                }
                other => panic!("tc {id}: unexpected result {other}"),
            }
        }
    }
    println!("wycheproof HKDF-SHA256 through hkdf_sha256: {valid} valid matched, {too_long} over-long refused");
    assert_eq!(total, usize::try_from(num(&doc, "numberOfTests")).unwrap());
    assert_eq!(valid + too_long, total);
    assert!(valid > 0);
    assert_eq!(too_long, 3);
    // The boundary itself: exactly 8160 bytes is allowed, one more is not.
    assert!(hkdf_sha256(b"s", b"k", b"i", &mut vec![0u8; 8160]).is_ok());
    assert!(hkdf_sha256(b"s", b"k", b"i", &mut vec![0u8; 8161]).is_err());
}

/// One XAES-256-GCM vector from the specification text.
struct XaesVector {
    key: [u8; 32],
    nonce: [u8; 24],
    plaintext: Vec<u8>,
    aad: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// A field of the spec text: `"quoted ASCII"` or hex.
fn spec_value(v: &str) -> Vec<u8> {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(ascii) => ascii.as_bytes().to_vec(),
        None => hex::decode(v).unwrap(),
    }
}

/// Parses `xaes-256-gcm.txt`: the fixed vectors and the expected accumulated hashes
/// (iterations, hash).
fn xaes_spec() -> (Vec<XaesVector>, Vec<(usize, Vec<u8>)>) {
    let text = std::fs::read_to_string(data("xaes-256-gcm.txt")).unwrap();
    let mut vectors = Vec::new();
    let mut accumulated = Vec::new();
    let mut fields = std::collections::HashMap::new();
    let mut flush = |fields: &mut std::collections::HashMap<String, Vec<u8>>| {
        if fields.is_empty() {
            return;
        }
        let mut take = |k: &str| fields.remove(k).unwrap_or_else(|| panic!("vector without {k}"));
        vectors.push(XaesVector {
            key: take("K").try_into().unwrap(),
            nonce: take("N").try_into().unwrap(),
            plaintext: take("Plaintext"),
            aad: take("AAD"),
            ciphertext: take("Ciphertext"),
        });
        fields.clear();
    };
    for line in text.lines().map(str::trim) {
        if line.starts_with("vector ") || line.starts_with("accumulated") {
            flush(&mut fields);
        } else if let Some((k, v)) = line.split_once(": ").filter(|_| !line.starts_with('#')) {
            if let Some(iters) = k.strip_suffix(" iterations") {
                accumulated.push((iters.parse().unwrap(), hex::decode(v).unwrap()));
            } else {
                fields.insert(k.to_owned(), spec_value(v));
            }
        }
    }
    flush(&mut fields);
    (vectors, accumulated)
}

#[test]
fn xaes_256_gcm_spec_vectors() {
    let (vectors, _) = xaes_spec();
    assert_eq!(vectors.len(), 2, "the spec has two fixed vectors");
    for (i, v) in vectors.iter().enumerate() {
        // Through the aead traits of hazmat::XAes256Gcm.
        let x = XAes256Gcm::new(&v.key.into());
        let ct = x.encrypt(&v.nonce.into(), Payload { msg: &v.plaintext, aad: &v.aad }).unwrap();
        assert_eq!(ct, v.ciphertext, "vector {}: XAes256Gcm encrypt", i + 1);
        let pt = x.decrypt(&v.nonce.into(), Payload { msg: &ct, aad: &v.aad }).unwrap();
        assert_eq!(pt, v.plaintext, "vector {}: XAes256Gcm decrypt", i + 1);

        // Through the crate's suite dispatcher, on every backend.
        for backend in Backend::available() {
            let c = SuiteCipher::with_backend(Suite::XAes256Gcm, &v.key, *backend).unwrap();
            let what = format!("vector {}: SuiteCipher on {backend}", i + 1);
            assert_eq!(c.seal(&v.nonce, &v.aad, &v.plaintext).unwrap(), v.ciphertext, "{what}");
            assert_eq!(c.open(&v.nonce, &v.aad, &v.ciphertext).unwrap(), v.plaintext, "{what}");
        }
        let c = SuiteCipher::new(Suite::XAes256Gcm, &v.key);
        assert_eq!(c.seal(&v.nonce, &v.aad, &v.plaintext).unwrap(), v.ciphertext);

        // Every single-bit change of ciphertext, nonce or AAD, and every truncation, fails.
        for bit in 0..v.ciphertext.len() * 8 {
            let mut bad = v.ciphertext.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(x.decrypt(&v.nonce.into(), Payload { msg: &bad, aad: &v.aad }).is_err());
            assert!(c.open(&v.nonce, &v.aad, &bad).is_err());
        }
        for bit in 0..v.nonce.len() * 8 {
            let mut bad = v.nonce;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(c.open(&bad, &v.aad, &v.ciphertext).is_err());
        }
        let mut aad = v.aad.clone();
        aad.push(0);
        assert!(c.open(&v.nonce, &aad, &v.ciphertext).is_err());
        for cut in 0..v.ciphertext.len() {
            assert!(c.open(&v.nonce, &v.aad, &v.ciphertext[..cut]).is_err());
        }
        // Wrong nonce lengths are refused, not padded or truncated.
        assert!(c.seal(&v.nonce[..12], &v.aad, &v.plaintext).is_err());
        assert!(c.seal(&[v.nonce.as_slice(), b"!"].concat(), &v.aad, &v.plaintext).is_err());
    }
    println!("XAES-256-GCM spec vectors checked: {}", vectors.len());
}

/// The specification's accumulated randomized test: SHAKE-128 of the empty string is the
/// deterministic source of keys, nonces, plaintexts and AADs; every ciphertext (with its
/// tag) is absorbed into a second SHAKE-128, whose first 32 output bytes are compared.
fn xaes_accumulated(iterations: usize, backend: Backend) -> Vec<u8> {
    let mut source = Shake128::default().finalize_xof();
    let mut sink = Shake128::default();
    let mut byte = [0u8; 1];
    for _ in 0..iterations {
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 24];
        source.read(&mut key);
        source.read(&mut nonce);
        source.read(&mut byte);
        let mut plaintext = vec![0u8; usize::from(byte[0])];
        source.read(&mut plaintext);
        source.read(&mut byte);
        let mut aad = vec![0u8; usize::from(byte[0])];
        source.read(&mut aad);

        let c = SuiteCipher::with_backend(Suite::XAes256Gcm, &key, backend).unwrap();
        let ct = c.seal(&nonce, &aad, &plaintext).unwrap();
        assert_eq!(c.open(&nonce, &aad, &ct).unwrap(), plaintext);
        sink.update(&ct);
    }
    let mut out = vec![0u8; 32];
    sink.finalize_xof().read(&mut out);
    out
}

#[test]
fn xaes_256_gcm_accumulated_randomized() {
    // The spec notes the RNG stream's first bytes: check the SHAKE-128 source itself first.
    let mut first = [0u8; 16];
    Shake128::default().finalize_xof().read(&mut first);
    assert_eq!(hex::encode(first), "7f9c2ba4e88f827d616045507605853e");

    let (_, accumulated) = xaes_spec();
    let (iterations, expected) = accumulated.iter().find(|(n, _)| *n == 10_000).expect("10,000-iteration hash");
    for backend in Backend::available() {
        let started = std::time::Instant::now();
        let got = xaes_accumulated(*iterations, *backend);
        println!("XAES-256-GCM accumulated test on {backend}: {iterations} iterations in {:?}", started.elapsed());
        assert_eq!(hex::encode(&got), hex::encode(expected), "{backend}");
    }
    // And the comparison can fail: a shorter run gives another hash.
    assert_ne!(xaes_accumulated(10, Backend::default()), *expected);
}
