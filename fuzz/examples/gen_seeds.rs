//! Recreates the committed seed corpora under `fuzz/seeds/<target>/` from the fixtures in
//! `fuzz/data/`, and with `--new-fixtures` first makes a new set of fixtures.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds                  # seeds only
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds -- --new-fixtures
//! ```
//!
//! Seeds are deterministic functions of the fixtures (each fixture as is, plus truncated,
//! bit-flipped and extended variants). Fixtures are not: sealing draws random nonces, so
//! `--new-fixtures` gives different bytes every time (and the fuzz targets embed the
//! fixtures, so they must be rebuilt afterwards).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::fs;
use std::path::{Path, PathBuf};

use atrest::{
    BACKUP_HEADER_LEN as H, BackupContext, BackupOptions, DestroyConfirmation, KeyState, Keyring, LocalRootKey,
    MasterVersion, RootKey, Suite, encrypt_backup,
};
use atrest_fuzz::{
    BACKUP_CHUNK_SIZE, BACKUP_PLAINTEXT, BACKUPS, GOLDEN_KEYRING, LONG_PLAINTEXT, RECORDS, TENANT, TEST_ROOT_KEY,
    TransparentRoot, VALID_KEYRINGS, authentic_keyring_file, backup_contexts, record_context,
};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn new_fixtures() {
    let data = fuzz_dir().join("data");
    let root = || LocalRootKey::new(RootKey::from_bytes(TEST_ROOT_KEY));

    let fresh = Keyring::in_memory(root()).unwrap();
    write(&data.join("keyring-fresh.atrk"), &fresh.to_bytes().unwrap());

    let k = Keyring::in_memory(root()).unwrap();
    let acme = k.tenant(TENANT).unwrap();
    let chacha = acme.clone().with_suite(atrest::RecordSuite::XChaCha20Poly1305);
    let ctx = record_context();
    let rec = |name: &str, bytes: Vec<u8>| write(&data.join("records").join(name), &bytes);

    rec("v1g0-xaes.rec", acme.seal(b"alice@example.com", &ctx).unwrap());
    rec("v1g0-xchacha.rec", chacha.seal(b"bob@example.com", &ctx).unwrap());
    let bctx = backup_contexts();
    let opts = BackupOptions::default().chunk_size(BACKUP_CHUNK_SIZE).threads(1);
    let bk = |name: &str, ctx: &BackupContext, plain: &[u8]| {
        write(&data.join("backups").join(name), &encrypt_backup(&acme, ctx, plain, opts).unwrap());
    };
    bk("v1g0-small.atbk", &bctx[0], b"hello, backup");
    k.rotate().unwrap();
    rec("v2g0-destroyed.rec", acme.seal(b"sealed under v2, destroyed", &ctx).unwrap());
    k.rotate().unwrap();
    k.rotate_tenant(TENANT).unwrap();
    rec("v3g1-disabled.rec", acme.seal(b"sealed under v3, disabled", &ctx).unwrap());
    bk("v3g1-disabled.atbk", &bctx[0], b"sealed under v3, disabled");
    k.rotate().unwrap();
    rec("v4g1-empty.rec", acme.seal(b"", &ctx).unwrap());
    rec("v4g1-long.rec", acme.seal(LONG_PLAINTEXT, &ctx).unwrap());
    bk("v4g1-two-chunks.atbk", &bctx[0], BACKUP_PLAINTEXT);
    bk("v4g1-empty-incremental.atbk", &bctx[1], b"");
    bk("v4g1-small-incremental.atbk", &bctx[1], b"incremental changes");
    k.rotate_tenant("beta").unwrap();
    k.rotate_tenant("beta").unwrap();
    k.shred_tenant("gone", atrest::ShredEvidence::Unverified).unwrap();
    k.set_state(MasterVersion::new(3), KeyState::Disabled).unwrap();
    let v2 = MasterVersion::new(2);
    k.set_state(v2, KeyState::Disabled).unwrap();
    k.destroy(v2, DestroyConfirmation::data_under_this_version_is_lost(v2).skip_grace_period()).unwrap();
    write(&data.join("keyring.atrk"), &k.to_bytes().unwrap());

    // Keyrings under the transparent root: their JSON lines seed keyring_authentic.
    let json_line = |k: &Keyring| {
        let text = String::from_utf8(k.to_bytes().unwrap()).unwrap();
        text.lines().nth(1).unwrap().to_owned()
    };
    let t = Keyring::in_memory(TransparentRoot).unwrap();
    write(&data.join("authentic-fresh.json"), json_line(&t).as_bytes());
    t.rotate().unwrap();
    t.rotate().unwrap();
    t.rotate_tenant(TENANT).unwrap();
    t.shred_tenant("gone", atrest::ShredEvidence::Unverified).unwrap();
    t.set_state(MasterVersion::new(2), KeyState::Disabled).unwrap();
    let v1 = MasterVersion::new(1);
    t.set_state(v1, KeyState::Disabled).unwrap();
    t.destroy(v1, DestroyConfirmation::data_under_this_version_is_lost(v1).skip_grace_period()).unwrap();
    write(&data.join("authentic.json"), json_line(&t).as_bytes());
    println!("new fixtures written to {}; rebuild the fuzz targets, then run again for seeds", data.display());
}

