// Import a Trace Event Format JSON file into speedscope (the npm package's built page),
// served with the profile from a loopback HTTP server started here; report one JSON line:
//   {"title": ..., "failed": bool, "dialogs": [...alert texts...], "errors": [...],
//    "logs": [...]}
// "failed" is speedscope's own import error; an alert says the format was not recognized or
// the profile was empty.
// Usage: node speedscope.mjs SPEEDSCOPE_RELEASE_DIR PROFILE.json SCREENSHOT.png USER_DATA_DIR
import { createRequire } from "node:module";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH || ".", "x.js"));
const { chromium } = require("playwright-core");

const [dist, profile, shot, userData] = process.argv.slice(2);
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css",
  ".json": "application/json", ".wasm": "application/wasm", ".png": "image/png" };
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const file = url.pathname === "/profile.json"
    ? profile
    : path.join(dist, path.normalize(url.pathname).replace(/^(\.\.[/\\])+/, ""));
  fs.readFile(file, (err, data) => {
    if (err) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] || "application/octet-stream" });
    res.end(data);
  });
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const port = server.address().port;
const FLAGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const ctx = await chromium.launchPersistentContext(userData, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: FLAGS,
  viewport: { width: 1200, height: 600 },
  timeout: 60000,
});
const errors = [];
const logs = [];
try {
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.on("console", (m) => {
    if (m.type() === "error") errors.push("console: " + m.text());
    else logs.push(m.text());
  });
  page.on("pageerror", (e) => errors.push("page: " + e.message));
  const dialogs = [];
  page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  await page.goto(`http://127.0.0.1:${port}/index.html#profileURL=/profile.json`, { timeout: 30000 });
  // speedscope names the page after the imported file once the import is done, and shows
  // "Something went wrong" when it fails.
  const t0 = Date.now();
  for (;;) {
    const done = await page.evaluate(
      () => document.title.includes("profile.json") || document.body.innerText.includes("Something went wrong"));
    if (done || dialogs.length) break;
    if (Date.now() - t0 > 30000) { errors.push("timeout: no import result after 30 s"); break; }
    await page.waitForTimeout(100);
  }
  await page.waitForTimeout(300);
  const title = await page.title();
  const failed = await page.evaluate(() => document.body.innerText.includes("Something went wrong"));
  await page.screenshot({ path: shot });
  console.log(JSON.stringify({ title, failed, dialogs, errors, logs }));
} finally {
  await ctx.close();
  server.close();
}
