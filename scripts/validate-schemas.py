"""Validates Kubernetes objects (YAML or JSON files) against the published schemas of several
Kubernetes versions, strictly (unknown fields are errors), with kubernetes-validate.

    validate-schemas.py VERSION[,VERSION...] FILE...

Kinds from other projects (monitoring.coreos.com: ServiceMonitor, PrometheusRule) have no schema
here: the chart test checks them against their own. Prints one line per object and version that
fails, a table of what passed, and a cargo-style "test result:" line (one test per object and
version), so scripts/test.sh counts them.
"""

import json
import sys

import kubernetes_validate
import yaml

OTHER_PROJECTS = ("monitoring.coreos.com/",)


def documents(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        yield json.loads(text)
        return
    for doc in yaml.safe_load_all(text):
        if doc:
            yield doc


# Objects newer clusters must refuse: if any validates, the validator isn't doing its job.
CANARIES = [
    ("policy/v1beta1 PodDisruptionBudget (removed in 1.25)",
     {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"},
      "spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "b"}}}}),
    ("a Service with an unknown field (strict)",
     {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
      "spec": {"ports": [{"port": 80}], "selectr": {"a": "b"}}}),
]


def canaries_refused(version):
    for what, doc in CANARIES:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError):
            continue
        print(f"FAIL {version}: the validator accepted {what}")
        return False
    return True


def main():
    versions = sys.argv[1].split(",")
    if not all(canaries_refused(v) for v in versions):
        sys.exit(1)
    passed, failed, skipped = 0, 0, 0
    kinds = {}
    for path in sys.argv[2:]:
        for doc in documents(path):
            api, kind = doc.get("apiVersion", "?"), doc.get("kind", "?")
            name = f"{path}: {kind} {doc.get('metadata', {}).get('name', '?')} ({api})"
            if api.startswith(OTHER_PROJECTS):
                skipped += 1
                continue
            for version in versions:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                    passed += 1
                    kinds.setdefault(f"{api} {kind}", set()).add(version)
                except kubernetes_validate.ValidationError as e:
                    failed += 1
                    where = "/".join(str(p) for p in e.path) or "(root)"
                    print(f"FAIL {version} {name}: {where}: {e.message}")
                except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
                    failed += 1
                    print(f"FAIL {version} {name}: no schema: {e}")
    print(f"{'apiVersion kind':<60} {' '.join(versions)}")
    for k in sorted(kinds):
        print(f"{k:<60} {' '.join(('ok' if v in kinds[k] else '--').ljust(len(v)) for v in versions)}")
    print(f"({skipped} objects of other projects' kinds left to the chart test)")
    verdict = "ok" if failed == 0 else "FAILED"
    print(f"test result: {verdict}. {passed} passed; {failed} failed; 0 ignored (kubernetes-validate)")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
