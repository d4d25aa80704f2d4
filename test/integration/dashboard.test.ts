import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { expect } from 'chai';
import { chromium, type BrowserContext } from 'playwright-core';

import { PASSWORD, SIP_PASSWORD, createUser, userBody, waitForJob } from '../support/fixtures.js';
import { API_TOKEN, startStack, type Stack } from '../support/stack.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOTS = path.resolve('test-output');

/** A user without passwords, whose failed job can be retried. */
function plainUser(username: string) {
  return { user: { username, attributes: { domain: 'example.com' } } };
}

/** Logs in through the form as a browser would; answers the session cookie (`name=value`). */
async function logIn(stack: Stack, token = API_TOKEN): Promise<Response> {
  return fetch(`${stack.service.url}/admin/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, next: '/admin/queues' }),
    redirect: 'manual',
  });
}

function cookieOf(answer: Response): string {
  return (answer.headers.get('set-cookie') ?? '').split(';')[0];
}

describe('the queue dashboard', function () {
  this.timeout(60_000);
  let stack: Stack;

  beforeEach(async () => {
    stack = await startStack();
    stack.wac.seedDomain({ domain: 'example.com' });
  });

  afterEach(async () => {
    await stack.close();
  });

  describe('sign-in', () => {
    it('opens a session for a token: HttpOnly, SameSite=Strict, without the token', async () => {
      const answer = await logIn(stack);
      const setCookie = answer.headers.get('set-cookie') ?? '';
      const cookie = cookieOf(answer);
      const page = await fetch(`${stack.service.url}/admin/queues`, { headers: { cookie } });

      expect(answer.status).to.equal(303);
      expect(answer.headers.get('location')).to.equal('/admin/queues');
      expect(setCookie).to.match(/^kitter_admin=[\w-]{32}\.[\w-]{43};/);
      expect(setCookie.toLowerCase()).to.include('httponly');
      expect(setCookie.toLowerCase()).to.include('samesite=strict');
      expect(setCookie.toLowerCase()).to.include('path=/admin');
      expect(setCookie.toLowerCase()).to.include('expires=');
      expect(setCookie).not.to.include(API_TOKEN);
      expect(page.status).to.equal(200);
      expect(await page.text()).to.include('<title>kitter queues</title>');
    });

    it('shows the form again for a wrong or missing token', async () => {
      const wrong = await logIn(stack, 'not-a-token-of-this-service');
      const missing = await logIn(stack, '');

      expect(wrong.status).to.equal(401);
      expect(await wrong.text()).to.include('That token is not valid.');
      expect(wrong.headers.get('set-cookie')).to.equal(null);
      expect(missing.status).to.equal(400);
    });

    it('sends a browser without a session to the login page, and a script a 401', async () => {
      const browser = await fetch(`${stack.service.url}/admin/queues/queue/provisioning`, {
        headers: { accept: 'text/html' },
        redirect: 'manual',
      });
      const script = await fetch(`${stack.service.url}/admin/queues/api/queues`);
      const bearer = await fetch(`${stack.service.url}/admin/queues/api/queues`, {
        headers: { authorization: `Bearer ${API_TOKEN}` },
      });

      expect(browser.status).to.equal(303);
      expect(browser.headers.get('location')).to.equal(
        '/admin/login?next=%2Fadmin%2Fqueues%2Fqueue%2Fprovisioning',
      );
      expect(script.status).to.equal(401);
      expect(bearer.status).to.equal(200);
    });

    it('refuses a forged or tampered cookie', async () => {
      const cookie = cookieOf(await logIn(stack));
      const [name, value] = cookie.split('=');
      const other = value[10] === 'x' ? 'y' : 'x';
      const tampered = `${name}=${value.slice(0, 10)}${other}${value.slice(11)}`;
      const forged = `${name}=${'a'.repeat(32)}.${'b'.repeat(43)}`;

      for (const bad of [tampered, forged]) {
        const answer = await fetch(`${stack.service.url}/admin/queues/api/queues`, {
          headers: { cookie: bad },
        });
        expect(answer.status).to.equal(401);
      }
    });

    it('ends the session on logout, on every process', async () => {
      const cookie = cookieOf(await logIn(stack));
      const out = await fetch(`${stack.service.url}/admin/logout`, {
        method: 'POST',
        headers: { cookie },
        redirect: 'manual',
      });
      const after = await fetch(`${stack.service.url}/admin/queues/api/queues`, {
        headers: { cookie },
      });

      expect(out.status).to.equal(303);
      expect(out.headers.get('location')).to.equal('/admin/login');
      expect(out.headers.get('set-cookie')).to.match(/^kitter_admin=;/);
      expect(after.status).to.equal(401);
    });
  });

  it('shows job data without passwords, sealed or not', async () => {
    const userId = await createUser(stack, 'ada');
    const update = await stack.call('PATCH', `/users/${userId}`, {
      credentials: { password: 'N3w-Password-Horse' },
      attributes: { sip_mapping: { username: 'sip-ada', password: 'sip-N3w-4242' } },
    });
    await stack.call('POST', '/queues/provisioning/pause');
    const waiting = await stack.call('POST', '/users', userBody('bob'), {
      prefer: 'respond-async',
    });
    const headers = { authorization: `Bearer ${API_TOKEN}` };

    const seen: string[] = [];
    for (const id of [update.headers.get('kitter-job'), waiting.body.job.id]) {
      const answer = await fetch(
        `${stack.service.url}/admin/queues/api/queues/provisioning/${id}`,
        { headers },
      );
      expect(answer.status).to.equal(200);
      seen.push(await answer.text());
    }
    const list = await fetch(
      `${stack.service.url}/admin/queues/api/queues?activeQueue=provisioning&status=latest`,
      { headers },
    );
    seen.push(await list.text());

    const all = seen.join('\n');
    expect(update.status).to.equal(200);
    expect(all).to.include('"before"');
    expect(all).to.include('[sealed; removed when the job ends]');
    for (const secret of [PASSWORD, SIP_PASSWORD, 'N3w-Password-Horse', 'sip-N3w-4242']) {
      expect(all).not.to.include(secret);
    }
    // The waiting job still holds its sealed passwords in Redis; the board shows none of it.
    expect(JSON.parse(seen[1]).job.data.secrets).to.equal('[sealed; removed when the job ends]');
  });

  it('retries all failed jobs with all their attempts again, and no succeeded job', async () => {
    stack.wac.faults.set({ error_rate: 1, error_status: 400, paths: '^POST /sapi/users' });
    const failed = await stack.call('POST', '/users', plainUser('carl'));
    stack.wac.faults.reset();
    const made = await stack.call('POST', '/users', plainUser('dora'));
    const board = `${stack.service.url}/admin/queues/api/queues/provisioning/retry`;
    const headers = { authorization: `Bearer ${API_TOKEN}` };

    const all = await fetch(`${board}/failed`, { method: 'PUT', headers });
    const retried = await all.json();
    const job = await waitForJob(stack, failed.headers.get('kitter-job')!);
    const again = await fetch(`${board}/completed`, { method: 'PUT', headers });
    await again.arrayBuffer();

    expect([failed.status, made.status]).to.deep.equal([400, 201]);
    expect(all.status).to.equal(200);
    expect(retried).to.include({ retried: 1 });
    expect(job.state).to.equal('succeeded');
    // Its attempts counted afresh, as POST /jobs/{id}/retry counts them.
    expect(job.attempts).to.equal(1);
    expect(again.status).to.be.at.least(400);
    const dora = await stack.call('GET', `/jobs/${made.headers.get('kitter-job')}`);
    expect(dora.body.job.attempts).to.equal(1);
    expect(
      stack.keycloak
        .users()
        .map((user) => user.username)
        .sort(),
    ).to.deep.equal(['carl', 'dora']);
  });

  it('adds no job and replaces no job data from the board', async () => {
    await stack.call('POST', '/queues/provisioning/pause');
    const waiting = await stack.call('POST', '/users', plainUser('erin'), {
      prefer: 'respond-async',
    });
    const id = waiting.body.job.id;
    const board = `${stack.service.url}/admin/queues/api/queues/provisioning`;
    const headers = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' };

    const added = await fetch(`${board}/add`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ name: 'user.create', data: { user: { username: 'x' } } }),
    });
    const edited = await fetch(`${board}/${id}/update-data`, {
      method: 'PATCH',
      headers,
      body: JSON.stringify({ jobData: { user: { username: 'y' } } }),
    });
    const texts = [await added.text(), await edited.text()];
    const jobs = (await stack.call('GET', '/jobs?type=user.create')).body;
    await stack.call('POST', '/queues/provisioning/resume');
    const job = await waitForJob(stack, id);

    expect([added.status, edited.status], texts.join(' ')).to.deep.equal([405, 405]);
    expect(texts[0]).to.include("jobs are added through kitter's API");
    expect(texts[1]).to.include("a job's data is what its request was checked as");
    expect(jobs.total).to.equal(1);
    expect(job.state).to.equal('succeeded');
    expect(job.result.user).to.include({ username: 'erin' });
  });

  describe('in a real browser', () => {
    let browser: BrowserContext | undefined;
    let profile: string | undefined;

    afterEach(async () => {
      await browser?.close();
      if (profile) rmSync(profile, { recursive: true, force: true });
    });

    it('signs in, shows the failed job and its reason, retries it, and it succeeds', async () => {
      if (!existsSync(CHROMIUM)) {
        throw new Error(
          `no Chromium at ${CHROMIUM}: install it (apt-get install chromium; .ci/run does) ` +
            'or point CHROMIUM_PATH at one',
        );
      }
      stack.wac.faults.set({ error_rate: 1, error_status: 400, paths: '^POST /sapi/users' });
      const failed = await stack.call('POST', '/users', plainUser('grace'));
      const jobId = failed.headers.get('kitter-job')!;
      expect(failed.status).to.equal(400);
      stack.wac.faults.reset();

      profile = mkdtempSync(path.join(tmpdir(), 'kitter-chromium-'));
      // A fresh profile each run (Playwright passes it as --user-data-dir).
      browser = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        viewport: { width: 1400, height: 900 },
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
      const page = browser.pages()[0] ?? (await browser.newPage());
      // The page may only reach this service: anything else (a web font) is refused here too.
      const own = new URL(stack.service.url!).host;
      await page.route('**/*', (route) =>
        new URL(route.request().url()).host === own ? route.continue() : route.abort(),
      );

      await page.goto(`${stack.service.url}/admin/queues/queue/provisioning?status=failed`);
      expect(new URL(page.url()).pathname).to.equal('/admin/login');
      await page.fill('#token', API_TOKEN);
      await Promise.all([
        page.waitForURL('**/admin/queues/queue/provisioning*'),
        page.click('button'),
      ]);

      await page.getByText('wac-core rejected create user').first().waitFor({ timeout: 15_000 });
      await page.getByText(jobId).first().waitFor();
      mkdirSync(SCREENSHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SCREENSHOTS, 'dashboard-failed.png') });
      // The job card's actions are icons without names: retry is the circling arrows.
      const card = page
        .getByText(jobId, { exact: true })
        .first()
        .locator('xpath=ancestor::*[count(.//button) >= 4][1]');
      await card.locator('button:has(svg.lucide-refresh-cw)').click();
      await page.getByRole('button', { name: 'Confirm' }).click();

      // The job is still failed until the board's retry lands: wait for it to run again.
      const deadline = Date.now() + 15_000;
      let job = await waitForJob(stack, jobId);
      while (job.state !== 'succeeded' && Date.now() < deadline) {
        await page.waitForTimeout(100);
        job = await waitForJob(stack, jobId);
      }
      expect(job.state).to.equal('succeeded');
      expect(job.attempts).to.equal(1);

      await page.goto(`${stack.service.url}/admin/queues/queue/provisioning?status=completed`);
      await page.getByText(jobId).first().waitFor({ timeout: 15_000 });
      await page.screenshot({ path: path.join(SCREENSHOTS, 'dashboard-retried.png') });
      expect(stack.keycloak.users().map((user) => user.username)).to.deep.equal(['grace']);
    });
  });
});
