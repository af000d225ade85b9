// i18n.js — the console's words in English and Simplified Chinese. The
// language is the one remembered from the switch (localStorage), else the
// browser's Accept-Language (navigator.languages), else English. Words
// from the server (reasons, comments, names, messages) are shown as they
// come: they are not translated here.

const en = {
	'app.title': 'sealgate console',
	'nav.apply': 'Apply', 'nav.waiting': 'Waiting for me', 'nav.admin': 'Seal admin',
	'nav.audit': 'Audit', 'nav.hq': 'Headquarters', 'logout': 'Log out',
	'login.title': 'Log in', 'login.user': 'Account', 'login.password': 'Password',
	'login.code': 'Code (authenticator app)', 'login.submit': 'Log in',
	'login.failed': 'Login failed',
	'apply.title': 'Apply for a seal', 'apply.seal': 'Seal', 'apply.type': 'Document type',
	'apply.amount': 'Amount', 'apply.scope': 'Business scope', 'apply.reason': 'Reason',
	'apply.uses': 'Uses', 'apply.document': 'Document (PDF)', 'apply.submit': 'Apply',
	'apply.done': 'Application #{id} submitted', 'apply.toolarge': 'The document is larger than {max}',
	'mine.title': 'My applications', 'mine.none': 'No applications yet.',
	'why.button': 'Why?', 'why.title': 'Why a signature was refused',
	'why.none': 'No signature of yours has been refused.',
	'col.id': '#', 'col.applicant': 'Applicant', 'col.department': 'Department',
	'col.seal': 'Seal', 'col.amount': 'Amount', 'col.type': 'Type', 'col.scope': 'Scope',
	'col.reason': 'Reason', 'col.state': 'State', 'col.status': 'Status',
	'col.uses': 'Uses left', 'col.created': 'Created', 'col.valid': 'Valid until',
	'waiting.title': 'Waiting for me', 'waiting.none': 'Nothing waits for you.',
	'app.title.one': 'Application #{id}', 'app.levels': 'Levels', 'app.level': 'Level',
	'app.history': 'Earlier levels', 'app.by': 'By', 'app.decision': 'Decision',
	'app.comment': 'Comment', 'app.at': 'At', 'app.rule': 'The rule that applies',
	'app.document': 'Document', 'app.nodoc': 'This application is not bound to a document.',
	'app.docbound': 'Bound to a document not stored in the gateway (SHA-256 {sha})',
	'app.page': 'Page {n} of {of}', 'app.prev': 'Previous page', 'app.next': 'Next page',
	'app.decide': 'Decide', 'app.code': 'Code (authenticator app)',
	'app.approve': 'Approve', 'app.reject': 'Reject', 'app.revoke': 'Revoke',
	'app.approved': 'Approved', 'app.rejected': 'Rejected', 'app.revoked': 'Revoked',
	'app.needcomment': 'A rejection needs a comment.', 'app.needcode': 'Enter the code from your authenticator app.',
	'app.pdferror': 'The document could not be shown: {msg}',
	'admin.seals': 'Seals', 'admin.people': 'People', 'admin.devices': 'Devices',
	'col.label': 'Name', 'col.kind': 'Kind', 'col.site': 'Site', 'col.available': 'Token present',
	'col.quota': 'Quota left', 'col.user': 'Account', 'col.name': 'Name', 'col.roles': 'Roles',
	'col.locked': 'Locked', 'col.totp': 'TOTP', 'col.failed': 'Failed attempts', 'col.host': 'Host',
	'col.person': 'Person', 'col.fingerprint': 'Fingerprint', 'col.requested': 'Requested',
	'admin.unlock': 'Unlock', 'admin.unlocked': '{user} unlocked', 'admin.approve': 'Approve',
	'admin.revoke': 'Revoke', 'admin.done': 'Done', 'yes': 'yes', 'no': 'no',
	'audit.title': 'Audit search', 'audit.from': 'From', 'audit.to': 'To',
	'audit.person': 'Person', 'audit.department': 'Department', 'audit.action': 'Action',
	'audit.outcome': 'Outcome', 'audit.digest': 'Digest', 'audit.application': 'Application',
	'audit.site': 'Site', 'audit.limit': 'Limit', 'audit.search': 'Search',
	'audit.export': 'Export', 'audit.verify': 'Verification', 'audit.verify.run': 'Verify now',
	'audit.more': 'More', 'audit.none': 'No records.',
	'col.seq': 'Seq', 'col.time': 'Time (UTC)', 'col.actor': 'Actor', 'col.action': 'Action',
	'col.outcome': 'Outcome', 'col.app': 'App',
	'hq.title': 'Headquarters', 'hq.usage': 'Usage', 'hq.by.site': 'By site',
	'hq.by.seal': 'By seal', 'hq.by.department': 'By department', 'hq.by.day': 'By day',
	'hq.quotas': 'Quotas', 'hq.feed': 'Live feed', 'hq.feed.wait': 'Waiting for signatures and refusals…',
	'hq.feed.lost': 'Feed interrupted, reconnecting…', 'hq.feed.on': 'Live',
	'hq.signatures': 'Signatures', 'hq.left': '{left} left of {limit}', 'hq.nolimit': 'no limit',
	'quota.day': 'Today', 'quota.month': 'This month', 'quota.total': 'In all',
	'quota.person_day': 'Today, per person',
	'error': 'Error', 'error.forbidden': 'You may not see this page.', 'loading': 'Loading…',
	'notfound': 'No such page.',
};

