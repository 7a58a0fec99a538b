//! atrest in one minute: a keyring in a temporary directory, two tenants, sealed records,
//! tenant isolation, and a key rotation. No setup needed:
//!
//! ```text
//! cargo run --example quickstart
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use atrest::{Context, Keyring, LocalRootKey, OpenError, record_info};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let root_path = dir.path().join("root.key");
    let keyring_path = dir.path().join("keyring.atrk");

    // 1. A root key (mode 0600 file) and a keyring wrapped under it.
    let root = LocalRootKey::generate_file(&root_path)?;
    let keyring = Keyring::create(&keyring_path, root)?;
    println!("created keyring {} (primary {}) in {}", hex(&keyring.id()), keyring.primary(), dir.path().display());

    // 2. Two tenants; their keys are derived, nothing is stored per tenant.
    let acme = keyring.tenant("acme")?;
    let globex = keyring.tenant("globex")?;

    let email = Context::new().with("table", "contacts").with("column", "email").with("row", "42");
    let sealed = acme.seal(b"alice@example.com", &email)?;
    println!("acme sealed a 17-byte email into {} bytes under key {}", sealed.len(), record_info(&sealed)?.key_version);
    println!("acme opens it: {}", String::from_utf8(acme.open(&sealed, &email)?)?);

    // 3. Isolation: globex cannot open acme's record, and the record is bound to its row.
    match globex.open(&sealed, &email) {
        Err(OpenError::Authentication) => println!("globex cannot open acme's record: authentication failed"),
        other => return Err(format!("isolation broken: {other:?}").into()),
    }
    let row_43 = Context::new().with("table", "contacts").with("column", "email").with("row", "43");
    assert!(acme.open(&sealed, &row_43).is_err());
    println!("acme cannot open it as row 43 either: the context is authenticated");

    // 4. Rotation: new data goes under v2, old data still opens.
    let v2 = keyring.rotate()?;
    let newer = acme.seal(b"bob@example.com", &email)?;
    println!("rotated to {v2}; new records name {}, the old one still opens: {}", record_info(&newer)?.key_version, {
        String::from_utf8(acme.open(&sealed, &email)?)?
    });

    // 5. Reopen the keyring from disk with the root key file, as another process would.
    let reopened = Keyring::open(&keyring_path, LocalRootKey::from_file(&root_path)?)?;
    let again = reopened.tenant("acme")?.open(&newer, &email)?;
    println!("reopened from disk: {}", String::from_utf8(again)?);
    println!("keyring status: {} master versions, primary {}", reopened.status().masters.len(), reopened.primary());
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
