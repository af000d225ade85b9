// vendor.js — PDF.js and Chart.js, Debian's copies (libjs-pdf,
// libjs-chart.js) that sealgate-web serves under /javascript/ from
// /usr/share/javascript/, loaded the first time a page needs them.

const loaded = new Map();

function script(src) {
	if (!loaded.has(src))
		loaded.set(src, new Promise((resolve, reject) => {
			const s = document.createElement('script');
			s.src = src;
			s.onload = resolve;
			s.onerror = () => {
				loaded.delete(src);
				reject(new Error('cannot load ' + src));
			};
			document.head.appendChild(s);
		}));
	return loaded.get(src);
}

export const PDFJS = '/javascript/pdf/build/pdf.js';
export const PDFJS_WORKER = '/javascript/pdf/build/pdf.worker.js';
export const CHARTJS = '/javascript/chart.js/chart.min.js';

export async function pdfjs() {
	await script(PDFJS);
	const lib = window.pdfjsLib || window['pdfjs-dist/build/pdf'];
	if (!lib)
		throw new Error('PDF.js did not load');
	lib.GlobalWorkerOptions.workerSrc = PDFJS_WORKER;
	return lib;
}

export async function chartjs() {
	await script(CHARTJS);
	if (!window.Chart)
		throw new Error('Chart.js did not load');
	return window.Chart;
}
