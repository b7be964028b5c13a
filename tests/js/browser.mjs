// A headless Chromium driven over the DevTools protocol (Node 20's WebSocket, no package), for the
// ui tests (tests/tests/cli_ui*.rs). Usage: node --experimental-websocket browser.mjs PLAN.json
// PLAN: {"chromium": "chromium", "steps": [{"goto": url} | {"wait": js} | {"click": selector} |
//        {"type": [selector, text]} | {"screenshot": path} | {"eval": js}]}
// Prints {"results": [...]} (the value of each eval step); exits 1 naming the failed step.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const dataDir = mkdtempSync(join(tmpdir(), "keysmith-chromium-"));
const browser = spawn(plan.chromium || "chromium", [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
  "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
  "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
  `--user-data-dir=${dataDir}`, "--window-size=1280,900", "about:blank",
], { stdio: ["ignore", "ignore", "pipe"] });
let browserErr = "";
browser.stderr.on("data", (d) => { browserErr += d; });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let ws;
const console_ = [];

function finish(code, out) {
  try { ws && ws.close(); } catch {}
  browser.kill("SIGKILL");
  try { rmSync(dataDir, { recursive: true, force: true }); } catch {}
  if (out) process.stdout.write(out + "\n");
  process.exit(code);
}

async function devtoolsPort() {
  const file = join(dataDir, "DevToolsActivePort");
  for (let i = 0; i < 300; i++) {
    if (existsSync(file)) {
      const [port] = readFileSync(file, "utf8").split("\n");
      if (port) return port.trim();
    }
    await sleep(100);
  }
  throw new Error("chromium did not start its DevTools endpoint within 30 s: " + browserErr.slice(-2000));
}

let nextId = 1;
const pending = new Map();
function send(method, params = {}) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params }));
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject, method }));
}

async function evaluate(expression) {
  const r = await send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
  if (r.exceptionDetails) throw new Error(`${expression}: ${JSON.stringify(r.exceptionDetails.exception?.description || r.exceptionDetails.text)}`);
  return r.result.value;
}

async function waitFor(expression, what) {
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    try { if (await evaluate(expression)) return; } catch {}
    await sleep(100);
  }
  const text = await evaluate("document.body ? document.body.innerText : ''").catch(() => "");
  throw new Error(`${what}: not true within 20 s: ${expression}\npage text: ${text}\nconsole: ${console_.join("\n")}`);
}

async function click(selector) {
  const sel = JSON.stringify(selector);
  await waitFor(`!!document.querySelector(${sel})`, `click ${selector}`);
  const box = await evaluate(`(() => { const e = document.querySelector(${sel}); e.scrollIntoView({block: "center"});
    const r = e.getBoundingClientRect(); return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()`);
  // Real mouse events at the element's centre, as a person's click.
  for (const type of ["mouseMoved", "mousePressed", "mouseReleased"]) {
    await send("Input.dispatchMouseEvent", { type, x: box.x, y: box.y, button: "left", clickCount: 1 });
  }
}

try {
  const port = await devtoolsPort();
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  const page = targets.find((t) => t.type === "page");
  if (!page) throw new Error("no page target: " + JSON.stringify(targets));
  ws = new WebSocket(page.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("DevTools WebSocket failed")); });
  ws.onmessage = (m) => {
    const msg = JSON.parse(typeof m.data === "string" ? m.data : m.data.toString());
    if (msg.id && pending.has(msg.id)) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
      else p.resolve(msg.result);
    } else if (msg.method === "Runtime.consoleAPICalled") {
      console_.push(msg.params.args.map((a) => a.value ?? a.description).join(" "));
    } else if (msg.method === "Runtime.exceptionThrown") {
      console_.push("exception: " + (msg.params.exceptionDetails.exception?.description || msg.params.exceptionDetails.text));
    }
  };
  await send("Page.enable");
  await send("Runtime.enable");
  await send("Emulation.setDeviceMetricsOverride", { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false });
  const results = [];
  for (const [i, step] of plan.steps.entries()) {
    try {
      if (step.goto) {
        await send("Page.navigate", { url: step.goto });
        await waitFor(`document.readyState === "complete" && location.href === ${JSON.stringify(step.goto)}`, "goto");
      } else if (step.wait) {
        await waitFor(step.wait, "wait");
      } else if (step.click) {
        await click(step.click);
      } else if (step.type) {
        const [selector, text] = step.type;
        await click(selector);
        await send("Input.insertText", { text });
      } else if (step.screenshot) {
        const shot = await send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true });
        writeFileSync(step.screenshot, Buffer.from(shot.data, "base64"));
      } else if (step.eval) {
        results.push(await evaluate(step.eval));
      }
    } catch (e) {
      process.stderr.write(`step ${i} ${JSON.stringify(step)} failed: ${e.message}\n`);
      finish(1);
    }
  }
  finish(0, JSON.stringify({ results, console: console_ }));
} catch (e) {
  process.stderr.write(`browser.mjs: ${e.message}\n`);
  finish(1);
}
