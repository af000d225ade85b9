// pages/login.js — password and code (POST /api/v1/login). The password
// and the code leave the form fields as soon as they are sent.

import * as api from '../api.js';
import { el, field } from '../dom.js';
import { t } from '../i18n.js';
import { loggedIn, flash, errorText } from '../app.js';

export function render(main, { after }) {
	const user = el('input', { name: 'user', autocomplete: 'username', required: true, autocapitalize: 'none' });
	const password = el('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
	const code = el('input', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6 });
	const button = el('button', { type: 'submit' }, t('login.submit'));
	const form = el('form', { class: 'card narrow', id: 'login-form' },
		el('h1', {}, t('login.title')),
		field(t('login.user'), user),
		field(t('login.password'), password),
		field(t('login.code'), code),
		button);
	form.addEventListener('submit', async ev => {
		ev.preventDefault();
		const body = { user: user.value.trim(), password: password.value };
		if (code.value.trim())
			body.code = code.value.trim();
		password.value = '';
		code.value = '';
		button.disabled = true;
		try {
			const me = await api.post('/login', body);
			flash('');
			await loggedIn(me, after);
		} catch (e) {
			flash(t('login.failed') + ': ' + errorText(e), 'error');
			button.disabled = false;
			password.focus();
		} finally {
			body.password = '';
			body.code = '';
		}
	});
	main.appendChild(form);
	user.focus();
}
