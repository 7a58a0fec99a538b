# Shared by scripts/fuzz-smoke and scripts/fuzz-long (sourced, not run).
#
# Builds and runs the libFuzzer targets in fuzz/ with plain cargo and any toolchain, stable
# included: no cargo-fuzz, no nightly. The flags are the ones `cargo fuzz build --sanitizer
# none` (cargo-fuzz 0.13) passes, all stable: coverage instrumentation (-Cpasses=sancov-module
# and its LLVM options), --cfg fuzzing, debug assertions. No sanitizer: the crate forbids
# unsafe code, and -Zsanitizer would need nightly. Where cargo-fuzz is installed,
# `cargo fuzz run <target>` builds and runs the same targets.
# Environment:
#   FUZZ_TARGET_DIR     build directory (default fuzz/target, apart from the crate's builds)
#   FUZZ_TARGETS        space-separated subset of targets (default: every fuzz/fuzz_targets/*.rs)
#   FUZZ_CODEGEN_UNITS  rustc codegen units (default 1, as cargo-fuzz: faster fuzzing, slower build)
#   FUZZ_SANITIZER      none (default) or address, memory, ... (those need nightly)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

export CARGO_TERM_COLOR=never
fuzz_target_dir=${FUZZ_TARGET_DIR:-$root/fuzz/target}
host=$(rustc -vV | sed -n 's/^host: //p')

fuzz_rustflags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0 -Cdebug-assertions
  -Ccodegen-units=${FUZZ_CODEGEN_UNITS:-1}"
case $host in *-linux-*) fuzz_rustflags+=" -Cllvm-args=-sanitizer-coverage-stack-depth" ;; esac
case ${FUZZ_SANITIZER:-none} in
  none) ;;
  *) fuzz_rustflags+=" -Zsanitizer=$FUZZ_SANITIZER" ;;
esac
fuzz_rustflags=$(echo $fuzz_rustflags)

fuzz_targets() {
  if [ -n "${FUZZ_TARGETS:-}" ]; then
    echo "$FUZZ_TARGETS"
  else
    for f in fuzz/fuzz_targets/*.rs; do basename "$f" .rs; done
  fi
}

# Builds every target. --target keeps the instrumentation away from build scripts and
# proc macros (as cargo-fuzz does).
build_targets() {
  echo "building fuzz targets for $host ($(rustc -V)), target dir $fuzz_target_dir"
  RUSTFLAGS="$fuzz_rustflags ${RUSTFLAGS:-}" cargo build --manifest-path fuzz/Cargo.toml \
    --release --bins --target "$host" --target-dir "$fuzz_target_dir"
}

# run_target NAME SECONDS CORPUS_DIR LOG: fuzzes NAME for SECONDS, starting from the committed
# seeds in fuzz/seeds/NAME (read only: libFuzzer writes new inputs to the first directory,
# CORPUS_DIR, only); returns libFuzzer's status. An input that takes 10 s counts as a hang.
run_target() {
  local name=$1 secs=$2 corpus=$3 log=$4
  mkdir -p "$corpus" "$root/fuzz/artifacts/$name"
  "$fuzz_target_dir/$host/release/$name" -artifact_prefix="$root/fuzz/artifacts/$name/" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "$corpus" "$root/fuzz/seeds/$name" >"$log" 2>&1
}

# fuzz_stat LOG KEY: a libFuzzer final statistic (stat::KEY) from LOG.
fuzz_stat() {
  sed -n "s/^stat::$2: *//p" "$1" | tail -1
}

# report_failure NAME LOG: what crashed, and where the reproducer is.
report_failure() {
  echo "---- $1 FAILED (full log: $2)"
  grep -A4 -E '^thread .* panicked at|==[0-9]+== ERROR: libFuzzer' "$2" | head -30 || true
  grep -h 'Test unit written to' "$2" || tail -20 "$2"
  echo "reproduce: $fuzz_target_dir/$host/release/$1 <the test unit above>"
}
