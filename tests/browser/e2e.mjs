// Drives Debian's Chromium through every dashboard page against a running `logpipe run all`
// (tests/browser/test_dashboard.py starts it and passes the URL and tokens in the environment).
// Each check runs on its own; the exit code is the number of failed checks (0 = all passed).
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const frontend = path.resolve(here, "../../frontend");
const require = createRequire(path.join(frontend, "package.json"));
const { chromium } = require("playwright-core");
const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const BASE = process.env.LOGPIPE_URL;
const TOKEN = process.env.LOGPIPE_TOKEN;
const BOUND_TOKEN = process.env.LOGPIPE_BOUND_TOKEN;
const ARTIFACTS = process.env.LOGPIPE_ARTIFACTS ?? path.join(here, "artifacts");
const MARKER = process.env.LOGPIPE_MARKER ?? String(Date.now());
const CHROMIUM = process.env.LOGPIPE_CHROMIUM ?? "/usr/bin/chromium";
if (!BASE || !TOKEN) throw new Error("LOGPIPE_URL and LOGPIPE_TOKEN are required");
fs.mkdirSync(ARTIFACTS, { recursive: true });

const api = async (pathAndQuery, init = {}) => {
  const response = await fetch(BASE + pathAndQuery, {
    ...init,
    headers: { Authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) },
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${pathAndQuery}: HTTP ${response.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
};

const ingest = (records) =>
  api("/api/ingest", { method: "POST", body: records.map((record) => JSON.stringify(record)).join("\n") });

const numberOf = (text) => Number(String(text).replace(/[^0-9]/g, ""));

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
const failures = [];
const results = [];

/** A browser context signed in with `token` (session storage, as the token prompt stores it). */
async function signedIn(token = TOKEN, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true, ...options });
  if (token) {
    await context.addInitScript((value) => window.sessionStorage.setItem("logpipe.token", value), token);
  }
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(`pageerror: ${error.message}`));
  return { context, page, consoleErrors };
}

async function axeCheck(page, name) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations
      .filter((violation) => violation.impact === "serious" || violation.impact === "critical")
      .map((violation) => `${violation.id} (${violation.impact}): ${violation.help} — ${violation.nodes
        .slice(0, 3)
        .map((node) => node.target.join(" "))
        .join(", ")}`);
  });
  assert.deepEqual(violations, [], `axe on ${name}`);
}

async function check(name, body) {
  const started = Date.now();
  try {
    await body();
    results.push(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failures.push(name);
    results.push(`FAIL ${name}: ${error?.stack ?? error}`);
  }
  console.log(results[results.length - 1]);
}

async function visit(page, route, name, ready) {
  await page.goto(BASE + route);
  await ready();
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: false });
}

// A message a shipper could send: it must show as text, never run.
const XSS = `<script>window.__xss=1</script><img src=x onerror="window.__xss=2"> xss-${MARKER}`;

await check("a 401 brings the token prompt; a bad token is refused, a good one signs in", async () => {
  const { context, page } = await signedIn(null);
  await page.goto(BASE + "/explore");
  const dialog = page.getByRole("dialog", { name: "Sign in with an API token" });
  await dialog.waitFor({ timeout: 15000 });
  assert.equal(new URL(page.url()).search.includes("lpt_"), false);
  await page.getByLabel("API token", { exact: true }).fill("lpt_000000000000_not-a-real-token");
  await page.getByRole("button", { name: "Use this token" }).click();
  await page.getByText("This token was not accepted").waitFor({ timeout: 10000 });
  await axeCheck(page, "token prompt");
  await page.screenshot({ path: path.join(ARTIFACTS, "token-prompt.png") });
  await page.getByLabel("API token", { exact: true }).fill(TOKEN);
  await page.getByRole("button", { name: "Use this token" }).click();
  await dialog.waitFor({ state: "detached", timeout: 10000 });
  await page.getByTestId("log-row").first().waitFor({ timeout: 30000 });
  assert.equal(page.url().includes(TOKEN), false, "the token never goes into the URL");
  assert.equal(await page.evaluate(() => window.sessionStorage.getItem("logpipe.token")), TOKEN);
  await context.close();
});

