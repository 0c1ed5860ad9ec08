// The Backchannel web app: rooms, DMs, requests, groups and contacts of
// the node that serves this page. State comes from the HTTP API; the event
// stream says when something changed. The location hash names the view, so
// a reload opens the same room or conversation again.

import { call, get, enc, EventStream } from './api.js';
import { h, fill, short, who, clock, rich } from './view.js';

const PAGE = 100;
const $ = (id) => document.getElementById(id);

const S = {
  me: null,
  nick: null,
  rooms: [],
  contacts: [],
  requests: [],
  groups: [],
  peers: [],
  names: new Map(), // petnames of contacts
  nicks: new Map(JSON.parse(sessionStorage.getItem('nicks') || '[]')), // nicknames seen
  convs: new Set(JSON.parse(sessionStorage.getItem('convs') || '[]')),
  unread: JSON.parse(sessionStorage.getItem('unread') || '{}'),
  view: { kind: 'home' },
  posts: [],
  appended: 0, // live posts appended so far (a refresh keeps the late ones)
  more: false,
  who: [],
  rules: null,
  messages: [],
  delivery: new Map(), // DM id → latest delivery line
  replyTo: null,
  editing: null,
  stream: null,
  live: false,
};

const name = (peer, nick) => who(S.names, peer, nick || S.nicks.get(peer));
const keyOf = (v) => (v.kind === 'room' ? `room:${v.room}` : v.kind === 'dm' ? `dm:${v.peer}` : v.kind === 'group' ? `group:${v.group}` : '');

function save() {
  sessionStorage.setItem('unread', JSON.stringify(S.unread));
  sessionStorage.setItem('convs', JSON.stringify([...S.convs]));
}

function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 5000);
}

/** Runs an action, showing its error instead of throwing. */
async function act(f) {
  try {
    return await f();
  } catch (e) {
    toast(e.message);
    return undefined;
  }
}

/** Calls `f` at most once per `ms`, after the last request. */
function debounce(f, ms = 60) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(f, ms);
  };
}

// ---- the side: rooms, DMs, requests, groups, contacts, network -----------------

function badge(key) {
  const n = S.unread[key] || 0;
  return n ? h('span', { class: 'badge', 'aria-label': `${n} unread` }, String(n)) : null;
}

function link(href, label, key, current) {
  return h('li', {}, h('a', { href, 'aria-current': current ? 'page' : false, 'data-key': key }, h('span', { class: 'label' }, label), badge(key)));
}

function renderSide() {
  const v = S.view;
  fill($('rooms'), S.rooms.map((r) => link(`#/room/${enc(r.room)}`, roomLabel(r.room), `room:${r.room}`, v.kind === 'room' && v.room === r.room)));
  const peers = new Set([...S.convs, ...S.contacts.map((c) => c.peer)]);
  fill($('dms'), [...peers].map((p) => link(`#/dm/${enc(p)}`, name(p), `dm:${p}`, v.kind === 'dm' && v.peer === p)));
  fill(
    $('requests'),
    S.requests.map((r) =>
      h(
        'li',
        { class: 'request' },
        h('a', { href: `#/dm/${enc(r.peer)}` }, h('span', { class: 'label' }, name(r.peer)), badge(`dm:${r.peer}`)),
        h('span', { class: 'muted small' }, `${r.messages} · ${r.last}`),
        h(
          'span',
          { class: 'buttons' },
          h('button', { type: 'button', onclick: () => accept(r.peer) }, 'Accept'),
          h('button', { type: 'button', onclick: () => act(() => call('POST', `/api/v1/requests/${enc(r.peer)}/decline`)).then(refreshLists) }, 'Decline'),
          h('button', { type: 'button', class: 'danger', onclick: () => block(r.peer) }, 'Block'),
        ),
      ),
    ),
  );
  const count = $('requests-count');
  count.hidden = S.requests.length === 0;
  count.textContent = String(S.requests.length);
  fill($('groups'), S.groups.map((g) => link(`#/group/${g.id}`, g.name, `group:${g.id}`, v.kind === 'group' && v.group === g.id)));
  fill(
    $('contacts'),
    S.contacts.map((c) => h('li', {}, h('a', { href: `#/dm/${enc(c.peer)}` }, c.nick || short(c.peer)), h('span', { class: 'muted small' }, ` ${short(c.peer)}`))),
  );
  renderConn();
}

function renderConn() {
  const n = S.peers.length;
  $('peers').textContent = n ? `${n} peer${n === 1 ? '' : 's'} connected` : 'no peers connected';
  const conn = $('conn');
  conn.textContent = S.live ? `online · ${n} peer${n === 1 ? '' : 's'}` : 'reconnecting…';
  conn.className = `conn ${S.live ? 'ok' : 'down'}`;
}

function roomLabel(room) {
  const i = room.indexOf('~');
  return i < 0 ? room : `${room.slice(0, i)} (hosted)`;
}

