// Drives rowlock's dashboard (/ui) in headless Chromium and checks what it shows against what
// the Rust test set up through the API. Run by tests/api/ui.rs; exits non-zero on any failure.
//
// Environment: BASE_URL (rowlock), CHROMIUM (the browser binary), SCREENSHOT (PNG to write),
// EXPECT (JSON: counter, value, queue, counts, lease_key, lease_owner, lease_token,
// blocked_counter, blocker_pid).
import { chromium } from "playwright-core";

const base = process.env.BASE_URL;
const expect = JSON.parse(process.env.EXPECT);
const failures = [];
const check = (ok, what) => { if (!ok) failures.push(what); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--no-sandbox", "--disable-gpu"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(e.message));
  await page.goto(base + "/ui");

  // The counter, with its value.
  const counterRow = page.locator(`tr[data-counter="${expect.counter}"]`);
  await counterRow.waitFor({ timeout: 10000 });
  check((await counterRow.locator("td").nth(1).textContent()) === String(expect.value),
        `counter ${expect.counter} shows ${expect.value}`);

  // The queue's counts.
  const queueRow = page.locator(`tr[data-queue="${expect.queue}"]`);
  await queueRow.waitFor({ timeout: 10000 });
  const cells = await queueRow.locator("td").allTextContents();
  check(cells[1] === String(expect.counts.queued), `queued ${expect.counts.queued}, page: ${cells}`);
  check(cells[4] === String(expect.counts.dead), `dead ${expect.counts.dead}, page: ${cells}`);

  // The lease's owner and token.
  const leaseRow = page.locator(`tr[data-lease="${expect.lease_key}"]`);
  await leaseRow.waitFor({ timeout: 10000 });
  const lease = await leaseRow.locator("td").allTextContents();
  check(lease[1] === expect.lease_owner && lease[2] === String(expect.lease_token),
        `lease ${expect.lease_owner}/${expect.lease_token}, page: ${lease}`);

  // The blocked request and the session blocking it.
  const waits = page.locator("#waits li.wait");
  await waits.first().waitFor({ timeout: 10000 });
  const waitText = await page.locator("#waits").textContent();
  check(waitText.includes(expect.wait_names), `the wait names ${expect.wait_names}: ${waitText}`);
  check(waitText.includes(`pid ${expect.blocker_pid}`), `the blocker pid ${expect.blocker_pid}: ${waitText}`);
  check(/request [0-9a-f]+/.test(waitText), `the blocked request's id: ${waitText}`);

  // An increment through the API shows on the page within 3 s.
  const incremented = await fetch(`${base}/counters/${expect.counter}/increment`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ by: 1 }),
  });
  check(incremented.status === 200, `increment answered ${incremented.status}`);
  const started = Date.now();
  await page.waitForFunction(
    ([name, value]) => document.querySelector(`tr[data-counter="${name}"] td:nth-child(2)`)?.textContent === value,
    [expect.counter, String(expect.value + 1)], { timeout: 3000 },
  ).catch(() => failures.push(`the new value ${expect.value + 1} within 3 s`));
  console.log(`new value shown after ${Date.now() - started} ms`);

  // Pausing the queue from the page pauses it.
  await queueRow.locator('button[data-action="pause"]').click();
  await page.locator(`tr[data-queue="${expect.queue}"] .badge.paused`).waitFor({ timeout: 5000 })
    .catch(() => failures.push("the paused badge"));
  const queue = await (await fetch(`${base}/queues/${expect.queue}`)).json();
  check(queue.paused === true, `GET /queues/${expect.queue} says paused: ${JSON.stringify(queue)}`);

  await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  check(consoleErrors.length === 0, `no console errors: ${consoleErrors}`);
} finally {
  await browser.close();
}
if (failures.length) {
  console.error("dashboard checks failed:\n- " + failures.join("\n- "));
  process.exit(1);
}
console.log("dashboard checks passed; screenshot at " + process.env.SCREENSHOT);
