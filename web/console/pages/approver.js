// pages/approver.js — "waiting for me", and one application with all an
// approver needs to decide: applicant, department, seal, amount, type,
// scope, reason, earlier levels and their comments, the rule that
// applies, the document rendered with PDF.js; approve or reject with a
// comment and the code (asked again for every decision).

import * as api from '../api.js';
import { el, clear, facts, table, field, fmtTime } from '../dom.js';
import { t } from '../i18n.js';
import { flash, errorText, state } from '../app.js';
import { appTable, amount, whyView } from './common.js';
import { pdfjs } from '../vendor.js';

export async function render(main) {
	const r = await api.get('/applications' + api.qs({ waiting: 1 }));
	const apps = r.applications || [];
	clear(main);
	const box = el('section', { class: 'card', id: 'waiting' }, el('h1', {}, t('waiting.title')));
	if (!apps.length)
		box.appendChild(el('p', { class: 'muted' }, t('waiting.none')));
	else
		box.appendChild(appTable(apps, [
			[t('col.department'), a => a.department || a.applicant_department],
			[t('col.scope'), a => a.business_scope],
		]));
	main.appendChild(box);
}

export const detail = { render: renderDetail };

async function renderDetail(main, { arg }) {
	const id = String(arg || '').replace(/[^0-9]/g, '');
	const r = await api.get('/applications/' + id);
	const a = r.application || r;
	clear(main);
	const card = el('section', { class: 'card', id: 'application', 'data-state': a.state },
		el('h1', {}, t('app.title.one', { id: a.id })),
		el('p', { class: 'status' }, a.status || a.state),
		facts([
			[t('col.applicant'), a.applicant_name ? a.applicant_name + ' (' + a.applicant + ')' : a.applicant],
			[t('col.department'), a.department || a.applicant_department],
			[t('col.seal'), a.seal_label || a.seal],
			[t('col.amount'), amount(a.amount)],
			[t('col.type'), a.document_type],
			[t('col.scope'), a.business_scope],
			[t('col.reason'), el('span', { class: 'reason', id: 'app-reason' }, a.reason)],
			[t('app.levels'), a.levels ? a.level + ' / ' + a.levels : ''],
			[t('col.uses'), a.uses_granted !== undefined ? a.uses_left + ' / ' + a.uses_granted : ''],
			[t('col.created'), fmtTime(a.created)],
			[t('col.valid'), fmtTime(a.valid_until)],
		]));
	main.appendChild(card);

	const hist = a.approvals || [];
	if (hist.length)
		main.appendChild(el('section', { class: 'card', id: 'history' }, el('h2', {}, t('app.history')),
			table([
				[t('app.level'), h => h.level],
				[t('app.by'), h => h.by_name || h.by],
				[t('app.decision'), h => h.decision],
				[t('app.comment'), h => el('span', { class: 'comment' }, h.comment)],
				[t('app.at'), h => fmtTime(h.at)],
			], hist)));

	const rule = el('section', { class: 'card', id: 'rule' }, el('h2', {}, t('app.rule')));
	main.appendChild(rule);
	api.get('/applications/' + id + '/why')
		.then(w => rule.appendChild(whyView(w)))
		.catch(e => rule.appendChild(el('p', { class: 'muted' }, errorText(e))));

	const docBox = el('section', { class: 'card', id: 'document' }, el('h2', {}, t('app.document')));
	main.appendChild(docBox);
	const d = a.document;
	if (d && d.stored) {
		docBox.appendChild(el('p', { class: 'muted' }, [d.name, d.size !== undefined ? d.size + ' B' : '', d.sha256]
			.filter(Boolean).join(' · ')));
		showPdf(docBox, '/applications/' + id + '/document');
	} else if (a.doc_sha256) {
		docBox.appendChild(el('p', { class: 'muted' }, t('app.docbound', { sha: a.doc_sha256 })));
	} else {
		docBox.appendChild(el('p', { class: 'muted' }, t('app.nodoc')));
	}

	if (a.state === 'pending')
		main.appendChild(decideForm(a));
	const me = state.me || {};
	if ((a.state === 'pending' || a.state === 'authorized') &&
	    (me.user === a.applicant || (me.roles || []).includes('seal_admin')))
		main.appendChild(el('p', {}, el('button', {
			type: 'button', class: 'secondary', id: 'revoke',
			onclick: async () => {
				try {
					await api.post('/applications/' + id + '/revoke');
					flash(t('app.revoked'));
					renderDetail(main, { arg: id });
				} catch (e) {
					flash(errorText(e), 'error');
				}
			},
		}, t('app.revoke'))));
}

