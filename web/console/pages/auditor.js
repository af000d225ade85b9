// pages/auditor.js — audit search with the filters of `sealctl audit
// query` (from, to, seal, person, department, action, outcome, digest,
// application, site, limit; paging by after/next), the export, and the
// chain's verification status.

import * as api from '../api.js';
import { el, clear, table, field, facts } from '../dom.js';
import { t } from '../i18n.js';
import { errorText } from '../app.js';
import { cssWord } from './common.js';

export const FILTERS = ['from', 'to', 'seal', 'person', 'department', 'action', 'outcome',
	'digest', 'application', 'site', 'limit'];

// 'YYYY-MM-DD' or an ISO time as UTC nanoseconds (a string: past 2^53),
// '' when empty or not a time; END makes a day alone run to its last ns.
export function toNs(v, end) {
	if (!v)
		return '';
	const day = /^\d{4}-\d{2}-\d{2}$/.test(v);
	const ms = Date.parse(day ? v + 'T00:00:00Z' : v);
	if (Number.isNaN(ms))
		return '';
	const ns = BigInt(ms) * 1000000n;
	return String(day && end ? ns + 86400n * 1000000000n - 1n : ns);
}

export function auditColumns() {
	return [
		[t('col.seq'), r => String(r.seq ?? '')],
		[t('col.time'), r => r.time],
		[t('col.actor'), r => r.actor],
		[t('col.action'), r => r.action],
		[t('col.outcome'), r => el('span', { class: 'outcome-' + cssWord(r.outcome) }, r.outcome)],
		[t('col.seal'), r => r.seal],
		[t('col.app'), r => (r.application ? String(r.application) : '')],
		[t('col.reason'), r => el('span', { class: 'reason' }, r.reason || r.doc_digest || r.signed_digest || '')],
	];
}

export async function render(main) {
	clear(main);
	const inputs = {};
	for (const f of FILTERS) {
		const attrs = { name: f };
		if (f === 'from' || f === 'to')
			attrs.placeholder = 'YYYY-MM-DD';
		if (f === 'limit' || f === 'application')
			Object.assign(attrs, { type: 'number', min: 1 });
		if (f === 'outcome')
			attrs.list = 'outcomes';
		inputs[f] = el('input', attrs);
	}
	inputs.limit.value = '100';
	const exportLink = el('a', { class: 'button secondary', id: 'export', href: '/api/v1/audit/export', download: 'sealgate-audit.jsonl' }, t('audit.export'));
	const results = el('div', { id: 'audit-results' });
	const more = el('button', { type: 'button', class: 'secondary', hidden: true }, t('audit.more'));
	const form = el('form', { class: 'card', id: 'audit-form' },
		el('h1', {}, t('audit.title')),
		el('datalist', { id: 'outcomes' }, ['ok', 'denied', 'error'].map(v => el('option', { value: v }))),
		el('div', { class: 'grid' }, FILTERS.map(f => field(t('audit.' + f) !== 'audit.' + f ? t('audit.' + f) : t('col.' + f), inputs[f]))),
		el('div', { class: 'buttons' }, el('button', { type: 'submit' }, t('audit.search')), exportLink));
	let after = 0;
	let rows = [];
	// The API takes the times as UTC nanoseconds (from_ns, to_ns), as the
	// protocol does; a day alone is its whole day, as in sealctl.
	const params = () => {
		const p = {};
		for (const f of FILTERS)
			p[f] = inputs[f].value.trim();
		p.from_ns = toNs(p.from, false);
		p.to_ns = toNs(p.to, true);
		delete p.from;
		delete p.to;
		return p;
	};
	const search = async () => {
		try {
			const r = await api.get('/audit' + api.qs({ ...params(), after: after || '' }));
			rows = rows.concat(r.records || []);
			clear(results).appendChild(rows.length ? table(auditColumns(), rows, r => ({ 'data-seq': r.seq }))
				: el('p', { class: 'muted' }, t('audit.none')));
			if (r.scope)
				results.prepend(el('p', { class: 'muted' }, r.scope));
			after = typeof r.next === 'number' && r.next > after ? r.next : 0;
			more.hidden = !after;
		} catch (e) {
			clear(results).appendChild(el('p', { class: 'error' }, errorText(e)));
			more.hidden = true;
		}
	};
	form.addEventListener('submit', ev => {
		ev.preventDefault();
		after = 0;
		rows = [];
		exportLink.setAttribute('href', '/api/v1/audit/export' + api.qs({ site: inputs.site.value.trim() }));
		search();
	});
	form.addEventListener('input', () => exportLink.setAttribute('href', '/api/v1/audit/export' + api.qs({ site: inputs.site.value.trim() })));
	more.addEventListener('click', search);

	const verify = el('section', { class: 'card', id: 'verify' }, el('h2', {}, t('audit.verify')));
	const out = el('div', { id: 'verify-result' });
	verify.append(el('button', { type: 'button', class: 'secondary', onclick: () => check(out) }, t('audit.verify.run')), out);
	main.append(form, el('section', { class: 'card' }, results, more), verify);
	await Promise.all([search(), check(out)]);
}

// The verifier's reply as it comes: its plain fields as facts, and each
// site of `sites` (or any other list) as a line: the verifier's own
// words where it gives them (`line`), else the site and its state.
async function check(out) {
	clear(out).appendChild(el('p', { class: 'muted' }, t('loading')));
	try {
		const v = await api.get('/audit/verify');
		const flat = Object.entries(v).filter(([, x]) => x === null || typeof x !== 'object');
		clear(out).appendChild(facts(flat.map(([k, x]) => [k, String(x)])));
		const item = i => {
			if (i === null || typeof i !== 'object')
				return String(i);
			if (typeof i.line === 'string')
				return i.line;
			return [i.site, i.state].filter(Boolean).join(': ') || JSON.stringify(i);
		};
		for (const [k, x] of Object.entries(v))
			if (Array.isArray(x))
				out.append(el('h3', {}, k), el('ul', { 'data-list': k }, x.map(i => el('li', {
					class: i && typeof i === 'object' && i.state ? 'verify-' + cssWord(i.state) : '',
				}, item(i)))));
		const sites = Array.isArray(v.sites) ? v.sites : [];
		const good = v.intact === true || v.ok === true || (sites.length > 0 && sites.every(x => x && x.state === 'intact'));
		out.dataset.intact = String(good);
	} catch (e) {
		clear(out).appendChild(el('p', { class: 'error' }, errorText(e)));
		out.dataset.intact = 'false';
	}
}
