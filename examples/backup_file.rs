//! Streams a file of any size into an encrypted backup and back, with bounded memory: the
//! writer reads the input straight into its batch buffer (`copy_from`) and the reader writes
//! verified plaintext straight from its own (`copy_to`), on all cores, while the calling
//! thread does the I/O.
//!
//! ```text
//! cargo run --release --example backup_file -- encrypt <input> <output> [<keyring dir>] [<threads>]
//! cargo run --release --example backup_file -- decrypt <input> <output> [<keyring dir>] [<threads>]
//! ```
//!
//! The keyring directory (default `./backup-file-keyring`) holds `root.key` and
//! `keyring.atrk`, created on first use. `threads` 0 (default) means all cores. Used to
//! measure throughput and peak memory (`/usr/bin/time -v`) in `docs/performance.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use atrest::{BackupContext, BackupOptions, BackupReader, BackupWriter, Keyring, LocalRootKey};

fn keyring(dir: &Path) -> Result<Keyring, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let (root, file) = (dir.join("root.key"), dir.join("keyring.atrk"));
    Ok(if file.exists() {
        Keyring::open(&file, LocalRootKey::from_file(&root)?)?
    } else {
        Keyring::create(&file, LocalRootKey::generate_file(&root)?)?
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, input, output, rest @ ..] = args.as_slice() else {
        eprintln!("usage: backup_file encrypt|decrypt <input> <output> [<keyring dir>] [<threads>]");
        std::process::exit(2);
    };
    let dir = rest.first().map_or_else(|| PathBuf::from("backup-file-keyring"), PathBuf::from);
    let threads: usize = rest.get(1).map_or(Ok(0), |t| t.parse())?;
    let tenant = keyring(&dir)?.tenant("acme")?;
    let ctx = BackupContext::full("backup_file");
    let opts = BackupOptions::default().threads(threads);
    let started = Instant::now();
    let bytes = match mode.as_str() {
        "encrypt" => {
            let mut w = BackupWriter::new(&tenant, &ctx, opts, File::create(output)?)?;
            let n = w.copy_from(File::open(input)?)?;
            w.finish()?.sync_all()?;
            n
        }
        "decrypt" => {
            let mut r = BackupReader::with_options(&tenant, &ctx, File::open(input)?, opts)?;
            let mut out = File::create(output)?;
            match r.copy_to(&mut out) {
                Ok(n) => {
                    out.sync_all()?;
                    n
                }
                Err(e) => {
                    // Never leave the plaintext of a stream that did not verify.
                    drop(out);
                    std::fs::remove_file(output)?;
                    return Err(e.into());
                }
            }
        }
        other => return Err(format!("unknown mode {other:?}").into()),
    };
    let secs = started.elapsed().as_secs_f64();
    println!("{mode}: {bytes} bytes in {secs:.2} s ({:.0} MiB/s)", bytes as f64 / secs / f64::from(1 << 20));
    Ok(())
}
