import { memo } from 'react'
import { renderMarkdown } from '../chat/markdown.ts'

/** A message's text as sanitised Markdown (see chat/markdown.ts); `me` is highlighted where mentioned. */
export const MessageText = memo(function MessageText({ text, me }: { text: string; me: string }) {
  return <div className="md" dangerouslySetInnerHTML={{ __html: renderMarkdown(text, me) }} />
})
