//! Included by the coherence tests next to `mod common;` (it starts workers through
//! `common::child`).
//!
//! Long-lived worker processes for the keyring coherence tests: the test binary re-executes
//! itself (`--exact fleet_child`) with a JSON spec in `ATREST_FLEET_CHILD`; each worker
//! opens the keyring at a location (file or `postgres://`), seals and opens continuously and
//! logs, with wall-clock times, what it observes (the key version of each seal, refusals,
//! probes of records under each master version, a record handed over by the parent). In
//! fleet mode it also changes the keyring itself. The parent then measures how long each
//! change took to reach each worker.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atrest::{
    Context, KeyState, Keyring, KeyringLocation, KeyringOptions, LocalRootKey, MasterVersion, OpenError, SealError,
    ShredEvidence, record_info,
};

pub const CHILD_ENV: &str = "ATREST_FLEET_CHILD";

#[derive(serde::Serialize, serde::Deserialize, Clone)]
pub struct Spec {
    pub id: usize,
    pub location: String,
    pub root: PathBuf,
    pub out: PathBuf,
    pub stop: PathBuf,
    pub tenants: Vec<String>,
    pub staleness_ms: u64,
    /// A record the parent re-seals after each rotation (`<tenant> <n> <hex>`).
    pub handoff: Option<PathBuf>,
    /// Fleet mode: this worker also rotates, rotates its tenants and shreds `victim`.
    pub changes: bool,
    pub victim: Option<String>,
}

pub fn now_ns() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

pub fn ctx(child: usize, n: u64) -> Context {
    Context::new().with("child", child.to_string()).with("n", n.to_string())
}

