import { TelephonyUnavailable, createTelephonyClient, type TelephonyClient } from "@dialtone/client";

/**
 * The app's one Dialtone client (server side), from the environment:
 * - DIALTONE_READINESS_URL: the readiness service, e.g. http://dialtone-readiness.dialtone-system.svc
 * - DIALTONE_NAMESPACE, DIALTONE_SERVICE: the TelephonyService (default: default/calls)
 * - DIALTONE_WORKER_URL: the worker Service (default: the endpoint the readiness answer names)
 */
let client: TelephonyClient | undefined;

export function telephony(): TelephonyClient {
  if (client) return client;
  const readinessUrl = process.env.DIALTONE_READINESS_URL;
  if (!readinessUrl) throw new TelephonyUnavailable("DIALTONE_READINESS_URL is not set", 503, 60, "not_configured");
  client = createTelephonyClient({
    readinessUrl,
    namespace: process.env.DIALTONE_NAMESPACE ?? "default",
    service: process.env.DIALTONE_SERVICE ?? "calls",
    workerUrl: process.env.DIALTONE_WORKER_URL || undefined,
  });
  return client;
}

/** The number calls come from (your Telnyx number). */
export const callerId = (): string => process.env.DIALTONE_CALLER_ID ?? "+15550001111";
