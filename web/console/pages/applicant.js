// pages/applicant.js — apply for a seal (type, amount, scope, reason,
// uses, the PDF), my applications, and why a signature was refused.

import * as api from '../api.js';
import { el, field, clear } from '../dom.js';
import { t } from '../i18n.js';
import { flash, errorText } from '../app.js';
import { appTable, whyView } from './common.js';

// The console refuses a larger document before reading it; sealgate-web
// answers 413 past its own body limit.
export const MAX_DOC = 10 * 1024 * 1024;

function base64(buf) {
	const b = new Uint8Array(buf);
	let s = '';
	for (let i = 0; i < b.length; i += 0x8000)
		s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
	return btoa(s);
}

export async function render(main) {
	const seals = (await api.get('/seals')).seals || [];
	clear(main);
	const seal = el('select', { name: 'seal', required: true },
		seals.map(s => el('option', { value: s.id }, s.label || s.id)));
	const type = el('input', { name: 'document_type', list: 'doc-types' });
	const amount = el('input', { name: 'amount', type: 'number', min: 0, step: 1, inputmode: 'numeric' });
	const scope = el('input', { name: 'business_scope' });
	const reason = el('textarea', { name: 'reason', required: true, rows: 3, maxlength: 1000 });
	const uses = el('input', { name: 'uses', type: 'number', min: 1, max: 1000, value: 1 });
	const doc = el('input', { name: 'document', type: 'file', accept: 'application/pdf,.pdf' });
	const button = el('button', { type: 'submit' }, t('apply.submit'));
	const form = el('form', { class: 'card', id: 'apply-form' },
		el('h1', {}, t('apply.title')),
		el('datalist', { id: 'doc-types' }, ['contract', 'agreement', 'invoice', 'letter'].map(v => el('option', { value: v }))),
		el('div', { class: 'grid' },
			field(t('apply.seal'), seal), field(t('apply.type'), type),
			field(t('apply.amount'), amount), field(t('apply.scope'), scope),
			field(t('apply.uses'), uses), field(t('apply.document'), doc)),
		field(t('apply.reason'), reason),
		button);
	form.addEventListener('submit', async ev => {
		ev.preventDefault();
		const body = { seal: seal.value, reason: reason.value, uses: Number(uses.value) || 1 };
		if (type.value.trim())
			body.document_type = type.value.trim();
		if (scope.value.trim())
			body.business_scope = scope.value.trim();
		if (amount.value !== '')
			body.amount = Number(amount.value);
		button.disabled = true;
		try {
			const f = doc.files && doc.files[0];
			if (f) {
				if (f.size > MAX_DOC)
					throw new Error(t('apply.toolarge', { max: MAX_DOC / 1024 / 1024 + ' MiB' }));
				body.document = { name: f.name, data: base64(await f.arrayBuffer()) };
			}
			const r = await api.post('/applications', body);
			flash(t('apply.done', { id: r.id }));
			form.reset();
			await mine(list);
		} catch (e) {
			flash(errorText(e), 'error');
		} finally {
			button.disabled = false;
		}
	});
	const list = el('section', { class: 'card', id: 'mine' });
	const refused = el('section', { class: 'card', id: 'last-refusal' });
	main.append(form, refused, list);
	await Promise.all([mine(list), lastRefusal(refused)]);
}

// GET /why: my own last refused signature, its seal and the reason.
async function lastRefusal(box) {
	clear(box).appendChild(el('h2', {}, t('why.title')));
	try {
		const w = await api.get('/why');
		box.appendChild(w.refused ? whyView(w) : el('p', { class: 'muted' }, t('why.none')));
	} catch (e) {
		box.appendChild(el('p', { class: 'error' }, errorText(e)));
	}
}

async function mine(box) {
	const r = await api.get('/applications' + api.qs({ mine: 1 }));
	const apps = r.applications || [];
	clear(box).appendChild(el('h2', {}, t('mine.title')));
	if (!apps.length) {
		box.appendChild(el('p', { class: 'muted' }, t('mine.none')));
		return;
	}
	const why = el('div', { id: 'why' });
	box.append(appTable(apps, [['', a => el('button', {
		type: 'button', class: 'small', 'data-why': a.id,
		onclick: async () => {
			try {
				const w = await api.get('/applications/' + encodeURIComponent(a.id) + '/why');
				clear(why).append(el('h3', {}, t('why.title') + ' · #' + a.id), whyView(w));
			} catch (e) {
				clear(why).appendChild(el('p', { class: 'error' }, errorText(e)));
			}
		},
	}, t('why.button'))]]), why);
}