async function refreshLists() {
  const [rooms, contacts, requests, groups, peers] = await Promise.all([
    get('/api/v1/rooms'),
    get('/api/v1/contacts'),
    get('/api/v1/requests'),
    get('/api/v1/groups'),
    get('/api/v1/peers'),
  ]);
  Object.assign(S, { rooms, contacts, requests, groups, peers });
  S.names = new Map(contacts.filter((c) => c.nick).map((c) => [c.peer, c.nick]));
  for (const r of requests) S.convs.add(r.peer);
  save();
  renderSide();
}
const refreshListsSoon = debounce(() => act(refreshLists), 80);

async function accept(peer) {
  await act(() => call('PUT', `/api/v1/contacts/${enc(peer)}`, { petname: S.nicks.get(peer) || '' }));
  await act(refreshLists);
}

async function block(peer) {
  if (!confirm(`Block ${name(peer)}? Their messages will be dropped.`)) return;
  await act(() => call('PUT', `/api/v1/blocked/${enc(peer)}`));
  await act(refreshLists);
}

// ---- views --------------------------------------------------------------------

function parseHash() {
  const [, kind, arg] = location.hash.match(/^#\/(room|dm|group)\/(.+)$/) || [];
  if (!kind) return { kind: 'home' };
  const value = decodeURIComponent(arg);
  return kind === 'room' ? { kind, room: value } : kind === 'dm' ? { kind, peer: value } : { kind, group: value };
}

async function route() {
  S.view = parseHash();
  S.replyTo = null;
  S.editing = null;
  const key = keyOf(S.view);
  if (key && S.unread[key]) {
    delete S.unread[key];
    save();
  }
  document.body.classList.remove('menu-open');
  $('menu').setAttribute('aria-expanded', 'false');
  renderSide();
  if (S.view.kind === 'room') await act(openRoom);
  else if (S.view.kind === 'dm') await act(openDm);
  else if (S.view.kind === 'group') await act(openGroup);
  else renderHome();
}

function renderHome() {
  fill($('aside'));
  fill(
    $('main'),
    h('h2', {}, 'Welcome'),
    h('p', {}, 'Join a room to see its hallway, or open a conversation from the list.'),
    h('p', { class: 'muted' }, 'You are ', h('code', {}, S.me), S.nick ? ` (${S.nick})` : ''),
  );
}

// ---- a room ---------------------------------------------------------------------

const myRole = () => (S.who.find((p) => p.me) || {}).role || (S.rules && S.rules.host === S.me ? 'host' : 'listener');
const canModerate = () => ['host', 'moderator'].includes(myRole());

async function openRoom() {
  const room = S.view.room;
  const mark = S.appended;
  const [page, people, rules] = await Promise.all([
    get(`/api/v1/rooms/${enc(room)}/posts?limit=${PAGE}`),
    get(`/api/v1/rooms/${enc(room)}/who`).catch(() => []),
    get(`/api/v1/rooms/${enc(room)}/rules`).catch(() => null),
  ]);
  if (S.view.room !== room) return;
  const fetched = new Set(page.items.map((p) => p.id));
  S.posts = page.items.concat(S.posts.filter((p) => p.appended > mark && !fetched.has(p.id)));
  S.more = page.more;
  S.who = people;
  S.rules = rules;
  learnNames();
  renderRoom(true);
}

/** Reads the latest posts again and puts them in place of the ones shown. */
async function refreshRoom() {
  if (S.view.kind !== 'room') return;
  const room = S.view.room;
  const mark = S.appended;
  const limit = Math.min(500, Math.max(PAGE, S.posts.length));
  const [page, people, rules] = await Promise.all([
    get(`/api/v1/rooms/${enc(room)}/posts?limit=${limit}`),
    get(`/api/v1/rooms/${enc(room)}/who`).catch(() => S.who),
    get(`/api/v1/rooms/${enc(room)}/rules`).catch(() => S.rules),
  ]);
  if (S.view.kind !== 'room' || S.view.room !== room) return;
  // Posts that arrived live while this read was under way are not in it:
  // keep them at the end.
  const fetched = new Set(page.items.map((p) => p.id));
  const late = S.posts.filter((p) => p.appended > mark && !fetched.has(p.id));
  const first = page.items.length ? page.items[0].id : null;
  const at = first ? S.posts.findIndex((p) => p.id === first) : -1;
  if (at > 0) S.posts = S.posts.slice(0, at).concat(page.items, late);
  else {
    S.posts = page.items.concat(late);
    S.more = page.more;
  }
  S.who = people;
  S.rules = rules;
  learnNames();
  renderHead();
  renderPosts();
  renderAside();
}

/** Remembers the nicknames a room shows, to name people elsewhere. */
function learnNames() {
  for (const p of S.posts) if (p.nick) S.nicks.set(p.author, p.nick);
  for (const p of S.who) if (p.nick) S.nicks.set(p.peer, p.nick);
  sessionStorage.setItem('nicks', JSON.stringify([...S.nicks]));
}
const refreshRoomSoon = debounce(() => act(refreshRoom));

/** Adds a live post at the end without drawing the others again. */
function appendPost(p) {
  S.appended += 1;
  p.appended = S.appended;
  S.posts.push(p);
  const log = $('log');
  const list = log && log.querySelector('ol.posts');
  if (!list) return renderPosts();
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
  const parent = p.reply_to ? new Map([[p.reply_to, S.posts.find((x) => x.id === p.reply_to)]]) : new Map();
  list.append(postItem(p, parent));
  if (atBottom) log.scrollTop = log.scrollHeight;
  // A question joins the queue beside the hallway.
  if (p.question) renderAside();
}

/** Reads who is here and the rules again (presence changed). */
async function refreshWho() {
  if (S.view.kind !== 'room') return;
  const room = S.view.room;
  const [people, rules] = await Promise.all([get(`/api/v1/rooms/${enc(room)}/who`), get(`/api/v1/rooms/${enc(room)}/rules`)]);
  if (S.view.kind !== 'room' || S.view.room !== room) return;
  S.who = people;
  S.rules = rules;
  learnNames();
  renderHead();
  renderAside();
}
const refreshWhoSoon = debounce(() => act(refreshWho), 150);

async function loadOlder() {
  if (!S.more || S.loading || !S.posts.length) return;
  S.loading = true;
  const room = S.view.room;
  const page = await act(() => get(`/api/v1/rooms/${enc(room)}/posts?limit=${PAGE}&before=${S.posts[0].id}`));
  S.loading = false;
  if (!page || S.view.room !== room) return;
  const log = $('log');
  const fromBottom = log.scrollHeight - log.scrollTop;
  S.posts = page.items.concat(S.posts);
  S.more = page.more;
  renderPosts();
  log.scrollTop = log.scrollHeight - fromBottom;
}

function renderRoom(first) {
  const room = S.view.room;
  const log = h('div', { id: 'log', class: 'log', role: 'log', 'aria-live': 'polite', 'aria-label': `Hallway of ${roomLabel(room)}`, tabindex: '0' });
  log.addEventListener('scroll', () => {
    if (log.scrollTop < 40) loadOlder();
  });
  fill($('main'), h('div', { id: 'head', class: 'head' }), log, composer());
  renderHead();
  renderPosts(first);
  renderAside();
  if (first) $('text').focus();
}

/** The room's title bar: name, your role, the hallway's mode, actions. */
function renderHead() {
  const head = $('head');
  if (!head) return;
  const room = S.view.room;
  const mode = S.rules ? S.rules.mode : 'on';
  fill(
    head,
    h('h2', {}, roomLabel(room)),
    h('span', { class: 'muted small' }, `you: ${myRole()}`, mode !== 'on' ? ` · hallway ${mode.replace('_', '-')}` : ''),
    h(
      'span',
      { class: 'buttons' },
      canModerate()
        ? h(
            'label',
            {},
            'Hallway ',
            h(
              'select',
              { id: 'chat-mode', onchange: (e) => roomOp({ kind: 'chat', mode: e.target.value }) },
              ['on', 'read_only', 'off'].map((m) => h('option', { value: m, selected: m === mode }, m.replace('_', '-'))),
            ),
          )
        : null,
      h('button', { type: 'button', onclick: () => act(() => call('POST', `/api/v1/rooms/${enc(room)}/sync`)) }, 'Sync'),
      h('button', { type: 'button', onclick: () => copy(room) }, 'Copy id'),
      h('button', { type: 'button', onclick: leave }, 'Leave'),
    ),
  );
}

/** Redraws the composer (a reply or an edit started or ended), keeping what was typed. */
function renderComposer() {
  const old = $('compose');
  const typed = old ? $('text').value : '';
  const form = composer();
  if (old) old.replaceWith(form);
  if (!S.editing && typed) $('text').value = typed;
  $('text').focus();
}

function composer() {
  const reply = S.replyTo && S.posts.find((p) => p.id === S.replyTo);
  const edit = S.editing && S.posts.find((p) => p.id === S.editing);
  const text = h('textarea', { id: 'text', rows: '2', maxlength: '4096', 'aria-label': edit ? 'Edit your post' : 'Message', placeholder: edit ? 'Edit your post' : 'Say something — Enter sends, Shift+Enter for a new line' });
  if (edit) text.value = edit.text;
  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    } else if (e.key === 'Escape') {
      S.replyTo = null;
      S.editing = null;
      renderComposer();
    }
  });
  const ask = h('input', { type: 'checkbox', id: 'ask' });
  const form = h(
    'form',
    { id: 'compose', class: 'compose' },
    reply ? h('div', { class: 'chip' }, `Replying to ${name(reply.author, reply.nick)}: ${reply.text.slice(0, 60)}`, h('button', { type: 'button', 'aria-label': 'Cancel reply', onclick: () => { S.replyTo = null; renderComposer(); } }, '×')) : null,
    edit ? h('div', { class: 'chip' }, 'Editing your post', h('button', { type: 'button', 'aria-label': 'Cancel edit', onclick: () => { S.editing = null; renderComposer(); } }, '×')) : null,
    text,
    h('span', { class: 'buttons' }, edit ? null : h('label', { class: 'check' }, ask, ' Ask the stage'), h('button', { type: 'submit', id: 'send' }, edit ? 'Save' : 'Send')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = text.value.trim();
    if (!value) return;
    const room = S.view.room;
    if (S.editing) {
      const target = S.editing;
      if (await roomOp({ kind: 'edit', target, text: value })) {
        S.editing = null;
        renderComposer();
      }
    } else {
      const body = { text: value, question: ask.checked };
      if (S.replyTo) body.reply_to = S.replyTo;
      const mentions = [...value.matchAll(/@(\S+)/g)].map((m) => m[1]).filter((m) => /^12D3Koo/.test(m));
      if (mentions.length) body.mentions = mentions;
      const ok = await act(() => call('POST', `/api/v1/rooms/${enc(room)}/posts`, body));
      if (!ok) return;
      if (S.replyTo) {
        S.replyTo = null;
        renderComposer();
      }
    }
    $('text').value = '';
    await act(refreshRoom);
    $('text').focus();
  });
  return form;
}

