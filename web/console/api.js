// api.js — the console's one client of sealgate-web's REST API
// (/api/v1, docs/api.md). It keeps the CSRF token that login and /me
// return and sends it on every POST; the session itself is the HttpOnly
// cookie, which no script here can read.

const BASE = '/api/v1';
let csrf = '';

export class ApiError extends Error {
	constructor(status, code, message) {
		super(message || code || String(status));
		this.status = status;
		this.code = code || '';
	}
}

export function setCsrf(token) {
	csrf = typeof token === 'string' ? token : '';
}

// Calls METHOD PATH with an optional JSON body; resolves to the parsed
// JSON reply, rejects with an ApiError carrying the server's code.
export async function call(method, path, body) {
	const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
	if (method !== 'GET') {
		opts.headers['X-CSRF-Token'] = csrf;
		if (body !== undefined) {
			opts.headers['Content-Type'] = 'application/json';
			opts.body = JSON.stringify(body);
		}
	}
	let res;
	try {
		res = await fetch(BASE + path, opts);
	} catch (e) {
		throw new ApiError(0, 'network', e.message);
	}
	const text = await res.text();
	let data = null;
	if (text) {
		try {
			data = JSON.parse(text);
		} catch (e) {
			data = null;
		}
	}
	if (!res.ok) {
		const code = data && typeof data.error === 'string' ? data.error : '';
		const msg = data && typeof data.message === 'string' ? data.message : res.statusText;
		if (res.status === 401)
			window.dispatchEvent(new CustomEvent('sg-unauthorized'));
		throw new ApiError(res.status, code, msg);
	}
	return data || {};
}

export const get = path => call('GET', path);
export const post = (path, body) => call('POST', path, body === undefined ? {} : body);

// Query string from an object, empty values left out.
export function qs(params) {
	const u = new URLSearchParams();
	for (const [k, v] of Object.entries(params || {}))
		if (v !== undefined && v !== null && v !== '')
			u.set(k, String(v));
	const s = u.toString();
	return s ? '?' + s : '';
}

// The bytes of a document the server returns as application/pdf.
export async function bytes(path) {
	const res = await fetch(BASE + path, { credentials: 'same-origin' });
	if (!res.ok) {
		if (res.status === 401)
			window.dispatchEvent(new CustomEvent('sg-unauthorized'));
		throw new ApiError(res.status, '', res.statusText);
	}
	return new Uint8Array(await res.arrayBuffer());
}
