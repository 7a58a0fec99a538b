//! `atrest backup ...`.

use std::io;
use std::path::Path;

use atrest::{
    BackupContext, BackupError, BackupOptions, BackupReader, BackupWriter, Tenant, inspect_backup, rewrap_backup_header,
};

use super::summary;
use crate::args::{BackupCommand, BackupContextArgs, KeyArgs, Kind};
use crate::failure::{Doing, Failure};
use crate::keys;
use crate::producer::Producer;
use crate::stream::{self, Counting, Input, Output, Progress};

/// `atrest backup ...`.
pub fn run(keys_args: &KeyArgs, cmd: &BackupCommand) -> Result<(), Failure> {
    match cmd {
        BackupCommand::Encrypt {
            context,
            chunk_size,
            threads,
            io,
            allow_empty,
            producer,
            json,
            recipient,
            recipient_file,
            repo,
            created,
        } => {
            let ctx = context_of(context)?.ok_or_else(|| Failure::usage("encrypt needs --snapshot"))?;
            // With a recipient, no root key and no keyring is opened (or even looked for).
            let to = super::recipient::load(recipient.as_deref(), recipient_file.as_deref(), &context.tenant)?;
            let mut opts = BackupOptions::default();
            if let Some(n) = chunk_size {
                opts = opts.chunk_size(*n);
            }
            if let Some(n) = threads {
                opts = opts.threads(usize::from(*n));
            }
            if let Some(t) = created {
                opts = opts.created_at(*t);
            }
            // `--repo`, or ATREST_REPO unless an output file is named.
            let env_repo = || std::env::var("ATREST_REPO").ok().filter(|r| !r.is_empty() && io.output.is_none());
            if let Some(location) = repo.clone().or_else(env_repo).as_deref() {
                let (allow_empty, json) = (*allow_empty, *json);
                if to.is_some() {
                    return Err(Failure::usage(
                        "--repo with --recipient is not supported: a repository's catalog is authenticated under the tenant's key, which an encrypt-only host does not hold; write the stream with -o and store it from a host with the keyring",
                    ));
                }
                let tenant = open_tenant(keys_args, &context.tenant)?;
                let a = super::repo::EncryptArgs {
                    location,
                    sequence: context.sequence,
                    opts,
                    io,
                    producer,
                    allow_empty,
                    json,
                };
                return super::repo::encrypt(&tenant, &ctx, &a);
            }
            let tenant = match &to {
                Some(_) => None,
                None => Some(open_tenant(keys_args, &context.tenant)?),
            };
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
            let w = match (&to, &tenant) {
                (Some(r), _) => BackupWriter::to_recipient(r, &ctx, opts, output),
                (None, Some(t)) => BackupWriter::new(t, &ctx, opts, output),
                (None, None) => return Err(Failure::general("no recipient and no tenant")),
            };
            let mut w = w.doing(|| "starting the backup stream".into())?;
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
            let to_stdout = io.output.as_deref().is_none_or(|p| p == Path::new("-"));
            output.commit()?;
            let v = summary::backup("encrypt", &out_name, io.output.as_deref(), &context.tenant, &ctx, n);
            summary::emit(&v, *json, to_stdout);
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
        BackupCommand::Verify { context, input: path, json } => {
            let (tenant, ctx) = open(keys_args, context)?;
            let input = Input::open(path.as_deref())?;
            let name = input.name.clone();
            let (n, ctx) = BackupReader::open(&tenant, ctx.as_ref(), input)
                .and_then(|mut r| Ok((r.copy_to(&mut std::io::sink())?, r.context().clone())))
                .doing(|| format!("verifying {name}"))?;
            let mut v = summary::backup("verify", &name, path.as_deref(), tenant.id().as_str(), &ctx, n);
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("authentic".into(), true.into());
            }
            if *json {
                summary::emit(&v, true, false);
            } else {
                println!("{name}: authentic, {n} bytes of plaintext ({})", stream::human_bytes(n));
            }
            Ok(())
        }
        BackupCommand::Inspect { file, json } => inspect(file, *json),
        BackupCommand::Repo(cmd) => super::repo::run(keys_args, cmd),
        BackupCommand::Rewrap { file, tenant, verify, json } => rewrap(keys_args, file, tenant, *verify, *json),
    }
}

/// `atrest backup rewrap`: says whether anything changed; `--verify` authenticates the whole
/// stream afterwards.
fn rewrap(keys_args: &KeyArgs, file: &Path, tenant: &str, verify: bool, json: bool) -> Result<(), Failure> {
    let k = keys::keyring(keys_args)?;
    let t = k.tenant(tenant).doing(|| format!("tenant '{tenant}'"))?;
    let name = file.display().to_string();
    let before = inspect_backup(Input::open(Some(file))?).doing(|| format!("reading the header of {name}"))?;
    let v = rewrap_backup_header(&t, file).doing(|| format!("re-wrapping {name}"))?;
    let changed = v != before.key_version;
    let mut plaintext_bytes = None;
    if verify {
        let n = BackupReader::open(&t, None, Input::open(Some(file))?)
            .and_then(|mut r| r.copy_to(&mut std::io::sink()))
            .doing(|| format!("verifying {name} (a version 1 stream needs `backup verify` with its context)"))?;
        plaintext_bytes = Some(n);
    }
    if json {
        let out = serde_json::json!({
            "command": "rewrap", "file": name, "from": before.key_version.to_string(), "to": v.to_string(),
            "changed": changed, "verified": verify, "plaintext_bytes": plaintext_bytes,
        });
        println!("{out}");
    } else if changed {
        println!("{name}: data key re-wrapped from {} to {v}", before.key_version);
    } else {
        println!("{name}: already under {v}, nothing changed");
    }
    if let Some(n) = plaintext_bytes.filter(|_| !json) {
        println!("{name}: authentic, {n} bytes of plaintext");
    }
    Ok(())
}

/// The tenant and the context the flags name (`None` without `--snapshot`).
fn open(keys_args: &KeyArgs, c: &BackupContextArgs) -> Result<(Tenant, Option<BackupContext>), Failure> {
    let ctx = context_of(c)?;
    Ok((open_tenant(keys_args, &c.tenant)?, ctx))
}

/// The tenant `tenant` of the keyring the flags name.
fn open_tenant(keys_args: &KeyArgs, tenant: &str) -> Result<Tenant, Failure> {
    let k = keys::keyring(keys_args)?;
    k.tenant(tenant).doing(|| format!("tenant '{tenant}'"))
}

/// The context the flags name (`None` without `--snapshot`).
fn context_of(c: &BackupContextArgs) -> Result<Option<BackupContext>, Failure> {
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
    Ok(ctx)
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