/// Each input, its truncations at `cuts`, single-bit flips at `flips`, and a one-byte
/// extension.
fn variants(out: &mut Vec<(String, Vec<u8>)>, name: &str, bytes: &[u8], cuts: &[usize], flips: &[usize]) {
    out.push((name.to_owned(), bytes.to_vec()));
    for &c in cuts {
        if c < bytes.len() {
            out.push((format!("{name}.cut{c}"), bytes[..c].to_vec()));
        }
    }
    for &i in flips {
        if i < bytes.len() {
            let mut b = bytes.to_vec();
            b[i] ^= 0x01;
            out.push((format!("{name}.flip{i}"), b));
        }
    }
    let mut b = bytes.to_vec();
    b.push(0);
    out.push((format!("{name}.ext1"), b));
}

fn write_seeds(target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = fuzz_dir().join("seeds").join(target);
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    for (name, bytes) in seeds {
        write(&dir.join(name), bytes);
    }
    println!("{:>4} seeds in {}", seeds.len(), dir.display());
}

fn record_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for r in RECORDS {
        let name = r.name.trim_end_matches(".rec");
        if r.name == "v1g0-xaes.rec" || r.name == "v4g1-long.rec" {
            let n = r.sealed.len();
            variants(&mut out, name, r.sealed, &[0, 1, 6, 30, 45, 46, n - 1], &[0, 1, 3, 5, 10, 30, n - 1]);
        } else {
            out.push((name.to_owned(), r.sealed.to_vec()));
        }
    }
    // The crate's golden records (another keyring: they reach the authentication failure).
    for e in golden_files() {
        let name = e.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".bin") && name.contains("record") {
            out.push((format!("golden-{}", e.file_name().unwrap().to_string_lossy()), fs::read(&e).unwrap()));
        }
    }
    out
}