const zh = {
	'app.title': 'sealgate 控制台',
	'nav.apply': '用印申请', 'nav.waiting': '待我审批', 'nav.admin': '印章管理',
	'nav.audit': '审计', 'nav.hq': '总部', 'logout': '退出',
	'login.title': '登录', 'login.user': '账号', 'login.password': '密码',
	'login.code': '动态码（身份验证器）', 'login.submit': '登录',
	'login.failed': '登录失败',
	'apply.title': '申请用印', 'apply.seal': '印章', 'apply.type': '文件类型',
	'apply.amount': '金额', 'apply.scope': '业务范围', 'apply.reason': '事由',
	'apply.uses': '次数', 'apply.document': '文件（PDF）', 'apply.submit': '提交申请',
	'apply.done': '申请 #{id} 已提交', 'apply.toolarge': '文件超过 {max}',
	'mine.title': '我的申请', 'mine.none': '暂无申请。',
	'why.button': '原因', 'why.title': '签章被拒绝的原因',
	'why.none': '您的签章没有被拒绝过。',
	'col.id': '编号', 'col.applicant': '申请人', 'col.department': '部门',
	'col.seal': '印章', 'col.amount': '金额', 'col.type': '类型', 'col.scope': '范围',
	'col.reason': '事由', 'col.state': '状态', 'col.status': '进度',
	'col.uses': '剩余次数', 'col.created': '创建时间', 'col.valid': '有效期至',
	'waiting.title': '待我审批', 'waiting.none': '没有待您审批的申请。',
	'app.title.one': '申请 #{id}', 'app.levels': '审批级数', 'app.level': '级',
	'app.history': '前序审批', 'app.by': '审批人', 'app.decision': '结果',
	'app.comment': '意见', 'app.at': '时间', 'app.rule': '适用规则',
	'app.document': '文件', 'app.nodoc': '此申请未绑定文件。',
	'app.docbound': '绑定的文件未存于网关（SHA-256 {sha}）',
	'app.page': '第 {n} 页，共 {of} 页', 'app.prev': '上一页', 'app.next': '下一页',
	'app.decide': '审批', 'app.code': '动态码（身份验证器）',
	'app.approve': '批准', 'app.reject': '驳回', 'app.revoke': '撤销',
	'app.approved': '已批准', 'app.rejected': '已驳回', 'app.revoked': '已撤销',
	'app.needcomment': '驳回需要填写意见。', 'app.needcode': '请输入身份验证器中的动态码。',
	'app.pdferror': '无法显示文件：{msg}',
	'admin.seals': '印章', 'admin.people': '人员', 'admin.devices': '设备',
	'col.label': '名称', 'col.kind': '种类', 'col.site': '站点', 'col.available': '令牌在位',
	'col.quota': '剩余配额', 'col.user': '账号', 'col.name': '姓名', 'col.roles': '角色',
	'col.locked': '已锁定', 'col.totp': '动态码', 'col.failed': '失败次数', 'col.host': '主机',
	'col.person': '人员', 'col.fingerprint': '指纹', 'col.requested': '申请时间',
	'admin.unlock': '解锁', 'admin.unlocked': '{user} 已解锁', 'admin.approve': '批准',
	'admin.revoke': '吊销', 'admin.done': '已完成', 'yes': '是', 'no': '否',
	'audit.title': '审计查询', 'audit.from': '起', 'audit.to': '止',
	'audit.person': '人员', 'audit.department': '部门', 'audit.action': '操作',
	'audit.outcome': '结果', 'audit.digest': '摘要', 'audit.application': '申请',
	'audit.site': '站点', 'audit.limit': '条数', 'audit.search': '查询',
	'audit.export': '导出', 'audit.verify': '校验状态', 'audit.verify.run': '立即校验',
	'audit.more': '更多', 'audit.none': '没有记录。',
	'col.seq': '序号', 'col.time': '时间（UTC）', 'col.actor': '操作人', 'col.action': '操作',
	'col.outcome': '结果', 'col.app': '申请',
	'hq.title': '总部', 'hq.usage': '用印统计', 'hq.by.site': '按站点',
	'hq.by.seal': '按印章', 'hq.by.department': '按部门', 'hq.by.day': '按日',
	'hq.quotas': '配额', 'hq.feed': '实时动态', 'hq.feed.wait': '等待签章与拒绝记录…',
	'hq.feed.lost': '动态中断，正在重连…', 'hq.feed.on': '实时',
	'hq.signatures': '签章次数', 'hq.left': '剩余 {left} / {limit}', 'hq.nolimit': '不限',
	'quota.day': '今日', 'quota.month': '本月', 'quota.total': '总计',
	'quota.person_day': '每人今日',
	'error': '错误', 'error.forbidden': '您无权查看此页面。', 'loading': '加载中…',
	'notfound': '页面不存在。',
};

const dicts = { en, 'zh-CN': zh };
const KEY = 'sg_lang';
let lang = pick();

function pick() {
	let saved = null;
	try {
		saved = localStorage.getItem(KEY);
	} catch (e) {
		saved = null;
	}
	if (saved && dicts[saved])
		return saved;
	for (const l of navigator.languages || [navigator.language || 'en']) {
		const s = String(l).toLowerCase();
		if (s.startsWith('zh'))
			return 'zh-CN';
		if (s.startsWith('en'))
			return 'en';
	}
	return 'en';
}

export function current() {
	return lang;
}

// The switch: remembered for the next visit.
export function setLang(l) {
	if (!dicts[l])
		return;
	lang = l;
	try {
		localStorage.setItem(KEY, l);
	} catch (e) {
		// private mode: the choice lasts this page only
	}
	document.documentElement.lang = l;
}

export function t(key, vars) {
	let s = dicts[lang][key] ?? en[key] ?? key;
	for (const [k, v] of Object.entries(vars || {}))
		s = s.split('{' + k + '}').join(String(v));
	return s;
}

export const keys = () => ({ en: Object.keys(en), zh: Object.keys(zh) });
