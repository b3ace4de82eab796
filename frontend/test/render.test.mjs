// The safe markdown renderer and the output describer (lib/markdown.js,
// lib/output.js): an XSS corpus stays inert, the CLI's notices are lifted out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { render } from '../src/lib/markdown.js';
import { describe, looksTabular, size, tail } from '../src/lib/output.js';
import { applyEvent, createFold, liveBlocks, restoreLive, view } from '../src/lib/fold.js';

const CORPUS = [
  '<img src=x onerror=alert(1)>',
  '<script>alert(1)</script>',
  '[x](javascript:alert(1))',
  '[x](JaVaScRiPt:alert(1))',
  '[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
  '[x](vbscript:msgbox(1))',
  '![x](http://evil.example/p.png)',
  '<a href="javascript:alert(1)">a</a>',
  '<svg onload=alert(1)>',
  '<iframe src="https://evil.example"></iframe>',
  '`<b>code</b>`',
  '<div style="background:url(javascript:alert(1))">x</div>',
];

test('an XSS corpus renders inert: no tags, no unsafe links, no images', () => {
  for (const src of CORPUS) {
    const { html } = render(src);
    assert.doesNotMatch(html, /<(img|script|svg|iframe|div|b)\b/i, src);
    assert.doesNotMatch(html, /href="(?!https?:|mailto:)/i, src);
    assert.doesNotMatch(html, /<[^>]*\son\w+=/i, src); // no event handler inside a real tag
  }
});

test('links show their target and open without an opener', () => {
  const { html } = render('[docs](https://example.org/x)');
  assert.match(html, /<a href="https:\/\/example.org\/x" target="_blank" rel="noopener noreferrer nofollow">docs<\/a> <span class="href">\(https:\/\/example.org\/x\)<\/span>/);
  assert.doesNotMatch(render('https://example.org/x').html, /class="href"/); // the text is the target
});

test('tables and code blocks scroll; the closing State line is a badge', () => {
  const { html, state } = render('| a | b |\n|---|---|\n| 1 | 2 |\n\n```\nx\n```\n\n**State:** Degraded');
  assert.match(html, /<div class="scroll" tabindex="0"><table>/);
  assert.match(html, /<pre class="scroll" tabindex="0">/);
  assert.equal(state, 'degraded');
  assert.doesNotMatch(html, /State/);
  assert.equal(render('State: healthy, all good').state, 'healthy');
  assert.equal(render('the state: down is not the last line\nmore').state, null);
});

test('the runner cut is a fact, not output', () => {
  const d = describe('… [truncated: 1482253 bytes omitted]\na\nb');
  assert.equal(d.text, 'a\nb');
  assert.equal(d.omittedBytes, 1482253);
  const old = describe('a\nb\n… [truncated: 1482253 bytes omitted]');  // stored by an older runner
  assert.equal(old.text, 'a\nb');
  assert.equal(d.omittedBytes, 1482253);
  assert.equal(d.bytes, 1482256);
  assert.equal(size(d.bytes), '1.5 MB');
});

test('the CLI persisted-output notice and its path are lifted out of the output', () => {
  const raw = '<persisted-output>\nOutput too large (1.4MB). Full output saved to: /home/r/.claude/x.txt\n\nPreview (first 2KB):\n1\n2\n</persisted-output>';
  const d = describe(raw);
  assert.equal(d.text, '1\n2');
  assert.deepEqual(d.persisted, { size: '1.4MB', path: '/home/r/.claude/x.txt' });
});

test('the tail comes first', () => {
  const text = Array.from({ length: 3000 }, (_, i) => String(i + 1)).join('\n');
  const t = tail(text);
  assert.equal(t.text.split('\n').length, 200);
  assert.equal(t.text.split('\n').at(-1), '3000');
  assert.equal(t.totalLines, 3000);
  assert.equal(t.hiddenLines, 2800);
  assert.equal(tail('short').hiddenChars, 0);
});

test('column output is recognised as a table', () => {
  assert.ok(looksTabular('              total        used\nMem:          15907       15512\nSwap:             0           0'));
  assert.ok(!looksTabular('just a sentence\nand another one'));
});

test('a stopped turn: the aborted result is not an error, and a text result is not copied as an object', () => {
  const s = createFold();
  applyEvent(s, { id: 1, kind: 'user', turn_id: 't', text: 'go', ts: '2026-01-01T00:00:00Z' });
  applyEvent(s, { id: 2, kind: 'result', turn_id: 't', is_error: true, result: 'aborted streaming', terminal_reason: 'aborted_streaming' });
  applyEvent(s, { id: 3, kind: 'cancelled', turn_id: 't' });
  applyEvent(s, { id: 4, kind: 'turn_end', turn_id: 't', outcome: 'cancelled', ts: '2026-01-01T00:00:21.5Z' });
  const turn = view(s).entries[0];
  assert.deepEqual(turn.items.map((i) => i.t), ['cancelled']);
  assert.equal(typeof turn.result.result, 'string');
  assert.equal(turn.elapsedMs, 21500);
  const f = createFold();
  applyEvent(f, { id: 1, kind: 'result', turn_id: 't', is_error: true, result: 'API Error: 529' });
  const item = view(f).entries[0].items[0];
  assert.equal(item.result, 'API Error: 529');
});

test('live text survives a reload until the stored text replaces it', () => {
  const s = createFold();
  applyEvent(s, { id: 1, kind: 'user', turn_id: 't', text: 'go' });
  applyEvent(s, { kind: 'delta', turn_id: 't', block: 'b1', text: 'word0 word1' });
  const saved = liveBlocks(s);
  const r = createFold();
  restoreLive(r, saved);
  applyEvent(r, { id: 1, kind: 'user', turn_id: 't', text: 'go' });
  applyEvent(r, { kind: 'delta', turn_id: 't', block: 'b1', text: 'word7' });
  assert.equal(view(r).entries[0].live[0].text, 'word0 word1 … word7');
  assert.equal(view(r).entries[0].hasOutput, true);
  applyEvent(r, { id: 2, kind: 'text', turn_id: 't', block: 'b1', text: 'all' });
  assert.equal(view(r).entries[0].live.length, 0);
  restoreLive(r, saved); // a block already stored is never restored
  assert.equal(view(r).entries[0].live.length, 0);
});
