#!/usr/bin/env bash
# Part of `make test`: builds the libFuzzer targets with clang and runs each for
# a bounded time (the APDU dispatcher longest). New inputs go to a temporary
# corpus; the repository's corpus (fuzz/corpus/<target>) only seeds the run.
# A crash fails the run and leaves the input in build-fuzz/crash-<target>-*.
set -euo pipefail
cd "$(dirname "$0")/.."
APDU_SECONDS=${DEVID_FUZZ_APDU_SECONDS:-30}
OTHER_SECONDS=${DEVID_FUZZ_SECONDS:-8}
if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ is not installed; the replay targets ran in ctest, libFuzzer is skipped"
  exit 0
fi
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
status=0
for target in apdu csr certificate crl profile name key_uri ocsp pkcs7 http_answer; do
  seconds=$OTHER_SECONDS
  [ "$target" = apdu ] && seconds=$APDU_SECONDS
  work=$(mktemp -d)
  if build-fuzz/fuzz/fuzz_$target -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=0 \
      -artifact_prefix="build-fuzz/crash-$target-" "$work" "fuzz/corpus/$target" >"build-fuzz/fuzz-$target.log" 2>&1; then
    echo "fuzz: $target ran ${seconds}s: $(grep -o 'Done [0-9]* runs' "build-fuzz/fuzz-$target.log" | tail -1)"
  else
    echo "fuzz: $target FAILED (see build-fuzz/fuzz-$target.log)"
    tail -20 "build-fuzz/fuzz-$target.log"
    status=1
  fi
  rm -rf "$work"
done
exit $status
