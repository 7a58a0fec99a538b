//! `Recipient::from_str` (what `atrest backup encrypt --recipient` parses on an encrypt-only
//! host) on arbitrary text.
//!
//! Properties: nothing panics; an accepted recipient prints as the lowercase of what was
//! parsed (surrounding whitespace trimmed), and that text parses back to the same recipient.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use atrest::Recipient;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(r) = text.parse::<Recipient>() else { return };
    let printed = r.to_string();
    assert_eq!(printed, text.trim().to_lowercase());
    assert_eq!(printed.parse::<Recipient>().unwrap(), r);
    assert_eq!(r.public_key().len(), r.kem().public_key_len());
});
