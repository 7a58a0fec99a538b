//! The checks a keyring file meets *after* its MAC verified, and every keyring operation on
//! what they accept: a file written by a buggy or foreign writer that holds the keys.
//!
//! The input is the JSON line of a keyring file; the harness adds the first line and a valid
//! MAC, under a [`TransparentRoot`] (wrapping is the identity, so the integrity key is the
//! JSON's `integrity_key`). Real files cannot be forged this way: this target exists to
//! reach the code behind the MAC, which must also return errors and never panic.
//!
//! Properties: nothing panics; an accepted file's state survives `to_bytes` / `from_bytes`
//! (same status), before and after rotations, state changes, tenant rotations and shreds;
//! a tenant that is not shredded seals and opens.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use atrest::{Context, KeyState, Keyring, MasterVersion, RootKeyProvider};
use atrest_fuzz::{TransparentRoot, authentic_keyring_file};
use libfuzzer_sys::fuzz_target;

fn status(k: &Keyring) -> String {
    serde_json::to_string(&k.status()).unwrap()
}

fn round_trip(k: &Keyring, root: &Arc<dyn RootKeyProvider>) {
    let bytes = k.to_bytes().unwrap();
    let again = Keyring::from_bytes(&bytes, root.clone()).unwrap_or_else(|e| panic!("reload failed: {e}"));
    assert_eq!(status(&again), status(k));
    assert_eq!(again.to_bytes().unwrap(), bytes, "serialization is deterministic");
}

fn seal_open(k: &Keyring, tenant: &str) {
    let Ok(t) = k.tenant(tenant) else { return };
    let ctx = Context::new().with("row", "1");
    if let Ok(sealed) = t.seal(b"fuzz", &ctx) {
        assert_eq!(t.open(&sealed, &ctx).unwrap(), b"fuzz");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else { return };
    if json.contains('\n') {
        return;
    }
    let root: Arc<dyn RootKeyProvider> = Arc::new(TransparentRoot);
    let file = authentic_keyring_file(json);
    let Ok(k) = Keyring::from_bytes(&file, root.clone()) else { return };

    round_trip(&k, &root);
    let st = k.status();
    let tenants: Vec<String> = st.tenants.iter().map(|t| t.id.clone()).chain(["acme".to_owned()]).collect();
    for t in &tenants {
        seal_open(&k, t);
    }
    let versions: Vec<MasterVersion> = st.masters.iter().map(|m| m.version).collect();

    // Every operation either works or returns an error; the result always round-trips.
    let _ = k.rotate();
    round_trip(&k, &root);
    for (i, v) in versions.iter().enumerate() {
        let state = [KeyState::Disabled, KeyState::Enabled, KeyState::Primary, KeyState::Destroyed][i % 4];
        let _ = k.set_state(*v, state);
        round_trip(&k, &root);
    }
    for t in &tenants {
        let _ = k.rotate_tenant(t);
        seal_open(&k, t);
    }
    if let Some(t) = tenants.first()
        && k.shred_tenant(t, atrest::ShredEvidence::Unverified).is_ok()
    {
        assert!(k.tenant(t).is_err(), "a shredded tenant is refused");
    }
    round_trip(&k, &root);
    for t in &tenants {
        seal_open(&k, t);
    }
});