function renderPosts(stick = false) {
  const log = $('log');
  if (!log) return;
  const atBottom = stick || log.scrollHeight - log.scrollTop - log.clientHeight < 60;
  const byId = new Map(S.posts.map((p) => [p.id, p]));
  const list = h('ol', { class: 'posts' });
  const frag = document.createDocumentFragment();
  for (const p of S.posts) frag.append(postItem(p, byId));
  list.append(frag);
  fill(
    log,
    S.more ? h('button', { type: 'button', class: 'older', onclick: loadOlder }, 'Load older posts') : h('p', { class: 'muted small start' }, 'The start of the room'),
    S.posts.length ? list : h('p', { class: 'muted' }, 'No posts yet.'),
  );
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function postItem(p, byId) {
  const mod = canModerate();
  const role = myRole();
  const mentionsMe = p.mentions.includes(S.me);
  const parent = p.reply_to ? byId.get(p.reply_to) : null;
  const actions = [
    h('button', { type: 'button', onclick: () => { S.replyTo = p.id; S.editing = null; renderComposer(); } }, 'Reply'),
    h('button', { type: 'button', 'aria-label': 'React with a thumbs up', onclick: () => roomOp({ kind: 'react', target: p.id, emoji: '👍', retract: false }) }, '👍'),
    h('button', { type: 'button', 'aria-label': 'React with a heart', onclick: () => roomOp({ kind: 'react', target: p.id, emoji: '❤️', retract: false }) }, '❤️'),
    p.mine ? h('button', { type: 'button', onclick: () => { S.editing = p.id; S.replyTo = null; renderComposer(); } }, 'Edit') : null,
    p.mine || mod ? h('button', { type: 'button', class: 'danger', onclick: () => roomOp({ kind: 'delete', target: p.id }) }, 'Delete') : null,
  ];
  if (p.question && (mod || role === 'speaker' || p.mine)) {
    for (const state of ['answered', 'dismissed', 'open']) {
      if (state !== p.question) actions.push(h('button', { type: 'button', onclick: () => roomOp({ kind: 'question', target: p.id, state }) }, state === 'open' ? 'Reopen' : state === 'answered' ? 'Answered' : 'Dismiss'));
    }
  }
  return h(
    'li',
    { class: `post${p.mine ? ' mine' : ''}${mentionsMe ? ' mentions-me' : ''}${p.question ? ' question' : ''}`, id: `p-${p.id}`, 'data-id': p.id },
    h(
      'div',
      { class: 'meta' },
      h('strong', { class: 'author' }, name(p.author, p.nick)),
      h('span', { class: 'muted small' }, ` ${short(p.author)}`),
      p.role !== 'listener' ? h('span', { class: `role ${p.role}` }, p.role) : null,
      h('time', { datetime: new Date(p.time_ms).toISOString(), class: 'muted small' }, clock(p.time_ms)),
      h('span', { class: 'muted small id' }, `[${p.id.slice(0, 8)}]`),
    ),
    parent || p.reply_to ? h('div', { class: 'quote muted small' }, '↪ ', parent ? `${name(parent.author, parent.nick)}: ${parent.text.slice(0, 80)}` : `a post [${p.reply_to.slice(0, 8)}]`) : null,
    h('p', { class: 'text' }, p.question ? h('span', { class: `qstate ${p.question}` }, `Question · ${p.question}`) : null, rich(p.text, new Set([S.me, S.nick])), p.edited ? h('span', { class: 'muted small' }, ' (edited)') : null),
    p.reactions.length ? h('div', { class: 'reactions' }, p.reactions.map(([emoji, n]) => h('button', { type: 'button', class: 'reaction', 'aria-label': `${emoji} ${n}, react too`, onclick: () => roomOp({ kind: 'react', target: p.id, emoji, retract: false }) }, `${emoji} ${n}`))) : null,
    h('div', { class: 'actions', role: 'group', 'aria-label': 'Post actions' }, actions),
  );
}

async function roomOp(op) {
  const room = S.view.room;
  const done = await act(() => call('POST', `/api/v1/rooms/${enc(room)}/ops`, op));
  if (done) await act(refreshRoom);
  return done;
}

function renderAside() {
  const aside = $('aside');
  if (S.view.kind !== 'room') return;
  const host = myRole() === 'host';
  const mod = canModerate();
  const questions = S.posts.filter((p) => p.question === 'open');
  const people = [...S.who].sort((a, b) => rank(b.role) - rank(a.role));
  fill(
    aside,
    h('h2', {}, `Here (${people.length})`),
    h(
      'ul',
      { class: 'list who' },
      people.map((p) =>
        h(
          'li',
          {},
          h('span', {}, name(p.peer, p.nick), p.me ? ' (you)' : ''),
          p.role !== 'listener' ? h('span', { class: `role ${p.role}` }, p.role) : null,
          !p.me && host && p.role !== 'host'
            ? h(
                'label',
                { class: 'small' },
                h('span', { class: 'sr' }, `Role of ${name(p.peer, p.nick)}`),
                h(
                  'select',
                  { 'aria-label': `Role of ${name(p.peer, p.nick)}`, 'data-peer': p.peer, onchange: (e) => roomOp({ kind: 'set_role', peer: p.peer, role: e.target.value }) },
                  ['listener', 'speaker', 'moderator'].map((r) => h('option', { value: r, selected: r === p.role }, r)),
                ),
              )
            : null,
          !p.me && mod && p.role !== 'host' ? h('button', { type: 'button', class: 'danger small', onclick: () => roomOp({ kind: 'remove', peer: p.peer, restore: false }) }, 'Remove') : null,
          !p.me ? h('a', { href: `#/dm/${enc(p.peer)}`, class: 'small' }, 'DM') : null,
        ),
      ),
    ),
    h('h2', {}, `Questions (${questions.length})`),
    questions.length ? h('ol', { class: 'list' }, questions.map((q) => h('li', {}, h('a', { href: `#p-${q.id}`, onclick: (e) => { e.preventDefault(); focusPost(q.id); } }, `${name(q.author, q.nick)}: ${q.text.slice(0, 80)}`)))) : h('p', { class: 'muted' }, 'No open questions.'),
    S.rules && S.rules.removed.length
      ? [h('h2', {}, 'Removed'), h('ul', { class: 'list' }, S.rules.removed.map((p) => h('li', {}, name(p), mod ? h('button', { type: 'button', class: 'small', onclick: () => roomOp({ kind: 'remove', peer: p, restore: true }) }, 'Let back') : null)))]
      : null,
  );
}

const rank = (role) => ({ host: 3, moderator: 2, speaker: 1 })[role] || 0;

function focusPost(id) {
  const el = document.getElementById(`p-${id}`);
  if (el) {
    el.setAttribute('tabindex', '-1');
    el.focus();
    el.scrollIntoView({ block: 'center' });
  }
}

async function leave() {
  const room = S.view.room;
  if (await act(() => call('DELETE', `/api/v1/rooms/${enc(room)}`))) {
    location.hash = '#/';
    await act(refreshLists);
  }
}

function copy(text) {
  navigator.clipboard?.writeText(text).then(() => toast('Copied'), () => toast(text));
}

// ---- a conversation ---------------------------------------------------------------

async function openDm() {
  const peer = S.view.peer;
  const page = await get(`/api/v1/dms/${enc(peer)}?limit=${PAGE}`);
  if (S.view.peer !== peer) return;
  S.messages = page.items;
  S.more = page.more;
  S.convs.add(peer);
  save();
  for (const m of S.messages) if (m.nick && m.from !== S.me) S.nicks.set(m.from, m.nick);
  renderDm(true);
  renderSide();
}
const refreshDmSoon = debounce(() => act(openDmKeep));

async function openDmKeep() {
  if (S.view.kind !== 'dm') return;
  const peer = S.view.peer;
  const page = await get(`/api/v1/dms/${enc(peer)}?limit=${Math.max(PAGE, S.messages.length)}`);
  if (S.view.peer !== peer) return;
  S.messages = page.items;
  S.more = page.more;
  renderMessages();
}

function deliveryOf(m) {
  const live = S.delivery.get(m.id);
  const state = m.delivery ? m.delivery.state : 'none';
  // The log's state wins once it is final; before that, the latest line.
  if (state === 'delivered' || state === 'failed' || !live) return { state, reason: m.delivery && m.delivery.reason };
  return live;
}

function renderDm(first) {
  const peer = S.view.peer;
  const request = S.requests.find((r) => r.peer === peer);
  const contact = S.contacts.find((c) => c.peer === peer);
  fill($('aside'), h('h2', {}, 'Peer'), h('p', {}, h('code', { class: 'wrap' }, peer)), h('button', { type: 'button', onclick: () => copy(peer) }, 'Copy id'), ' ', h('button', { type: 'button', class: 'danger', onclick: () => block(peer) }, 'Block'));
  const text = h('textarea', { id: 'text', rows: '2', maxlength: '4096', 'aria-label': `Message to ${name(peer)}`, placeholder: 'Write a private message — Enter sends' });
  const form = h('form', { id: 'compose', class: 'compose' }, text, h('span', { class: 'buttons' }, h('button', { type: 'submit', id: 'send' }, 'Send')));
  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = text.value.trim();
    if (!value) return;
    if (await sendDm(peer, value)) text.value = '';
    text.focus();
  });
  fill(
    $('main'),
    h(
      'div',
      { class: 'head' },
      h('h2', {}, name(peer)),
      h('span', { class: 'muted small' }, contact ? 'contact' : request ? 'message request' : short(peer)),
      request
        ? h(
            'span',
            { class: 'buttons' },
            h('button', { type: 'button', id: 'accept', onclick: () => accept(peer).then(() => renderDm(false)) }, 'Accept'),
            h('button', { type: 'button', onclick: () => act(() => call('POST', `/api/v1/requests/${enc(peer)}/decline`)).then(refreshLists).then(openDm) }, 'Decline'),
          )
        : null,
    ),
    h('div', { id: 'log', class: 'log', role: 'log', 'aria-live': 'polite', 'aria-label': `Conversation with ${name(peer)}`, tabindex: '0' }),
    form,
  );
  renderMessages(first);
  if (first) text.focus();
}

