//! What a `postgres://` keyring location names: the connection (libpq URL syntax, with the
//! standard `PG*` environment variables filling what the URL leaves out), the table and the
//! row.
//!
//! `table` (default `atrest_keyrings`) and `keyring` (default `default`) are atrest's own
//! query parameters and are removed before the URL reaches the driver. The table name is an
//! SQL identifier written into statements, so it is restricted to `[a-z_][a-z0-9_]{0,47}`;
//! the keyring name is only ever a bound parameter.

use std::time::Duration;

use super::super::redact_password;
use crate::error::KeyringError;

/// The table used when the location names none.
pub(crate) const DEFAULT_TABLE: &str = "atrest_keyrings";
/// The row used when the location names none.
pub(crate) const DEFAULT_KEYRING: &str = "default";
/// Connection timeout when neither the URL nor `PGCONNECT_TIMEOUT` sets one.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sent data may stay unacknowledged before the connection is dropped (a host
/// that vanished without closing its connections): keeps a handle from hanging.
const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed PostgreSQL keyring location.
pub(crate) struct Target {
    pub(crate) config: postgres::Config,
    /// The location for messages: the URL as given, password replaced.
    pub(crate) location: String,
    pub(crate) table: String,
    pub(crate) keyring: String,
}

impl Target {
    /// Parses `url`, reading missing connection settings from the process environment.
    pub(crate) fn parse(url: &str) -> Result<Self, KeyringError> {
        Self::parse_with_env(url, |k| std::env::var(k).ok())
    }

    pub(crate) fn parse_with_env(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, KeyringError> {
        let location = redact_password(url);
        let fail = |reason: String| KeyringError::Store { location: location.clone(), reason };
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut table = None;
        let mut keyring = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match k {
                "table" => &mut table,
                "keyring" => &mut keyring,
                _ => {
                    rest.push(pair);
                    continue;
                }
            };
            if slot.replace(percent_decode(v).ok_or_else(|| fail(format!("bad percent-encoding in `{k}`")))?).is_some()
            {
                return Err(fail(format!("`{k}` is given twice")));
            }
        }
        let table = table.unwrap_or_else(|| DEFAULT_TABLE.to_owned());
        if !valid_table(&table) {
            return Err(fail(format!(
                "table name {table:?} is not accepted: use 1-48 characters of a-z, 0-9 and _, not starting with a digit"
            )));
        }
        let keyring = keyring.unwrap_or_else(|| DEFAULT_KEYRING.to_owned());
        if keyring.is_empty() || keyring.len() > 200 || keyring.chars().any(char::is_control) {
            return Err(fail("the keyring name must be 1-200 characters without control characters".to_owned()));
        }
        let base = with_default_port(base, env("PGPORT").filter(|p| !p.is_empty()).as_deref());
        let driver_url = if rest.is_empty() { base } else { format!("{base}?{}", rest.join("&")) };
        let mut config: postgres::Config =
            driver_url.parse().map_err(|e: postgres::Error| fail(format!("invalid connection URL: {e}")))?;
        apply_env(&mut config, &driver_url, &env).map_err(fail)?;
        Ok(Self { config, location, table, keyring })
    }

    /// The table of heartbeats of live handles.
    pub(crate) fn handles_table(&self) -> String {
        format!("{}_handles", self.table)
    }
}

/// `url` (without query) with `port` added to every host that has none: the driver would
/// otherwise default those to 5432 before `PGPORT` could apply.
fn with_default_port(url: &str, port: Option<&str>) -> String {
    let (Some(port), Some((scheme, rest))) = (port, url.split_once("://")) else { return url.to_owned() };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let has_port = |h: &str| match h.rsplit_once(']') {
        Some((_, after)) => after.starts_with(':'),
        None => h.contains(':'),
    };
    if hosts.is_empty() || hosts.split(',').any(has_port) {
        return url.to_owned();
    }
    let hosts: Vec<String> = hosts.split(',').map(|h| format!("{h}:{port}")).collect();
    format!("{scheme}://{userinfo}{}{path}", hosts.join(","))
}

