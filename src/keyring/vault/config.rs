//! Where a transit key lives and how to reach it: [`VaultTransitConfig`], read from the
//! standard Vault / OpenBao environment or given explicitly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::error::RootKeyError;

/// The service name in errors before an address is known.
pub(super) const SERVICE: &str = "Vault transit";

/// How long one HTTP request may take, connection included, unless configured otherwise.
pub const DEFAULT_VAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a transit key lives and how to log in.
///
/// # Environment
/// [`VaultTransitConfig::from_env`] reads the variables the `vault` and `bao` command-line
/// tools read. Each `BAO_*` variable is an alias of its `VAULT_*` twin (OpenBao's names); if
/// both are set they must agree.
///
/// | variable | meaning |
/// | --- | --- |
/// | `VAULT_ADDR` / `BAO_ADDR` | the server, `https://host:port` (`http://` only to a loopback address) |
/// | `VAULT_TOKEN` / `BAO_TOKEN` | the token (read once, when the configuration is made) |
/// | `VAULT_CACERT` / `BAO_CACERT` | a PEM file of CA certificates to trust instead of the system's |
/// | `VAULT_CAPATH` / `BAO_CAPATH` | a directory of PEM files, likewise |
/// | `VAULT_NAMESPACE` / `BAO_NAMESPACE` | a namespace (sent as `X-Vault-Namespace`) |
/// | `VAULT_SKIP_VERIFY` / `BAO_SKIP_VERIFY` | refused if true: atrest never switches TLS verification off |
///
/// # Security
/// TLS is always verified, against the system's trust store or the given CA certificates.
/// Plain `http://` is accepted only to a loopback address (`127.0.0.0/8`, `::1`,
/// `localhost`): a local Vault Agent or a test server. The token is a [`SecretString`] and
/// appears in no `Debug` output and no error.
#[derive(Clone)]
pub struct VaultTransitConfig {
    /// The server, for example `https://vault.example.com:8200`.
    pub address: String,
    /// The transit engine's mount path, for example `transit` (may contain `/`).
    pub mount: String,
    /// The transit key's name.
    pub key: String,
    /// The Vault / OpenBao token.
    pub token: SecretString,
    /// A namespace (Vault Enterprise, OpenBao), if any.
    pub namespace: Option<String>,
    /// CA certificates to trust instead of the system's: a PEM file or a directory of them.
    pub ca_certs: Option<PathBuf>,
    /// How long one request may take, connection included ([`DEFAULT_VAULT_TIMEOUT`]).
    pub timeout: Duration,
}

impl VaultTransitConfig {
    /// A configuration with no namespace, the system's trust store and the default timeout.
    pub fn new(address: &str, mount: &str, key: &str, token: SecretString) -> Self {
        Self {
            address: address.to_owned(),
            mount: mount.to_owned(),
            key: key.to_owned(),
            token,
            namespace: None,
            ca_certs: None,
            timeout: DEFAULT_VAULT_TIMEOUT,
        }
    }

    /// The key `mount/keys/key` on the server named by `VAULT_ADDR` (or `BAO_ADDR`), with the
    /// token and TLS settings of the environment (see the table above).
    ///
    /// # Errors
    /// [`RootKeyError::KmsConfig`] if the address or token is missing, two twin variables
    /// disagree, or `VAULT_SKIP_VERIFY` asks to switch TLS verification off.
    pub fn from_env(mount: &str, key: &str) -> Result<Self, RootKeyError> {
        Self::from_env_at(None, mount, key)
    }

    /// As [`from_env`](Self::from_env), but the server is `https://{authority}` (a key URI's
    /// `host[:port]`) unless the environment's address names the same loopback host and port
    /// over `http://`, which is then used.
    pub(crate) fn from_env_at(authority: Option<&str>, mount: &str, key: &str) -> Result<Self, RootKeyError> {
        if let Some(v) = env_twin("SKIP_VERIFY")?
            && !matches!(v.as_str(), "" | "0" | "false" | "FALSE" | "False")
        {
            return Err(config_error("VAULT_SKIP_VERIFY is set: atrest never switches TLS verification off"));
        }
        let env_addr = env_twin("ADDR")?;
        let address = match (authority, env_addr) {
            (None, Some(a)) => a.to_string(),
            (None, None) => {
                return Err(config_error(
                    "no server address: set VAULT_ADDR (or BAO_ADDR), or name the host in the key URI",
                ));
            }
            (Some(auth), Some(a)) if a.strip_prefix("http://").map(|r| r.trim_end_matches('/')) == Some(auth) => {
                a.to_string()
            }
            (Some(auth), _) => format!("https://{auth}"),
        };
        let token = env_twin("TOKEN")?
            .filter(|t| !t.is_empty())
            .ok_or_else(|| config_error("no token: set VAULT_TOKEN (or BAO_TOKEN)"))?;
        let mut config = Self::new(&address, mount, key, SecretString::from(token.as_str()));
        config.namespace = env_twin("NAMESPACE")?.filter(|n| !n.is_empty()).map(|n| n.to_string());
        config.ca_certs = match (env_twin("CACERT")?, env_twin("CAPATH")?) {
            (Some(f), _) if !f.is_empty() => Some(PathBuf::from(f.as_str())),
            (_, Some(d)) if !d.is_empty() => Some(PathBuf::from(d.as_str())),
            _ => None,
        };
        Ok(config)
    }
}

