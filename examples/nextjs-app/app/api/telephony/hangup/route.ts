import { field, readJson, withTelephony } from "@dialtone/client/routes";

import { telephony } from "@/lib/telephony";

/** POST {"callControlId"} → the call ended (409 when it already had). */
export const POST = withTelephony(async (request: Request) => {
  await telephony().hangup(field(await readJson(request), "callControlId"));
  return Response.json({ result: "ok" });
});