async function sendDm(peer, value) {
  const ok = await act(() => call('POST', `/api/v1/dms/${enc(peer)}`, { text: value }));
  if (ok) await act(openDmKeep);
  return ok;
}

function renderMessages(stick = false) {
  const log = $('log');
  if (!log) return;
  const atBottom = stick || log.scrollHeight - log.scrollTop - log.clientHeight < 60;
  const items = S.messages.map((m) => {
    const mine = m.from === S.me;
    const d = mine ? deliveryOf(m) : null;
    const label = d && { none: 'sending', queued: 'queued', sent: 'sent', delivered: 'delivered', failed: 'failed' }[d.state];
    return h(
      'li',
      { class: `post${mine ? ' mine' : ''}`, id: `m-${m.id}`, 'data-id': m.id },
      h('div', { class: 'meta' }, h('strong', { class: 'author' }, mine ? 'you' : name(m.from, m.nick)), h('time', { class: 'muted small' }, clock(m.time))),
      h('p', { class: 'text' }, m.text || '(a reaction)'),
      d
        ? h(
            'div',
            { class: `delivery ${d.state}`, 'data-state': d.state },
            label,
            d.attempt > 1 ? ` · attempt ${d.attempt}` : '',
            d.retry_at ? ` · next try ${clock(d.retry_at)}` : '',
            d.reason ? ` · ${d.reason}` : '',
            d.state === 'failed' ? h('button', { type: 'button', class: 'small', onclick: () => sendDm(S.view.peer, m.text) }, 'Send again') : null,
          )
        : null,
    );
  });
  fill(log, S.more ? h('button', { type: 'button', class: 'older', onclick: () => olderMessages(`/api/v1/dms/${enc(S.view.peer)}`, renderMessages) }, 'Load older messages') : null, items.length ? h('ol', { class: 'posts' }, items) : h('p', { class: 'muted' }, 'No messages yet.'));
  if (atBottom) log.scrollTop = log.scrollHeight;
}

