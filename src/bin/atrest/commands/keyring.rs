//! `atrest keygen`, `atrest keyring ...` and `atrest tenant ...`.

use std::io::Write;
use std::path::Path;

use atrest::{
    Context, DestroyConfirmation, KeyState, Keyring, KeyringLocation, KeyringOptions, KeyringStatus, LocalRootKey,
    MasterVersion, RootKeyProvider, ShredEvidence,
};

use crate::args::{KeyArgs, KeyringCommand, NewRootArgs, TenantCommand};
use crate::failure::{Doing, Failure};
use crate::keys::{self, Purpose};

/// `atrest keygen --out FILE`.
pub fn keygen(out: &Path) -> Result<(), Failure> {
    let k = LocalRootKey::generate_file(out).doing(|| "generating a root key".into())?;
    println!("wrote root key {} (id {}, mode 0600)", out.display(), k.key_id());
    Ok(())
}

/// `atrest keyring ...`.
pub fn keyring(keys_args: &KeyArgs, cmd: &KeyringCommand) -> Result<(), Failure> {
    match cmd {
        KeyringCommand::Init => {
            let loc = keys::keyring_location(keys_args)?;
            let root = keys::root(keys_args, Purpose::OpenOrGenerate)?;
            let k =
                Keyring::create_at(&loc, root, KeyringOptions::default()).doing(|| "creating the keyring".into())?;
            let s = k.status();
            println!("created keyring {loc} (id {}, root key {}), primary {}", s.id, s.root_key_id, s.primary);
        }
        KeyringCommand::Status { json } => {
            let k = keys::keyring(keys_args)?;
            let s = k.status();
            if *json {
                let text = serde_json::to_string_pretty(&s).doing(|| "formatting the status".into())?;
                println!("{text}");
            } else {
                print_status(&keys::keyring_location(keys_args)?, &s, now())?;
            }
        }
        KeyringCommand::Migrate { to } => {
            let k = keys::keyring(keys_args)?;
            let to = keys::location(to);
            let copy = k.copy_to(&to, KeyringOptions::default()).doing(|| format!("copying the keyring to {to}"))?;
            println!(
                "keyring {} copied to {to} at revision {} and verified; point applications at the new location, \
                 then retire the old store (it still holds the wrapped keys)",
                copy.status().id,
                copy.status().revision
            );
        }
        KeyringCommand::Rotate => {
            let k = keys::keyring(keys_args)?;
            let old = k.primary();
            let v = k.rotate().doing(|| "rotating the keyring".into())?;
            println!("rotated: {v} is primary, {old} is enabled (decrypt only)");
        }
        KeyringCommand::Disable { version } => {
            set_state(keys_args, *version, KeyState::Disabled)?;
            println!("{version} disabled");
        }
        KeyringCommand::Enable { version } => {
            set_state(keys_args, *version, KeyState::Enabled)?;
            println!("{version} enabled (decrypt only)");
        }
        KeyringCommand::Destroy { version, yes, skip_grace_period } => {
            if !yes {
                return Err(Failure::usage(format!(
                    "destroying {version} is irreversible: everything sealed under it becomes unrecoverable; add --yes to confirm"
                )));
            }
            let k = keys::keyring(keys_args)?;
            let mut confirm = DestroyConfirmation::data_under_this_version_is_lost(*version);
            if *skip_grace_period {
                confirm = confirm.skip_grace_period();
            }
            k.destroy(*version, confirm).doing(|| format!("destroying {version}"))?;
            println!("{version} destroyed");
        }
        KeyringCommand::RewrapRoot(new) => {
            let k = keys::keyring(keys_args)?;
            let root = new_root(new)?;
            let id = root.key_id();
            k.rewrap_root(root).doing(|| "re-wrapping the keyring under the new root key".into())?;
            println!("keyring re-wrapped under root key {id}; the old root key is no longer needed for it");
        }
    }
    Ok(())
}