await check("a pipeline-bound token shows its pipeline", async () => {
  if (!BOUND_TOKEN) throw new Error("LOGPIPE_BOUND_TOKEN is not set");
  const { context, page, consoleErrors } = await signedIn(BOUND_TOKEN);
  await page.goto(BASE + "/services");
  const badge = page.getByTestId("bound-pipeline");
  await badge.waitFor({ timeout: 15000 });
  assert.equal((await badge.textContent()).trim(), "pipeline: default");
  assert.deepEqual(consoleErrors, []);
  await context.close();
});

// One signed-in browser for the pages.
const session = await signedIn();
const { page, consoleErrors } = session;

await check("Explore: histogram and table agree with /api/logs totals, also after a drag-zoom", async () => {
  // A closed range in the past (ingest flushes every second), so no log arrives into it
  // while we compare; waited for until it holds logs, since the platform has just started.
  let start, end, range;
  const deadline = Date.now() + 90_000;
  for (;;) {
    end = new Date(Math.floor((Date.now() - 5_000) / 1000) * 1000);
    start = new Date(end.getTime() - 15 * 60_000);
    range = `start=${encodeURIComponent(start.toISOString())}&end=${encodeURIComponent(end.toISOString())}`;
    if ((await api(`/api/logs?${range}&limit=1`)).total >= 50) break;
    assert.ok(Date.now() < deadline, "no logs stored in the last 15 minutes");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  // Settled: the range's total reads the same twice, a second apart (late batches are in).
  let previous = -1;
  for (let current = (await api(`/api/logs?${range}&limit=1`)).total; current !== previous; ) {
    assert.ok(Date.now() < deadline + 30_000, "the range's total never settled");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    previous = current;
    current = (await api(`/api/logs?${range}&limit=1`)).total;
  }
  await visit(page, `/explore?${range}`, "explore", async () => {
    await page.getByTestId("log-row").first().waitFor({ timeout: 30000 });
    await page.getByTestId("histogram-total").waitFor({ timeout: 30000 });
    await page.locator(".chart canvas").first().waitFor();
  });
  const api_total = (await api(`/api/logs?${range}&limit=1`)).total;
  assert.ok(api_total > 0, "the generator has produced logs");
  assert.equal(numberOf(await page.getByTestId("logs-total").textContent()), api_total, "table total");
  assert.equal(numberOf(await page.getByTestId("histogram-total").textContent()), api_total, "histogram total");
  const marks = await page.evaluate(() => performance.getEntriesByType("mark").map((mark) => mark.name));
  assert.ok(marks.includes("logpipe:first-rows") && marks.includes("logpipe:histogram-drawn"), marks.join(","));

  // Drag across the middle of the chart: the URL takes the zoomed range and both totals follow.
  const overlay = page.locator(".chart .u-over").first();
  const box = await overlay.boundingBox();
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 8 });
  await page.mouse.up();
  await page.waitForFunction((before) => new URL(location.href).searchParams.get("start") !== before, start.toISOString());
  const zoomed = new URL(page.url()).searchParams;
  const zoomStart = new Date(zoomed.get("start"));
  const zoomEnd = new Date(zoomed.get("end"));
  assert.ok(zoomStart > start && zoomEnd < end, `zoomed into ${zoomStart.toISOString()}..${zoomEnd.toISOString()}`);
  const zoomRange = `start=${encodeURIComponent(zoomed.get("start"))}&end=${encodeURIComponent(zoomed.get("end"))}`;
  const zoomTotal = (await api(`/api/logs?${zoomRange}&limit=1`)).total;
  await page.waitForFunction(
    (expected) => {
      const read = (id) => Number((document.querySelector(`[data-testid=${id}]`)?.textContent ?? "").replace(/[^0-9]/g, ""));
      return read("logs-total") === expected && read("histogram-total") === expected;
    },
    zoomTotal,
    { timeout: 15000 },
  );
  await axeCheck(page, "explore");
});

