#!/usr/bin/env bash
# No secret the tests and the demo hand to Dialtone may appear in what it writes: the logs of every
# process and pod (the operator and readiness service on the host and as pods, the workers), the
# cluster components' logs, the Events and Leases dumped by scripts/schemas.sh, and the browser
# test's output. Run after the e2e tier and the demo, while the cluster (and /var/log/pods) is up.
#
#   scripts/leak-check.sh
#
# The Telnyx mock's own log (and Prism's, the fuzzer's Telnyx) is left out: it is Telnyx, the one
# place the API key must go; so is schemathesis's own report, which quotes the requests it sent.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
DIR="${DIALTONE_CLUSTER_DIR:-$REPO/.cluster}"
# The API keys of the e2e tests, the demo and the fuzzer, the worker token of the e2e tests.
SECRETS=(KEY-e2e-not-a-real-key KEY-replace-with-your-telnyx-api-key app-token-e2e-7c1d0b5a93f2 fuzz-key)
PLACES=()
for p in target/e2e-logs "$DIR/logs" /var/log/pods target/schemas/live target/web-e2e target/fuzz; do
  [ -e "$p" ] && PLACES+=("$p")
done
[ ${#PLACES[@]} -gt 0 ] || { echo "leak-check: nothing to look at (no logs found): run it after the e2e tier" >&2; exit 1; }
patterns=()
for s in "${SECRETS[@]}"; do patterns+=(-e "$s"); done
skip=(--exclude='telnyx-mock*.log' --exclude=prism.log --exclude=schemathesis.txt --exclude='junit-*.xml')
files=$(find "${PLACES[@]}" -type f ! -name 'telnyx-mock*.log' ! -name prism.log ! -name schemathesis.txt ! -name 'junit-*.xml' 2>/dev/null | wc -l)
if hits=$(grep -rIl -F "${patterns[@]}" "${skip[@]}" "${PLACES[@]}" 2>/dev/null); then
  echo "leak-check: a secret appears in:" >&2
  echo "$hits" | sed 's/^/  /' >&2
  exit 1
fi
echo "leak-check: ${#SECRETS[@]} secrets, in none of $files files (${PLACES[*]})"
