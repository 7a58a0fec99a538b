//! What every [`ObjectStore`] must do, as one function over `&dyn ObjectStore`: run it
//! against each store (tests/s3_store.rs: S3 on SeaweedFS; the directory store likewise).
//!
//! Every key it writes lies under `scope/`, so that runs can share a store.
use std::io::{self, Read};

use atrest::{ObjectMeta, ObjectStore, StoreError};

/// Runs every check against `store`, under keys beginning `scope/`.
pub fn check_store(store: &dyn ObjectStore, scope: &str) {
    round_trip(store, scope);
    never_overwrites(store, scope);
    listing(store, scope);
    deletion(store, scope);
    invalid_keys(store);
    failing_body_leaves_nothing(store, scope);
    concurrent_writers_one_wins(store, scope);
    odd_legal_keys(store, scope);
}

/// The whole object, read through `get`.
pub fn read_all(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store.get(key).unwrap_or_else(|e| panic!("get {key}: {e}")).read_to_end(&mut out).unwrap();
    out
}

/// Deterministic bytes of length `len`, different for each `seed`.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 251).unwrap_or(0).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn round_trip(store: &dyn ObjectStore, scope: &str) {
    for (name, body) in [("empty", Vec::new()), ("one", vec![7u8]), ("small", bytes(70_000, 1))] {
        let key = format!("{scope}/rt/{name}");
        assert_eq!(store.head(&key).unwrap(), None);
        assert!(matches!(store.get(&key), Err(StoreError::NotFound(k)) if k == key));
        assert_eq!(store.put_new(&key, &mut &body[..]).unwrap(), body.len() as u64);
        assert_eq!(store.head(&key).unwrap(), Some(ObjectMeta { key: key.clone(), size: body.len() as u64 }));
        assert_eq!(read_all(store, &key), body, "{key}");
    }
}

fn never_overwrites(store: &dyn ObjectStore, scope: &str) {
    let key = format!("{scope}/taken");
    let first = bytes(1000, 2);
    store.put_new(&key, &mut &first[..]).unwrap();
    let err = store.put_new(&key, &mut &bytes(2000, 3)[..]).unwrap_err();
    assert!(matches!(&err, StoreError::AlreadyExists(k) if *k == key), "{err:?}");
    assert_eq!(read_all(store, &key), first);
    assert_eq!(store.head(&key).unwrap().map(|m| m.size), Some(1000));
}

fn listing(store: &dyn ObjectStore, scope: &str) {
    let base = format!("{scope}/list");
    let names = ["b/2", "a", "b/1", "c-x", "b/10"];
    for (i, n) in names.iter().enumerate() {
        store.put_new(&format!("{base}/{n}"), &mut &bytes(i * 10, 4)[..]).unwrap();
    }
    let all = store.list(&format!("{base}/")).unwrap();
    let keys: Vec<&str> = all.iter().map(|m| m.key.as_str()).collect();
    let want: Vec<String> = ["a", "b/1", "b/10", "b/2", "c-x"].iter().map(|n| format!("{base}/{n}")).collect();
    assert_eq!(keys, want);
    for m in &all {
        let i = names.iter().position(|n| m.key == format!("{base}/{n}")).unwrap();
        assert_eq!(m.size, (i * 10) as u64, "{}", m.key);
    }
    let b: Vec<String> = store.list(&format!("{base}/b/")).unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(b, [format!("{base}/b/1"), format!("{base}/b/10"), format!("{base}/b/2")]);
    // A prefix that is not a whole segment matches too.
    assert_eq!(store.list(&format!("{base}/b/1")).unwrap().len(), 2);
    assert!(store.list(&format!("{scope}/nothing-here/")).unwrap().is_empty());
}

