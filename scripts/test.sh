#!/usr/bin/env bash
# `make test`: the whole suite, as two pytest processes at once.
#
# One notebook series keeps about one core busy (kernels, JVM starts and jobs run one after another), so on a
# machine with two or more cores the suite runs in two halves side by side:
#   - the series half: the tests that share the default series (the `series` fixture: notebooks, docs, security),
#     and, to even the halves out, reliability, data scale, the benchmark smoke test, the emulator's and the
#     image-parity tests (CI at 6e69c9a: 48:27 for this half against 52:41 for the rest, which the aws-mode
#     rehearsal's 08 jobs then lengthened);
#   - the rest: every other test file (unit tests, the dataset matrix, the aws-mode rehearsal, S3).
# Each half has its own session fixtures, so nothing runs twice. The rest's output follows the series half's.
# ML_LIFECYCLE_TEST_PROCESSES=1 runs one pytest over everything; extra arguments go to every pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=.venv/bin/pytest
SERIES_HALF=(tests/test_notebooks.py tests/test_docs.py tests/test_security.py
             tests/test_reliability.py tests/test_data_scale.py tests/test_bench.py tests/test_emulator.py
             tests/test_parity.py)
procs=${ML_LIFECYCLE_TEST_PROCESSES:-$(( $(nproc) >= 2 ? 2 : 1 ))}
if [ "$procs" -lt 2 ]; then exec "$PYTEST" tests "$@"; fi

ignore=(); for f in "${SERIES_HALF[@]}"; do ignore+=(--ignore "$f"); done
log=$(mktemp "${TMPDIR:-/tmp}/ml-lifecycle-tests.XXXXXX")
trap 'rm -f "$log"' EXIT
echo "[test] two pytest processes: ${SERIES_HALF[*]} here; every other test file in the background (its output follows)"
"$PYTEST" tests "${ignore[@]}" --durations=25 "$@" >"$log" 2>&1 &
rest=$!
trap 'kill $rest 2>/dev/null; rm -f "$log"' INT TERM
"$PYTEST" "${SERIES_HALF[@]}" --durations=15 "$@"; rc_series=$?
wait "$rest"; rc_rest=$?
echo; echo "================ the other test files (ran at the same time) ================"
cat "$log"
echo "[test] series half: exit $rc_series; the rest: exit $rc_rest"
[ "$rc_series" -eq 0 ] && [ "$rc_rest" -eq 0 ]
