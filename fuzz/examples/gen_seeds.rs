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

use atrest::{DestroyConfirmation, KeyState, Keyring, LocalRootKey, MasterVersion, RootKey, Suite};
use atrest_fuzz::{
    GOLDEN_KEYRING, LONG_PLAINTEXT, RECORDS, TENANT, TEST_ROOT_KEY, TransparentRoot, VALID_KEYRINGS,
    authentic_keyring_file, record_context,
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
    let chacha = acme.clone().with_suite(Suite::XChaCha20Poly1305).unwrap();
    let ctx = record_context();
    let rec = |name: &str, bytes: Vec<u8>| write(&data.join("records").join(name), &bytes);

    rec("v1g0-xaes.rec", acme.seal(b"alice@example.com", &ctx).unwrap());
    rec("v1g0-xchacha.rec", chacha.seal(b"bob@example.com", &ctx).unwrap());
    k.rotate().unwrap();
    rec("v2g0-destroyed.rec", acme.seal(b"sealed under v2, destroyed", &ctx).unwrap());
    k.rotate().unwrap();
    k.rotate_tenant(TENANT).unwrap();
    rec("v3g1-disabled.rec", acme.seal(b"sealed under v3, disabled", &ctx).unwrap());
    k.rotate().unwrap();
    rec("v4g1-empty.rec", acme.seal(b"", &ctx).unwrap());
    rec("v4g1-long.rec", acme.seal(LONG_PLAINTEXT, &ctx).unwrap());
    k.rotate_tenant("beta").unwrap();
    k.rotate_tenant("beta").unwrap();
    k.shred_tenant("gone").unwrap();
    k.set_state(MasterVersion::new(3), KeyState::Disabled).unwrap();
    let v2 = MasterVersion::new(2);
    k.destroy(v2, DestroyConfirmation::data_under_this_version_is_lost(v2)).unwrap();
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
    t.shred_tenant("gone").unwrap();
    t.set_state(MasterVersion::new(2), KeyState::Disabled).unwrap();
    let v1 = MasterVersion::new(1);
    t.destroy(v1, DestroyConfirmation::data_under_this_version_is_lost(v1)).unwrap();
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
        if e.extension().is_some_and(|x| x == "bin") {
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
}
