# Shared by scripts/fuzz-smoke and scripts/fuzz-long (sourced, not run).
#
# Drives the cargo-fuzz targets in fuzz/ with any toolchain, stable included: the default
# sanitizer is "none" (the crate forbids unsafe code; -Zsanitizer would need nightly), which
# cargo-fuzz builds with stable rustc (coverage instrumentation only uses stable -C flags).
# Environment:
#   FUZZ_TARGET_DIR  build directory (default fuzz/target, apart from the crate's own builds)
#   FUZZ_SANITIZER   none (default) | address | ... (anything but none needs nightly)
#   FUZZ_TARGETS     space-separated subset of targets (default: every target)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

export CARGO_TERM_COLOR=never
fuzz_target_dir=${FUZZ_TARGET_DIR:-$root/fuzz/target}
sanitizer=${FUZZ_SANITIZER:-none}

ensure_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    cargo install cargo-fuzz --locked
  fi
}

fuzz_targets() {
  if [ -n "${FUZZ_TARGETS:-}" ]; then
    echo "$FUZZ_TARGETS"
  else
    cargo fuzz list
  fi
}

build_targets() {
  echo "building fuzz targets (sanitizer $sanitizer, target dir $fuzz_target_dir)"
  cargo fuzz build --sanitizer "$sanitizer" --target-dir "$fuzz_target_dir"
}

# run_target NAME SECONDS CORPUS_DIR LOG: fuzzes NAME for SECONDS from the committed seeds
# (read only) and CORPUS_DIR (where new inputs go); returns libFuzzer's status.
run_target() {
  local name=$1 secs=$2 corpus=$3 log=$4
  mkdir -p "$corpus" "$root/fuzz/artifacts/$name"
  # -timeout: an input taking 10 s counts as a hang (a crash). Both dirs are read at start;
  # new inputs are written to the first one only, never into fuzz/seeds.
  cargo fuzz run --sanitizer "$sanitizer" --target-dir "$fuzz_target_dir" "$name" \
    "$corpus" "$root/fuzz/seeds/$name" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1
}

# fuzz_stat LOG KEY: a libFuzzer final statistic (stat::KEY) from LOG.
fuzz_stat() {
  sed -n "s/^stat::$2: *//p" "$1" | tail -1
}

# report_failure NAME LOG: what crashed, and where the reproducer is.
report_failure() {
  echo "---- $1 FAILED; last lines of $2:"
  grep -v '# Uses:' "$2" | tail -40
  grep -h 'Test unit written to' "$2" || true
}
