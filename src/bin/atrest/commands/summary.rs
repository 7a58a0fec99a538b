//! One summary per successful backup command, for cron logs: a text line or `--json`.

use std::path::Path;

use atrest::{BackupContext, inspect_backup};
use serde_json::{Value, json};

/// The public facts of a backup file's header (stream id, format, key version), if `path`
/// is a regular file that holds one.
fn header_facts(path: Option<&Path>) -> Value {
    let info =
        path.filter(|p| p.is_file()).and_then(|p| std::fs::File::open(p).ok()).and_then(|f| inspect_backup(f).ok());
    match info {
        Some(i) => json!({
            "stream_id": i.stream_id,
            "format_version": i.format_version,
            "key_version": format!("{}", i.key_version),
        }),
        None => json!({}),
    }
}

/// The summary of `what` (encrypt, verify) of `file`: `n` plaintext bytes of `ctx`.
pub fn backup(what: &str, file: &str, path: Option<&Path>, tenant: &str, ctx: &BackupContext, n: u64) -> Value {
    let mut v = json!({
        "command": what,
        "file": file,
        "tenant": tenant,
        "snapshot_id": ctx.snapshot_id(),
        "parent": ctx.parent(),
        "kind": ctx.kind(),
        "sequence": ctx.sequence(),
        "plaintext_bytes": n,
    });
    if let (Value::Object(m), Value::Object(h)) = (&mut v, header_facts(path)) {
        m.extend(h);
    }
    v
}

/// The summary line: `atrest: <command> <file>: key value ...` in the object's order.
pub fn text(v: &Value) -> String {
    let Value::Object(m) = v else { return v.to_string() };
    let field = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let mut line = format!("atrest: {} {}:", field("command"), field("file"));
    for (k, val) in m.iter().filter(|(k, val)| !["command", "file"].contains(&k.as_str()) && !val.is_null()) {
        match val {
            Value::String(s) => line.push_str(&format!(" {k}={s}")),
            other => line.push_str(&format!(" {k}={other}")),
        }
    }
    line
}

/// Prints the summary: `--json` or the text line, on stdout, or on stderr when stdout
/// carries the stream.
pub fn emit(v: &Value, json: bool, stdout_is_data: bool) {
    let s = if json { v.to_string() } else { text(v) };
    if stdout_is_data {
        eprintln!("{s}");
    } else {
        println!("{s}");
    }
}