fn deletion(store: &dyn ObjectStore, scope: &str) {
    let key = format!("{scope}/del/x");
    store.put_new(&key, &mut &b"gone soon"[..]).unwrap();
    store.delete(&key).unwrap();
    assert_eq!(store.head(&key).unwrap(), None);
    assert!(matches!(store.get(&key), Err(StoreError::NotFound(_))));
    assert!(store.list(&format!("{scope}/del/")).unwrap().is_empty());
    store.delete(&key).unwrap();
    store.delete(&format!("{scope}/del/never")).unwrap();
    // The key is free again.
    store.put_new(&key, &mut &b"again"[..]).unwrap();
    assert_eq!(read_all(store, &key), b"again");
}

fn invalid_keys(store: &dyn ObjectStore) {
    for bad in ["", "/abs", "a/../b", "a//b", "dir/", "sp ace", "nl\n", "é"] {
        let invalid = |r: Result<(), StoreError>| matches!(r, Err(StoreError::InvalidKey(_)));
        assert!(invalid(store.put_new(bad, &mut &b"x"[..]).map(drop)), "put_new {bad:?}");
        assert!(invalid(store.get(bad).map(drop)), "get {bad:?}");
        assert!(invalid(store.head(bad).map(drop)), "head {bad:?}");
        assert!(invalid(store.delete(bad)), "delete {bad:?}");
    }
}

/// A body that yields `good` bytes, then fails.
pub struct FailingBody {
    pub good: usize,
    pub sent: usize,
}

impl Read for FailingBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.sent >= self.good {
            return Err(io::Error::other("the body's source failed"));
        }
        let n = buf.len().min(self.good - self.sent);
        buf[..n].fill(0x5a);
        self.sent += n;
        Ok(n)
    }
}

fn failing_body_leaves_nothing(store: &dyn ObjectStore, scope: &str) {
    let key = format!("{scope}/failing");
    let err = store.put_new(&key, &mut FailingBody { good: 100_000, sent: 0 }).unwrap_err();
    assert!(matches!(&err, StoreError::Io { .. }), "{err:?}");
    assert_eq!(store.head(&key).unwrap(), None);
    store.put_new(&key, &mut &b"later"[..]).unwrap();
}

fn concurrent_writers_one_wins(store: &dyn ObjectStore, scope: &str) {
    for round in 0..5u8 {
        let key = format!("{scope}/race/{round}");
        let results: Vec<Result<u64, StoreError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u8)
                .map(|w| {
                    let key = &key;
                    s.spawn(move || store.put_new(key, &mut &bytes(50_000, w)[..]))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for r in &results {
            assert!(matches!(r, Ok(50_000) | Err(StoreError::AlreadyExists(_))), "{r:?}");
        }
        assert_eq!(read_all(store, &key), bytes(50_000, u8::try_from(winners[0]).unwrap()));
    }
}

fn odd_legal_keys(store: &dyn ObjectStore, scope: &str) {
    let odd = [
        "plus+sign",
        "per%25cent",
        "q?mark",
        "hash#tag",
        "amp&eq=1",
        "star*",
        "tilde~",
        "excl!",
        "quote'\"",
        "paren()",
        "brack[]{}",
        "caret^`|",
        "lt<gt>",
        "semi;colon:",
        "comma,at@",
        "dollar$",
        "dots.../x",
        "-lead",
        "_x_",
    ];
    for (i, name) in odd.iter().enumerate() {
        let key = format!("{scope}/odd/{name}");
        let body = bytes(i + 1, 9);
        store.put_new(&key, &mut &body[..]).unwrap_or_else(|e| panic!("put_new {key:?}: {e}"));
        assert_eq!(read_all(store, &key), body, "{key:?}");
        assert_eq!(store.head(&key).unwrap().map(|m| m.size), Some(body.len() as u64), "{key:?}");
    }
    let listed: Vec<String> = store.list(&format!("{scope}/odd/")).unwrap().into_iter().map(|m| m.key).collect();
    let mut want: Vec<String> = odd.iter().map(|n| format!("{scope}/odd/{n}")).collect();
    want.sort();
    assert_eq!(listed, want);
    for name in odd {
        store.delete(&format!("{scope}/odd/{name}")).unwrap();
    }
    assert!(store.list(&format!("{scope}/odd/")).unwrap().is_empty());
}