/// The files of the crate's golden set, `tests/data/golden/`, sorted.
fn golden_files() -> Vec<PathBuf> {
    let dir = fuzz_dir().join("../tests/data/golden");
    let mut v: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn keyring_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, k) in VALID_KEYRINGS.iter().enumerate() {
        let name = format!("keyring{i}");
        let n = k.len();
        let first_nl = k.iter().position(|&b| b == b'\n').unwrap();
        let last_line = k[..n - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        let json_mid = first_nl + (last_line - first_nl) / 2;
        variants(&mut out, &name, k, &[0, 10, first_nl + 1, json_mid, last_line, n - 1], &[17, json_mid, n - 2]);
        let mut v2 = k.to_vec();
        v2[first_nl - 1] = b'2';
        out.push((format!("{name}.v2"), v2));
        // Regression: the MAC in uppercase hex was accepted (found by this target).
        let mut upper = k.to_vec();
        upper[last_line..].make_ascii_uppercase();
        upper[last_line..last_line + 4].copy_from_slice(b"mac ");
        out.push((format!("{name}.mac-upper"), upper));
    }
    out.push(("golden-keyring".to_owned(), GOLDEN_KEYRING.to_vec()));
    for e in golden_files() {
        if e.extension().is_some_and(|x| x == "atrk") && e != fuzz_dir().join("../tests/data/golden/keyring.atrk") {
            out.push((format!("golden-{}", e.file_name().unwrap().to_string_lossy()), fs::read(&e).unwrap()));
        }
    }
    out
}

fn authentic_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in ["authentic-fresh.json", "authentic.json"] {
        let json = fs::read(fuzz_dir().join("data").join(name)).unwrap();
        let file = authentic_keyring_file(std::str::from_utf8(&json).unwrap());
        Keyring::from_bytes(&file, std::sync::Arc::new(TransparentRoot)).expect("authentic fixture loads");
        let n = json.len();
        variants(&mut out, name.trim_end_matches(".json"), &json, &[n / 2, n - 1], &[20, n / 2]);
    }
    out
}

fn backup(name: &str) -> &'static [u8] {
    BACKUPS.iter().find(|b| b.name == name).unwrap().stream
}

fn backup_header_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for b in BACKUPS {
        out.push((b.name.trim_end_matches(".atbk").to_owned(), b.stream[..H].to_vec()));
    }
    let h = &backup("v1g0-small.atbk")[..H];
    variants(&mut out, "header", h, &[0, 7, 8, 9, 10, 14, 46, H - 1], &[8, 9, 11, 46, 130, H - 1]);
    for (name, size) in [("min-1", 0xffffu32), ("max", 16 << 20), ("max+1", (16 << 20) + 1), ("u32max", u32::MAX)] {
        let mut v = h.to_vec();
        v[10..14].copy_from_slice(&size.to_be_bytes());
        out.push((format!("header.chunk-size-{name}"), v));
    }
    // The crate's golden streams (another keyring): their headers.
    for e in golden_files() {
        let name = e.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".bin") && name.contains("backup") {
            let bytes = fs::read(&e).unwrap();
            out.push((format!("golden-{name}"), bytes[..bytes.len().min(H)].to_vec()));
        }
    }
    out.push(("not-a-backup".to_owned(), b"PGDMP\x01\x0e\x00 definitely not a backup stream".to_vec()));
    out
}

fn backup_read_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for b in BACKUPS {
        out.push((b.name.trim_end_matches(".atbk").to_owned(), b.stream.to_vec()));
    }
    let small = backup("v1g0-small.atbk");
    let n = small.len();
    variants(&mut out, "small", small, &[100, H, H + 1, n - 16, n - 1], &[11, 50, 100, 130, 160, H, n - 1]);
    let two = backup("v4g1-two-chunks.atbk");
    let slot = BACKUP_CHUNK_SIZE + 16;
    out.push(("two-chunks.cut-at-boundary".to_owned(), two[..H + slot].to_vec()));
    let mut flip = two.to_vec();
    flip[H + slot + 10] ^= 1;
    out.push(("two-chunks.flip-chunk1".to_owned(), flip));
    let mut dropped = two[..H].to_vec();
    dropped.extend_from_slice(&two[H + slot..]);
    out.push(("two-chunks.drop-chunk0".to_owned(), dropped));
    // The crate's small golden streams (another keyring: they fail at the key unwrap).
    for e in golden_files() {
        let name = e.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = fs::read(&e).unwrap();
        if name.ends_with(".bin") && name.contains("backup") && bytes.len() < 1024 {
            out.push((format!("golden-{name}"), bytes));
        }
    }
    let mut spliced = backup("v4g1-small-incremental.atbk")[..H].to_vec();
    spliced.extend_from_slice(&small[H..]);
    out.push(("spliced-header".to_owned(), spliced));
    out
}

