import type { ReactNode } from "react";

export const metadata = { title: "Acme Support — Dialtone example" };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body style={{ fontFamily: "system-ui, sans-serif", margin: "2rem auto", maxWidth: 960, padding: "0 1rem" }}>
        <nav style={{ marginBottom: "1rem" }}>
          <a href="/">Support</a> · <a href="/admin">Admin</a>
        </nav>
        {children}
      </body>
    </html>
  );
}
