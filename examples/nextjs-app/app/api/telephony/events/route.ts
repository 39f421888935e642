import { eventsRoute } from "@dialtone/client/routes";

import { telephony } from "@/lib/telephony";

export const dynamic = "force-dynamic";

/** The browser's live status (TelephonyProvider): one upstream stream for every visitor. */
export const GET = eventsRoute(telephony);
