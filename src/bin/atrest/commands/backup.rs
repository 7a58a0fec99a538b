//! `atrest backup ...`.

use std::path::Path;

use atrest::{
    BackupContext, BackupError, BackupOptions, BackupReader, BackupWriter, Tenant, inspect_backup,
    rewrap_backup_header, verify_backup,
};

use crate::args::{BackupCommand, BackupContextArgs, KeyArgs};
use crate::failure::{Doing, Failure};
use crate::keys;
use crate::stream::{self, Counting, Input, Output, Progress};

/// `atrest backup ...`.
pub fn run(keys_args: &KeyArgs, cmd: &BackupCommand) -> Result<(), Failure> {
    match cmd {
        BackupCommand::Encrypt { context, chunk_size, threads, io } => {
            let (tenant, ctx) = open(keys_args, context)?;
            let mut opts = BackupOptions::default();
            if let Some(n) = chunk_size {
                opts = opts.chunk_size(*n);
            }
            if let Some(n) = threads {
                opts = opts.threads(usize::from(*n));
            }
            let input = Input::open(io.input.as_deref())?;
            let output = Output::create(io.output.as_deref())?;
            if output.is_terminal() {
                return Err(Failure::usage(
                    "refusing to write an encrypted stream to a terminal: redirect stdout or use -o FILE",
                ));
            }
            let (in_name, out_name) = (input.name.clone(), output.name());
            let mut w = BackupWriter::new(&tenant, &ctx, opts, output).doing(|| "starting the backup stream".into())?;
            let total = input.len;
            let mut src = Counting::new(input, Progress::new("encrypting", total));
            let copied = w.copy_from(&mut src);
            let read_failed = src.failed();
            drop(src.finish());
            match copied {
                Ok(_) => {}
                Err(BackupError::Io(e)) if read_failed => return Err(e).doing(|| format!("reading {in_name}")),
                Err(e) => return Err(e).doing(|| format!("encrypting to {out_name}")),
            }
            // `output` (in `w`) is dropped on any error: a temporary output file is deleted.
            let output = w.finish().doing(|| format!("finishing the backup stream to {out_name}"))?;
            output.commit()
        }
        BackupCommand::Decrypt { context, io } => {
            let (tenant, ctx) = open(keys_args, context)?;
            let input = Input::open(io.input.as_deref())?;
            let in_name = input.name.clone();
            let total = input.len;
            let output = Output::create(io.output.as_deref())?;
            let mut r = BackupReader::new(&tenant, &ctx, input).doing(|| format!("decrypting {in_name}"))?;
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
            let n = verify_backup(&tenant, &ctx, input).doing(|| format!("verifying {name}"))?;
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

fn open(keys_args: &KeyArgs, c: &BackupContextArgs) -> Result<(Tenant, BackupContext), Failure> {
    let k = keys::keyring(keys_args)?;
    let t = k.tenant(&c.tenant).doing(|| format!("tenant '{}'", c.tenant))?;
    let ctx = BackupContext::new(&c.snapshot, c.parent.as_deref(), c.kind(), c.sequence);
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
            other => println!("{indent}{k:<width$}  {other}"),
        }
    }
}