impl core::fmt::Debug for VaultTransitConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VaultTransitConfig")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .field("key", &self.key)
            .field("namespace", &self.namespace)
            .field("ca_certs", &self.ca_certs)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

pub(super) fn config_error(reason: impl Into<String>) -> RootKeyError {
    RootKeyError::KmsConfig { service: SERVICE.to_owned(), reason: reason.into() }
}

/// `BAO_{name}` or `VAULT_{name}`; both set and different is an error. Values are zeroized
/// (one of them is the token).
fn env_twin(name: &str) -> Result<Option<Zeroizing<String>>, RootKeyError> {
    let read = |var: String| std::env::var(&var).ok().map(Zeroizing::new);
    match (read(format!("BAO_{name}")), read(format!("VAULT_{name}"))) {
        (Some(b), Some(v)) if *b != *v => {
            Err(config_error(format!("BAO_{name} and VAULT_{name} are both set and differ: unset one")))
        }
        (b, v) => Ok(b.or(v)),
    }
}

/// The server's base URL, checked: `https://host[:port]`, or `http://` to a loopback host.
/// Returns the base (no trailing `/`) and whether it is plain HTTP.
pub(super) fn check_address(address: &str) -> Result<(String, bool), RootKeyError> {
    let base = address.trim_end_matches('/');
    let (plain, authority) = match (base.strip_prefix("https://"), base.strip_prefix("http://")) {
        (Some(a), _) => (false, a),
        (None, Some(a)) => (true, a),
        (None, None) => return Err(config_error(format!("address '{address}' must start with https://"))),
    };
    let host = host_of(authority).ok_or_else(|| config_error(format!("address '{address}' has no valid host")))?;
    if plain && !is_loopback(host) {
        return Err(config_error(format!(
            "address '{address}' is plain http to a host that is not loopback: use https:// (plain http is accepted \
             only for 127.0.0.1, ::1 and localhost)"
        )));
    }
    Ok((base.to_owned(), plain))
}

/// The host of `host[:port]` or `[v6][:port]`, if the authority has no path, user or query.
fn host_of(authority: &str) -> Option<&str> {
    if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (h, after) = rest.split_once(']')?;
            (h, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    (!host.is_empty() && port_ok).then_some(host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The CA certificates in a PEM file, or in every regular file of a directory.
pub(super) fn read_ca_certs(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, RootKeyError> {
    let unreadable = |e: std::io::Error| config_error(format!("CA certificates {}: {e}", path.display()));
    let files = if path.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(unreadable)? {
            let p = entry.map_err(unreadable)?.path();
            if p.is_file() {
                files.push(p);
            }
        }
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut certs = Vec::new();
    for f in files {
        let pem = std::fs::read(&f).map_err(unreadable)?;
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(config_error(format!("CA certificates {}: {e}", f.display()))),
            }
        }
    }
    if certs.is_empty() {
        return Err(config_error(format!("no PEM certificate found in {}", path.display())));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(check_address("https://vault.example:8200/").unwrap(), ("https://vault.example:8200".into(), false));
        assert!(check_address("http://127.0.0.1:8200").unwrap().1);
        assert!(check_address("http://[::1]:8200").unwrap().1);
        assert!(check_address("http://localhost").unwrap().1);
        assert!(check_address("https://[::1]").is_ok());
        for bad in [
            "http://vault.example:8200",
            "http://10.0.0.1",
            "vault.example:8200",
            "ftp://x",
            "https://",
            "https://h:0",
            "https://h:99999",
            "https://user@h",
            "https://h/v1",
            "https://[::1",
        ] {
            assert!(matches!(check_address(bad), Err(RootKeyError::KmsConfig { .. })), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let c = VaultTransitConfig::new("https://v:8200", "transit", "k", SecretString::from("s.secret-token"));
        let d = format!("{c:?}");
        assert!(d.contains("transit") && !d.contains("secret-token"));
    }

    #[test]
    fn ca_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read_ca_certs(&dir.path().join("none.pem")), Err(RootKeyError::KmsConfig { .. })));
        std::fs::write(dir.path().join("empty.pem"), "nothing here").unwrap();
        assert!(matches!(read_ca_certs(dir.path()), Err(RootKeyError::KmsConfig { .. })));
    }
}
