//! The audit log of the command line: every `atrest::audit` event the library emits (keyring
//! loads and changes, rotations, state changes, shreds, refusals, rewraps), one JSON object
//! per line, to a file (appended, created 0600), standard error (`-`), or the system log
//! (`syslog`: the local `/dev/log` socket, which journald also serves).
//!
//! Events carry ids, versions, revisions and counts, never key bytes, plaintext or context
//! values (the library's events are written that way, and this sink adds only the time, the
//! process id and the command).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::failure::{Doing, Failure};

/// Where audit lines go.
enum Sink {
    File(File),
    Stderr,
    #[cfg(unix)]
    Syslog(std::os::unix::net::UnixDatagram),
}

/// A `tracing` subscriber that writes the audit events as JSON lines.
pub struct AuditLog {
    sink: Mutex<Sink>,
    command: String,
}

impl AuditLog {
    /// Opens `dest`: a file path, `-` for standard error, or `syslog`.
    pub fn open(dest: &Path, command: String) -> Result<Self, Failure> {
        let sink = match dest.to_str() {
            Some("-") => Sink::Stderr,
            #[cfg(unix)]
            Some("syslog") => {
                let s = std::os::unix::net::UnixDatagram::unbound().doing(|| "opening the system log".into())?;
                s.connect("/dev/log").doing(|| "connecting to the system log (/dev/log)".into())?;
                Sink::Syslog(s)
            }
            _ => {
                let mut opts = OpenOptions::new();
                opts.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                Sink::File(opts.open(dest).doing(|| format!("opening the audit log {}", dest.display()))?)
            }
        };
        Ok(Self { sink: Mutex::new(sink), command })
    }

    /// Installs the log for this process.
    pub fn install(self) -> Result<(), Failure> {
        tracing::subscriber::set_global_default(self).map_err(|_| Failure::usage("an audit log is already installed"))
    }

    fn write(&self, mut line: String) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let result = match &mut *sink {
            Sink::File(f) => {
                line.push('\n');
                // One write per line: appends of whole lines do not interleave.
                f.write_all(line.as_bytes())
            }
            Sink::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
            #[cfg(unix)]
            // Facility auth (4), severity notice (5): <37>.
            Sink::Syslog(s) => s.send(format!("<37>atrest[{}]: {line}", std::process::id()).as_bytes()).map(|_| ()),
        };
        if let Err(e) = result {
            eprintln!("atrest: warning: could not write the audit log: {e}");
        }
    }
}

/// Collects an event's fields into JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
}

impl Subscriber for AuditLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "atrest::audit"
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut map = Map::new();
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        map.insert("ts".into(), Value::from((ts * 1000.0).round() / 1000.0));
        map.insert("level".into(), Value::from(event.metadata().level().as_str()));
        map.insert("pid".into(), Value::from(std::process::id()));
        map.insert("command".into(), Value::from(self.command.clone()));
        event.record(&mut Fields(&mut map));
        self.write(Value::Object(map).to_string());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// The subcommand names of this invocation, e.g. `keyring rotate` (no option values).
pub fn command_words(matches: &clap::ArgMatches) -> String {
    let mut words = Vec::new();
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        words.push(name.to_owned());
        m = sub;
    }
    words.join(" ")
}

/// The audit destination, if any, from `--audit-log` / `ATREST_AUDIT_LOG`.
pub fn destination(flag: Option<&PathBuf>) -> Option<PathBuf> {
    flag.cloned().filter(|p| !p.as_os_str().is_empty())
}