/// Starts a worker running `spec`.
fn spawn(spec: &Spec) -> Child {
    crate::common::child::rerun("fleet_child", CHILD_ENV, &serde_json::to_string(spec).unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until every worker logged READY.
fn wait_ready(specs: &[Spec]) {
    let t = std::time::Instant::now();
    while !specs.iter().all(|s| std::fs::read_to_string(&s.out).is_ok_and(|l| l.starts_with("READY"))) {
        assert!(t.elapsed() < Duration::from_secs(60), "workers did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Running workers, killed if the test fails before [`stop`].
pub struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts one worker per spec.
pub fn start(specs: &[Spec]) -> Workers {
    let w = Workers(specs.iter().map(spawn).collect());
    wait_ready(specs);
    w
}

/// Stops the workers and checks they exited cleanly.
pub fn stop(specs: &[Spec], mut workers: Workers) {
    for s in specs {
        std::fs::write(&s.stop, "").unwrap();
    }
    for (mut c, s) in std::mem::take(&mut workers.0).into_iter().zip(specs) {
        let status = c.wait().unwrap();
        assert!(status.success(), "worker {} failed ({status}); log tail:\n{}", s.id, tail(&s.out));
    }
}

fn tail(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    // Every event but the seals and records (probes, errors, hand-overs), then the last lines.
    let mut events: Vec<&str> = Vec::new();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for l in lines.iter().copied().filter(|l| !l.starts_with("S ") && !l.starts_with("R ")) {
        // Probes and refusals only where their answer changed (every one is logged).
        if let Some((kind, rest)) = l.split_once(' ')
            && (kind == "P" || kind == "E")
        {
            let w: Vec<&str> = rest.split(' ').collect();
            let key =
                format!("{kind} {}", w.get(1..w.len().saturating_sub(1)).map(|k| k.join(" ")).unwrap_or_default());
            let answer = w.last().copied().unwrap_or("");
            if last.insert(key, answer.into()).as_deref() == Some(answer) {
                continue;
            }
        }
        events.push(l);
    }
    format!("events:\n{}\nlast lines:\n{}", events.join("\n"), lines[lines.len().saturating_sub(6)..].join("\n"))
}

fn seal_kind(e: &SealError) -> &'static str {
    match e {
        SealError::TenantShredded { .. } => "shredded",
        SealError::KeyringUnavailable => "unavailable",
        SealError::KeyUnavailable(_) => "key-unavailable",
        _ => "other",
    }
}

pub fn open_kind(r: &Result<Vec<u8>, OpenError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(OpenError::TenantShredded { .. }) => "shredded",
        Err(OpenError::KeyDisabled(_)) => "disabled",
        Err(OpenError::KeyDestroyed(_)) => "destroyed",
        Err(OpenError::KeyringUnavailable) => "unavailable",
        Err(OpenError::Authentication) => "auth",
        Err(_) => "other",
    }
}

/// The worker's main loop (when `ATREST_FLEET_CHILD` is set).
pub fn child_main() {
    let Ok(json) = std::env::var(CHILD_ENV) else { return };
    let spec: Spec = serde_json::from_str(&json).unwrap();
    let root = LocalRootKey::from_file(&spec.root).unwrap();
    let opts = KeyringOptions::default().staleness(Duration::from_millis(spec.staleness_ms));
    let keyring = Keyring::open_at(&KeyringLocation::parse(&spec.location), root, opts).unwrap();
    let mut log = std::io::BufWriter::new(std::fs::File::create(&spec.out).unwrap());
    let tenants: Vec<_> = spec.tenants.iter().map(|t| keyring.tenant(t).unwrap()).collect();
    // Per master version: the first record sealed under it, to probe its state.
    let mut probes: BTreeMap<u16, (usize, u64, Vec<u8>)> = BTreeMap::new();
    writeln!(log, "READY {}", now_ns()).unwrap();
    log.flush().unwrap();
    let mut rng = spec.id as u64 * 7919 + 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut n, mut ok_changes, mut shredded_victim) = (0u64, 0u64, false);
    let mut victim_record = None;
    while !spec.stop.exists() {
        for (i, t) in tenants.iter().enumerate() {
            n += 1;
            let c = ctx(spec.id, n);
            let now = now_ns();
            match t.seal(b"fleet payload", &c) {
                Ok(rec) => {
                    let kv = record_info(&rec).unwrap().key_version;
                    writeln!(log, "S {now} {} {} {}", spec.tenants[i], kv.master.get(), kv.generation).unwrap();
                    writeln!(log, "R {} {n} {}", spec.tenants[i], hex::encode(&rec)).unwrap();
                    if spec.victim.as_ref() == Some(&spec.tenants[i]) {
                        victim_record = Some((n, rec.clone()));
                    }
                    // Probe records come from the first tenant, which no test shreds (a
                    // shredded tenant's record answers "shredded", not its version's state).
                    if i == 0 {
                        probes.entry(kv.master.get()).or_insert((i, n, rec));
                    }
                }
                Err(e) => {
                    // Every refusal, with its start time (see the probes below).
                    writeln!(log, "E {now} {} {}", spec.tenants[i], seal_kind(&e)).unwrap();
                }
            }
        }
        for (master, (i, pn, rec)) in &probes {
            // Every probe is logged with its start time: the parent checks that none started
            // more than the bound after a change still answered the old way.
            let now = now_ns();
            let r = tenants[*i].open(rec, &ctx(spec.id, *pn));
            writeln!(log, "P {now} {master} {} {}", spec.tenants[*i], open_kind(&r)).unwrap();
        }
        if let Some(h) = &spec.handoff
            && let Ok(text) = std::fs::read_to_string(h)
        {
            let mut parts = text.split_whitespace();
            let (t, hn, hx) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            let r = keyring.tenant(t).unwrap().open(&hex::decode(hx).unwrap(), &ctx(usize::MAX, hn.parse().unwrap()));
            if r.is_err() {
                writeln!(log, "H {} {} {}", now_ns(), open_kind(&r), hn).unwrap();
            }
        }
        if spec.changes && next() % 8 == 0 {
            let now = now_ns();
            let (kind, ok) = match next() % 10 {
                0 => ("rotate", keyring.rotate().is_ok()),
                1..=6 => {
                    let t = &spec.tenants[usize::try_from(next() % spec.tenants.len() as u64).unwrap()];
                    ("rotate_tenant", keyring.rotate_tenant(t).is_ok())
                }
                _ => match (&spec.victim, &victim_record, shredded_victim) {
                    (Some(v), Some((vn, rec)), false) => {
                        shredded_victim = true;
                        let c = ctx(spec.id, *vn);
                        ("shred", keyring.shred_tenant(v, ShredEvidence::Record { sealed: rec, context: &c }).is_ok())
                    }
                    _ => ("none", false),
                },
            };
            if kind != "none" {
                ok_changes += u64::from(ok);
                writeln!(log, "C {now} {kind} {ok}").unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    writeln!(log, "END {ok_changes}").unwrap();
    log.flush().unwrap();
}

/// One logged observation.
#[derive(Debug, Clone)]
pub enum Event {
    Seal { t: u64, tenant: String, master: u16, generation: u16 },
    SealErr { t: u64, tenant: String, kind: String },
    Probe { t: u64, master: u16, kind: String },
    Handoff { t: u64, kind: String },
    Record { tenant: String, n: u64, sealed: Vec<u8> },
    Change { ok: bool },
    End { ok_changes: u64 },
}

pub fn read_log(p: &Path) -> Vec<Event> {
    parse_log(&std::fs::read_to_string(p).unwrap())
}

/// The events of a log's complete lines (a worker still running may be writing the last).
fn parse_log(text: &str) -> Vec<Event> {
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            let num = |i: usize| w[i].parse::<u64>().unwrap();
            Some(match w[0] {
                "S" => Event::Seal {
                    t: num(1),
                    tenant: w[2].into(),
                    master: w[3].parse().unwrap(),
                    generation: w[4].parse().unwrap(),
                },
                "E" => Event::SealErr { t: num(1), tenant: w[2].into(), kind: w[3].into() },
                "P" => Event::Probe { t: num(1), master: w[2].parse().unwrap(), kind: w[4].into() },
                "H" => Event::Handoff { t: num(1), kind: w[2].into() },
                "R" => Event::Record { tenant: w[1].into(), n: num(2), sealed: hex::decode(w[3]).unwrap() },
                "C" => Event::Change { ok: w[3] == "true" },
                "END" => Event::End { ok_changes: num(1) },
                _ => return None,
            })
        })
        .collect()
}

/// A change made by the parent, and how a worker shows it has seen it.
#[derive(Debug, Clone)]
pub enum Seen {
    /// A seal (any tenant) under this master version or a later one.
    Master(u16),
    /// A seal of this tenant with at least this generation (a tenant's generation never
    /// goes down).
    Generation(String, u16),
    /// A probe of a record under this master version answered this kind.
    Probe(u16, &'static str),
    /// A seal of this tenant was refused as shredded.
    Shredded(String),
}

/// If `e` is an observation that tells whether a worker has seen `seen`: when it started
/// (ns) and whether it shows the change.
pub fn observes(e: &Event, seen: &Seen) -> Option<(u64, bool)> {
    match (e, seen) {
        (Event::Seal { t, master, .. }, Seen::Master(m)) => Some((*t, master >= m)),
        (Event::Seal { t, tenant, generation, .. }, Seen::Generation(tn, g)) if tenant == tn => {
            Some((*t, generation >= g))
        }
        // A probe the keyring could not answer (store unavailable) shows neither state.
        (Event::Probe { t, master, kind }, Seen::Probe(m, k)) if master == m && kind != "unavailable" => {
            Some((*t, kind == k))
        }
        (Event::Seal { t, tenant, .. }, Seen::Shredded(tn)) if tenant == tn => Some((*t, false)),
        (Event::SealErr { t, tenant, kind }, Seen::Shredded(tn)) if tenant == tn && kind == "shredded" => {
            Some((*t, true))
        }
        _ => None,
    }
}

/// When a worker first showed `seen` at or after `since` (ns).
pub fn first_seen(events: &[Event], since: u64, seen: &Seen) -> Option<u64> {
    events.iter().filter_map(|e| observes(e, seen)).find(|(t, new)| *t >= since && *new).map(|(t, _)| t)
}

/// Whether a later change undoes or replaces `a` (the same master version probed again).
fn same_subject(a: &Seen, b: &Seen) -> bool {
    matches!((a, b), (Seen::Probe(m1, _), Seen::Probe(m2, _)) if m1 == m2)
}

/// Waits (up to a minute) until every worker made an observation of each change in
/// `lasting` that started after that change's time (ns) plus `bound_ns`: a worker the
/// machine starved for a while is waited for, not failed.
fn wait_observed_after(specs: &[Spec], lasting: &[(u64, &Seen)], bound_ns: u64) {
    let t = std::time::Instant::now();
    let done = |s: &Spec| {
        let events = parse_log(&std::fs::read_to_string(&s.out).unwrap_or_default());
        lasting.iter().all(|(at, seen)| events.iter().filter_map(|e| observes(e, seen)).any(|(t, _)| t > at + bound_ns))
    };
    while !specs.iter().all(done) {
        assert!(t.elapsed() < Duration::from_secs(60), "workers made no observation of a change after its bound");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// p-th percentile (0..=100) of sorted `v`.
pub fn percentile(v: &[Duration], p: usize) -> Duration {
    v[(v.len() * p / 100).min(v.len() - 1)]
}

/// The propagation scenario, on any store: three workers seal and open under a 1 s bound
/// while this process rotates, rotates a tenant, disables, shreds and re-enables. Fails if
/// any worker operation that started more than the bound after a change did not see it (or
/// if a worker never used a change it must have seen); returns every (change, worker)
/// latency to the first operation that saw it, sorted.
pub fn propagation(location: &str, dir: &Path, root_path: &Path, staleness: Duration) -> Vec<Duration> {
    let root = LocalRootKey::from_file(root_path).unwrap();
    let keyring =
        Keyring::open_at(&KeyringLocation::parse(location), root, KeyringOptions::default().staleness(staleness))
            .unwrap();
    let tenants: Vec<String> = ["t0", "t1", "t2"].map(String::from).to_vec();
    let handoff = dir.join("handoff");
    let write_handoff = |n: u64| {
        let rec = keyring.tenant("t0").unwrap().seal(b"handoff", &ctx(usize::MAX, n)).unwrap();
        let tmp = dir.join("handoff.tmp");
        std::fs::write(&tmp, format!("t0 {n} {}", hex::encode(rec))).unwrap();
        std::fs::rename(tmp, &handoff).unwrap();
    };
    write_handoff(0);
    let specs: Vec<Spec> = (0..3)
        .map(|id| Spec {
            id,
            location: location.to_owned(),
            root: root_path.to_owned(),
            out: dir.join(format!("worker{id}.log")),
            stop: dir.join(format!("worker{id}.stop")),
            tenants: tenants.clone(),
            staleness_ms: u64::try_from(staleness.as_millis()).unwrap(),
            handoff: Some(handoff.clone()),
            changes: false,
            victim: None,
        })
        .collect();
    let workers = start(&specs);
    std::thread::sleep(Duration::from_millis(300));
    let evidence_ctx = ctx(usize::MAX, 999);
    let v = MasterVersion::new;
    // (just before the change was made, just after it returned, the change)
    let mut changes: Vec<(u64, u64, Seen)> = Vec::new();
    let pause = staleness + Duration::from_millis(600);
    for step in 0..8u64 {
        let before = now_ns();
        let seen = match step {
            0 | 4 => {
                let m = keyring.rotate().unwrap();
                write_handoff(step + 1);
                Seen::Master(m.get())
            }
            1 | 7 => {
                let t = if step == 1 { "t1" } else { "t0" };
                Seen::Generation(t.into(), keyring.rotate_tenant(t).unwrap())
            }
            2 | 5 => {
                let m = if step == 2 { 1 } else { 2 };
                keyring.set_state(v(m), KeyState::Disabled).unwrap();
                Seen::Probe(m, "disabled")
            }
            3 => {
                // Evidence that t2 exists: a record of it that opens now.
                let t2_record = keyring.tenant("t2").unwrap().seal(b"evidence", &evidence_ctx).unwrap();
                keyring
                    .shred_tenant("t2", ShredEvidence::Record { sealed: &t2_record, context: &evidence_ctx })
                    .unwrap();
                Seen::Shredded("t2".into())
            }
            _ => {
                keyring.set_state(v(1), KeyState::Enabled).unwrap();
                Seen::Probe(1, "ok")
            }
        };
        changes.push((before, now_ns(), seen));
        std::thread::sleep(pause);
    }
    let bound_ns = u64::try_from(staleness.as_nanos()).unwrap();
    // Each change is checked until a later change of the same thing began (u64::MAX: to the
    // end of the run).
    let ends: Vec<u64> = changes
        .iter()
        .enumerate()
        .map(|(i, (_, _, seen))| {
            changes.iter().skip(i + 1).find(|(_, _, later)| same_subject(seen, later)).map_or(u64::MAX, |c| c.0)
        })
        .collect();
    let lasting: Vec<(u64, &Seen)> =
        changes.iter().zip(&ends).filter(|(_, end)| **end == u64::MAX).map(|((_, at, seen), _)| (*at, seen)).collect();
    wait_observed_after(&specs, &lasting, bound_ns);
    stop(&specs, workers);
    let mut latencies = Vec::new();
    let (mut stale, mut unobserved) = (Vec::new(), 0usize);
    for s in &specs {
        let events = read_log(&s.out);
        for ((_, at, seen), &end) in changes.iter().zip(&ends) {
            // The rule: every observation that started more than the bound after the change
            // returned (until a later change of the same thing began) shows it. Checked on
            // what the worker did, so a worker the machine did not run for a while cannot
            // fail it.
            let window: Vec<(u64, bool)> = events
                .iter()
                .filter_map(|e| observes(e, seen))
                .filter(|(t, _)| *t > at + bound_ns && *t < end)
                .collect();
            stale.extend(window.iter().filter(|(_, new)| !new).map(|(t, _)| {
                format!(
                    "worker {}: {seen:?} not seen by an operation {:?} after the change",
                    s.id,
                    Duration::from_nanos(t - at)
                )
            }));
            if window.is_empty() {
                // Only a change undone later can go unobserved (the run waits for
                // observations after the last change).
                assert!(end != u64::MAX, "worker {} made no observation of {seen:?} after its bound", s.id);
                unobserved += 1;
            }
            // How long it took (reported, not a pass/fail bound: that is the rule above).
            if let Some(t) = first_seen(&events, at.saturating_sub(50_000_000), seen) {
                latencies.push(Duration::from_nanos(t.saturating_sub(*at)));
            }
            if let Seen::Master(m) = seen
                && let Some(t) = first_seen(&events, at.saturating_sub(50_000_000), seen)
            {
                // Never back to an older primary once the new one was used.
                let regress =
                    events.iter().any(|e| matches!(e, Event::Seal { t: st, master, .. } if *st > t && master < m));
                assert!(!regress, "worker {} sealed under an older primary after v{m}", s.id);
            }
        }
        let handoff_failures: Vec<_> = events.iter().filter(|e| matches!(e, Event::Handoff { .. })).collect();
        assert!(
            handoff_failures.is_empty(),
            "worker {} could not open a record sealed a moment ago: {handoff_failures:?}",
            s.id
        );
    }
    assert!(
        stale.is_empty(),
        "{} operations did not see a change within the {staleness:?} bound, first ones:\n{}",
        stale.len(),
        stale.iter().take(12).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(!latencies.is_empty());
    if unobserved > 0 {
        println!("{unobserved} (change, worker) pairs had no operation between the bound and the change being undone");
    }
    latencies.sort();
    latencies
}

/// Prints p50/p99/max of how long changes took to be first seen. (The bound itself is
/// checked by [`propagation`] on every observation, not on these figures: a worker the
/// machine did not run for a while shows a change late without breaking the bound.)
pub fn report(what: &str, latencies: &[Duration], bound: Duration) {
    let (p50, p99, max) = (percentile(latencies, 50), percentile(latencies, 99), latencies[latencies.len() - 1]);
    println!(
        "{what}: {} observations, propagation p50 {p50:.1?} p99 {p99:.1?} max {max:.1?} (bound {bound:?})",
        latencies.len()
    );
}
