// The agent's text as safe HTML. markdown-it with raw HTML off (any `<tag>`
// in the text is shown as text), no images (nothing fetched from anywhere),
// links only for http(s)/mailto and always with their target visible, opened
// in a new tab without an opener. The agent's closing `State: healthy |
// degraded | down` line is lifted out and shown as a badge instead.
//
// No DOM needed: node's test runner feeds it the XSS corpus too.

import MarkdownIt from 'markdown-it';

const md = new MarkdownIt({ html: false, linkify: true, typographer: false, breaks: true });
md.disable(['image']);

const SAFE_LINK = /^(https?:|mailto:)/i;
md.validateLink = (url) => SAFE_LINK.test(String(url).trim());

// A link shows where it goes: "text (https://target)" unless the text is the target.
const openLink = md.renderer.rules.link_open || ((tokens, i, options, env, self) => self.renderToken(tokens, i, options));
md.renderer.rules.link_open = (tokens, i, options, env, self) => {
  tokens[i].attrSet('target', '_blank');
  tokens[i].attrSet('rel', 'noopener noreferrer nofollow');
  return openLink(tokens, i, options, env, self);
};
md.renderer.rules.link_close = (tokens, i, options, env, self) => {
  let j = i - 1;
  while (j >= 0 && tokens[j].type !== 'link_open') j--;
  const href = j >= 0 ? tokens[j].attrGet('href') || '' : '';
  let label = '';
  for (let k = j + 1; k < i; k++) label += tokens[k].content || '';
  const shown = href.replace(/^mailto:/, '');
  const suffix = href && label.trim() !== shown && label.trim() !== href ? ` <span class="href">(${md.utils.escapeHtml(href)})</span>` : '';
  return '</a>' + suffix;
};
// Tables and code blocks scroll sideways instead of wrapping into soup.
// tabindex: a region that scrolls must be reachable from the keyboard.
md.renderer.rules.table_open = () => '<div class="scroll" tabindex="0"><table>\n';
md.renderer.rules.table_close = () => '</table></div>\n';
const fence = md.renderer.rules.fence;
md.renderer.rules.fence = (...args) => fence(...args).replace(/^<pre>/, '<pre class="scroll" tabindex="0">');

const STATE_LINE = /(?:^|\n)[ \t>*_]*State[*_]*:[*_ \t]*(healthy|degraded|down)\b[^\n]*\s*$/i;

/** `{html, state}`: the rendered text and the agent's closing state, if it gave one. */
export function render(text) {
  let src = String(text ?? '');
  let state = null;
  const m = STATE_LINE.exec(src);
  if (m) {
    state = m[1].toLowerCase();
    src = src.slice(0, m.index);
  }
  return { html: md.render(src).trim(), state };
}
