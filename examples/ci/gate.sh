#!/bin/sh
# A performance gate for any CI system: run a scenario, gate it on its SLOs and against a committed baseline run,
# leave JUnit XML, a Markdown summary and the HTML report in $OUT, and exit with the gate's code:
#   0 passed, 99 a threshold or regression failed, 98 the run is invalid (neither), 2 a usage mistake.
# Settings come from the environment; the defaults gate the shipped ci-gate scenario on the simulator.
set -u

LOADTEST=${LOADTEST:-loadtest}
SCENARIO=${SCENARIO:-scenarios/ci-gate.toml}
BASELINE=${BASELINE:-examples/ci/baseline}
OUT=${OUT:-gate-out}

mkdir -p "$OUT"
# shellcheck disable=SC2086  # $LOADTEST may be a command with arguments, e.g. "python -m loadtest"
$LOADTEST run "$SCENARIO" --out "$OUT/runs" --quiet --gate \
    --baseline "$BASELINE" \
    --slo 'error_rate<1%' \
    --junit "$OUT/gate.xml" --markdown "$OUT/gate.md" --json "$OUT/gate.json"
status=$?

# the run directory this job wrote, and its report, for the CI system to keep as artifacts
run_dir=$(ls -d "$OUT"/runs/*/ 2>/dev/null | tail -n 1)
if [ -n "$run_dir" ] && [ -f "$run_dir/report.html" ]; then
    cp "$run_dir/report.html" "$OUT/report.html"
fi

case $status in
    0) echo "performance gate: passed" ;;
    99) echo "performance gate: FAILED — a threshold or a regression (see $OUT/gate.md)" ;;
    98) echo "performance gate: INVALID run — neither passed nor failed; rerun on a quieter machine or fix the load" ;;
    *) echo "performance gate: could not run (exit $status)" ;;
esac
exit "$status"
