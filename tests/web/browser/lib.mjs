// tests/web/browser/lib.mjs — the browser tests' shared part: Debian's
// chromium through playwright-core (no browser download, a fresh profile
// each run), screenshots kept as artifacts, TOTP codes, and assertions
// that say what they saw.

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
	'--disable-background-networking', '--disable-component-update', '--disable-sync'];

let fails = 0;
export function log(...a) {
	console.error('#', ...a);
}
export function check(what, ok, saw) {
	if (ok)
		log('ok:', what);
	else {
		fails++;
		log('FAIL:', what, saw === undefined ? '' : '— saw: ' + JSON.stringify(saw));
	}
	return ok;
}
export function finish(name) {
	if (fails) {
		log(`${name}: ${fails} assertion(s) failed`);
		process.exit(1);
	}
	log(`${name}: all assertions held`);
	process.exit(0);
}

// A browser with its own new profile (--user-data-dir), removed at close.
// Each context is one person: its own cookies and storage.
export async function browser(opts = {}) {
	const profile = mkdtempSync(join(tmpdir(), 'sg-chromium-'));
	const ctx = await chromium.launchPersistentContext(profile, {
		executablePath: process.env.SG_CHROMIUM || '/usr/bin/chromium',
		headless: true,
		args: ARGS,
		viewport: opts.viewport || { width: 1280, height: 900 },
		locale: opts.locale || 'en-US',
		acceptDownloads: true,
	});
	const close = async () => {
		await ctx.close().catch(() => {});
		rmSync(profile, { recursive: true, force: true });
	};
	return { ctx, close };
}

// Every page error and console error, so a test can assert none happened.
export function watch(page, name) {
	const errors = [];
	page.on('pageerror', e => errors.push(name + ': ' + e.message));
	page.on('console', m => { if (m.type() === 'error') errors.push(name + ': ' + m.text()); });
	page.on('dialog', d => { errors.push(name + ': dialog ' + d.message()); d.dismiss().catch(() => {}); });
	return errors;
}

export async function shot(page, name) {
	const dir = process.env.SG_SHOTS;
	if (!dir)
		return;
	mkdirSync(dir, { recursive: true });
	await page.screenshot({ path: join(dir, name + '.png'), fullPage: true }).catch(e => log('screenshot', name, e.message));
}

// Does the canvas hold anything but one colour? (PDF.js drew the page.)
export async function canvasInked(page, selector) {
	return page.$eval(selector, c => {
		if (!c.width || !c.height)
			return 0;
		const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		let ink = 0;
		for (let i = 0; i < d.length; i += 4)
			if (d[i + 3] > 0 && (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200))
				ink++;
		return ink;
	});
}

// RFC 6238 TOTP (SHA-1, 6 digits, 30 s) of a base32 secret at step STEP.
export function totp(secret32, step) {
	const alpha = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
	let bits = '';
	for (const ch of secret32.replace(/=+$/, '').toUpperCase())
		bits += alpha.indexOf(ch).toString(2).padStart(5, '0');
	const key = Buffer.from(bits.match(/.{8}/g).map(b => parseInt(b, 2)));
	const msg = Buffer.alloc(8);
	msg.writeBigUInt64BE(BigInt(step));
	const h = createHmac('sha1', key).update(msg).digest();
	const o = h[h.length - 1] & 15;
	const n = (h.readUInt32BE(o) & 0x7fffffff) % 1000000;
	return String(n).padStart(6, '0');
}

// A code of ACCOUNT not spent yet in this run: the gateway accepts one
// step of drift but never a step at or before one it accepted, so each
// code is this step's or a later one's, waiting for the clock when needed.
const spent = new Map();
export async function freshCode(account, secret32) {
	let step = Math.floor(Date.now() / 30000);
	const last = spent.get(account) ?? 0;
	if (step <= last)
		step = last + 1;
	while (step > Math.floor(Date.now() / 30000) + 1)
		await new Promise(r => setTimeout(r, 500));
	spent.set(account, step);
	return totp(secret32, step);
}
