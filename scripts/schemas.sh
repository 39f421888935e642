#!/usr/bin/env bash
# Proof against newer Kubernetes than the local 1.20 cluster: everything Dialtone writes is
# validated, strictly, against the published schemas of Kubernetes 1.25, 1.30 and 1.37
# (kubernetes-validate), and the chart and the worker Deployments are scanned by checkov.
#   - the chart, rendered for each version with every optional feature on (cluster-wide, and
#     namespaced), and the CRD;
#   - the operator's Deployments and Services, from its pure `desired` functions for a minimal and
#     a full TelephonyService (cargo run --example desired-objects);
#   - with a cluster (KUBECONFIG set): the Events and Leases the operator really wrote there.
# Output in target/schemas/. Fails on any schema error and on any checkov finding not listed in
# .checkov.yaml (each listed one says why it doesn't apply).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
CACHE="${DIALTONE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dialtone}"
VERSIONS="1.25.0,1.30.0,1.37.0"
OUT="$REPO/target/schemas"
say() { printf '[schemas] %s\n' "$*"; }

# The tools, pinned, in their own venv (PyPI only: checkov runs with no calls to its cloud API).
VENV="$CACHE/schemas-venv"
if ! "$VENV/bin/python" -c 'import kubernetes_validate' 2>/dev/null || [ ! -x "$VENV/bin/checkov" ]; then
  say "installing kubernetes-validate and checkov (pinned) into $VENV"
  python3 -m venv "$VENV" 2>/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r scripts/schemas-requirements.txt
fi
command -v helm >/dev/null || PATH="$(bash scripts/build-control-plane.sh tools):$PATH"

rm -rf "$OUT"
mkdir -p "$OUT/chart" "$OUT/desired" "$OUT/live"
ALL=(
  --set networkPolicy.enabled=true --set 'networkPolicy.workerNamespaces={shop}'
  --set networkPolicy.monitoringNamespaceSelector.matchLabels.purpose=monitoring
  --set serviceMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true
  --set 'readiness.corsOrigins={https://app.example.com}' --set workerToken.create=true
  --set operator.serviceAccount.annotations.owner=voice --set readiness.service.annotations.owner=voice
  --set operator.podLabels.team=voice --set operator.podAnnotations.owner=voice
  --set operator.nodeSelector."kubernetes\.io/os"=linux --set readiness.nodeSelector."kubernetes\.io/os"=linux
  --set operator.priorityClassName=system-cluster-critical --set readiness.priorityClassName=system-cluster-critical
)
for v in ${VERSIONS//,/ }; do
  helm template dialtone charts/dialtone -n dialtone-system --kube-version "$v" "${ALL[@]}" \
    >"$OUT/chart/cluster-wide-$v.yaml"
  helm template dialtone charts/dialtone -n dialtone-system --kube-version "$v" "${ALL[@]}" \
    --set watchNamespace=shop --set 'readiness.namespaces={shop,billing}' >"$OUT/chart/namespaced-$v.yaml"
done
cargo run --quiet -p telephony-operator --example desired-objects -- "$OUT/desired"
if [ -n "${KUBECONFIG:-}" ] && kubectl get --raw /readyz >/dev/null 2>&1; then
  # What the operator really wrote: its Events (events.k8s.io/v1) and the leader Lease.
  kubectl get events.v1.events.k8s.io -A -o json \
    | python3 -c 'import json,sys; [print(json.dumps(e)) for e in json.load(sys.stdin)["items"] if e.get("reportingController","") == "dialtone-operator"]' \
    | head -50 | split -l 1 --additional-suffix=.json - "$OUT/live/event-"
  kubectl get leases.v1.coordination.k8s.io -A -o json \
    | python3 -c 'import json,sys; [print(json.dumps(e)) for e in json.load(sys.stdin)["items"] if "dialtone" in e["metadata"]["name"]]' \
    | split -l 1 --additional-suffix=.json - "$OUT/live/lease-"
fi
# Server-set fields (managedFields, resourceVersion...) are part of each schema too: validated as is.
mapfile -t files < <(find "$OUT/chart" "$OUT/desired" "$OUT/live" crds -type f \( -name '*.yaml' -o -name '*.json' \) | sort)
say "kubernetes-validate --strict against $VERSIONS: ${#files[@]} files"
"$VENV/bin/python" scripts/validate-schemas.py "$VERSIONS" "${files[@]}"

say "checkov on the rendered chart and the operator's worker Deployments (skips: .checkov.yaml)"
mkdir -p "$OUT/scan"
cp "$OUT/chart/cluster-wide-${VERSIONS##*,}.yaml" "$OUT/chart/namespaced-${VERSIONS##*,}.yaml" "$OUT/scan/"
for f in "$OUT"/desired/*-deployment.json; do
  "$VENV/bin/python" -c 'import json,sys,yaml; print(yaml.safe_dump(json.load(open(sys.argv[1]))))' "$f" \
    >"$OUT/scan/$(basename "${f%.json}").yaml"
done
if "$VENV/bin/checkov" --config-file .checkov.yaml --directory "$OUT/scan" --skip-download --quiet --compact \
  --output cli --output junitxml --output-file-path console,"$OUT/checkov" | tee "$OUT/checkov.txt"; then
  echo "test result: ok. 1 passed; 0 failed; 0 ignored (checkov: $(grep -o 'Passed checks: [0-9]*' "$OUT/checkov.txt"))"
else
  echo "checkov: the findings above are new: fix them, or list them in .checkov.yaml and the README with the reason" >&2
  echo "test result: FAILED. 0 passed; 1 failed; 0 ignored (checkov)"
  exit 1
fi
