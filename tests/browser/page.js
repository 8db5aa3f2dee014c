// The web page as a person uses it, in Debian's headless Chromium driven by
// playwright-core: against a running proxy with no worker yet, upload
// chelsea.png, see the fast answer, start a worker, see the accurate answer
// replace the fast one through Server-Sent Events, check the marks, the
// history, the status line, error messages (not an image; Redis stopped at
// the end); screenshots go to OUT_DIR.
//
//   URL=http://127.0.0.1:PORT IMAGE=chelsea.png OUT_DIR=build/browser \
//   WORKER_CMD='build/tandem worker' WORKER_PID_FILE=/tmp/x.pid \
//   REDIS_STOP_CMD='redis-cli -p 6399 shutdown nosave' node tests/browser/page.js
//
// Prints "ok - ..." / "FAIL - ..." lines; exit status 1 if any failed.
"use strict";
const { chromium } = require("playwright-core");
const { spawn, execSync } = require("child_process");
const fs = require("fs");
const path = require("path");

const URL = process.env.URL, IMAGE = process.env.IMAGE, OUT = process.env.OUT_DIR;
let failed = 0, worker = null;
const ok = (d) => console.log(`ok - ${d}`);
const bad = (d, why) => { console.log(`FAIL - ${d}${why ? ": " + why : ""}`); failed++; };
const check = (d, cond, why) => (cond ? ok(d) : bad(d, why));

function startWorker() {
  const [cmd, ...args] = process.env.WORKER_CMD.split(" ");
  const log = fs.openSync(path.join(OUT, "worker.log"), "w");
  worker = spawn(cmd, args, { detached: true, stdio: ["ignore", log, log] });
  if (process.env.WORKER_PID_FILE) fs.writeFileSync(process.env.WORKER_PID_FILE, String(worker.pid));
}