fn set_state(keys_args: &KeyArgs, v: MasterVersion, state: KeyState) -> Result<(), Failure> {
    let k = keys::keyring(keys_args)?;
    k.set_state(v, state).doing(|| format!("changing {v} to {state}"))
}

fn new_root(new: &NewRootArgs) -> Result<std::sync::Arc<dyn RootKeyProvider>, Failure> {
    let p = new.pkcs11();
    match (&new.new_root_key, &new.new_root_key_file, p.any()) {
        (Some(uri), None, false) => keys::root_uri(uri, Purpose::OpenOrGenerate),
        (None, Some(f), false) => keys::root_file(f),
        (None, None, true) => {
            keys::pkcs11(&p, "ATREST_NEW_PKCS11_PIN", Some("ATREST_PKCS11_PIN"), Purpose::OpenOrGenerate)
        }
        (None, None, false) => Err(Failure::usage(
            "no new root key: give --new-root-key URI, --new-root-key-file PATH (make one with `atrest keygen`) or \
             --new-pkcs11-* options",
        )),
        _ => Err(Failure::usage("give one of --new-root-key, --new-root-key-file or --new-pkcs11-* options")),
    }
}

/// `atrest tenant ...`.
pub fn tenant(keys_args: &KeyArgs, cmd: &TenantCommand) -> Result<(), Failure> {
    match cmd {
        TenantCommand::Recipient { tenant, key_version, kem, json } => {
            super::recipient::print(keys_args, tenant, *key_version, kem, *json)?;
        }
        TenantCommand::Rotate { tenant } => {
            let k = keys::keyring(keys_args)?;
            let shown = tenant.escape_debug();
            let g = k.rotate_tenant(tenant).doing(|| format!("rotating tenant '{shown}'"))?;
            println!("tenant '{shown}' rotated: new data is sealed under generation {g}");
        }
        TenantCommand::Shred { tenant, yes, evidence_backup, evidence_record, context, unverified } => {
            let shown = tenant.escape_debug().to_string();
            if !yes {
                return Err(Failure::usage(format!(
                    "shredding tenant '{shown}' makes all of its data unreadable at once and cannot be undone; add --yes to confirm"
                )));
            }
            let evidence_bytes = match (evidence_backup, evidence_record) {
                (Some(p), _) | (None, Some(p)) => Some(read_evidence(p)?),
                (None, None) if *unverified => None,
                (None, None) => {
                    return Err(Failure::usage(format!(
                        "show that tenant '{shown}' exists: --evidence-backup FILE (a backup of it), or \
                         --evidence-record FILE --context k=v,... (a sealed record of it); or --unverified"
                    )));
                }
            };
            let ctx = parse_context(context)?;
            let evidence = match (&evidence_bytes, evidence_backup.is_some()) {
                (Some(b), true) => ShredEvidence::Backup(b),
                (Some(b), false) => ShredEvidence::Record { sealed: b, context: &ctx },
                (None, _) => ShredEvidence::Unverified,
            };
            let k = keys::keyring(keys_args)?;
            k.shred_tenant(tenant, evidence).doing(|| format!("shredding tenant '{shown}'"))?;
            let pending = k
                .status()
                .tenants
                .into_iter()
                .find(|t| t.id == *tenant)
                .and_then(|t| t.shred)
                .map(|s| s.pending_versions)
                .unwrap_or_default();
            if pending.is_empty() {
                println!("tenant '{shown}' shredded (complete)");
            } else {
                println!(
                    "tenant '{shown}' shredded: refused from now on; complete once {} destroyed \
                     (after rewrapping other tenants' data and the backup retention window)",
                    versions_are(&pending)
                );
            }
        }
    }
    Ok(())
}

/// The first bytes of an evidence file (a backup header, or one sealed record).
fn read_evidence(path: &Path) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let f = std::fs::File::open(path).doing(|| format!("opening {}", path.display()))?;
    let mut buf = Vec::new();
    // A backup header or a record of up to 16 MiB is plenty of evidence.
    f.take(16 << 20).read_to_end(&mut buf).doing(|| format!("reading {}", path.display()))?;
    Ok(buf)
}

