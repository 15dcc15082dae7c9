import DOMPurify from 'dompurify'
import MarkdownIt from 'markdown-it'

/**
 * Message text as a small, safe Markdown subset (D175): **bold**, *italic*, `code`, fenced and
 * indented code blocks, [links](https://…), bare URLs, lists, line breaks, and `@username`
 * mentions. No images, headings, tables or raw HTML. markdown-it parses with `html: false`
 * (tags stay text) from its `zero` preset with only those rules on; links pass only for
 * http, https and mailto; DOMPurify then keeps only the tags and attributes this subset can
 * produce (defence in depth: a parser bug cannot inject markup).
 */

const SAFE_URL = /^(https?:|mailto:)/i

const md = new MarkdownIt('zero', { html: false, linkify: true, breaks: true })
md.enable(['emphasis', 'backticks', 'escape', 'entity', 'fence', 'code', 'list', 'link', 'autolink', 'linkify', 'newline'])
md.validateLink = (url: string) => SAFE_URL.test(url.trim())
// Bare "example.com" or "a@b.c" is not a link: only what has a scheme counts.
md.linkify.set({ fuzzyLink: false, fuzzyEmail: false })

// Emphasis with * only: _ and __ stay as typed, so snake_case and __proto__ read as written.
for (const [open, close, tag] of [['em_open', 'em_close', 'em'], ['strong_open', 'strong_close', 'strong']] as const) {
  md.renderer.rules[open] = (tokens, idx) => (tokens[idx].markup.startsWith('_') ? tokens[idx].markup : `<${tag}>`)
  md.renderer.rules[close] = (tokens, idx) => (tokens[idx].markup.startsWith('_') ? tokens[idx].markup : `</${tag}>`)
}

/** `@name` (the server's mention rule: after a non-word character, 1–64 of [\w.-]). */
md.inline.ruler.push('mention', (state, silent) => {
  const start = state.pos
  if (state.src.charCodeAt(start) !== 0x40 /* @ */) return false
  const before = start > 0 ? state.src[start - 1] : ''
  if (before && /[\w@]/.test(before)) return false
  const m = /^@([\w.-]{1,64})/.exec(state.src.slice(start))
  if (!m) return false
  // A trailing dot ends the sentence, not the name.
  const name = m[1].replace(/\.+$/, '')
  if (!name) return false
  if (!silent) {
    const token = state.push('mention', '', 0)
    token.content = name
  }
  state.pos = start + 1 + name.length
  return true
})

let myName = ''
md.renderer.rules.mention = (tokens, idx) => {
  const name = tokens[idx].content
  const self = name.toLowerCase() === myName.toLowerCase()
  return `<span class="${self ? 'mention mention--me' : 'mention'}" data-mention="${md.utils.escapeHtml(name)}">@${md.utils.escapeHtml(name)}</span>`
}

const ALLOWED_TAGS = ['p', 'br', 'strong', 'em', 'code', 'pre', 'a', 'ul', 'ol', 'li', 'span']
const ALLOWED_ATTR = ['href', 'class', 'data-mention', 'start', 'target', 'rel']

let purify: ReturnType<typeof DOMPurify> | null = null
function sanitizer(): ReturnType<typeof DOMPurify> {
  if (purify) return purify
  purify = DOMPurify(window)
  purify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A') {
      const href = node.getAttribute('href') ?? ''
      if (!SAFE_URL.test(href)) node.removeAttribute('href')
      node.setAttribute('target', '_blank')
      node.setAttribute('rel', 'noopener noreferrer nofollow')
    }
    if (node.tagName === 'SPAN' && !/^mention( mention--me)?$/.test(node.getAttribute('class') ?? '')) node.removeAttribute('class')
  })
  return purify
}

const cache = new Map<string, string>()

/** The sanitised HTML of a message's text; `me` (my username) gets its own mention style. */
export function renderMarkdown(text: string, me: string): string {
  const key = `${me}\u0000${text}`
  const hit = cache.get(key)
  if (hit !== undefined) return hit
  myName = me
  const html = sanitizer().sanitize(md.render(text).trim(), { ALLOWED_TAGS, ALLOWED_ATTR, ALLOW_DATA_ATTR: false })
  if (cache.size > 2000) cache.clear()
  cache.set(key, html)
  return html
}

/** True when the text mentions `name` (case-insensitive), by the same rule the renderer uses. */
export function mentions(text: string, name: string): boolean {
  const lower = name.toLowerCase()
  for (const m of text.matchAll(/(?:^|[^\w@])@([\w.-]{1,64})/g)) if (m[1].replace(/\.+$/, '').toLowerCase() === lower) return true
  return false
}