// The page fetches a sample before it marks the answer as sending, so a wait
// for the next stage could match the previous answer: clear it first.
async function pickSample(page, name) {
  await page.evaluate(() => { delete document.querySelector("#answer").dataset.stage; });
  await page.click(`[data-s="${name}"]`);
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const profile = fs.mkdtempSync("/tmp/tandem-chromium-");
  // A fresh profile (--user-data-dir, which playwright takes as this argument).
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1100, height: 820 },
  });
  try {
    const page = browser.pages()[0] || await browser.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    let eventsUrl = null;
    page.on("request", (r) => { if (/\/job\/[a-z0-9]+\/events$/.test(r.url())) eventsUrl = r.url(); });

    await page.goto(URL + "/");
    check("the page loads with its title", (await page.title()).includes("tandem"));
    await page.waitForFunction(() => /queue \d+ · in progress \d+ · workers 0/.test(document.querySelector("#stats").textContent), null, { timeout: 10000 })
      .then(() => ok("the status line shows queue, jobs in progress and workers (none yet)"),
            (e) => bad("status line", e.message));
    const label = await page.locator("label[for=file]").textContent();
    check("the file input has a visible label", /choose an image/i.test(label));

    // Fast answer, with no worker running: the accurate one must wait.
    await page.setInputFiles("#file", IMAGE);
    await page.waitForSelector('#answer[data-stage="fast"] #top1', { timeout: 20000 });
    const fastLabel = (await page.textContent("#top1")).trim();
    // The server's side of it: the job the page follows, and its fast answer.
    await page.waitForFunction(() => !!JSON.parse(localStorage.getItem("tandem.jobs") || "[]").length);
    const jobId = await page.evaluate(() => JSON.parse(localStorage.getItem("tandem.jobs"))[0].id);
    const queued = (await (await page.request.get(`${URL}/job/${jobId}`)).json())[jobId];
    const predict = { job_id: jobId, result_sync: queued.sync.prediction };
    check("the job is still queued: no worker yet", queued.status === "queued", queued.status);
    check(`the fast answer appears (${fastLabel})`, predict && fastLabel === predict.result_sync,
      `page ${fastLabel}, server ${predict && predict.result_sync}`);
    check("with five bars", (await page.locator("#answer .bars li").count()) === 5);
    check("and a mark that the accurate answer is on its way", /on its way|running/.test(await page.textContent("#mark")));
    check("the page follows the job through /job/{id}/events", !!eventsUrl && eventsUrl.includes(predict.job_id));
    await page.screenshot({ path: path.join(OUT, "fast.png") });

    // Now a worker: the accurate answer arrives through SSE and replaces the fast one.
    startWorker();
    await page.waitForSelector('#answer[data-stage="accurate"]', { timeout: 60000 });
    const accLabel = (await page.textContent("#top1")).trim();
    const mark = (await page.textContent("#mark")).trim();
    const job = (await (await page.request.get(`${URL}/job/${predict.job_id}`)).json())[predict.job_id];
    check(`the accurate answer replaces it (${accLabel}, ${mark})`, accLabel === job.prediction,
      `page ${accLabel}, server ${job.prediction}`);
    check("it came through the event stream", (await page.getAttribute("#answer", "data-via")) === "sse");
    const want = ("agrees_with_fast" in job ? job.agrees_with_fast : job.prediction === predict.result_sync) ? "confirmed" : "upgraded";
    check(`the mark says ${want}`, mark === want, mark);
    check("the fast answer stays visible for comparison", (await page.textContent("#answer .was")).includes(predict.result_sync));
    check("the live region announces results", (await page.getAttribute("#answer", "aria-live")) === "polite");
    await page.screenshot({ path: path.join(OUT, "accurate.png") });

    // The history of this browser survives a reload.
    await page.reload();
    const hist = await page.locator("#history li button").first().textContent().catch(() => "");
    check("the job is in this browser's history after a reload", hist.includes(accLabel), hist);
    await page.waitForFunction(() => /workers [1-9]/.test(document.querySelector("#stats").textContent), null, { timeout: 15000 })
      .then(() => ok("the status line sees the worker"), (e) => bad("status line sees the worker", e.message));

    // A file that is not an image: a readable message in an alert.
    await page.setInputFiles("#file", { name: "notes.jpg", mimeType: "image/jpeg", buffer: Buffer.from("this is not a picture") });
    await page.waitForSelector("#error:not([hidden])", { timeout: 10000 });
    const err = await page.textContent("#error");
    check(`a file that is not an image gets a readable message (${err.slice(0, 60)}…)`, /could not be read as an image/.test(err) && (await page.getAttribute("#error", "role")) === "alert");

    // Keyboard: a sample is reachable and works with Enter.
    await page.focus('[data-s="coffee"]');
    await page.keyboard.press("Enter");
    await page.waitForSelector('#answer[data-stage="accurate"]', { timeout: 30000 });
    ok(`a sample chosen with the keyboard is classified (${(await page.textContent("#top1")).trim()})`);
    check("the error went away", await page.locator("#error").isHidden());

    // A second image (dog.jpg, where the fast model is often wrong): the mark follows the labels.
    if (process.env.IMAGE2) {
      await page.setInputFiles("#file", process.env.IMAGE2);
      await page.waitForSelector('#answer[data-stage="accurate"] .was', { timeout: 30000 });
      const was = await page.textContent("#answer .was"), top = (await page.textContent("#top1")).trim();
      const m = (await page.textContent("#mark")).trim();
      check(`${path.basename(process.env.IMAGE2)}: ${top}, ${m}`, m === (was.startsWith(`Fast answer was ${top} (`) ? "confirmed" : "upgraded"), was);
      await page.screenshot({ path: path.join(OUT, "second.png") });
    }

    // Narrow screens: one column, nothing wider than the viewport.
    await page.setViewportSize({ width: 390, height: 1100 });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    check("on a phone-sized screen nothing overflows sideways", wide <= 390, `${wide} px`);
    await page.screenshot({ path: path.join(OUT, "narrow.png"), fullPage: true });

    await page.setViewportSize({ width: 1100, height: 820 });

    // Too large for the server (MAX_BODY_BYTES=2M): said before anything is sent.
    await page.setInputFiles("#file", { name: "big.jpg", mimeType: "image/jpeg", buffer: Buffer.alloc(3 << 20, 0xff) });
    await page.waitForSelector("#error:not([hidden])", { timeout: 10000 });
    const big = await page.textContent("#error");
    check(`a file over the server's limit gets a readable message (${big})`, /too large: 3\.0 MB.*2\.0 MB/.test(big));

    // The queue full (MAX_QUEUE=1, no worker): the fast answer, and why no accurate one follows.
    const exited = new Promise((done) => (worker.exitCode !== null ? done() : worker.on("exit", done)));
    process.kill(-worker.pid, "SIGTERM");
    await exited;
    worker = null;
    await pickSample(page, "coffee");
    await page.waitForSelector('#answer[data-stage="fast"]', { timeout: 20000 });
    await pickSample(page, "astronaut");
    await page.waitForSelector('#answer[data-stage="fast"] .warn', { timeout: 20000 });
    const full = await page.textContent("#answer .warn");
    check(`with the queue full the fast answer comes with a warning (${full.slice(0, 40)}…)`, /queue is full/.test(full));

    // Redis goes away: the fast answer still comes, with a readable warning.
    execSync(process.env.REDIS_STOP_CMD);
    await pickSample(page, "rocket");
    await page.waitForSelector('#answer[data-stage="fast"] .warn', { timeout: 20000 });
    const warn = await page.textContent("#answer .warn");
    await page.screenshot({ path: path.join(OUT, "redis-down.png") });
    check(`with Redis down the fast answer comes with a warning (${warn.slice(0, 40)}…)`, /queue is unavailable/.test(warn));
    await page.waitForFunction(() => /unreachable/.test(document.querySelector("#stats").textContent), null, { timeout: 10000 })
      .then(() => ok("the status line says the job store is unreachable"), (e) => bad("status line with Redis down", e.message));
    check("no script errors", pageErrors.length === 0, pageErrors.join("; "));
  } finally {
    await browser.close();
    if (worker) try { process.kill(-worker.pid, "SIGTERM"); } catch (e) { /* gone */ }
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(() => process.exit(failed ? 1 : 0), (e) => { bad("browser test", e.stack || String(e)); process.exit(1); });