/// `k=v` pairs, in order.
fn parse_context(pairs: &[String]) -> Result<Context, Failure> {
    let mut ctx = Context::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--context wants key=value pairs, not '{}'", p.escape_debug())))?;
        ctx = ctx.with(k, v);
    }
    Ok(ctx)
}

fn versions_are(v: &[MasterVersion]) -> String {
    let list = v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    if v.len() == 1 { format!("{list} is") } else { format!("{list} are") }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn print_status(location: &KeyringLocation, s: &KeyringStatus, now: u64) -> Result<(), Failure> {
    let mut out = String::new();
    out.push_str(&format!("keyring    {location}\n"));
    out.push_str(&format!("id         {}\n", s.id));
    out.push_str(&format!("revision   {}\n", s.revision));
    out.push_str(&format!("created    {}\n", when(s.created_at, now)));
    out.push_str(&format!("root key   {}\n", s.root_key_id));
    out.push_str(&format!("primary    {}\n", s.primary));
    out.push_str("\nmaster keys\n");
    for m in &s.masters {
        let changed =
            if m.changed_at == m.created_at { String::new() } else { format!(", changed {}", age(m.changed_at, now)) };
        out.push_str(&format!(
            "  {:<7} {:<10} created {}{changed}\n",
            m.version.to_string(),
            m.state.to_string(),
            age(m.created_at, now)
        ));
    }
    if !s.tenants.is_empty() {
        out.push_str("\ntenants\n");
    }
    for t in &s.tenants {
        let mut line = format!("  {:<16} generation {}", t.id, t.generation);
        if let Some(r) = t.rotated_at {
            line.push_str(&format!(", rotated {}", age(r, now)));
        }
        if let Some(sh) = &t.shred {
            line.push_str(&format!(", shredded {}", age(sh.shredded_at, now)));
            if sh.complete {
                line.push_str(" (complete)");
            } else {
                line.push_str(&format!(" (pending until {} destroyed)", versions_are(&sh.pending_versions)));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    if !s.handles.is_empty() {
        out.push_str("\nlive handles (heartbeats)\n");
    }
    for h in &s.handles {
        let behind = if h.revision < s.revision { " (behind)" } else { "" };
        let stale = if h.stale { ", stale: no heartbeat for over a minute" } else { "" };
        out.push_str(&format!(
            "  {} pid {} handle {}  revision {}{behind}, seen {} s ago{stale}\n",
            h.host.escape_debug(),
            h.pid,
            h.handle.escape_debug(),
            h.revision,
            h.seen_secs_ago
        ));
    }
    std::io::stdout().lock().write_all(out.as_bytes()).doing(|| "writing to stdout".into())
}

/// `2026-03-01 12:00:00 UTC (3 days ago)`.
fn when(t: u64, now: u64) -> String {
    format!("{} ({})", utc(t), age(t, now))
}

/// A duration before `now`, for humans.
fn age(t: u64, now: u64) -> String {
    let Some(d) = now.checked_sub(t) else {
        return "in the future (clock skew?)".into();
    };
    let (n, unit) = match d {
        0..60 => return "just now".into(),
        60..3600 => (d / 60, "minute"),
        3600..86_400 => (d / 3600, "hour"),
        86_400..2_592_000 => (d / 86_400, "day"),
        2_592_000..31_536_000 => (d / 2_592_000, "month"),
        _ => (d / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Unix seconds as a UTC date and time (proleptic Gregorian calendar).
fn utc(t: u64) -> String {
    let days = t / 86_400;
    let secs = t % 86_400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ages() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_709_210_096), "2024-02-29 12:34:56 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
        assert_eq!(age(100, 100), "just now");
        assert_eq!(age(0, 60), "1 minute ago");
        assert_eq!(age(0, 7200), "2 hours ago");
        assert_eq!(age(0, 3 * 86_400), "3 days ago");
        assert_eq!(age(10, 0), "in the future (clock skew?)");
    }
}
