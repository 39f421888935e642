// Prints a vitest JSON report's totals as cargo does ("test result: ..."), so scripts/test.sh's
// closing `workspace: N passed, N failed` line counts the TypeScript tests too.
import { readFileSync } from "node:fs";

const [file, name] = process.argv.slice(2);
const r = JSON.parse(readFileSync(file, "utf8"));
const failed = r.numFailedTests + (r.numRuntimeErrorTestSuites ?? 0);
const verdict = failed === 0 && r.success ? "ok" : "FAILED";
console.log(`test result: ${verdict}. ${r.numPassedTests} passed; ${failed} failed; ${r.numPendingTests} ignored (vitest: ${name})`);
