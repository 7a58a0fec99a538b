//! `Keyring::from_bytes` (the checks of `Keyring::open`) on arbitrary bytes.
//!
//! Properties:
//! - nothing panics;
//! - a load succeeds only for a committed keyring file, byte for byte (the MAC and the
//!   wrapped keys make any other accepted input a forgery);
//! - an accepted keyring re-serializes to the same bytes, and loading those gives the same
//!   status;
//! - with another root key, or an impostor that claims the right root key id, loading fails.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use atrest::Keyring;
use atrest_fuzz::{VALID_KEYRINGS, impostor_root, other_root, root};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let loaded = Keyring::from_bytes(data, root());
    assert!(Keyring::from_bytes(data, other_root()).is_err(), "loaded under another root key");
    assert!(Keyring::from_bytes(data, impostor_root()).is_err(), "loaded under an impostor root key");
    let Ok(keyring) = loaded else { return };

    assert!(
        VALID_KEYRINGS.contains(&data),
        "accepted {} bytes that are not a committed keyring file: {:?}",
        data.len(),
        String::from_utf8_lossy(data)
    );
    let again = keyring.to_bytes().unwrap();
    assert_eq!(again, data, "an accepted keyring must re-serialize to its own bytes");
    let reloaded = Keyring::from_bytes(&again, root()).unwrap();
    let status = serde_json::to_string(&keyring.status()).unwrap();
    assert_eq!(serde_json::to_string(&reloaded.status()).unwrap(), status);
    assert_eq!(reloaded.id(), keyring.id());
    assert_eq!(reloaded.primary(), keyring.primary());
});
