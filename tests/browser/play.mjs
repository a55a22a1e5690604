// Drive the web player in headless Chromium (Debian's, via playwright-core)
// until it has played `--seconds` of video, printing progress lines and then a
// JSON summary: `node play.mjs URL [--seconds 8] [--timeout 60]`.
//   progress: {"t": <wall s>, "played": <media s>, "phase", "primary": <appliance id>,
//              "frags": {host: n}, "loaded": <fragments so far>, "steering": [pathway...]}
//   result:   {"ok": bool, "played", "stalls": [s...], "errors": [...], "frags": {host: n},
//              "fragHosts": [host of each fragment, in load order], "steering", "play": {...}}
// The page picks the player from the URL (player=hls|dash).
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const url = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf("--" + name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const seconds = opt("seconds", 8);
const timeout = opt("timeout", 60);
if (!url) {
  console.error("usage: node play.mjs URL [--seconds N] [--timeout N]");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Root in a container has no user namespace sandbox; autoplay without a gesture;
  // nothing but the page on the network (playwright gives each launch a fresh profile).
  args: [
    "--no-sandbox",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let result = { ok: false };
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error("page:", m.text()));
  await page.goto(url);
  const started = Date.now();
  for (;;) {
    const s = await page.evaluate(() => window.__player);
    const t = (Date.now() - started) / 1000;
    const primary = s.play && s.play.appliances[0].id;
    const progress = { t, played: s.played, phase: s.phase, primary, frags: s.frags, loaded: s.fragHosts.length, steering: s.steering };
    console.log(JSON.stringify(progress));
    if (s.phase === "failed" || s.played >= seconds || t > timeout) {
      result = { ok: s.played >= seconds, ...s };
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ result }));
process.exit(result.ok ? 0 : 1);
