// pages/admin.js — the seal admin's view: seals and their state (token
// present, quotas left), people and their lockouts (unlock), devices of
// the TLS front (approve, revoke).

import * as api from '../api.js';
import { el, clear, table, field, fmtTime } from '../dom.js';
import { t } from '../i18n.js';
import { flash, errorText } from '../app.js';

const yes = v => (v ? t('yes') : t('no'));
// Locked: by the gateway's own flag, or a lockout of the person's own
// logins or of those through the web front that has not ended yet.
const locked = u => u.locked === true || [u.locked_until, u.web_locked_until].some(x => x > Date.now() / 1000);
const left = v => (v === undefined || v === null ? '' : v < 0 ? t('hq.nolimit') : String(v));

export async function render(main) {
	const [seals, status, users, devices] = await Promise.all([
		api.get('/seals'), api.get('/status').catch(() => ({})),
		api.get('/users').catch(e => ({ error: e })), api.get('/devices').catch(e => ({ error: e })),
	]);
	clear(main);
	// /status says whether each seal's key is on the token now, and why not.
	const st = new Map((status.seals || []).map(s => [s.id, s]));
	main.appendChild(el('section', { class: 'card', id: 'seals' }, el('h1', {}, t('admin.seals')),
		table([
			[t('col.label'), s => s.label || s.id],
			[t('col.kind'), s => s.kind],
			[t('col.site'), s => s.site],
			[t('col.available'), s => {
				const x = st.get(s.id) || s;
				return el('span', { class: x.available ? 'good' : 'bad' }, yes(x.available) + (x.reason ? ' · ' + x.reason : ''));
			}],
			[t('col.quota'), s => left(s.quota_left)],
		], seals.seals || [])));

	// Unlocking and device decisions need the admin's code, each time.
	const code = el('input', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 6 });
	main.appendChild(el('section', { class: 'card', id: 'admin-code' }, field(t('app.code'), code)));
	const people = el('section', { class: 'card', id: 'people' }, el('h2', {}, t('admin.people')));
	if (users.error)
		people.appendChild(el('p', { class: 'error' }, errorText(users.error)));
	else
		people.appendChild(table([
			[t('col.user'), u => u.user || u.id],
			[t('col.name'), u => u.name],
			[t('col.department'), u => u.department],
			[t('col.roles'), u => (u.roles || []).join(', ')],
			[t('col.totp'), u => (u.totp_enrolled === undefined ? '' : yes(u.totp_enrolled))],
			[t('col.failed'), u => (u.failed !== undefined ? String(u.failed) : '')],
			[t('col.locked'), u => (locked(u) ? [u.locked_until, u.web_locked_until].filter(x => x > 0)
				.map(x => yes(true) + ' · ' + fmtTime(x)).join(', ') || yes(true) : yes(false))],
			['', u => (locked(u) || u.failed ? el('button', {
				type: 'button', class: 'small',
				onclick: () => act('/users/' + encodeURIComponent(u.user || u.id) + '/unlock', { code: code.value.trim() },
					t('admin.unlocked', { user: u.user || u.id }), main),
			}, t('admin.unlock')) : '')],
		], users.users || []));
	main.appendChild(people);

	const devs = el('section', { class: 'card', id: 'devices' }, el('h2', {}, t('admin.devices')));
	if (devices.error) {
		devs.appendChild(el('p', { class: 'error' }, errorText(devices.error)));
	} else {
		devs.appendChild(table([
			[t('col.id'), d => d.id],
			[t('col.state'), d => d.state],
			[t('col.host'), d => d.host],
			[t('col.person'), d => d.person],
			[t('col.fingerprint'), d => el('code', {}, d.fingerprint)],
			[t('col.requested'), d => fmtTime(d.requested)],
			['', d => el('span', { class: 'buttons' },
				d.state === 'pending' ? el('button', {
					type: 'button', class: 'small',
					onclick: () => act('/devices/' + encodeURIComponent(d.id) + '/approve', { code: code.value.trim() }, t('admin.done'), main),
				}, t('admin.approve')) : '',
				d.state === 'pending' || d.state === 'approved' ? el('button', {
					type: 'button', class: 'small danger',
					onclick: () => act('/devices/' + encodeURIComponent(d.id) + '/revoke', { code: code.value.trim() }, t('admin.done'), main),
				}, t('admin.revoke')) : '')],
		], devices.devices || []));
	}
	main.appendChild(devs);
}

async function act(path, body, done, main) {
	try {
		await api.post(path, body);
		flash(done);
		await render(main);
	} catch (e) {
		flash(errorText(e), 'error');
	}
}
