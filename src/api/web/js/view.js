// Small DOM helpers. Text always goes in through textContent, never as
// HTML, so nothing a peer writes can become markup.

/** An element: h('li', {class: 'post', onclick: f}, child, 'text', ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

/** The last six characters of a peer id, as the CLI shows them. */
export const short = (peer) => '…' + String(peer).slice(-6);

/** A name for a peer: a petname, a nickname seen, or the short id. */
export function who(names, peer, nick) {
  return names.get(peer) || nick || short(peer);
}

/** hh:mm of a time in ms. */
export function clock(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Text with @words highlighted (as spans; the text stays text). */
export function rich(text, mine) {
  const out = [];
  for (const part of text.split(/(@[^\s@]+)/)) {
    if (!part) continue;
    if (part.startsWith('@')) out.push(h('span', { class: mine && mine.has(part.slice(1)) ? 'mention me' : 'mention' }, part));
    else out.push(part);
  }
  return out;
}
