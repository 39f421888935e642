import { field, readJson, withTelephony } from "@dialtone/client/routes";

import { callerId, telephony } from "@/lib/telephony";

/** POST {"to"} → the call, placed from the app's number. */
export const POST = withTelephony(async (request: Request) => {
  const to = field(await readJson(request), "to");
  return Response.json(await telephony().dial({ to, from: callerId() }), { status: 201 });
});
