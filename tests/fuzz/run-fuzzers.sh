#!/usr/bin/env bash
# `make fuzz`: builds every fuzz target instrumented (g++, ASan, UBSan,
# libFuzzer; see gcc_coverage.cc) in build-fuzz/ and fuzzes each one for
# FUZZ_SECONDS (default 60), starting from its checked-in corpus. New inputs
# go to build-fuzz/corpus/NAME; a crash stops the run and is saved as
# build-fuzz/crashes/NAME/crash-* (replay it with `build-fuzz/tests/fuzz/NAME FILE`).
# Usage: tests/fuzz/run-fuzzers.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-60}
build=build-fuzz

cmake -S . -B "$build" -G Ninja -DKILN_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for source in tests/fuzz/*_fuzz.cc; do targets+=("$(basename "$source" .cc)"); done
fi
status=0
for target in "${targets[@]}"; do
  mkdir -p "$build/corpus/$target" "$build/crashes/$target"
  echo "== $target: $seconds s"
  if ! "$build/tests/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$build/crashes/$target/" \
      "$build/corpus/$target" "tests/fuzz/corpus/$target" 2>"$build/$target.log"; then
    echo "$target: FAILED, see $build/$target.log and $build/crashes/$target/" >&2
    tail -n 30 "$build/$target.log" >&2
    status=1
  else
    grep -E "^stat::(number_of_executed_units|new_units_added)|INFO: Loaded" "$build/$target.log" || true
  fi
done
exit $status
