//! `atrest backup ...`.

use std::io;
use std::path::Path;

use atrest::{
    BackupContext, BackupError, BackupOptions, BackupReader, BackupWriter, Tenant, inspect_backup, rewrap_backup_header,
};

use crate::args::{BackupCommand, BackupContextArgs, KeyArgs, Kind};
use crate::failure::{Doing, Failure};
use crate::keys;
use crate::producer::Producer;
use crate::stream::{self, Counting, Input, Output, Progress};

/// `atrest backup ...`.
pub fn run(keys_args: &KeyArgs, cmd: &BackupCommand) -> Result<(), Failure> {
    match cmd {
        BackupCommand::Encrypt { context, chunk_size, threads, io, allow_empty, producer } => {
            let (tenant, ctx) = open(keys_args, context)?;
            let ctx = ctx.ok_or_else(|| Failure::usage("encrypt needs --snapshot"))?;
            let mut opts = BackupOptions::default();
            if let Some(n) = chunk_size {
                opts = opts.chunk_size(*n);
            }
            if let Some(n) = threads {
                opts = opts.threads(usize::from(*n));
            }
            let output = Output::create(io.output.as_deref(), io.force)?;
            if output.is_terminal() {
                return Err(Failure::usage(
                    "refusing to write an encrypted stream to a terminal: redirect stdout or use -o FILE",
                ));
            }
            let mut child = Producer::spawn(producer)?;
            let input = match child.as_mut() {
                Some(p) => p.input()?,
                None => Input::open(io.input.as_deref())?,
            };
            let (in_name, out_name) = (input.name.clone(), output.name());
            let mut w = BackupWriter::new(&tenant, &ctx, opts, output).doing(|| "starting the backup stream".into())?;
            let total = input.len;
            let mut src = Counting::new(input, Progress::new("encrypting", total));
            let copied = w.copy_from(&mut src);
            let read_failed = src.failed();
            drop(src.finish());
            // A producer that failed makes the backup fail, whatever was read: the stream is
            // never finished (no final chunk), and a temporary output file is deleted.
            if let Some(p) = child {
                p.wait()?;
            }
            let n = match copied {
                Ok(n) => n,
                Err(BackupError::Io(e)) if read_failed => return Err(e).doing(|| format!("reading {in_name}")),
                Err(e) => return Err(e).doing(|| format!("encrypting to {out_name}")),
            };
            if n == 0 && !*allow_empty {
                return Err(Failure::general(format!(
                    "{in_name} was empty: refusing to write an empty backup (a failed dump is often empty; pass --allow-empty if it is meant to be)"
                )));
            }
            // `output` (in `w`) is dropped on any error: a temporary output file is deleted.
            let output = w.finish().doing(|| format!("finishing the backup stream to {out_name}"))?;
            output.commit()?;
            eprintln!(
                "atrest: backup written to {out_name}: tenant {}, snapshot {}, {n} bytes of plaintext",
                tenant.id(),
                ctx.snapshot_id()
            );
            Ok(())
        }
        BackupCommand::Decrypt { context, io, stream_unverified, no_spool } => {
            let (tenant, ctx) = open(keys_args, context)?;
            let mut input = Input::open(io.input.as_deref())?;
            let in_name = input.name.clone();
            let output = Output::create(io.output.as_deref(), io.force)?;
            if !output.is_file() && !*stream_unverified {
                // Authenticate the whole stream before any plaintext reaches a pipe or FIFO.
                input = input.rewindable(!*no_spool)?;
                let total = input.len;
                let mut src = Counting::new(&mut input, Progress::new("verifying", total));
                let verified = BackupReader::open(&tenant, ctx.as_ref(), &mut src)
                    .and_then(|mut r| r.copy_to(io::sink()))
                    .doing(|| format!("verifying {in_name} before decrypting"));
                src.finish();
                verified?;
                input.rewind()?;
            }
            let total = input.len;
            let mut r = BackupReader::open(&tenant, ctx.as_ref(), input).doing(|| format!("decrypting {in_name}"))?;
            let out_name = output.name();
            let mut dst = Counting::new(output, Progress::new("decrypting", total));
            let copied = r.copy_to(&mut dst);
            let write_failed = dst.failed();
            let output = dst.finish();
            match copied {
                Ok(_) => output.commit(),
                // `output` is dropped on return: a temporary output file is deleted.
                Err(BackupError::Io(e)) if write_failed => Err(e).doing(|| format!("writing {out_name}")),
                Err(e) => Err(e).doing(|| format!("decrypting {in_name}")),
            }
        }
        BackupCommand::Verify { context, input } => {
            let (tenant, ctx) = open(keys_args, context)?;
            let input = Input::open(input.as_deref())?;
            let name = input.name.clone();
            let n = BackupReader::open(&tenant, ctx.as_ref(), input)
                .and_then(|mut r| r.copy_to(&mut std::io::sink()))
                .doing(|| format!("verifying {name}"))?;
            println!("{name}: authentic, {n} bytes of plaintext ({})", stream::human_bytes(n));
            Ok(())
        }
        BackupCommand::Inspect { file, json } => inspect(file, *json),
        BackupCommand::Rewrap { file, tenant } => {
            let k = keys::keyring(keys_args)?;
            let t = k.tenant(tenant).doing(|| format!("tenant '{tenant}'"))?;
            let v = rewrap_backup_header(&t, file).doing(|| format!("re-wrapping {}", file.display()))?;
            println!("{}: data key now wrapped under {v}", file.display());
            Ok(())
        }
    }
}

