export function time(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function dateTime(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

export function money(usd) {
  if (usd === null || usd === undefined || Number.isNaN(usd)) return '';
  return usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(3)}`;
}

export function tokens(n) {
  if (!n) return '0';
  return n >= 1000 ? `${(n / 1000).toFixed(n >= 10000 ? 0 : 1)}k` : String(n);
}

export function seconds(ms) {
  if (!ms) return '';
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Output shown in the page is capped; the full text stays in the export. */
export const OUTPUT_CAP = 16 * 1024;
export function capped(text, cap = OUTPUT_CAP) {
  const s = text || '';
  if (s.length <= cap) return { text: s, cut: 0 };
  return { text: s.slice(0, cap), cut: s.length - cap };
}
