"use client";

import { TelephonyHealthMonitor } from "@dialtone/react";

export default function Admin() {
  return (
    <main>
      <h1>Telephony health</h1>
      <TelephonyHealthMonitor />
    </main>
  );
}