fn valid_table(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && t.len() <= 48
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = char::from(bytes.next()?).to_digit(16)?;
            let lo = char::from(bytes.next()?).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Fills what the URL leaves unset from libpq's environment variables (`PGHOST`, `PGPORT`,
/// `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGCONNECT_TIMEOUT`, `PGAPPNAME`, `PGSSLMODE`), then
/// atrest's own defaults (user = `USER`, host = `localhost`, 5 s connect timeout).
fn apply_env(c: &mut postgres::Config, url: &str, env: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
    if c.get_hosts().is_empty() {
        let hosts = env("PGHOST").filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".to_owned());
        for h in hosts.split(',') {
            c.host(h);
        }
    }
    if c.get_ports().is_empty()
        && let Some(p) = env("PGPORT").filter(|p| !p.is_empty())
    {
        for p in p.split(',') {
            c.port(p.trim().parse().map_err(|_| format!("PGPORT {p:?} is not a port"))?);
        }
    }
    if c.get_user().is_none()
        && let Some(u) = env("PGUSER").or_else(|| env("USER")).filter(|u| !u.is_empty())
    {
        c.user(&u);
    }
    if c.get_password().is_none()
        && let Some(p) = env("PGPASSWORD")
    {
        c.password(p);
    }
    if c.get_dbname().is_none()
        && let Some(d) = env("PGDATABASE").filter(|d| !d.is_empty())
    {
        c.dbname(&d);
    }
    if c.get_connect_timeout().is_none() {
        let t = match env("PGCONNECT_TIMEOUT") {
            Some(t) => Duration::from_secs(
                t.trim().parse().map_err(|_| format!("PGCONNECT_TIMEOUT {t:?} is not a number of seconds"))?,
            ),
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        c.connect_timeout(t.max(Duration::from_secs(1)));
    }
    if c.get_tcp_user_timeout().is_none() {
        c.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
    }
    if c.get_application_name().is_none() {
        c.application_name(&env("PGAPPNAME").unwrap_or_else(|| "atrest".to_owned()));
    }
    let url_sets_sslmode = url.split_once('?').is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("sslmode=")));
    if !url_sets_sslmode && let Some(mode) = env("PGSSLMODE") {
        c.ssl_mode(match mode.as_str() {
            "disable" => postgres::config::SslMode::Disable,
            "allow" | "prefer" => postgres::config::SslMode::Prefer,
            "require" => postgres::config::SslMode::Require,
            other => return Err(format!("PGSSLMODE={other} is not supported (this build has no TLS for PostgreSQL)")),
        });
    }
    c.keepalives(true).keepalives_idle(Duration::from_secs(10));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres::config::Host;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn own_parameters_are_stripped_and_validated() {
        let t = Target::parse_with_env("postgres://app:pw@db:6543/crm?table=kr&sslmode=disable&keyring=eu%2D1", no_env)
            .unwrap();
        assert_eq!((t.table.as_str(), t.keyring.as_str()), ("kr", "eu-1"));
        assert_eq!(t.handles_table(), "kr_handles");
        assert_eq!(t.config.get_hosts(), &[Host::Tcp("db".into())]);
        assert_eq!(t.config.get_ports(), &[6543]);
        assert_eq!(t.config.get_dbname(), Some("crm"));
        assert_eq!(t.location, "postgres://app:***@db:6543/crm?table=kr&sslmode=disable&keyring=eu%2D1");
        let d = Target::parse_with_env("postgresql://u@h/db", no_env).unwrap();
        assert_eq!((d.table.as_str(), d.keyring.as_str()), (DEFAULT_TABLE, DEFAULT_KEYRING));
        assert_eq!(d.config.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
        for bad in [
            "postgres://h/db?table=Robert%22;drop",
            "postgres://h/db?table=1abc",
            "postgres://h/db?table=a&table=b",
            "postgres://h/db?keyring=",
            "postgres://h/db?keyring=%zz",
            "postgres://h/db?bogus=1",
        ] {
            let e = Target::parse_with_env(bad, no_env).err().unwrap();
            assert!(matches!(e, KeyringError::Store { .. }), "{bad}");
        }
        let e = Target::parse_with_env("postgres://u:hunter2@h/db?table=X", no_env).err().unwrap();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn libpq_environment_fills_the_gaps_only() {
        let env = |k: &str| {
            Some(
                match k {
                    "PGHOST" => "envhost",
                    "PGPORT" => "7777",
                    "PGUSER" => "envuser",
                    "PGPASSWORD" => "envpw",
                    "PGDATABASE" => "envdb",
                    "PGCONNECT_TIMEOUT" => "3",
                    "PGSSLMODE" => "disable",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        let t = Target::parse_with_env("postgres://", env).unwrap();
        assert_eq!(t.config.get_hosts(), &[Host::Tcp("envhost".into())]);
        assert_eq!(t.config.get_ports(), &[7777]);
        assert_eq!(t.config.get_user(), Some("envuser"));
        assert_eq!(t.config.get_password(), Some(&b"envpw"[..]));
        assert_eq!(t.config.get_dbname(), Some("envdb"));
        assert_eq!(t.config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(t.config.get_ssl_mode(), postgres::config::SslMode::Disable);
        let u = Target::parse_with_env("postgres://me@there:1/mine?sslmode=require", env).unwrap();
        assert_eq!(u.config.get_hosts(), &[Host::Tcp("there".into())]);
        assert_eq!((u.config.get_ports(), u.config.get_user()), (&[1u16][..], Some("me")));
        assert_eq!(u.config.get_dbname(), Some("mine"));
        assert_eq!(u.config.get_ssl_mode(), postgres::config::SslMode::Require);
        let bad_port = |k: &str| (k == "PGPORT").then(|| "x".to_owned());
        assert!(Target::parse_with_env("postgres://h/db", bad_port).is_err());
        let port_only = |k: &str| (k == "PGPORT").then(|| "7777".to_owned());
        let p = Target::parse_with_env("postgres://u:p@h1,[::1]/db", port_only).unwrap();
        assert_eq!(p.config.get_ports(), &[7777, 7777]);
        let p = Target::parse_with_env("postgres://u@h1:1/db", port_only).unwrap();
        assert_eq!(p.config.get_ports(), &[1]);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%c3%a9").as_deref(), Some("a bé"));
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
