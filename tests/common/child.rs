//! The child-process harness. A test that needs a process of its own (to be killed with
//! SIGKILL at a random point, or for per-process state such as a PKCS#11 login) re-runs this
//! same test binary, restricted to one test, with an environment variable naming its role:
//!
//! ```ignore
//! #[test]
//! fn writer_loop() {
//!     if let Some(role) = child::role(CHILD_ENV) {
//!         /* the child's work, driven by `role` and other variables */
//!         return;
//!     }
//!     /* run in the parent too: an in-process check of the same work */
//! }
//!
//! let mut cmd = child::rerun("writer_loop", CHILD_ENV, "forever");
//! child::kill_after(child::spawn_quiet(cmd.env("PATH_VAR", &path)), child::kill_delay(i, 2_000, 40_000));
//! ```

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The role this process was started in by [`rerun`] (the value of `var`), or `None` when it
/// is the test harness's own process.
pub fn role(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// A command that runs exactly the test `name` of this test binary in a new process (one
/// thread, output not captured), with `var` set to `role` so that the test knows it is the
/// child. Add the child's other settings with `.env(..)`.
pub fn rerun(name: &str, var: &str, role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"]).env(var, role);
    cmd
}

/// Starts `cmd` with its output discarded: a child that is going to be killed.
pub fn spawn_quiet(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

/// How long crash round `i` lets its child run before the kill: at least `min_us`
/// microseconds, plus a stride of 7,919 µs (a prime) through `span_us`, so that successive
/// rounds kill early (during start-up) and late (in the middle of a later write).
pub fn kill_delay(i: u64, min_us: u64, span_us: u64) -> Duration {
    Duration::from_micros(min_us + (i * 7_919) % span_us)
}

/// Kills `child` with SIGKILL after `delay` and reaps it.
pub fn kill_after(mut child: Child, delay: Duration) {
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
}

/// Runs `cmd` with `input` on its stdin (fed from a thread, so that a full stdout pipe
/// cannot deadlock; a child that exits early closes the pipe, which is fine), collecting
/// its output.
pub fn run_piped(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// Panics with the status, stdout and stderr of a command that failed; returns its stdout.
pub fn check(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.into_owned()
}

/// Runs a [`rerun`] command to its end and checks that the child ran exactly one test and
/// that it passed; then shows the child's output (seen with `--nocapture`).
pub fn run_one_test(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap();
    let stdout = check(&out, what);
    assert!(stdout.contains("test result: ok. 1 passed"), "{what}: not exactly one test passed:\n{stdout}");
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

/// The names of the files in `dir` ending with `suffix`: what killed children left behind
/// (temporary files, journals).
pub fn leftovers(dir: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(suffix))
        .collect()
}
