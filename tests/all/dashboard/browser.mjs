// The dashboard as a person sees it, in headless Chromium driven by playwright-core; run by
// tests/all/dashboard.rs, which fills the server through Terraform and takes the lock first.
// Every check that fails stops the script with a message naming it (exit 1).
//
// Environment: STATEPLUG_URL, STATEPLUG_CHROMIUM, STATEPLUG_PLAYWRIGHT (the playwright-core
// directory), STATEPLUG_SCREENSHOTS (a directory), DASHBOARD_WORKSPACE, DASHBOARD_ADMIN and
// DASHBOARD_VIEWER (`user:password`), DASHBOARD_FROM and DASHBOARD_TO (the serials of the two
// applies), DASHBOARD_LOCK_ID and DASHBOARD_LOCK_WHO (the lock the test took).

import { createRequire } from "node:module";
import path from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`browser.mjs: ${name} is not set (tests/all/dashboard.rs sets it)`);
    process.exit(2);
  }
  return value;
};

const base = env("STATEPLUG_URL");
const workspace = env("DASHBOARD_WORKSPACE");
const shots = env("STATEPLUG_SCREENSHOTS");
const [from, to] = [env("DASHBOARD_FROM"), env("DASHBOARD_TO")];
const [lockId, lockWho] = [env("DASHBOARD_LOCK_ID"), env("DASHBOARD_LOCK_WHO")];
const credentials = (value) => {
  const at = value.indexOf(":");
  return { username: value.slice(0, at), password: value.slice(at + 1) };
};
const { chromium } = createRequire(import.meta.url)(env("STATEPLUG_PLAYWRIGHT"));

