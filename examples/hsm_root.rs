//! A keyring whose root key lives in a PKCS#11 token (an HSM, or SoftHSM2).
//!
//! ```text
//! eval "$(scripts/softhsm-setup /tmp/atrest-hsm)"      # a SoftHSM2 token, prints the exports
//! cargo run --features pkcs11 --example hsm_root
//! ```
//!
//! Reads:
//! - `ATREST_PKCS11_MODULE`: the PKCS#11 module (default `/usr/lib/softhsm/libsofthsm2.so`)
//! - `ATREST_PKCS11_TOKEN`: the token label (required)
//! - `ATREST_PKCS11_KEY`: the root key's label (default `atrest-root`; generated if missing)
//! - `ATREST_PKCS11_PIN`, or `ATREST_PKCS11_PIN_FILE` (a mode 0600 file): the user PIN
//! - `ATREST_KEYRING`: the keyring file (default `atrest-hsm-demo.atrk`; created if missing)
//!
//! Run it twice: the second run opens the keyring made by the first, through the token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

use atrest::{Context, Keyring, PKCS11_PIN_ENV, Pkcs11Config, Pkcs11RootKey, RootKeyProvider};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let module = env_or("ATREST_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so");
    let token = std::env::var("ATREST_PKCS11_TOKEN")
        .map_err(|_| "set ATREST_PKCS11_TOKEN to the token label (see scripts/softhsm-setup)")?;
    let key = env_or("ATREST_PKCS11_KEY", "atrest-root");
    let pin = match std::env::var_os("ATREST_PKCS11_PIN_FILE") {
        Some(file) => Pkcs11Config::pin_from_file(&PathBuf::from(file))?,
        None => Pkcs11Config::pin_from_env(PKCS11_PIN_ENV)?,
    };
    let keyring_path = PathBuf::from(env_or("ATREST_KEYRING", "atrest-hsm-demo.atrk"));

    let config = Pkcs11Config::new(module, &token, &key, pin);
    let root = Pkcs11RootKey::open_or_generate(&config)?;
    println!("root key:  {}", root.key_id());

    let keyring = if keyring_path.exists() {
        println!("keyring:   opening {}", keyring_path.display());
        Keyring::open(&keyring_path, root)?
    } else {
        println!("keyring:   creating {}", keyring_path.display());
        Keyring::create(&keyring_path, root)?
    };
    let status = keyring.status();
    println!("           id {}, primary {}, {} master key(s)", status.id, status.primary, status.masters.len());

    let acme = keyring.tenant("acme")?;
    let context = Context::new().with("table", "contacts").with("row", "42");
    let sealed = acme.seal(b"alice@example.com", &context)?;
    let opened = acme.open(&sealed, &context)?;
    assert_eq!(opened, b"alice@example.com");
    println!("record:    sealed {} bytes -> {} bytes, opened again", opened.len(), sealed.len());
    Ok(())
}
