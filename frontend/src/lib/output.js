// What a tool's output really is, before it is shown: the runner's own
// truncation marker and the CLI's `<persisted-output>` notice are facts ABOUT
// the output (how much was left out, where the rest is), not output, so they
// are lifted out and stated plainly. Logs are read from the end, so the view
// starts at the tail.
//
// Plain functions, no DOM: node's test runner covers them.

/** The agent-runner cuts an output at its cap, keeps the tail and puts this
 * line before it (events stored by older runners kept the head and put it after). */
const RUNNER_CUT = /^… \[truncated: (\d+) bytes omitted\]\n?/;
const RUNNER_CUT_AFTER = /\n?… \[truncated: (\d+) bytes omitted\]\s*$/;
/** The Claude Code CLI replaces an output too big for the model with a preview. */
const PERSISTED = /<persisted-output>([\s\S]*?)(?:<\/persisted-output>|$)/;
const SAVED = /Output too large \(([^)]*)\)\. Full output saved to: (\S+)/;
const OVER_CAP = /only the first ([^ ]+(?: [A-Za-z]+)?) were saved to: (\S+)/;

/** Lines and characters shown before "Show all". */
export const TAIL_LINES = 200;
export const TAIL_CHARS = 16 * 1024;

/** 1234567 -> "1.2 MB" (decimal units: what `ls -h --si` and the CLI say). */
export function size(n) {
  const v = Math.max(0, Number(n) || 0);
  if (v < 1000) return `${v} bytes`;
  if (v < 1e6) return `${(v / 1e3).toFixed(1)} kB`;
  return `${(v / 1e6).toFixed(1)} MB`;
}

function utf8Length(s) {
  return typeof TextEncoder !== 'undefined' ? new TextEncoder().encode(s).length : s.length;
}

/**
 * Split an output into the text to show and the facts about it:
 * `{text, omittedBytes, persisted: {size, path} | null, bytes}` where `bytes`
 * is the real size of the whole output when it is known (kept + omitted).
 */
export function describe(raw) {
  let text = String(raw ?? '');
  let omittedBytes = 0;
  const cut = RUNNER_CUT.exec(text);
  const cutAfter = cut ? null : RUNNER_CUT_AFTER.exec(text);
  if (cut) {
    omittedBytes = Number(cut[1]) || 0;
    text = text.slice(cut[0].length);
  } else if (cutAfter) {
    omittedBytes = Number(cutAfter[1]) || 0;
    text = text.slice(0, cutAfter.index);
  }
  let persisted = null;
  const p = PERSISTED.exec(text);
  if (p) {
    const inner = p[1];
    const saved = SAVED.exec(inner) || OVER_CAP.exec(inner);
    persisted = { size: saved ? saved[1] : '', path: saved ? saved[2] : '' };
    // The preview is output; the CLI's sentence about it is not.
    const preview = inner
      .replace(SAVED, '').replace(/Output exceeded[^\n]*\n?/, '')
      .replace(/^\s*Preview \([^)]*\):\s*\n?/m, '')
      .replace(/^\n+|\s+$/g, '');
    text = text.slice(0, p.index) + preview + text.slice(p.index + p[0].length);
  }
  const kept = utf8Length(text);
  return { text, omittedBytes, persisted, bytes: kept + omittedBytes };
}

/** The last `maxLines` lines (and at most `maxChars` characters) of a text. */
export function tail(text, maxLines = TAIL_LINES, maxChars = TAIL_CHARS) {
  const s = String(text ?? '');
  const lines = s.split('\n');
  let shown = lines.length > maxLines ? lines.slice(-maxLines).join('\n') : s;
  if (shown.length > maxChars) shown = shown.slice(shown.length - maxChars);
  const hiddenChars = s.length - shown.length;
  const hiddenLines = hiddenChars ? lines.length - shown.split('\n').length : 0;
  return { text: shown, hiddenLines, hiddenChars, totalLines: lines.length };
}

/** Does this output look like a table (aligned columns)? Then it must not wrap. */
export function looksTabular(text) {
  const lines = String(text ?? '').split('\n').slice(0, 20).filter((l) => l.trim());
  if (lines.length < 2) return false;
  return lines.filter((l) => /\S {2,}\S/.test(l)).length >= Math.ceil(lines.length * 0.6);
}