let step = "starting";
const check = (ok, what) => {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok  ${what}`);
};

/// The visible text of `selector` on the page.
const textOf = async (page, selector) => {
  const count = await page.locator(selector).count();
  if (count === 0) throw new Error(`check failed: ${page.url()} has no ${selector}`);
  return page.locator(selector).first().innerText();
};

/// Opens `url`; the answer must be 200 and an HTML page with the dashboard's headers.
const open = async (page, url) => {
  const response = await page.goto(base + url);
  check(response.status() === 200, `GET ${url} answers 200 (got ${response.status()})`);
  const headers = response.headers();
  check(
    (headers["content-security-policy"] || "").includes("default-src 'none'"),
    `GET ${url} sends the Content-Security-Policy`,
  );
  return response;
};

const browser = await chromium.launch({ executablePath: env("STATEPLUG_CHROMIUM"), headless: true });
try {
  const desktop = { viewport: { width: 1280, height: 900 } };
  const phone = { viewport: { width: 375, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

  // A read-only user: the same workspace, the lock and its holder, and no buttons.
  step = "the read-only user";
  {
    const context = await browser.newContext({ ...desktop, httpCredentials: credentials(env("DASHBOARD_VIEWER")) });
    const page = await context.newPage();
    await open(page, `/ui/workspaces/${workspace}`);
    const lock = await textOf(page, "#lock");
    check(lock.includes(lockWho) && lock.includes(lockId), `the viewer sees the lock held by ${lockWho}`);
    check((await textOf(page, "#outputs")).includes("greeting"), "the viewer sees the outputs");
    check((await page.locator("a.force-unlock").count()) === 0, "the viewer has no force-unlock button");
    check((await page.locator("a.rollback").count()) === 0, "the viewer has no rollback buttons");
    check((await page.locator("nav a", { hasText: "Audit trail" }).count()) === 0, "the viewer's navigation has no audit trail");
    const audit = await page.goto(`${base}/ui/audit`);
    check(audit.status() === 403, `the viewer gets 403 for /ui/audit (got ${audit.status()})`);
    const confirm = await page.goto(`${base}/ui/workspaces/${workspace}/force-unlock`);
    check(confirm.status() === 403, `the viewer gets 403 for the force-unlock confirmation (got ${confirm.status()})`);
    await context.close();
  }

  // An administrator: the table, the workspace page, force-unlock, the audit trail, rollback.
  step = "the administrator";
  {
    const context = await browser.newContext({ ...desktop, httpCredentials: credentials(env("DASHBOARD_ADMIN")) });
    const page = await context.newPage();
    await open(page, "/ui/");
    const row = page.locator("#workspaces tbody tr", { hasText: workspace });
    check((await row.count()) === 1, `the workspaces table has a row for ${workspace}`);
    const cells = await row.locator("td").allInnerTexts();
    check(cells[0] === workspace, `its name is ${workspace} (got ${cells[0]})`);
    check(cells[1] === to, `its serial is ${to} (got ${cells[1]})`);
    check(cells[2] === lockWho, `its lock holder is ${lockWho} (got ${cells[2]})`);

    // The filter is server side: a glob that misses hides the row, a part of the name keeps it.
    await page.fill("#q", "nothing-*");
    await page.click("form.filter button");
    check((await page.locator("#workspaces tbody tr", { hasText: workspace }).count()) === 0, "a filter that does not match hides the row");
    await page.fill("#q", workspace.slice(1, 4));
    await page.click("form.filter button");
    check((await page.locator("#workspaces tbody tr", { hasText: workspace }).count()) === 1, "a part of the name finds it");
    await page.screenshot({ path: path.join(shots, "workspaces-desktop.png"), fullPage: true });

    await page.click(`#workspaces a:text-is("${workspace}")`);
    check(page.url().endsWith(`/ui/workspaces/${workspace}`), `the name links to the workspace page (at ${page.url()})`);
    const outputs = await textOf(page, "#outputs");
    check(/greeting\s+two/.test(outputs), "the outputs show greeting = two");
    check(/region\s+us-east-1/.test(outputs), "the outputs show the region read through terraform_remote_state");
    check(/password\s+\(sensitive\)/.test(outputs), "the sensitive output is masked");
    check(!(await page.content()).includes("hunter2"), "the sensitive value is nowhere in the page");
    const resources = await textOf(page, "#resources");
    check(/data\.terraform_remote_state\s+2\s+2/.test(resources), "the resource summary counts 2 data.terraform_remote_state");
    const history = await page.locator("#history tbody tr td:first-child").allInnerTexts();
    check(history.includes(from) && history.includes(to), `the history lists serials ${from} and ${to} (got ${history.join(", ")})`);
    check((await page.locator("a.rollback").count()) === history.length, "every history entry has a rollback button");

    // The diff between the two applies, picked with the form.
    await page.selectOption("#from", from);
    await page.selectOption("#to", to);
    await page.click("#diff button");
    const diff = await textOf(page, "#diff");
    check(diff.includes(`Serial ${from} → serial ${to}`), `the diff compares serial ${from} with ${to}`);
    check(/\+\s*data\.terraform_remote_state\.extra\s+added/.test(diff), "the diff shows data.terraform_remote_state.extra added");
    check(/~\s*data\.terraform_remote_state\.base\s+changed/.test(diff), "the diff shows data.terraform_remote_state.base changed");
    check(/-\s*data\.terraform_remote_state\.old\s+removed/.test(diff), "the diff shows data.terraform_remote_state.old removed");
    await page.screenshot({ path: path.join(shots, "workspace-desktop.png"), fullPage: true });

    // Force-unlock: a confirmation page, then the lock is gone.
    await page.click("a.force-unlock");
    check(page.url().endsWith(`/ui/workspaces/${workspace}/force-unlock`), "force-unlock asks for confirmation first");
    check((await page.innerText("main")).includes(lockId), "the confirmation names the lock's ID");
    await page.screenshot({ path: path.join(shots, "force-unlock-desktop.png"), fullPage: true });
    // The POST answers 303; wait for the page it leads to.
    const [posted] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST"),
      page.click("#confirm"),
    ]);
    const why = posted.status() === 303 ? "" : await posted.text();
    check(posted.status() === 303, `the confirmed form is answered 303 (got ${posted.status()}${why})`);
    await page.waitForURL(`**/ui/workspaces/${workspace}?done=force-unlock`);
    check(page.url().endsWith(`/ui/workspaces/${workspace}?done=force-unlock`), `the form goes back to the workspace (at ${page.url()})`);
    check((await textOf(page, "#notice")).includes("lock was broken"), "the page says the lock was broken");
    check((await textOf(page, "#lock")).includes("Not locked"), "the lock is gone");
    check((await page.locator("a.force-unlock").count()) === 0, "no force-unlock button without a lock");
    await open(page, "/ui/");
    const after = await page.locator("#workspaces tbody tr", { hasText: workspace }).locator("td").allInnerTexts();
    check(after[2] === "-", `the table shows no lock holder any more (got ${after[2]})`);

    await open(page, "/ui/audit");
    const first = await page.locator("#audit tbody tr").first().locator("td").allInnerTexts();
    check(first[1] === "force-unlock" && first[2] === workspace, `the newest audit event is the force-unlock of ${workspace} (got ${first.join(" | ")})`);
    check(first[3] === `user:${credentials(env("DASHBOARD_ADMIN")).username}`, `the force-unlock is recorded as the admin's (got ${first[3]})`);
    check(first[6] === lockId, `the force-unlock names the lock broken (got ${first[6]})`);

    // Rollback: the older version becomes the current state again, as a new serial.
    await open(page, `/ui/workspaces/${workspace}`);
    await page.click(`a.rollback[href$="serial=${from}"]`);
    check(page.url().endsWith(`/ui/workspaces/${workspace}/rollback?serial=${from}`), "rollback asks for confirmation first");
    const [rolled] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST"),
      page.click("#confirm"),
    ]);
    check(rolled.status() === 303, `the confirmed rollback is answered 303 (got ${rolled.status()})`);
    await page.waitForURL((url) => url.search.startsWith("?done=rollback"));
    check((await textOf(page, "#notice")).includes(`the state of serial ${from} is now the current state`), "the page says which version is current again");
    check(/greeting\s+one/.test(await textOf(page, "#outputs")), "the outputs are the older version's again");

    await open(page, "/ui/backend");
    const plugin = await textOf(page, "#plugin");
    check(plugin.includes("memory"), "the backend page names the plugin");
    check((await textOf(page, "#grants")).includes("Timeout"), "the backend page shows the grants to an administrator");
    await context.close();
  }

  // A phone's width: the page itself never scrolls sideways; wide tables scroll in their box.
  step = "a phone's width";
  {
    const context = await browser.newContext({ ...phone, httpCredentials: credentials(env("DASHBOARD_ADMIN")) });
    const page = await context.newPage();
    for (const url of ["/ui/", `/ui/workspaces/${workspace}`, "/ui/audit", "/ui/backend"]) {
      await open(page, url);
      const { scrollWidth, innerWidth } = await page.evaluate(() => ({
        scrollWidth: document.scrollingElement.scrollWidth,
        innerWidth: window.innerWidth,
      }));
      check(scrollWidth <= innerWidth, `${url} at 375 px does not overflow sideways (${scrollWidth} <= ${innerWidth})`);
    }
    await open(page, "/ui/");
    const table = await page.evaluate(() => {
      const box = document.querySelector("#workspaces").parentElement;
      return { overflow: getComputedStyle(box).overflowX, wide: box.scrollWidth, shown: box.clientWidth };
    });
    check(table.overflow === "auto", "the workspaces table sits in a box that scrolls sideways");
    check(table.wide >= table.shown, `the table's box holds the whole table (${table.wide} >= ${table.shown})`);
    await page.screenshot({ path: path.join(shots, "workspaces-phone.png"), fullPage: true });
    await open(page, `/ui/workspaces/${workspace}`);
    await page.screenshot({ path: path.join(shots, "workspace-phone.png"), fullPage: true });
    await context.close();
  }
  console.log(`all checks passed; screenshots in ${shots}`);
} catch (error) {
  console.error(`FAILED (${step}): ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
