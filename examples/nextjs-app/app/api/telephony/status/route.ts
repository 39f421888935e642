import { statusRoute } from "@dialtone/client/routes";

import { telephony } from "@/lib/telephony";

export const dynamic = "force-dynamic";

/** 200 with the readiness answer, or 503 with Retry-After: never a 500. */
export const GET = statusRoute(telephony);
