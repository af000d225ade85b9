// app.js — the console's shell: who is logged in (GET /me), the pages
// each role sees, hash routes (#/login, #/apply, #/waiting,
// #/applications/ID, #/admin, #/audit, #/hq) and the language switch.
// The server decides what each person may do; the menu only leaves out
// pages that would refuse them.

import * as api from './api.js';
import { el, clear } from './dom.js';
import { t, current, setLang } from './i18n.js';
import * as login from './pages/login.js';
import * as applicant from './pages/applicant.js';
import * as approver from './pages/approver.js';
import * as admin from './pages/admin.js';
import * as auditor from './pages/auditor.js';
import * as hq from './pages/hq.js';

export const state = { me: null };

const has = (...roles) => me => me && (me.roles || []).some(r => roles.includes(r));
const person = me => me && !has('automation')(me);

const routes = [
	{ path: 'apply', nav: 'nav.apply', page: applicant, shows: person },
	{ path: 'waiting', nav: 'nav.waiting', page: approver, shows: has('department_head', 'executive', 'approver') },
	{ path: 'applications', page: approver.detail, shows: person },
	{ path: 'admin', nav: 'nav.admin', page: admin, shows: has('seal_admin') },
	{ path: 'audit', nav: 'nav.audit', page: auditor, shows: has('auditor', 'seal_admin', 'department_head') },
	{ path: 'hq', nav: 'nav.hq', page: hq, shows: has('executive', 'auditor', 'seal_admin', 'headquarters') },
];

let leave = null;	// the open page's clean-up (the feed's EventSource)

export function flash(msg, kind) {
	const f = document.getElementById('flash');
	clear(f);
	if (msg)
		f.appendChild(el('p', { class: kind === 'error' ? 'error' : 'ok' }, msg));
}

// An ApiError as words: the server's own message, its code beside it.
export function errorText(e) {
	if (e && e.status === 403 && !e.message)
		return t('error.forbidden');
	const code = e && e.code ? ' (' + e.code + ')' : '';
	return (e && e.message ? e.message : t('error')) + code;
}

export function go(hash) {
	if (location.hash === hash)
		render();
	else
		location.hash = hash;
}

// Where a person lands: their work first (what waits for them, the
// seals they keep, the trail they read), else applying.
function home(me) {
	for (const p of ['waiting', 'admin', 'audit', 'apply', 'hq']) {
		const r = routes.find(r => r.path === p);
		if (r.shows(me))
			return '#/' + p;
	}
	return '#/apply';
}

function chrome() {
	const me = state.me;
	document.title = t('app.title');
	const nav = clear(document.getElementById('nav'));
	if (me)
		for (const r of routes)
			if (r.nav && r.shows(me))
				nav.appendChild(el('a', { href: '#/' + r.path, 'data-route': r.path }, t(r.nav)));
	const who = document.getElementById('who');
	who.textContent = me ? (me.name || me.user) + (me.site ? ' · ' + me.site : '') : '';
	const out = document.getElementById('logout');
	out.hidden = !me;
	out.textContent = t('logout');
	document.getElementById('lang').value = current();
}

async function render() {
	if (leave) {
		try {
			leave();
		} catch (e) {
			// a page's clean-up never blocks the next page
		}
		leave = null;
	}
	chrome();
	const main = clear(document.getElementById('main'));
	const parts = location.hash.replace(/^#\/?/, '').split('/');
	const [path, arg] = [parts[0], parts[1]];
	if (!state.me || path === 'login') {
		if (state.me && path === 'login')
			return go(home(state.me));
		login.render(main, { after: path && path !== 'login' ? location.hash : '' });
		return;
	}
	if (!path)
		return go(home(state.me));
	const r = routes.find(r => r.path === path);
	if (!r) {
		main.appendChild(el('p', { class: 'error' }, t('notfound')));
		return;
	}
	for (const a of document.querySelectorAll('#nav a'))
		a.classList.toggle('active', a.dataset.route === path);
	main.appendChild(el('p', { class: 'muted' }, t('loading')));
	try {
		const ret = await r.page.render(main, { arg, me: state.me });
		if (typeof ret === 'function')
			leave = ret;
	} catch (e) {
		clear(main).appendChild(el('p', { class: 'error' }, errorText(e)));
	}
}

export async function loggedIn(me, after) {
	state.me = me;
	api.setCsrf(me.csrf);
	go(after || home(me));
}

async function start() {
	setLang(current());
	document.getElementById('lang').addEventListener('change', e => {
		setLang(e.target.value);
		render();
	});
	document.getElementById('logout').addEventListener('click', async () => {
		try {
			await api.post('/logout');
		} catch (e) {
			// logged out either way
		}
		state.me = null;
		api.setCsrf('');
		go('#/login');
	});
	window.addEventListener('sg-unauthorized', () => {
		if (state.me) {
			state.me = null;
			render();
		}
	});
	// A message belongs to the page it was said on.
	window.addEventListener('hashchange', () => {
		flash('');
		render();
	});
	try {
		const me = await api.get('/me');
		state.me = me;
		api.setCsrf(me.csrf);
	} catch (e) {
		state.me = null;
	}
	render();
}

start();