/// An op of the backup_seek target: code (kind | buffer-length index << 3), u64 argument.
fn op(kind: u8, len_index: u8, arg: u64) -> Vec<u8> {
    let mut v = vec![kind | (len_index << 3)];
    v.extend_from_slice(&arg.to_be_bytes());
    v
}

fn backup_seek_seeds() -> Vec<(String, Vec<u8>)> {
    let with_ops = |sequential: bool, ops: &[Vec<u8>], stream: &[u8]| {
        let mut v = vec![ops.len() as u8 | if sequential { 0x80 } else { 0 }];
        for o in ops {
            v.extend_from_slice(o);
        }
        v.extend_from_slice(stream);
        v
    };
    let (start, end, cur, read_at, read) = (0, 1, 2, 3, 4);
    let boundary = BACKUP_CHUNK_SIZE as u64;
    let ops = vec![
        op(start, 0, boundary - 50),
        op(read, 1, 0),         // 74 bytes across the chunk boundary
        op(read_at, 31, 0),     // everything at once
        op(read_at, 2, 69_990), // past the end
        op(end, 0, (-10i64) as u64),
        op(read, 5, 0),
        op(cur, 0, (-70_000i64) as u64), // before the start: refused
        op(start, 0, u64::MAX),          // huge offset
        op(read, 3, 0),
        op(read_at, 3, (1u64 << 63) | 12345), // huge read_at
    ];
    let two = backup("v4g1-two-chunks.atbk");
    let small = backup("v1g0-small.atbk");
    let mut bad0 = two.to_vec();
    bad0[H + 20] ^= 1; // chunk 0 modified: random access opens, reading chunk 0 fails
    let seq = vec![op(read, 2, 0), op(start, 0, 3), op(read, 1, 0), op(read_at, 4, 60_000)];
    let twice = vec![op(start, 0, 0), op(start, 0, 0), op(read, 1, 0), op(read_at, 1, 0)];
    let mut extended = small.to_vec();
    extended.extend_from_slice(&[0u8; 50]);
    vec![
        ("two-chunks".to_owned(), with_ops(false, &ops, two)),
        ("two-chunks.sequential-first".to_owned(), with_ops(true, &seq, two)),
        ("two-chunks.bad-chunk0".to_owned(), with_ops(false, &ops, &bad0)),
        ("small".to_owned(), with_ops(false, &ops[..6], small)),
        ("small.sequential-first".to_owned(), with_ops(true, &seq, small)),
        ("small.truncated".to_owned(), with_ops(true, &seq, &small[..small.len() - 1])),
        ("empty".to_owned(), with_ops(false, &ops[..4], backup("v4g1-empty-incremental.atbk"))),
        // Regression (found by this target): a second seek after a failed switch to random
        // access succeeded, and len() reported the unauthenticated length.
        ("small.extended.seek-twice".to_owned(), with_ops(true, &twice, &extended)),
    ]
}

fn main() {
    if std::env::args().any(|a| a == "--new-fixtures") {
        new_fixtures();
        return;
    }
    // The fixtures are embedded in the library: check they are consistent before use.
    atrest_fuzz::check_record_fixtures(&atrest_fuzz::FIXTURE_KEYRING);
    write_seeds("record_open", &record_seeds());
    write_seeds("keyring_load", &keyring_seeds());
    write_seeds("keyring_authentic", &authentic_seeds());
    write_seeds("backup_header", &backup_header_seeds());
    write_seeds("backup_read", &backup_read_seeds());
    write_seeds("backup_seek", &backup_seek_seeds());
}