await check("Explore: keyboard moves through rows and Enter opens every field", async () => {
  await page.goto(BASE + "/explore?since=15m");
  const grid = page.getByTestId("log-table");
  await page.getByTestId("log-row").first().waitFor({ timeout: 30000 });
  await grid.focus();
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("Enter");
  const details = page.locator(".log-details").first();
  await details.waitFor();
  for (const field of ["timestamp", "service", "level", "message", "trace_id", "span_id", "record_id", "pattern_id"]) {
    assert.ok(await details.locator("dt", { hasText: new RegExp(`^${field}$`) }).count(), `field ${field}`);
  }
  assert.equal(await page.locator('[role="row"][aria-selected="true"]').getAttribute("aria-rowindex"), "2");
});

await check("an injected <script> message shows as text and never runs", async () => {
  await ingest([{ service: "xss-probe", level: "ERROR", message: XSS }]);
  const deadline = Date.now() + 60000;
  while ((await api(`/api/logs?contains=${encodeURIComponent(`xss-${MARKER}`)}&since=15m&limit=1`)).total === 0) {
    assert.ok(Date.now() < deadline, "the probe log was not stored");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  await page.goto(BASE + `/explore?since=15m&contains=${encodeURIComponent(`xss-${MARKER}`)}`);
  const message = page.getByTestId("log-message").first();
  await message.waitFor({ timeout: 30000 });
  assert.equal(await message.textContent(), XSS);
  await page.getByTestId("log-row").first().click();
  await page.locator(".log-details").first().waitFor();
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.locator("main img").count(), 0, "no <img> made from the message");
});

await check("Explore: several services picked at once show exactly their logs", async () => {
  const tag = `multi-${MARKER}`;
  const picked = [`multi-a-${MARKER}`, `multi-b-${MARKER}`];
  await ingest([...picked, `multi-c-${MARKER}`].map((service) => ({ service, level: "ERROR", message: `${tag} from ${service}` })));
  const deadline = Date.now() + 60000;
  while ((await api(`/api/logs?contains=${tag}&since=15m&limit=1`)).total < 3) {
    assert.ok(Date.now() < deadline, "the three probe logs were not stored");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  await page.goto(BASE + `/explore?since=15m&contains=${tag}`);
  await page.getByTestId("log-row").nth(2).waitFor({ timeout: 30000 });
  await page.getByText("Service: All services", { exact: true }).click();
  for (const service of picked) await page.getByRole("checkbox", { name: service }).check();
  await page.getByText(`Service: ${picked.join(", ")}`, { exact: true }).waitFor({ timeout: 10000 });
  await page.waitForFunction(() => document.querySelector('[data-testid="logs-total"]')?.textContent === "2", null, { timeout: 30000 });
  const messages = (await page.getByTestId("log-message").allTextContents()).sort();
  assert.deepEqual(messages, picked.map((service) => `${tag} from ${service}`).sort());
  assert.equal(new URL(page.url()).searchParams.get("service"), picked.slice().sort().join(","));
  await axeCheck(page, "explore service menu");
  await page.screenshot({ path: path.join(ARTIFACTS, "explore-services.png") });
});

await check("live tail shows a log produced during the test, with pause and a rate", async () => {
  const liveMarker = `live-${MARKER}`;
  await page.goto(BASE + `/explore?live=1&contains=${liveMarker}`);
  await page.getByTestId("live-status").filter({ hasText: "Live" }).waitFor({ timeout: 20000 });
  await ingest([{ service: "live-probe", level: "WARN", message: `checkout slow ${liveMarker} first` }]);
  await page.getByText(`checkout slow ${liveMarker} first`).waitFor({ timeout: 30000 });
  assert.match(await page.getByTestId("live-rate").textContent(), /\d+\.\d logs\/s/);
  await page.getByRole("button", { name: "Pause" }).click();
  await ingest([{ service: "live-probe", level: "WARN", message: `checkout slow ${liveMarker} second` }]);
  await page.getByText("1 new while paused").waitFor({ timeout: 30000 });
  assert.equal(await page.getByText(`checkout slow ${liveMarker} second`).count(), 0, "paused table holds still");
  await page.getByRole("button", { name: "Resume" }).click();
  await page.getByText(`checkout slow ${liveMarker} second`).waitFor({ timeout: 10000 });
  await axeCheck(page, "live tail");
});

await check("Patterns: a pattern click filters Explore by that pattern", async () => {
  await visit(page, "/patterns?since=1h", "patterns", () => page.getByTestId("pattern-row").first().waitFor({ timeout: 30000 }));
  await axeCheck(page, "patterns");
  assert.ok(await page.locator("[data-testid=pattern-row] svg.sparkline").count(), "sparklines of volume");
  const first = page.getByTestId("pattern-row").first();
  const countText = await first.locator("td.num").first().textContent();
  const templateText = await first.locator("a.template-link code").textContent();
  await first.locator("a.template-link").click();
  await page.waitForURL(/\/explore\?.*pattern_id=/);
  const patternId = new URL(page.url()).searchParams.get("pattern_id");
  await page.getByTestId("log-row").first().waitFor({ timeout: 30000 });
  assert.equal(await page.getByLabel("Pattern id", { exact: true }).inputValue(), patternId);
  assert.equal(await page.getByTestId("pattern-template").textContent(), templateText, "Explore names the pattern");
  const shown = numberOf(await page.getByTestId("logs-total").textContent());
  assert.ok(shown >= numberOf(countText), `Explore shows ${shown} logs of a pattern counted ${countText}`);
  const other = (await api(`/api/logs?pattern_id=${patternId}&since=1h&limit=1`)).total;
  assert.ok(other > 0);
});

await check("Search: a semantic query returns hits with scores and links to the logs", async () => {
  const deadline = Date.now() + 120000;
  let hits = 0;
  while (hits === 0) {
    assert.ok(Date.now() < deadline, "no vector of any error after 120 s");
    const answer = await api("/api/search/semantic", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query: "payment failed", top_k: 5 }),
    }).catch(() => ({ results: [] }));
    hits = answer.results.length;
    if (!hits) await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  await visit(page, "/search?q=payment%20failed", "search", () => page.getByTestId("search-hit").first().waitFor({ timeout: 60000 }));
  const score = await page.locator(".score").first().textContent();
  assert.match(score, /\d+\.\d%/);
  assert.ok(await page.getByTestId("search-hit").first().getByRole("link", { name: "Logs around it" }).count());
  await axeCheck(page, "search");
});

