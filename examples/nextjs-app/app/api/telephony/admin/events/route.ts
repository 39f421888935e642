import { fleetEventsRoute } from "@dialtone/client/routes";

export const dynamic = "force-dynamic";

/** Every TelephonyService, for the admin health monitor. Put it behind your admin auth. */
export async function GET(request: Request): Promise<Response> {
  return fleetEventsRoute(process.env.DIALTONE_READINESS_URL ?? "http://dialtone-readiness.dialtone-system.svc")(request);
}
