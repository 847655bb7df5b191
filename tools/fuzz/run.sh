#!/usr/bin/env bash
# Builds the libFuzzer targets (ASan + libFuzzer) and runs each for SECONDS (default 30), one at a
# time, on a temporary copy of its seeds. Exits non-zero if any target reports a crash, a failed
# property, a leak, a timeout or any other sanitizer report.
#
#   bash tools/fuzz/run.sh [SECONDS] [TARGET...]      e.g. bash tools/fuzz/run.sh 20
#
# Environment: FUZZ_SCRATCH_PATH (SwiftPM scratch, default <repo>/.build-fuzz),
# FUZZ_ARTIFACTS (crash inputs and logs, default <scratch>/artifacts), FUZZ_FLAGS (extra libFuzzer
# flags), FUZZ_NO_BUILD=1 (use the binaries already built).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SECONDS_PER_TARGET="${1:-30}"
shift || true
ALL_TARGETS=(fuzz-g2w fuzz-safetensors fuzz-json-config fuzz-tokenizer-files fuzz-tokenizer-roundtrip fuzz-model)
TARGETS=("${@:-${ALL_TARGETS[@]}}")
SCRATCH="${FUZZ_SCRATCH_PATH:-$ROOT/.build-fuzz}"
ARTIFACTS="${FUZZ_ARTIFACTS:-$SCRATCH/artifacts}"

if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
  echo "== building fuzz targets (swift build -c release, -sanitize=fuzzer,address) into $SCRATCH"
  (cd "$HERE" && swift build -c release --scratch-path "$SCRATCH" \
     -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xcc -fsanitize=address 2>&1 \
     | grep -v "Cannot export local symbol '__asan_extra_spill_area'")
fi
BIN="$SCRATCH/release"

# Corpora and the targets' scratch files live in one temporary directory (tmpfs when available).
BASE=/dev/shm; [ -d "$BASE" ] && [ -w "$BASE" ] || BASE="${TMPDIR:-/tmp}"
WORK="$(mktemp -d "$BASE/g2w-fuzz-run.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export G2W_FUZZ_SCRATCH="$WORK"
export G2W_FUZZ_ROOT="$ROOT"
export LSAN_OPTIONS="suppressions=$HERE/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
# The Swift runtime's own crash backtracer reads memory in a way ASan reports as an overflow of its
# own; turn it off so a crash is reported once, by libFuzzer/ASan, with a symbolized stack.
export SWIFT_BACKTRACE="enable=no"
mkdir -p "$ARTIFACTS"

dict_for() {
  case "$1" in
    fuzz-g2w|fuzz-model) echo "$HERE/dicts/g2w.dict" ;;
    fuzz-safetensors|fuzz-json-config) echo "$HERE/dicts/json.dict" ;;
    fuzz-tokenizer-files|fuzz-tokenizer-roundtrip) echo "$HERE/dicts/tokenizer.dict" ;;
  esac
}

failed=()
summary=()
for t in "${TARGETS[@]}"; do
  [ -x "$BIN/$t" ] || { echo "no such fuzz target: $t ($BIN/$t)"; exit 2; }
  corpus="$WORK/corpus-$t"
  mkdir -p "$corpus" "$ARTIFACTS/$t"
  [ -d "$HERE/seeds/$t" ] && cp "$HERE/seeds/$t"/* "$corpus"/
  log="$ARTIFACTS/$t.log"
  dict="$(dict_for "$t")"
  echo "== $t: ${SECONDS_PER_TARGET}s (log: $log)"
  set +e
  # shellcheck disable=SC2086
  "$BIN/$t" "$corpus" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=60 \
    -print_final_stats=1 ${dict:+-dict="$dict"} \
    -artifact_prefix="$ARTIFACTS/$t/" ${FUZZ_FLAGS:-} > "$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
  line="$t: ${runs:-?} runs, ${rate:-?} exec/s, ${cov:-no coverage line}"
  if [ $rc -ne 0 ] || grep -qE '^==[0-9]+==ERROR|^SUMMARY: |fuzz property violated|Fatal error|deadly signal|ERROR: libFuzzer' "$log"; then
    echo "!! $t FAILED (exit $rc): $line"
    grep -E '^==[0-9]+==ERROR|^SUMMARY: |fuzz property violated|Fatal error|Test unit written|ERROR: libFuzzer' "$log" | head -20 || true
    echo "   full report: $log"
    failed+=("$t")
    summary+=("FAIL $line")
  else
    echo "   $line"
    summary+=("ok   $line")
  fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzzing FAILED: ${failed[*]} (crash inputs under $ARTIFACTS/<target>/)"
  exit 1
fi
echo "fuzzing passed"