/** Puts the page of messages before the first one shown in front of them. */
async function olderMessages(base, render) {
  if (!S.messages.length) return;
  const view = S.view;
  const page = await act(() => get(`${base}?limit=${PAGE}&before=${S.messages[0].id}`));
  if (!page || S.view !== view) return;
  const log = $('log');
  const fromBottom = log.scrollHeight - log.scrollTop;
  S.messages = page.items.concat(S.messages);
  S.more = page.more;
  render();
  $('log').scrollTop = $('log').scrollHeight - fromBottom;
}

// ---- a group ---------------------------------------------------------------------

async function openGroup() {
  const group = S.view.group;
  const page = await get(`/api/v1/groups/${enc(group)}/messages?limit=${PAGE}`);
  if (S.view.group !== group) return;
  S.messages = page.items;
  S.more = page.more;
  renderGroup();
}
const refreshGroupSoon = debounce(() => act(openGroup));

function renderGroup() {
  const g = S.groups.find((x) => x.id === S.view.group);
  const moderator = g && g.moderator === S.me;
  const text = h('textarea', { id: 'text', rows: '2', maxlength: '4096', 'aria-label': 'Message to the group', placeholder: 'Write to the group — Enter sends' });
  const form = h('form', { id: 'compose', class: 'compose' }, text, h('span', { class: 'buttons' }, h('button', { type: 'submit' }, 'Send')));
  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = text.value.trim();
    if (value && (await act(() => call('POST', `/api/v1/groups/${enc(S.view.group)}/messages`, { text: value })))) {
      text.value = '';
      await act(openGroup);
    }
  });
  const add = h('input', { id: 'group-add', 'aria-label': 'Peer id to add', placeholder: '12D3KooW…' });
  fill(
    $('aside'),
    h('h2', {}, 'Members'),
    h('ul', { class: 'list' }, (g ? g.members : []).map((p) => h('li', {}, name(p), p === (g && g.moderator) ? h('span', { class: 'role moderator' }, 'moderator') : null, moderator && p !== S.me ? h('button', { type: 'button', class: 'small danger', onclick: () => act(() => call('DELETE', `/api/v1/groups/${enc(g.id)}/members/${enc(p)}`)).then(refreshLists) }, 'Remove') : null))),
    moderator
      ? h('form', { class: 'inline', onsubmit: (e) => { e.preventDefault(); act(() => call('PUT', `/api/v1/groups/${enc(g.id)}/members/${enc(add.value.trim())}`)).then(refreshLists); } }, add, h('button', { type: 'submit' }, 'Add'))
      : null,
    h('button', { type: 'button', class: 'danger', onclick: () => act(() => call('DELETE', `/api/v1/groups/${enc(S.view.group)}`)).then(refreshLists) }, 'Leave group'),
  );
  fill(
    $('main'),
    h('div', { class: 'head' }, h('h2', {}, g ? g.name : 'Group'), h('span', { class: 'muted small' }, g ? `${g.members.length} members` : '')),
    h(
      'div',
      { id: 'log', class: 'log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Group messages', tabindex: '0' },
      S.more ? h('button', { type: 'button', class: 'older', onclick: () => olderMessages(`/api/v1/groups/${enc(S.view.group)}/messages`, renderGroup) }, 'Load older messages') : null,
      h('ol', { class: 'posts' }, S.messages.map((m) => h('li', { class: `post${m.from === S.me ? ' mine' : ''}` }, h('div', { class: 'meta' }, h('strong', {}, m.from === S.me ? 'you' : name(m.from, m.nick)), h('time', { class: 'muted small' }, clock(m.time))), h('p', { class: 'text' }, m.text)))),
    ),
    form,
  );
  const log = $('log');
  log.scrollTop = log.scrollHeight;
}