await check("Explore: 'Find similar errors' on an error row opens the semantic search", async () => {
  await page.goto(BASE + "/explore?since=15m&level=ERROR");
  await page.getByTestId("log-row").first().click();
  await page.getByRole("link", { name: "Find similar errors" }).click();
  await page.waitForURL(/\/search\?/);
  assert.ok(new URL(page.url()).searchParams.get("q"));
  await page.getByTestId("search-hit").first().waitFor({ timeout: 60000 });
});

await check("Services: a card per service with its rates", async () => {
  await visit(page, "/services", "services", () => page.getByTestId("service-card").first().waitFor({ timeout: 30000 }));
  const api_services = (await api("/api/services?window_minutes=60")).services.length;
  assert.ok((await page.getByTestId("service-card").count()) >= Math.min(api_services, 1));
  assert.ok(await page.locator(".service-card svg.sparkline").count(), "rates over time");
  await axeCheck(page, "services");
});

await check("Reports: analyze now opens the run, then the report renders and downloads", async () => {
  await page.goto(BASE + "/reports");
  await page.getByRole("heading", { name: "Reports", exact: true }).waitFor();
  await page.getByLabel("Window").selectOption("1");
  await page.getByRole("button", { name: "Analyze now" }).click();
  await page.waitForURL(/\/reports\/[^/]+$/);
  await page.getByTestId("report-markdown").waitFor({ timeout: 240000 });
  await page.getByTestId("report-figures").waitFor();
  const reportId = page.url().split("/").pop();
  const report = await api(`/api/reports/${reportId}`);
  assert.equal(report.status, "completed");
  const heading = report.markdown.split("\n").find((line) => line.startsWith("#"))?.replace(/^#+\s*/, "");
  if (heading) await page.getByRole("heading", { name: heading.replace(/[`*]/g, "") }).first().waitFor();
  await page.screenshot({ path: path.join(ARTIFACTS, "report.png"), fullPage: false });
  await axeCheck(page, "report");
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download Markdown" }).click()]);
  assert.equal(download.suggestedFilename(), `logpipe-report-${reportId}.md`);
  const file = fs.readFileSync(await download.path(), "utf8");
  assert.equal(file.trim(), report.markdown.trim());
  const [jsonDownload] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download JSON" }).click()]);
  assert.equal(jsonDownload.suggestedFilename(), `logpipe-report-${reportId}.json`);
  assert.equal(JSON.parse(fs.readFileSync(await jsonDownload.path(), "utf8")).id ?? reportId, reportId);
  await visit(page, "/reports", "reports", () => page.getByTestId("report-row").first().waitFor({ timeout: 20000 }));
  await axeCheck(page, "reports");
});

await check("Anomalies: the timeline, anomalies with their evidence, a novel error arriving live", async () => {
  const stored = (await api("/api/anomalies?limit=1")).total;
  await visit(page, "/anomalies", "anomalies", async () => {
    await page.locator(".chart canvas").first().waitFor({ timeout: 30000 });
    await page.getByRole("heading", { name: "Novel errors", exact: true }).waitFor();
    await page.locator('[aria-label="Anomalies by severity"] .state, [data-testid=anomaly]').first().waitFor({ timeout: 30000 });
  });
  assert.equal(await page.getByTestId("anomaly").count(), Math.min(stored, 500), "every stored anomaly is listed");
  if (stored) assert.ok(await page.getByTestId("anomaly").first().getByText("z-score").count());
  await page.getByText("live", { exact: true }).waitFor({ timeout: 15000 });
  // An error unlike anything the generator writes: the vectorizer publishes it as novel.
  const novel = `Quantum flux capacitor ${MARKER} desynchronised from the warp core lattice`;
  await ingest([{ service: "novelty-probe", level: "ERROR", message: novel }]);
  await page.getByTestId("novel-error").filter({ hasText: novel }).waitFor({ timeout: 90000 });
  await axeCheck(page, "anomalies");
});

await check("Pipeline: topics, lag, rates, DLQ and the collection", async () => {
  await visit(page, "/pipeline", "pipeline", async () => {
    await page.getByRole("heading", { name: "Topics" }).waitFor({ timeout: 30000 });
    await page.getByTestId("collection-points").waitFor();
  });
  const state = await api("/api/pipeline");
  assert.ok(Array.isArray(state.topics) && state.topics.length > 0);
  for (const topic of state.topics) assert.ok(await page.getByText(topic.name, { exact: true }).count(), topic.name);
  assert.equal(state.collection.available, true, JSON.stringify(state.collection));
  // The vectorizer keeps adding points, so the page's count is checked as a count, not equal to a later read.
  assert.match(await page.getByTestId("collection-points").textContent(), /^[0-9,]+$/);
  assert.ok(numberOf(await page.getByTestId("collection-points").textContent()) > 0, "errors were vectorized");
  // What a search covers, from the real vectorizer's retention: the embedded engine's default cap
  // and LOG_TTL_DAYS.
  assert.match(await page.getByTestId("collection-retention").textContent(),
               /^newest 400,000 kept · 90-day retention · [0-9,]+ expired$/);
  assert.equal(await page.getByText("not reachable").count(), 0, "ingest and vectorizer rates are shown");
  await axeCheck(page, "pipeline");
});

await check("dark and light themes both pass axe", async () => {
  await page.goto(BASE + "/explore?since=15m");
  await page.getByTestId("log-row").first().waitFor({ timeout: 30000 });
  const before = await page.evaluate(() => document.documentElement.dataset.theme);
  await page.getByRole("button", { name: /Switch to (light|dark) theme/ }).click();
  const after = await page.evaluate(() => document.documentElement.dataset.theme);
  assert.notEqual(before, after);
  await page.screenshot({ path: path.join(ARTIFACTS, `explore-${after}.png`) });
  await axeCheck(page, `explore (${after})`);
});

await check("no console error on any page", async () => {
  assert.deepEqual(consoleErrors, []);
});

await session.context.close();
await browser.close();
console.log(`\n${results.length - failures.length}/${results.length} checks passed`);
if (failures.length) console.log(`failed: ${failures.join("; ")}`);
process.exit(failures.length);
