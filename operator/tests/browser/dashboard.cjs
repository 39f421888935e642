// Drives the readiness dashboard in headless Chromium (playwright-core, Debian's chromium).
// Usage: node dashboard.cjs URL KEY SHOT_BEFORE SHOT_AFTER
// Prints READY once KEY's card shows "ready", then waits (the caller injects a fault) until the card
// changes without a reload, prints "CHANGED <status>", and takes screenshots.
const { chromium } = require("playwright-core");

const [url, key, before, after] = process.argv.slice(2);
const card = (k) => `section.card[data-key="${k}"]`;

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1000, height: 420 } });
  await page.goto(url);
  await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.status === "ready", card(key), { timeout: 30000 });
  await page.evaluate(() => { window.__sameDocument = true; });
  await page.screenshot({ path: before });
  console.log("READY");
  await page.waitForFunction((sel) => {
    const c = document.querySelector(sel);
    return c && c.dataset.status !== "ready";
  }, card(key), { timeout: 30000 });
  const status = await page.getAttribute(card(key), "data-status");
  const same = await page.evaluate(() => window.__sameDocument === true);
  if (!same) throw new Error("the page reloaded");
  await page.waitForTimeout(400);
  await page.screenshot({ path: after });
  console.log("CHANGED " + status);
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
