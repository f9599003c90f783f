// Load a `faultline timeline` page in headless Chromium (through playwright-core), exercise it
// and report what it shows as one JSON line on stdout:
//   {"ready": true, "lanes": N, "loss": {"full":..,"stalled":..,"too_big":..,"packets":..},
//    "errors": [...console errors and page errors...], "requests": [...non-file URLs...]}
// Usage: node timeline.mjs PAGE.html SCREENSHOT.png USER_DATA_DIR [WIDTH HEIGHT]
// NODE_PATH must reach playwright-core; CHROMIUM may name the browser (default
// /usr/bin/chromium).
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH || ".", "x.js"));
const { chromium } = require("playwright-core");

const [page_, shot, userData, w = "1400", h = "620"] = process.argv.slice(2);
const FLAGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const ctx = await chromium.launchPersistentContext(userData, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: FLAGS,
  viewport: { width: Number(w), height: Number(h) },
  timeout: 60000,
});
const errors = [];
const requests = [];
try {
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.on("console", (m) => { if (m.type() === "error") errors.push("console: " + m.text()); });
  page.on("pageerror", (e) => errors.push("page: " + e.message));
  page.on("request", (r) => { if (!r.url().startsWith("file:")) requests.push(r.url()); });
  await page.goto("file://" + path.resolve(page_), { timeout: 30000 });
  // Ready, or broken: stop at the first page error rather than waiting for the timeout.
  const t0 = Date.now();
  while (!(await page.evaluate(() => document.body && document.body.dataset.ready === "1"))) {
    if (errors.length || Date.now() - t0 > 30000) {
      if (!errors.length) errors.push("timeout: the page did not finish drawing in 30 s");
      console.log(JSON.stringify({ ready: false, errors, requests }));
      process.exitCode = 0;
      await ctx.close();
      process.exit();
    }
    await page.waitForTimeout(50);
  }
  const lanes = await page.evaluate(() => document.querySelectorAll("#lanes .lane").length);
  const loss = await page.evaluate(() => window.faultlineTimeline.lossTotals());
  const header = await page.evaluate(() => document.getElementById("stats").innerText);
  // Exercise zoom and pan: buttons, wheel, drag, keys; then back to the full view.
  const body = page.locator("#lanes .lane-body").first();
  const box = await body.boundingBox();
  await page.click("#zoom-in");
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
  await page.mouse.wheel(0, -400);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2, { steps: 4 });
  await page.mouse.up();
  await page.keyboard.press("ArrowLeft");
  await page.keyboard.press("-");
  const zoomed = await page.evaluate(() => document.getElementById("view-range").textContent);
  await page.click("#zoom-reset");
  await page.mouse.move(0, 0);
  await page.waitForTimeout(100);
  await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify({ ready: true, lanes, loss, header, zoomed, errors, requests }));
} finally {
  await ctx.close();
}
