// tests/web/browser/console-pages.mjs — the console's pages in Debian's
// chromium with their real files (web/console/, Debian's PDF.js and
// Chart.js) and API replies given by the test (page.route), shaped as the
// contract says (docs/console.md): the language picked from
// Accept-Language and switched and remembered, every page on a 375 px
// phone without sideways scrolling, markup in a reason shown as text and
// run nowhere, the CSRF token on every POST, a PDF drawn on a canvas, the
// charts, and the live feed from Server-Sent Events. The same pages against
// a real sealgate-web and gateway: test-console-e2e.sh.

import { readFileSync, existsSync } from 'node:fs';
import { join, normalize, extname } from 'node:path';
import { browser, watch, shot, check, finish, log, canvasInked } from './lib.mjs';

const SRC = process.env.SEALGATE_SOURCE;
const CONSOLE = join(SRC, 'web/console');
const ORIGIN = 'http://sealgate.test';
const HOSTILE = '<img src=x onerror="window.__xss=1">';
const HOSTILE2 = '<script>window.__xss=2</script><b>bold</b>';
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };

// A one-page PDF with a line of text (what tests/e2e/lib.sh make_pdf writes).
function makePdf(text) {
	const content = `BT /F1 24 Tf 72 700 Td (${text}) Tj ET`;
	const objs = ['<< /Type /Catalog /Pages 2 0 R >>', '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
		'<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>',
		'<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
		`<< /Length ${content.length} >>\nstream\n${content}\nendstream`];
	let body = '%PDF-1.7\n';
	const off = [];
	objs.forEach((o, i) => { off.push(body.length); body += `${i + 1} 0 obj\n${o}\nendobj\n`; });
	const xref = body.length;
	body += 'xref\n0 6\n0000000000 65535 f \n' + off.map(o => String(o).padStart(10, '0') + ' 00000 n \n').join('');
	body += `trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
	return Buffer.from(body, 'latin1');
}
const PDF = makePdf('Acme Trading Co. - Sales contract No. 2026-17');

const now = Math.floor(Date.now() / 1000);
const APP = {
	id: 42, applicant: 'alice', applicant_name: 'Alice Chen', department: 'sales', seal: 'contract',
	document_type: 'contract', business_scope: 'sales', amount: 5000000, reason: HOSTILE,
	uses_granted: 1, uses_left: 1, created: now - 600, valid_until: now + 7 * 86400, state: 'pending',
	level: 2, levels: 2, status: 'approval #42 is waiting for level 2 of 2: an executive (carol)',
	approvals: [{ level: 1, by: 'bob', decision: 'approve', comment: HOSTILE2, at: now - 300 }],
	doc_sha256: 'ab'.repeat(32),
	document: { sha256: 'ab'.repeat(32), size: PDF.length, name: 'contract-2026-17.pdf', stored: true },
};
const RECORD = { seq: 77, time: '2026-12-03T08:00:00.000Z', actor: 'alice', action: 'sign', outcome: 'ok',
	seal: 'contract', application: 42, reason: HOSTILE };

// Application #42 as it stands: authorized once this person decided.
const app42 = me => (me.decided ? { ...APP, state: 'authorized', status: 'authorized', level: 2,
	approvals: [...APP.approvals, { level: 2, by: 'carol', decision: 'approve', comment: 'ok', at: now }] } : APP);

// What the test's API answers, and what it was sent.
const posts = [];
function api(route, req, me) {
	const url = new URL(req.url());
	const p = url.pathname.replace(/^\/api\/v1/, '');
	const json = (body, status = 200) => route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) });
	if (req.method() === 'POST') {
		let body = null;
		try {
			body = req.postDataJSON();
		} catch (e) {
			body = null;
		}
		posts.push({ path: p, csrf: req.headers()['x-csrf-token'], body });
		if (p === '/login') {
			if (!body || body.password !== 'right')
				return json({ error: 'bad_pin', message: 'wrong password' }, 401);
			me.value = { user: body.user, name: 'Carol Wang', roles: ['executive', 'department_head'], site: 'main', csrf: 'csrf-1' };
			return json(me.value);
		}
		if (p === '/logout') {
			me.value = null;
			return json({});
		}
		if (!me.value)
			return json({ error: 'not_logged_in', message: 'log in first' }, 401);
		if (req.headers()['x-csrf-token'] !== me.value.csrf)
			return json({ error: 'csrf', message: 'missing CSRF token' }, 403);
		if (p === '/applications')
			return json({ id: 43 });
		if (/^\/applications\/42\/(approve|reject)$/.test(p)) {
			me.decided = true;
			return json({ application: app42(me) });
		}
		return json({ error: 'not_found', message: 'no such endpoint' }, 404);
	}
	if (!me.value)
		return json({ error: 'not_logged_in', message: 'log in first' }, 401);
	switch (p) {
	case '/me': return json(me.value);
	case '/seals': return json({ seals: [
		{ id: 'contract', label: 'Contract Seal', kind: 'contract', site: 'main', available: true, quota_left: 180,
		  quotas: [{ period: 'day', limit: 200, used: 20 }, { period: 'month', limit: 2000, used: 1500 }] },
		{ id: 'official', label: 'Official Seal', kind: 'official', site: 'main', available: false, quota_left: -1 }] });
	case '/status': return json({ seals: [{ id: 'official', available: false, reason: 'the card is not in the reader' }] });
	case '/applications': return json({ applications: [APP] });
	case '/applications/42': return json({ application: app42(me) });
	case '/applications/42/why': return json({ text: 'rule 1 of the Contract Seal: amount over 1000000 — level 1 head of the applicant\'s department, level 2 an executive' });
	case '/why': return json({ refused: true, seal: 'contract', reason: 'quota used up ' + HOSTILE, time: now - 30 });
	case '/applications/42/document': return route.fulfill({ status: 200, contentType: 'application/pdf', body: PDF });
	case '/users': return json({ users: [
		{ id: 'alice', name: 'Alice Chen', department: 'sales', roles: ['employee'], totp_enrolled: true, locked: false, locked_until: 0, web_locked_until: 0 },
		{ id: 'dave', name: HOSTILE, department: 'finance', roles: ['employee'], totp_enrolled: true, locked: false, locked_until: 0, web_locked_until: now + 600 }] });
	case '/devices': return json({ devices: [{ id: 7, state: 'pending', host: 'desk-7', person: 'alice', fingerprint: 'SHA256:ab:cd', requested: now - 60 }] });
	case '/audit': return json({ scope: 'every record', records: [RECORD, { ...RECORD, seq: 78, outcome: 'denied', reason: 'quota used up' }] });
	case '/audit/verify': return json({ intact: true, records: 78, checkpoints: 3, head: 78 });
	case '/usage': {
		const by = url.searchParams.get('by');
		const rows = by === 'day' ? [{ key: '2026-12-01', signatures: 3 }, { key: '2026-12-02', signatures: 9 }, { key: '2026-12-03', signatures: 4 }]
			: [{ key: by + '-a', signatures: 12 }, { key: by + '-b', signatures: 5 }];
		return json({ by, rows });
	}
	case '/feed':
		return route.fulfill({ status: 200, headers: { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store' },
			body: 'retry: 600000\n\n' + [{ ...RECORD, seq: 75, action: 'logout', reason: '' },
				{ ...RECORD, seq: 76, action: 'login', outcome: 'denied', reason: 'wrong password' }, RECORD]
				.map(r => 'event: record\ndata: ' + JSON.stringify(r) + '\n\n').join('') });
	}
	return json({ error: 'not_found', message: 'no such endpoint ' + p }, 404);
}

// The console's files and Debian's JavaScript, as sealgate-web serves them.
function files(route, req) {
	const url = new URL(req.url());
	let path;
	if (url.pathname.startsWith('/javascript/'))
		path = normalize(join('/usr/share/javascript', url.pathname.slice('/javascript/'.length)));
	else
		path = normalize(join(CONSOLE, url.pathname === '/' ? 'index.html' : url.pathname));
	const ok = (path.startsWith(CONSOLE + '/') || path.startsWith('/usr/share/javascript/')) && existsSync(path);
	if (!ok)
		return route.fulfill({ status: 404, body: 'not found' });
	return route.fulfill({ status: 200, contentType: TYPES[extname(path)] || 'application/octet-stream', body: readFileSync(path) });
}

// Browsers still open, closed (their profiles removed) on a failure too.
const open_browsers = new Set();
async function launch(opts) {
	const b = await browser(opts);
	const close = async () => {
		open_browsers.delete(close);
		await b.close();
	};
	open_browsers.add(close);
	return { ctx: b.ctx, close };
}

async function open(ctx, name, me) {
	const page = await ctx.newPage();
	const errors = watch(page, name);
	// Nothing may leave for another origin: every asset is served here.
	const outside = [];
	await page.route('**/*', (route, req) => {
		const u = new URL(req.url());
		if (u.origin !== ORIGIN) {
			outside.push(req.url());
			return route.abort();
		}
		return u.pathname.startsWith('/api/') ? api(route, req, me) : files(route, req);
	});
	return { page, errors, outside };
}

async function login(page, password) {
	await page.fill('#login-form input[name=user]', 'carol');
	await page.fill('#login-form input[name=password]', password);
	await page.fill('#login-form input[name=code]', '123456');
	await page.click('#login-form button[type=submit]');
}

// The browser logs every request answered with an error status (401
// before login, the refusals the pages show); the rest is a script's.
const scriptErrors = errors => errors.filter(e => !/Failed to load resource: the server responded with a status of/.test(e));

const noScroll = page => page.evaluate(() => document.documentElement.scrollWidth);

async function main() {
	// --- Chinese from Accept-Language, English by the switch, remembered
	{
		const { ctx, close } = await launch({ locale: 'zh-CN' });
		const me = { value: null };
		const { page, errors } = await open(ctx, 'zh', me);
		await page.goto(ORIGIN + '/');
		await page.waitForSelector('#login-form h1');
		check('Accept-Language zh-CN: the login page is in Chinese', await page.textContent('#login-form h1') === '登录',
			await page.textContent('#login-form h1'));
		check('the page says its language (lang=zh-CN)', await page.getAttribute('html', 'lang') === 'zh-CN');
		await shot(page, 'login-zh-CN');
		await page.selectOption('#lang', 'en');
		check('the switch turns the page to English', await page.textContent('#login-form h1') === 'Log in');
		await page.reload();
		await page.waitForSelector('#login-form h1');
		check('the choice is remembered after a reload', await page.textContent('#login-form h1') === 'Log in',
			await page.textContent('#login-form h1'));
		await page.selectOption('#lang', 'zh-CN');
		await login(page, 'wrong');
		await page.waitForSelector('#flash .error');
		check('a wrong password is refused with the server\'s words', (await page.textContent('#flash')).includes('wrong password'));
		check('the password field is emptied after sending', await page.inputValue('#login-form input[name=password]') === '');
		await login(page, 'right');
		await page.waitForSelector('#waiting');
		check('logged in, Chinese menu', (await page.textContent('#nav')).includes('待我审批'), await page.textContent('#nav'));
		await shot(page, 'waiting-zh-CN');
		// Every word has its Chinese and its English.
		const k = await page.evaluate(async () => (await import('/i18n.js')).keys());
		const missing = k.en.filter(x => !k.zh.includes(x)).concat(k.zh.filter(x => !k.en.includes(x)));
		check('every word of the console is in both languages', missing.length === 0, missing);
		check('no script error (zh)', scriptErrors(errors).length === 0, errors);
		await close();
	}

	// --- every page in English, then on a phone
	for (const [label, viewport] of [['desktop', { width: 1280, height: 900 }], ['phone', { width: 375, height: 740 }]]) {
		const { ctx, close } = await launch({ locale: 'en-US', viewport });
		const me = { value: null };
		const { page, errors, outside } = await open(ctx, label, me);
		await page.goto(ORIGIN + '/#/applications/42');
		await page.waitForSelector('#login-form');
		check(`${label}: the login page fits the width`, await noScroll(page) <= viewport.width, await noScroll(page));
		await shot(page, `${label}-login`);
		await login(page, 'right');
		// After login the console goes where the link pointed (a notice's link).
		await page.waitForSelector('#application');
		await page.waitForFunction(() => document.querySelector('#pdf-canvas')?.dataset.rendered === '1' || document.querySelector('#pdf-error'), null, { timeout: 20000 });
		check(`${label}: the linked application opens after login`, (await page.textContent('#application h1')).includes('#42'));
		check(`${label}: the PDF is drawn by PDF.js`, !(await page.$('#pdf-error')) && await canvasInked(page, '#pdf-canvas') > 100,
			await page.$('#pdf-error') ? await page.textContent('#pdf-error') : 'blank canvas');
		check(`${label}: the reason's markup is shown as text`, await page.textContent('#app-reason') === HOSTILE,
			await page.textContent('#app-reason'));
		check(`${label}: the earlier level's comment is shown as text`, (await page.textContent('#history')).includes(HOSTILE2));
		check(`${label}: no element was made from a server's text`,
			await page.evaluate(() => document.querySelectorAll('#main img, #main script, #main b').length) === 0);
		check(`${label}: the rule that applies is shown`, (await page.textContent('#rule')).includes('amount over 1000000'));
		check(`${label}: the application page fits the width`, await noScroll(page) <= viewport.width, await noScroll(page));
		await shot(page, `${label}-application`);

		// Approving needs the code; the POST carries the CSRF token.
		posts.length = 0;
		await page.fill('#decide input[name=code]', '654321');
		await page.click('#reject');
		await page.waitForSelector('#flash .error');
		check(`${label}: a rejection without a comment is stopped before the server`, posts.length === 0 &&
			(await page.textContent('#flash')).includes('comment'), await page.textContent('#flash'));
		await page.fill('#decide input[name=code]', '');
		await page.fill('#decide textarea[name=comment]', 'ok for ' + HOSTILE);
		await page.click('#approve');
		await page.waitForSelector('#flash .error');
		check(`${label}: approving without a code is stopped before the server`, posts.length === 0, posts);
		await page.fill('#decide input[name=code]', '654321');
		await page.click('#approve');
		await page.waitForFunction(() => document.querySelector('#application')?.dataset.state === 'authorized');
		const ap = posts.find(p => p.path === '/applications/42/approve');
		check(`${label}: approve sent the comment and the code with the CSRF token`,
			ap && ap.csrf === 'csrf-1' && ap.body.code === '654321' && ap.body.comment === 'ok for ' + HOSTILE, ap);

		for (const [route, sel] of [['waiting', '#waiting'], ['apply', '#apply-form'], ['admin', '#devices'], ['audit', '#audit-results table'], ['hq', '#feed li']]) {
			if (route === 'admin')
				me.value.roles = ['seal_admin'];
			await page.goto(ORIGIN + '/#/' + route);
			await page.waitForSelector(sel, { timeout: 20000 });
			if (route === 'hq')
				await page.waitForFunction(() => document.querySelectorAll('#usage canvas').length === 4 && window.Chart && Object.keys(window.Chart.instances).length === 4, null, { timeout: 20000 });
			if (route === 'audit')
				await page.waitForSelector('#verify-result[data-intact="true"]', { state: 'attached' });
			if (route === 'apply') {
				// GET /why: my last refused signature, its reason as text.
				await page.waitForSelector('#last-refusal .why');
				const w = await page.textContent('#last-refusal');
				check(`${label}: the applicant sees the last refused signature and why (GET /why)`,
					w.includes('quota used up ' + HOSTILE) && w.includes('contract'), w);
			}
			if (route === 'hq') {
				// A gauge per quota of GET /seals: its limit and use.
				await page.waitForSelector('#quotas meter');
				const m = await page.$$eval('#quotas [data-seal=contract] meter', l => l.map(x => [x.value, x.max]));
				check(`${label}: a gauge for each of the Contract Seal's quotas, its use of its limit`,
					JSON.stringify(m) === '[[20,200],[1500,2000]]', m);
				const periods = await page.$$eval('#quotas [data-seal=contract] .period', l => l.map(x => x.textContent));
				check(`${label}: each gauge says its period in words`,
					JSON.stringify(periods) === '["Today","This month"]', periods);
				check(`${label}: a seal without quotas says no limit`,
					(await page.textContent('#quotas [data-seal=official]')).includes('no limit'));
			}
			check(`${label}: #/${route} fits the width`, await noScroll(page) <= viewport.width, await noScroll(page));
			check(`${label}: #/${route}: markup from the server stays text`,
				await page.evaluate(() => document.querySelectorAll('#main img, #main script').length) === 0 &&
				!(await page.evaluate(() => window.__xss)));
			await shot(page, `${label}-${route}`);
		}
		check(`${label}: the feed's row is the record, its reason as text`,
			(await page.textContent('#feed li')).includes(HOSTILE) && await page.getAttribute('#feed li', 'data-seq') === '77');
		check(`${label}: the feed shows signatures and refusals, not a logout`,
			JSON.stringify(await page.$$eval('#feed li', l => l.map(x => x.dataset.seq))) === '["77","76"]',
			await page.$$eval('#feed li', l => l.map(x => x.dataset.seq)));
		await page.goto(ORIGIN + '/#/admin');
		await page.waitForSelector('#people button');
		check(`${label}: a locked person can be unlocked`, (await page.textContent('#people')).includes(HOSTILE));
		posts.length = 0;
		await page.fill('#admin-code input[name=code]', '246810');
		await page.click('#people button');
		await page.waitForSelector('#flash p');
		check(`${label}: unlock POSTs the admin's code with the CSRF token`,
			posts.some(p => p.path === '/users/dave/unlock' && p.csrf === 'csrf-1' && p.body.code === '246810'), posts);

		// The audit filters reach the API as the protocol's fields.
		await page.goto(ORIGIN + '/#/audit');
		await page.waitForSelector('#audit-form');
		await page.fill('#audit-form input[name=from]', '2026-12-01');
		await page.fill('#audit-form input[name=to]', '2026-12-02');
		await page.fill('#audit-form input[name=person]', 'alice');
		const [sent] = await Promise.all([
			page.waitForRequest(r => /\/api\/v1\/audit\?/.test(r.url()) && r.url().includes('person=alice')),
			page.click('#audit-form button[type=submit]'),
		]);
		const q = new URL(sent.url()).search;
		const qp = new URLSearchParams(q);
		check(`${label}: audit search sends from_ns, to_ns (whole days, UTC) and person`,
			qp.get('from_ns') === '1796083200000000000' && qp.get('to_ns') === '1796255999999999999' &&
			qp.get('person') === 'alice' && !qp.has('from'), q);

		check(`${label}: no markup ran anywhere`, !(await page.evaluate(() => window.__xss)));
		// A session that ended (idle or absolute timeout): the next call
		// is 401, the console asks for the login again and then goes
		// back where the person was.
		me.value = null;
		await page.goto(ORIGIN + '/#/hq');
		await page.waitForSelector('#login-form');
		check(`${label}: an ended session brings the login back`, !(await page.$('#usage')));
		await login(page, 'right');
		await page.waitForSelector('#usage');
		check(`${label}: after logging in again the console is back on #/hq`, page.url().endsWith('#/hq'), page.url());

		check(`${label}: nothing asked of another origin`, outside.length === 0, outside);
		check(`${label}: no script error`, scriptErrors(errors).length === 0, errors);
		await close();
	}
	finish('console-pages');
}

main().catch(async e => {
	log('FAIL:', e.stack || e.message);
	for (const close of open_browsers)
		await close();
	process.exit(1);
});
