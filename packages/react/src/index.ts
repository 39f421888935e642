/**
 * `@dialtone/react`: one live status subscription per page (`TelephonyProvider`), the
 * `useTelephony()` hook, `TelephonyErrorBoundary`, and the admin `TelephonyHealthMonitor`.
 */

export { TelephonyErrorBoundary } from "./boundary.js";
export type { FallbackProps, TelephonyErrorBoundaryProps } from "./boundary.js";
export { TelephonyHealthMonitor } from "./monitor.js";
export type { TelephonyHealthMonitorProps } from "./monitor.js";
export { TelephonyProvider, useTelephony } from "./provider.js";
export type { CallError, CallResult, Telephony, TelephonyProviderProps } from "./provider.js";