// ---- events -------------------------------------------------------------------------

function unread(key) {
  if (key === keyOf(S.view) && document.visibilityState === 'visible') return;
  S.unread[key] = (S.unread[key] || 0) + 1;
  save();
  renderSide();
}

function onLine(l) {
  const v = S.view;
  const inRoom = (room) => v.kind === 'room' && v.room === room;
  switch (l.type) {
    case 'hallway':
      if (l.nick) S.nicks.set(l.from, l.nick);
      if (inRoom(l.room) && !S.posts.some((p) => p.id === l.id)) {
        // The line has all a new post shows but its author's role.
        const role = (S.who.find((p) => p.peer === l.from) || {}).role || 'listener';
        appendPost({ id: l.id, author: l.from, nick: l.nick, role, text: l.text, edited: false, clock: l.clock, time_ms: l.time, reply_to: l.reply_to, mentions: l.mentions, question: l.question ? 'open' : null, reactions: [], mine: false });
      }
      unread(`room:${l.room}`);
      break;
    case 'room_op':
      if (inRoom(l.room)) {
        if (l.op.kind === 'delete') {
          S.posts = S.posts.filter((p) => p.id !== l.op.target);
          renderPosts();
        }
        refreshRoomSoon();
      }
      break;
    case 'posted':
    case 'synced':
      if (inRoom(l.room)) refreshRoomSoon();
      break;
    case 'presence':
    case 'room_peer_joined':
    case 'room_peer_left':
      if (inRoom(l.room)) refreshWhoSoon();
      break;
    case 'joined':
    case 'left':
      refreshListsSoon();
      break;
    case 'dm': {
      if (l.nick) S.nicks.set(l.from, l.nick);
      S.convs.add(l.from);
      if (v.kind === 'dm' && v.peer === l.from) refreshDmSoon();
      if (l.text) unread(`dm:${l.from}`);
      refreshListsSoon();
      break;
    }
    case 'dm_sent':
      S.convs.add(l.to);
      if (v.kind === 'dm' && v.peer === l.to) refreshDmSoon();
      renderSide();
      break;
    case 'queued':
      S.delivery.set(l.id, { state: 'queued', retry_at: l.retry_at, reason: l.reason, attempt: (S.delivery.get(l.id) || {}).attempt });
      if (v.kind === 'dm' && v.peer === l.to) refreshDmSoon();
      break;
    case 'sent':
      S.delivery.set(l.id, { state: 'sent', attempt: l.attempt });
      if (v.kind === 'dm' && v.peer === l.to) refreshDmSoon();
      break;
    case 'delivered':
      S.delivery.set(l.id, { state: 'delivered' });
      if (v.kind === 'dm' && v.peer === l.to) refreshDmSoon();
      break;
    case 'dm_failed':
      S.delivery.set(l.id, { state: 'failed', reason: l.reason });
      if (v.kind === 'dm' && v.peer === l.to) refreshDmSoon();
      break;
    case 'group_message':
      if (v.kind === 'group' && v.group === l.group) refreshGroupSoon();
      unread(`group:${l.group}`);
      break;
    case 'group':
    case 'group_created':
    case 'group_sent':
    case 'group_delivered':
      refreshListsSoon();
      if (v.kind === 'group' && v.group === l.group) refreshGroupSoon();
      break;
    case 'contact':
    case 'declined':
    case 'blocked':
    case 'unblocked':
    case 'requests_setting':
      if (l.type === 'requests_setting') $('accept-requests').checked = l.accept;
      refreshListsSoon();
      break;
    case 'peer_connected':
    case 'peer_disconnected':
      refreshListsSoon();
      break;
    default:
      break;
  }
}

