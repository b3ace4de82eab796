// The one message line above the composer. An informational notice fades by
// itself; a problem stays until dismissed; one said `untilTurnEnds` stays
// until the running turn ends (stores/session.svelte.js clears it).

export const notice = $state({ current: null }); // {text, tone: 'bad'|'info', untilTurnEnds}

let timer = null;

export function say(text, tone = 'info', untilTurnEnds = false) {
  notice.current = { text, tone, untilTurnEnds };
  clearTimeout(timer);
  if (tone === 'info' && !untilTurnEnds) timer = setTimeout(() => (notice.current = null), 6000);
}

export function dismiss() {
  notice.current = null;
}