function decideForm(a) {
	const comment = el('textarea', { name: 'comment', rows: 2, maxlength: 1000 });
	const code = el('input', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6 });
	const approve = el('button', { type: 'button', id: 'approve' }, t('app.approve'));
	const reject = el('button', { type: 'button', id: 'reject', class: 'danger' }, t('app.reject'));
	const form = el('section', { class: 'card', id: 'decide' }, el('h2', {}, t('app.decide')),
		field(t('app.comment'), comment), field(t('app.code'), code),
		el('div', { class: 'buttons' }, approve, reject));
	const decide = async what => {
		if (what === 'reject' && !comment.value.trim())
			return flash(t('app.needcomment'), 'error');
		if (!/^[0-9]{6}$/.test(code.value.trim()))
			return flash(t('app.needcode'), 'error');
		const body = { comment: comment.value, code: code.value.trim() };
		code.value = '';
		approve.disabled = reject.disabled = true;
		try {
			await api.post('/applications/' + encodeURIComponent(a.id) + '/' + what, body);
			flash(t(what === 'approve' ? 'app.approved' : 'app.rejected') + ' · #' + a.id);
			const main = document.getElementById('main');
			await renderDetail(main, { arg: String(a.id) });
		} catch (e) {
			flash(errorText(e), 'error');
			approve.disabled = reject.disabled = false;
		} finally {
			body.code = '';
		}
	};
	approve.addEventListener('click', () => decide('approve'));
	reject.addEventListener('click', () => decide('reject'));
	return form;
}

// The document's pages on a canvas, one at a time, at the box's width.
async function showPdf(box, path) {
	const canvas = el('canvas', { id: 'pdf-canvas', class: 'pdf' });
	const label = el('span', { class: 'muted' });
	const prev = el('button', { type: 'button', class: 'small secondary' }, t('app.prev'));
	const next = el('button', { type: 'button', class: 'small secondary' }, t('app.next'));
	box.append(el('div', { class: 'pdfbar' }, prev, label, next), canvas);
	try {
		const [lib, data] = await Promise.all([pdfjs(), api.bytes(path)]);
		// No eval for fonts: the page's CSP allows no script but its own.
		const doc = await lib.getDocument({ data, isEvalSupported: false, disableAutoFetch: true }).promise;
		let n = 1;
		const draw = async () => {
			const page = await doc.getPage(n);
			const base = page.getViewport({ scale: 1 });
			const width = Math.max(280, Math.min(box.clientWidth - 16, 900));
			const vp = page.getViewport({ scale: width / base.width * (window.devicePixelRatio || 1) });
			canvas.width = vp.width;
			canvas.height = vp.height;
			canvas.style.width = width + 'px';
			await page.render({ canvasContext: canvas.getContext('2d'), viewport: vp }).promise;
			label.textContent = t('app.page', { n, of: doc.numPages });
			prev.disabled = n <= 1;
			next.disabled = n >= doc.numPages;
			canvas.dataset.rendered = String(n);
		};
		prev.addEventListener('click', () => { if (n > 1) { n--; draw(); } });
		next.addEventListener('click', () => { if (n < doc.numPages) { n++; draw(); } });
		await draw();
	} catch (e) {
		box.appendChild(el('p', { class: 'error', id: 'pdf-error' }, t('app.pdferror', { msg: e.message || String(e) })));
	}
}
