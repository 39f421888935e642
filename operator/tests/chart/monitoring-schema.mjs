// Validates Prometheus Operator objects (ServiceMonitor, PrometheusRule) against the CRD schemas
// shipped in @kubernetes-models/prometheus-operator. The local control plane has no such CRDs, so
// these kinds are checked by schema only. Usage: node monitoring-schema.mjs <package dir> < objects.json
import { pathToFileURL } from "node:url";
import { join } from "node:path";
import { readFileSync } from "node:fs";

const pkg = process.argv[2];
const models = await import(pathToFileURL(join(pkg, "monitoring.coreos.com/v1/index.js")).href);
const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const obj of objects) {
  const Model = models[obj.kind];
  const id = `${obj.kind}/${obj.metadata?.name}`;
  if (!Model) {
    console.log(`FAIL ${id}: no schema for this kind`);
    failed++;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`ok ${id} (schema only)`);
  } catch (e) {
    console.log(`FAIL ${id}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
