// Open the lab's home page in headless Chromium (Debian's, via playwright-core)
// and print what it showed as JSON: `node home.mjs URL [--timeout 30]`.
//   {"phase": "shown"|"failed"|..., "rows": [{"kind", "title", "reason", "items"}],
//    "links": <title links drawn>, "home": <steering's answer>, "errors": [...]}
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const url = args[0];
const i = args.indexOf("--timeout");
const timeout = i >= 0 ? Number(args[i + 1]) : 30;
if (!url) {
  console.error("usage: node home.mjs URL [--timeout N]");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let out = { phase: "not loaded" };
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForFunction(() => window.__home && window.__home.phase !== "loading",
    null, { timeout: timeout * 1000 });
  out = await page.evaluate(() => ({
    ...window.__home,
    links: document.querySelectorAll(".items a").length,
  }));
} catch (e) {
  out.errors = [String(e)];
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
