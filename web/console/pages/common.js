// pages/common.js — what several pages show the same way: a list of
// applications and the reply of GET /applications/{id}/why.

import { el, table, facts, fmtTime } from '../dom.js';
import { t } from '../i18n.js';

export function appTable(apps, extra) {
	const cols = [
		[t('col.id'), a => el('a', { href: '#/applications/' + encodeURIComponent(a.id) }, '#' + a.id)],
		[t('col.applicant'), a => a.applicant_name || a.applicant],
		[t('col.seal'), a => a.seal_label || a.seal],
		[t('col.type'), a => a.document_type],
		[t('col.amount'), a => amount(a.amount)],
		[t('col.reason'), a => el('span', { class: 'reason' }, a.reason)],
		[t('col.status'), a => el('span', { class: 'state state-' + cssWord(a.state) }, a.status || a.state)],
	];
	if (extra)
		cols.push(...extra);
	return table(cols, apps, a => ({ 'data-app': a.id }));
}

export function amount(v) {
	if (v === undefined || v === null || v === '')
		return '';
	return typeof v === 'number' ? v.toLocaleString() : String(v);
}

// A class name from a server word: letters only, so nothing it holds can
// reach a selector or an attribute beyond its own.
export function cssWord(s) {
	return String(s || '').replace(/[^a-z_]/gi, '');
}

// GET /applications/{id}/why: the application's status and the rule's
// explanation (text); the seal, reason and time of a refused signature
// when the reply has them.
export function whyView(w) {
	const box = el('div', { class: 'why' });
	box.appendChild(facts([
		[t('col.status'), w.status],
		[t('col.seal'), w.seal],
		[t('col.reason'), w.reason],
		[t('app.at'), fmtTime(w.time)],
	]));
	if (w.text)
		box.appendChild(el('pre', { class: 'text' }, w.text));
	return box;
}
