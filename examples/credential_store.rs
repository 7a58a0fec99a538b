//! An application keeping third-party API credentials sealed in a file on disk, and reading
//! one back by name.
//!
//! Each credential is sealed for its tenant and bound to its name, so a sealed value copied
//! under another name (or to another tenant) fails to open.
//!
//! ```text
//! cargo run --example credential_store
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::Path;

use atrest::{Context, Keyring, LocalRootKey, Tenant};

/// The on-disk store: credential name -> hex of the sealed record.
struct CredentialStore<'a> {
    tenant: &'a Tenant,
    path: &'a Path,
}

impl CredentialStore<'_> {
    fn context(name: &str) -> Context {
        Context::new().with("store", "credentials").with("name", name)
    }

    fn load(&self) -> Result<BTreeMap<String, String>, Box<dyn std::error::Error>> {
        if !self.path.exists() {
            return Ok(BTreeMap::new());
        }
        Ok(serde_json::from_slice(&std::fs::read(self.path)?)?)
    }

    fn put(&self, name: &str, secret: &str) -> Result<(), Box<dyn std::error::Error>> {
        let mut all = self.load()?;
        let sealed = self.tenant.seal(secret.as_bytes(), &Self::context(name))?;
        all.insert(name.to_owned(), hex::encode(sealed));
        // Write to a temporary file and rename: the store is never half-written.
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&all)?)?;
        std::fs::rename(&tmp, self.path)?;
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Option<String>, Box<dyn std::error::Error>> {
        let all = self.load()?;
        let Some(sealed) = all.get(name) else { return Ok(None) };
        let plain = self.tenant.open(&hex::decode(sealed)?, &Self::context(name))?;
        Ok(Some(String::from_utf8(plain)?))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // The root key goes to a file (mode 0600) next to the keyring here; keep it apart from the
    // data in a real deployment. A root key that is never saved cannot reopen the keyring.
    let root = LocalRootKey::generate_file(&dir.path().join("root.key"))?;
    let keyring = Keyring::create(&dir.path().join("keyring.atrk"), root)?;
    let tenant = keyring.tenant("acme")?;
    let path = dir.path().join("credentials.json");
    let store = CredentialStore { tenant: &tenant, path: &path };

    store.put("stripe", "sk_live_51Hxxxxxxxxxxxxxxxxxxxxx")?;
    store.put("sendgrid", "SG.yyyyyyyyyyyyyyyyyyyy")?;
    println!("stored 2 credentials in {}", path.display());
    println!("on disk (sealed, hex):\n{}", std::fs::read_to_string(&path)?);

    let stripe = store.get("stripe")?.ok_or("missing")?;
    println!("read back 'stripe': {}...", &stripe[..8]);

    // Swapping the sealed values between names is detected.
    let mut all = store.load()?;
    let (a, b) = (all["stripe"].clone(), all["sendgrid"].clone());
    all.insert("stripe".into(), b);
    all.insert("sendgrid".into(), a);
    std::fs::write(&path, serde_json::to_vec(&all)?)?;
    match store.get("stripe") {
        Err(e) => println!("after swapping two entries on disk, reading 'stripe' fails: {e}"),
        Ok(v) => return Err(format!("swap not detected: {v:?}").into()),
    }
    Ok(())
}
