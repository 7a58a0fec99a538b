//! `Keyring::from_bytes` (the checks of `Keyring::open`) on arbitrary bytes.
//!
//! Properties:
//! - nothing panics;
//! - a load succeeds only for a committed keyring file, byte for byte, under its own root
//!   key (the MAC and the wrapped keys make any other accepted input a forgery): the fuzz
//!   fixtures under the fuzz root key, the crate's golden keyring under the golden root key;
//! - an accepted keyring re-serializes to the same bytes, and loading those gives the same
//!   status;
//! - with another root key, or an impostor that claims the right root key id, loading fails.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::{Arc, LazyLock};

use atrest::{Keyring, RootKeyProvider};
use atrest_fuzz::{GOLDEN_KEYRING, VALID_KEYRINGS, golden_root, impostor_root, other_root, root};
use libfuzzer_sys::fuzz_target;

struct Roots {
    fuzz: Arc<dyn RootKeyProvider>,
    golden: Arc<dyn RootKeyProvider>,
    other: Arc<dyn RootKeyProvider>,
    impostor: Arc<dyn RootKeyProvider>,
}

static ROOTS: LazyLock<Roots> =
    LazyLock::new(|| Roots { fuzz: root(), golden: golden_root(), other: other_root(), impostor: impostor_root() });

fn check_accepted(data: &[u8], keyring: &Keyring, root: &Arc<dyn RootKeyProvider>) {
    let again = keyring.to_bytes().unwrap();
    assert_eq!(again, data, "an accepted keyring must re-serialize to its own bytes");
    let reloaded = Keyring::from_bytes(&again, root.clone()).unwrap();
    let status = serde_json::to_string(&keyring.status()).unwrap();
    assert_eq!(serde_json::to_string(&reloaded.status()).unwrap(), status);
    assert_eq!(reloaded.id(), keyring.id());
    assert_eq!(reloaded.primary(), keyring.primary());
}

fuzz_target!(|data: &[u8]| {
    let r = &*ROOTS;
    assert!(Keyring::from_bytes(data, r.other.clone()).is_err(), "loaded under another root key");
    assert!(Keyring::from_bytes(data, r.impostor.clone()).is_err(), "loaded under an impostor root key");

    if let Ok(keyring) = Keyring::from_bytes(data, r.fuzz.clone()) {
        assert!(
            VALID_KEYRINGS.contains(&data),
            "accepted {} bytes that are not a committed keyring file: {:?}",
            data.len(),
            String::from_utf8_lossy(data)
        );
        check_accepted(data, &keyring, &r.fuzz);
    }
    if let Ok(keyring) = Keyring::from_bytes(data, r.golden.clone()) {
        assert_eq!(data, GOLDEN_KEYRING, "accepted bytes that are not the golden keyring under its root key");
        check_accepted(data, &keyring, &r.golden);
    }
});
