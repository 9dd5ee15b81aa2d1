#!/usr/bin/env bash
# `make fuzz`: builds the fuzz targets instrumented (g++ with ASan, UBSan and
# trace-pc/trace-cmp coverage, linked with Debian's libFuzzer; see
# gcc_coverage.cc) in build-fuzz/ and fuzzes each one in turn for
# FUZZ_SECONDS (default 60), starting from its checked-in corpus
# tests/fuzz/corpus/NAME. New inputs go to build-fuzz/corpus/NAME. A finding
# is saved as build-fuzz/crashes/NAME/crash-* (or leak-, timeout-, oom-);
# replay it with `build-fuzz/tests/fuzz/NAME FILE`. Every target runs even
# after one fails; the exit status is 1 if any found something.
# Usage: tests/fuzz/run-fuzzers.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../.."
top=$(pwd)
seconds=${FUZZ_SECONDS:-60}
build=$top/build-fuzz

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for source in tests/fuzz/*_fuzz.cc; do targets+=("$(basename "$source" .cc)"); done
fi

cmake -S . -B "$build" -G Ninja -DKILN_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

status=0
for target in "${targets[@]}"; do
  mkdir -p "$build/corpus/$target" "$build/crashes/$target"
  echo "== $target: $seconds s"
  # -timeout: an input that takes this long (a hang) is a finding too.
  if ! "$build/tests/fuzz/$target" -max_total_time="$seconds" -timeout=60 -print_final_stats=1 \
      -artifact_prefix="$build/crashes/$target/" \
      "$build/corpus/$target" "$top/tests/fuzz/corpus/$target" 2>"$build/$target.log"; then
    echo "$target: FOUND SOMETHING, see $build/$target.log and $build/crashes/$target/" >&2
    grep -E "^(==[0-9]+==ERROR|SUMMARY)|^[a-z].*(changed|created|broken)" "$build/$target.log" | head -n 5 >&2 || true
    status=1
  fi
  # Coverage as libFuzzer last reported it, and how much ran.
  grep -E "^#[0-9]+" "$build/$target.log" | tail -n 1 || true
  grep -E "^stat::(number_of_executed_units|new_units_added)" "$build/$target.log" || true
done
exit $status
