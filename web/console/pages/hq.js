// pages/hq.js — headquarters: usage per site, seal, department and day as
// Chart.js charts (GET /usage?by=…), quota gauges (GET /seals), and the
// live feed of signatures and refusals (Server-Sent Events, GET /feed:
// `event: record`, one audit row as `sealctl audit query --json` prints it).

import * as api from '../api.js';
import { el, clear, field } from '../dom.js';
import { t } from '../i18n.js';
import { errorText } from '../app.js';
import { chartjs } from '../vendor.js';
import { cssWord } from './common.js';

export const FEED_ROWS = 200;	// rows kept on the page; older ones drop off

// The feed shows signatures and refusals: a sign record, or any record
// whose outcome is not ok (a size probe's placeholder is no signature).
export const shown = r => r.action === 'sign' || (r.outcome && r.outcome !== 'ok');
const BYS = ['site', 'seal', 'department', 'day'];

const day = d => d.toISOString().slice(0, 10);
// A date field as Unix seconds (UTC): the API counts [from, to), so the
// last day shown ends at the next day's start.
const secs = (v, end) => {
	const ms = Date.parse(v + 'T00:00:00Z');
	return Number.isNaN(ms) ? '' : Math.floor(ms / 1000) + (end ? 86400 : 0);
};

// One usage row: its key and its number of signatures, whatever the
// field is named in the reply.
function point(by, x) {
	const key = x.key ?? x[by] ?? x.name ?? x.id ?? '';
	const n = x.signatures ?? x.count ?? x.uses ?? x.value ?? 0;
	return [String(key), Number(n) || 0];
}

export async function render(main) {
	clear(main);
	const charts = [];
	const now = new Date();
	const from = el('input', { name: 'from', type: 'date', value: day(new Date(now.getTime() - 29 * 864e5)) });
	const to = el('input', { name: 'to', type: 'date', value: day(now) });
	const boxes = Object.fromEntries(BYS.map(by => [by, el('div', { class: 'chart', id: 'usage-' + by })]));
	const usage = el('section', { class: 'card', id: 'usage' }, el('h1', {}, t('hq.title')),
		el('form', { class: 'grid' }, field(t('audit.from'), from), field(t('audit.to'), to)),
		el('div', { class: 'charts' }, BYS.map(by => el('figure', {}, el('figcaption', {}, t('hq.by.' + by)), boxes[by]))));
	const quotas = el('section', { class: 'card', id: 'quotas' }, el('h2', {}, t('hq.quotas')));
	const feedState = el('span', { class: 'muted', id: 'feed-state' }, t('hq.feed.wait'));
	const feed = el('ol', { id: 'feed', class: 'feed' });
	main.append(el('section', { class: 'card', id: 'live' }, el('h2', {}, t('hq.feed'), ' ', feedState), feed), usage, quotas);

	// The feed first: a signature made while the charts load is not missed.
	const es = new EventSource('/api/v1/feed', { withCredentials: true });
	es.addEventListener('open', () => { feedState.textContent = t('hq.feed.on'); });
	es.addEventListener('error', () => { feedState.textContent = t('hq.feed.lost'); });
	es.addEventListener('record', ev => {
		let r;
		try {
			r = JSON.parse(ev.data);
		} catch (e) {
			return;
		}
		if (!r || typeof r !== 'object' || !shown(r))
			return;
		if (r.action === 'sign' && r.outcome === 'ok')
			redraw();
		feed.prepend(el('li', { class: 'outcome-' + cssWord(r.outcome), 'data-seq': r.seq, 'data-action': r.action, 'data-outcome': r.outcome },
			el('time', {}, r.time || ''), ' ',
			el('b', {}, r.actor || ''), ' ', r.action || '', ' ', el('span', { class: 'seal' }, r.seal || ''),
			' · ', r.outcome || '', r.reason ? ' · ' : '', r.reason ? el('span', { class: 'reason' }, r.reason) : ''));
		while (feed.children.length > FEED_ROWS)
			feed.removeChild(feed.lastChild);
	});

	// One drawing at a time: a redraw waits for the one under way.
	let chain = Promise.resolve();
	const draw = () => (chain = chain.then(drawNow, drawNow));
	const drawNow = async () => {
		let Chart;
		try {
			Chart = await chartjs();
		} catch (e) {
			usage.appendChild(el('p', { class: 'error' }, e.message));
			return;
		}
		for (const c of charts.splice(0))
			c.destroy();
		await Promise.all(BYS.map(async by => {
			const box = clear(boxes[by]);
			try {
				const r = await api.get('/usage' + api.qs({ by, from: secs(from.value, false), to: secs(to.value, true) }));
				const pts = (r.rows || r.usage || r.items || []).map(x => point(by, x));
				const canvas = el('canvas', { 'data-points': pts.length, 'data-values': JSON.stringify(pts) });
				box.appendChild(canvas);
				charts.push(new Chart(canvas, {
					type: by === 'day' ? 'line' : 'bar',
					data: { labels: pts.map(p => p[0]), datasets: [{ label: t('hq.signatures'), data: pts.map(p => p[1]), backgroundColor: '#b3261e', borderColor: '#b3261e' }] },
					options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
				}));
			} catch (e) {
				box.appendChild(el('p', { class: 'error' }, errorText(e)));
			}
		}));
	};
	// A signature in the feed counts in the charts: they are drawn again
	// once the feed has been quiet for a second (a burst, one redraw).
	let pending = 0;
	const redraw = () => {
		clearTimeout(pending);
		pending = setTimeout(draw, 1000);
	};
	from.addEventListener('change', draw);
	to.addEventListener('change', draw);

	const gauges = async () => {
		try {
			const seals = (await api.get('/seals')).seals || [];
			quotas.appendChild(el('div', { class: 'gauges' }, seals.map(gauge)));
		} catch (e) {
			quotas.appendChild(el('p', { class: 'error' }, errorText(e)));
		}
	};
	await Promise.all([draw(), gauges()]);
	return () => {
		clearTimeout(pending);
		es.close();
		for (const c of charts)
			c.destroy();
	};
}

// The periods of the gateway's seals op (docs/protocol.md), in words.
const PERIODS = ['day', 'month', 'total', 'person_day'];

// A seal's quotas as meters: each {period, limit, used} the reply gives,
// else the tightest quota's uses left alone.
function gauge(s) {
	const rows = [];
	for (const q of Array.isArray(s.quotas) ? s.quotas : []) {
		const limit = Number(q.limit), used = Number(q.used);
		if (!(limit > 0))
			continue;
		rows.push(el('div', { class: 'gauge' }, el('span', { class: 'period' },
			PERIODS.includes(q.period) ? t('quota.' + q.period) : q.period || q.name || ''),
			el('meter', { min: 0, max: limit, value: Math.min(used, limit), high: limit * 0.8, optimum: 0 }),
			el('span', {}, t('hq.left', { left: Math.max(limit - used, 0), limit }))));
	}
	if (!rows.length)
		rows.push(el('div', { class: 'gauge' }, el('span', {}, s.quota_left === undefined || s.quota_left < 0
			? t('hq.nolimit') : t('col.quota') + ': ' + s.quota_left)));
	return el('div', { class: 'seal-gauge', 'data-seal': s.id }, el('h3', {}, s.label || s.id), rows);
}
