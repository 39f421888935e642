import { field, readJson, withTelephony } from "@dialtone/client/routes";

import { telephony } from "@/lib/telephony";

/** POST {"username"} → a WebRTC credential and login token for the browser SDK. */
export const POST = withTelephony(async (request: Request) => {
  const username = field(await readJson(request), "username");
  return Response.json(await telephony().createCredential({ username }), { status: 201 });
});