function onState(state) {
  S.live = state === 'live';
  if (state === 'reload') {
    // Lines were missed: read everything again.
    act(refreshLists).then(route);
  }
  renderConn();
}

// ---- start ------------------------------------------------------------------------------

function wire() {
  window.addEventListener('hashchange', route);
  $('menu').addEventListener('click', () => {
    const open = document.body.classList.toggle('menu-open');
    $('menu').setAttribute('aria-expanded', String(open));
  });
  $('join-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const room = $('join-room').value.trim();
    const done = await act(() => call('POST', '/api/v1/rooms', { room }));
    if (done) {
      $('join-room').value = '';
      await act(refreshLists);
      location.hash = `#/room/${enc(done.room)}`;
    }
  });
  $('host-btn').addEventListener('click', async () => {
    const nameText = $('join-room').value.trim();
    if (!nameText) return toast('Type a name for the room first');
    const done = await act(() => call('POST', '/api/v1/hosted', { name: nameText }));
    if (done) {
      $('join-room').value = '';
      await act(refreshLists);
      location.hash = `#/room/${enc(done.room)}`;
    }
  });
  $('dm-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const peer = $('dm-peer').value.trim();
    if (!peer) return;
    $('dm-peer').value = '';
    location.hash = `#/dm/${enc(peer)}`;
  });
  $('group-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const members = $('group-members').value.split(/[\s,]+/).filter(Boolean);
    const done = await act(() => call('POST', '/api/v1/groups', { name: $('group-name').value.trim(), members }));
    if (done) {
      $('group-name').value = '';
      $('group-members').value = '';
      await act(refreshLists);
      location.hash = `#/group/${done.group}`;
    }
  });
  $('accept-requests').addEventListener('change', (e) => act(() => call('PUT', '/api/v1/requests/setting', { accept: e.target.checked })));
  document.addEventListener('visibilitychange', () => {
    const key = keyOf(S.view);
    if (document.visibilityState === 'visible' && S.unread[key]) {
      delete S.unread[key];
      save();
      renderSide();
    }
  });
}

async function boot() {
  wire();
  let node;
  try {
    node = await get('/api/v1/node');
  } catch (e) {
    fill($('main'), h('h2', {}, 'Not connected'), h('p', {}, e.message));
    return;
  }
  S.me = node.peer;
  S.nick = node.nick;
  $('me').textContent = `${node.nick || 'you'} · ${short(node.peer)}`;
  $('me').title = node.peer;
  // Listen first, then read: a change while reading is not lost.
  const since = Number(sessionStorage.getItem('seq') || node.seq);
  S.stream = new EventStream(since <= node.seq ? since : node.seq, (line) => {
    sessionStorage.setItem('seq', String(line.seq));
    onLine(line);
  }, onState);
  await act(refreshLists);
  await route();
  document.documentElement.dataset.ready = 'true';
}

boot();
