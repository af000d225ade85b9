// dom.js — the only way the console builds its page. Text from the
// server goes in as text nodes (textContent), never as HTML: there is no
// innerHTML, insertAdjacentHTML or document.write anywhere in the console,
// so a reason holding markup stays words on the screen.

// el('tr', {class: 'x'}, 'text', childNode, [more, children])
export function el(tag, attrs, ...children) {
	const node = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v === undefined || v === null || v === false)
			continue;
		if (k.startsWith('on') && typeof v === 'function')
			node.addEventListener(k.slice(2), v);
		else if (k === 'class')
			node.className = v;
		else if (k === 'href')
			node.setAttribute('href', safeHref(v));
		else if (v === true)
			node.setAttribute(k, '');
		else
			node.setAttribute(k, String(v));
	}
	append(node, children);
	return node;
}

function append(node, children) {
	for (const c of children) {
		if (c === undefined || c === null || c === false)
			continue;
		if (Array.isArray(c))
			append(node, c);
		else if (c instanceof Node)
			node.appendChild(c);
		else
			node.appendChild(document.createTextNode(String(c)));
	}
}

// Links are the console's own routes or its own API: a javascript: or
// another origin's URL from the server never becomes a link.
function safeHref(v) {
	const s = String(v);
	if (s.startsWith('#/') || s.startsWith('/api/v1/'))
		return s;
	return '#/';
}

export function clear(node) {
	while (node.firstChild)
		node.removeChild(node.firstChild);
	return node;
}

// A table of rows: cols is [[header, row => cell]], a cell a string or a node.
export function table(cols, rows, rowAttrs) {
	return el('div', { class: 'scroll' },
		el('table', {},
			el('thead', {}, el('tr', {}, cols.map(([h]) => el('th', {}, h)))),
			el('tbody', {}, rows.map(r => el('tr', rowAttrs ? rowAttrs(r) : {},
				cols.map(([h, f]) => el('td', { 'data-label': h }, f(r))))))));
}

// Definition list of [label, value] pairs; empty values are left out.
export function facts(pairs) {
	return el('dl', { class: 'facts' }, pairs
		.filter(([, v]) => v !== undefined && v !== null && v !== '')
		.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

export function field(label, input) {
	return el('label', { class: 'field' }, el('span', {}, label), input);
}

export function fmtTime(t) {
	if (t === undefined || t === null || t === '')
		return '';
	if (typeof t === 'number') {
		// Unix seconds from the workflow, nanoseconds from the audit.
		const ms = t > 1e14 ? t / 1e6 : t * 1000;
		return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
	}
	return String(t);
}