/// The tenant and the context the flags name (`None` without `--snapshot`).
fn open(keys_args: &KeyArgs, c: &BackupContextArgs) -> Result<(Tenant, Option<BackupContext>), Failure> {
    if matches!(c.kind, Some(Kind::Full)) && c.parent.is_some() {
        return Err(Failure::usage("--kind full takes no --parent (a full backup has no parent)"));
    }
    if matches!(c.kind, Some(Kind::Incremental)) && c.parent.is_none() {
        return Err(Failure::usage("--kind incremental needs --parent"));
    }
    let ctx = match &c.snapshot {
        Some(s) => Some(BackupContext::new(s, c.parent.as_deref(), c.kind(), c.sequence.unwrap_or(0))),
        None if c.parent.is_some() || c.kind.is_some() || c.sequence.is_some() => {
            return Err(Failure::usage("--parent, --kind and --sequence need --snapshot"));
        }
        None => None,
    };
    let k = keys::keyring(keys_args)?;
    let t = k.tenant(&c.tenant).doing(|| format!("tenant '{}'", c.tenant))?;
    Ok((t, ctx))
}

fn inspect(file: &Path, json: bool) -> Result<(), Failure> {
    let input = Input::open(Some(file))?;
    let name = input.name.clone();
    let info = inspect_backup(input).doing(|| format!("inspecting {name}"))?;
    let value = serde_json::to_value(&info).doing(|| "formatting the header".into())?;
    if json {
        let text = serde_json::to_string_pretty(&value).doing(|| "formatting the header".into())?;
        println!("{text}");
        return Ok(());
    }
    println!("{name}: atrest backup stream (header not authenticated: inspect needs no key)");
    print_fields("", &value);
    Ok(())
}

/// Prints a JSON object as indented `key: value` lines.
fn print_fields(indent: &str, v: &serde_json::Value) {
    let serde_json::Value::Object(map) = v else {
        println!("{indent}{v}");
        return;
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in map {
        match v {
            serde_json::Value::Object(o)
                if o.len() == 2 && o.contains_key("master") && o.contains_key("generation") =>
            {
                // A key version, shown as elsewhere: v2/g0.
                let (m, g) = (
                    o.get("master").unwrap_or(&serde_json::Value::Null),
                    o.get("generation").unwrap_or(&serde_json::Value::Null),
                );
                println!("{indent}{k:<width$}  v{m}/g{g}");
            }
            serde_json::Value::Object(_) => {
                println!("{indent}{k}:");
                print_fields(&format!("{indent}  "), v);
            }
            serde_json::Value::String(s) => println!("{indent}{k:<width$}  {s}"),
            serde_json::Value::Null => {}
            other => println!("{indent}{k:<width$}  {other}"),
        }
    }
}
