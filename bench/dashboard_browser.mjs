// Loads the dashboard's Explore page again and again in Debian's Chromium (playwright-core
// from frontend/node_modules) and prints one JSON line per load: when the page marked its
// first table rows and its drawn histogram, and when the browser had the /api/logs and
// /api/logs/histogram answers, all in ms since navigation start.
//
//   node bench/dashboard_browser.mjs <gateway url> <token> <loads>
// Called by bench/dashboard.py, which starts the gateway and sums the figures up.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "frontend", "package.json"));
const { chromium } = require("playwright-core");

const [url, token, loadsText] = process.argv.slice(2);
const loads = Number(loadsText);
const MARK_TIMEOUT_MS = 60_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
try {
  // One context: a returning user, whose browser has the hashed assets cached already.
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  await context.addInitScript((value) => window.sessionStorage.setItem("logpipe.token", value), token);
  for (let load = 0; load < loads; load += 1) {
    const page = await context.newPage();
    const apiUrls = [];
    const otherRequests = [];
    page.on("request", (request) => {
      const address = new URL(request.url());
      if (address.pathname === "/api/logs" || address.pathname === "/api/logs/histogram") apiUrls.push(request.url());
      else if (address.pathname.startsWith("/api/")) otherRequests.push(request.url());
    });
    await page.goto(`${url}/explore`, { waitUntil: "commit" });
    await page.waitForFunction(
      () => ["logpipe:first-rows", "logpipe:histogram-drawn"].every((name) => performance.getEntriesByName(name).length),
      null,
      { timeout: MARK_TIMEOUT_MS, polling: 10 },
    );
    const timing = await page.evaluate(() => {
      const mark = (name) => performance.getEntriesByName(name)[0].startTime;
      const answered = (pathname) => {
        const entries = performance
          .getEntriesByType("resource")
          .filter((entry) => new URL(entry.name).pathname === pathname);
        return entries.length
          ? { start: entries[0].startTime, end: entries[0].responseEnd, duration: entries[0].responseEnd - entries[0].startTime }
          : null;
      };
      return {
        first_rows_ms: mark("logpipe:first-rows"),
        histogram_drawn_ms: mark("logpipe:histogram-drawn"),
        logs_api: answered("/api/logs"),
        histogram_api: answered("/api/logs/histogram"),
      };
    });
    process.stdout.write(JSON.stringify({ load, ...timing, api_urls: apiUrls, other_requests: otherRequests }) + "\n");
    await page.close();
  }
} finally {
  await browser.close();
}
