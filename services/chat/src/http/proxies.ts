import type { IncomingMessage } from 'node:http'
import { BlockList, isIP } from 'node:net'

/** True when `address` is one of our proxies (TRUSTED_PROXIES): its forwarding headers count. */
export type TrustProxy = (address: string) => boolean

/** `::ffff:10.1.2.3` → `10.1.2.3`; anything else as it is. */
export const unmapped = (address: string) => (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address)

/**
 * The trust test for TRUSTED_PROXIES entries (addresses and CIDRs, validated by config.ts).
 * The same function serves Fastify's `trustProxy` (HTTP `request.ip`), the Engine.IO
 * handshake's client address (per-IP limit) and its `X-Forwarded-Host` (origin check).
 */
export function trustProxies(entries: readonly string[]): TrustProxy {
  const list = new BlockList()
  for (const entry of entries) {
    const [address, bits] = entry.split('/')
    const family = isIP(address) === 4 ? 'ipv4' : 'ipv6'
    if (bits === undefined) list.addAddress(address, family)
    else list.addSubnet(address, Number(bits), family)
  }
  return (address) => {
    const a = unmapped(address)
    const family = isIP(a)
    return family !== 0 && list.check(a, family === 4 ? 'ipv4' : 'ipv6')
  }
}

/**
 * The client's address as the first untrusted hop: the peer, or, while the peer is a trusted
 * proxy, the `X-Forwarded-For` entries from the right (what Fastify's `request.ip` gives with the
 * same trust function).
 */
export function clientAddress(req: IncomingMessage, trusted: TrustProxy): string {
  let address = unmapped(req.socket?.remoteAddress ?? '')
  const header = req.headers['x-forwarded-for']
  if (!header || !trusted(address)) return address
  const hops = (Array.isArray(header) ? header.join(',') : header).split(',')
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = unmapped(hops[i].trim())
    if (isIP(hop) === 0) return address
    address = hop
    if (!trusted(address)) return address
  }
  return address
}

/** The host the client asked for: `X-Forwarded-Host` only when a trusted proxy sent it. */
export function requestedHost(req: IncomingMessage, trusted: TrustProxy): string | undefined {
  const forwarded = req.headers['x-forwarded-host'] as string | undefined
  if (forwarded && trusted(req.socket?.remoteAddress ?? '')) return forwarded.split(',')[0].trim()
  return req.headers.host
}
