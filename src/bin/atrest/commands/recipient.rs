//! `atrest tenant recipient` and the `--recipient` / `--recipient-file` of `backup encrypt`.

use std::path::Path;

use atrest::{KeyVersion, MasterVersion, Recipient, RecipientKem};

use crate::args::KeyArgs;
use crate::failure::{Doing, Failure};
use crate::keys;

/// `atrest tenant recipient T [--key-version N] [--kem x-wing|x25519] [--json]`.
pub fn print(
    keys_args: &KeyArgs,
    tenant: &str,
    version: Option<MasterVersion>,
    kem: &str,
    json: bool,
) -> Result<(), Failure> {
    let kem = RecipientKem::from_name(kem)
        .ok_or_else(|| Failure::usage(format!("unknown KEM '{}': use x-wing or x25519", kem.escape_debug())))?;
    let k = keys::keyring(keys_args)?;
    let shown = tenant.escape_debug();
    let t = k.tenant(tenant).doing(|| format!("tenant '{shown}'"))?;
    let r = match version {
        None => t.backup_recipient(kem),
        Some(master) => t.backup_recipient_at(KeyVersion { master, generation: t.key_version().generation }, kem),
    }
    .doing(|| format!("the backup recipient of tenant '{shown}'"))?;
    if json {
        let out = serde_json::json!({
            "recipient": r.to_string(), "tenant": r.tenant().as_str(), "key_version": r.key_version().to_string(),
            "kem": r.kem().name(), "fingerprint": r.fingerprint(),
        });
        println!("{out}");
    } else {
        println!("{r}");
    }
    Ok(())
}

/// The recipient `--recipient` or `--recipient-file` names, checked against `--tenant`.
pub fn load(text: Option<&str>, file: Option<&Path>, tenant: &str) -> Result<Option<Recipient>, Failure> {
    let (text, from) = match (text, file) {
        (Some(t), _) => (t.to_owned(), "--recipient".to_owned()),
        (None, Some(path)) => {
            let all = std::fs::read_to_string(path).doing(|| format!("reading {}", path.display()))?;
            let line = all.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or_default();
            (line.to_owned(), path.display().to_string())
        }
        (None, None) => return Ok(None),
    };
    let r: Recipient = text.parse().map_err(|e| Failure::usage(format!("{from}: {e}")))?;
    if r.tenant().as_str() != tenant {
        return Err(Failure::usage(format!(
            "the recipient is tenant '{}''s, not '{}': a stream is bound to its recipient's tenant",
            r.tenant().as_str().escape_debug(),
            tenant.escape_debug()
        )));
    }
    Ok(Some(r))
}
