import http from 'node:http'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { io, type Socket } from 'socket.io-client'
import { encode, newHistogram, recordMs, type Histogram } from '../lib/histogram.ts'
import type { ClientSpec, ParentMsg, RunMsg, SetupMsg, StepCounts, StepResult, WorkerMsg } from './protocol.ts'

// One load-generator process: opens its share of clients, sends at the offered rate, and
// measures send→receive latency (timestamps travel in the message text) and ack latency.

const send = (m: WorkerMsg) => process.send!(m)
const now = () => performance.timeOrigin + performance.now()

interface Client {
  spec: ClientSpec
  socket: Socket
}

let setup: SetupMsg
let clients: Client[] = []
let current: StepState | undefined
const late = new Map<number, StepState>() // steps still draining
let connected = 0
let failed = 0
let progressSent = 0
let progressReceived = 0

interface StepState extends Omit<StepCounts<Histogram>, 'loopDelayMs'> {
  startedAt: number
}

function newStep(step: number): StepState {
  return { step, startedAt: now(), sent: 0, acked: 0, ackedByRoom: {}, ackErrors: {}, received: 0, latency: newHistogram(), ack: newHistogram(), perSecond: [] }
}

const agents = new Map<number, http.Agent>()
function agentFor(octet: number): http.Agent {
  let a = agents.get(octet)
  if (!a) agents.set(octet, (a = new http.Agent({ localAddress: `127.0.${octet}.1`, keepAlive: true, maxSockets: Infinity })))
  return a
}

function onMessage(m: { text?: unknown }): void {
  if (typeof m?.text !== 'string') return
  const bar = m.text.indexOf('|')
  const bar2 = m.text.indexOf('|', bar + 1)
  if (bar < 0 || bar2 < 0) return
  const step = Number(m.text.slice(0, bar))
  const sentAt = Number(m.text.slice(bar + 1, bar2))
  const st = current?.step === step ? current : late.get(step)
  if (!st) return
  const t = now()
  const ms = t - sentAt
  st.received++
  progressReceived++
  recordMs(st.latency, ms)
  const sec = Math.max(0, Math.floor((t - st.startedAt) / 1000))
  while (st.perSecond.length <= sec) st.perSecond.push({ deliveries: 0, latency: newHistogram() })
  st.perSecond[sec].deliveries++
  recordMs(st.perSecond[sec].latency, ms)
}

async function connectOne(spec: ClientSpec): Promise<void> {
  const socket = io(`${setup.url}${setup.namespace}`, {
    ...({ localAddress: `127.0.${spec.octet}.1` } as object),
    agent: agentFor(spec.octet) as unknown as string,
    auth: spec.token ? { token: spec.token, ...(setup.batches ? { batches: true } : {}) } : {},
    transports: [spec.transport],
    reconnection: false,
    forceNew: true,
    timeout: 20_000,
  })
  socket.on('chat:message', onMessage)
  socket.on('chat:messages', (p: { messages?: unknown }) => {
    if (Array.isArray(p?.messages)) for (const m of p.messages) onMessage(m as { text?: unknown })
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('connect_error', reject)
  })
  if (spec.room) {
    const r = (await socket.timeout(20_000).emitWithAck('room:join', { roomId: spec.room })) as { status: string; code?: string }
    if (r.status !== 'ok') throw new Error(`join ${r.code}`)
  }
  clients.push({ spec, socket })
}

async function doSetup(msg: SetupMsg): Promise<void> {
  setup = msg
  const errors: Record<string, number> = {}
  const queue = [...msg.clients]
  const progress = setInterval(() => send({ type: 'progress', connected, failed, sent: progressSent, received: progressReceived }), 1000)
  await Promise.all(
    Array.from({ length: Math.min(msg.connectConcurrency, queue.length) }, async () => {
      for (let spec = queue.shift(); spec; spec = queue.shift()) {
        try {
          await connectOne(spec)
          connected++
        } catch (err) {
          failed++
          const key = (err as Error).message.slice(0, 60)
          errors[key] = (errors[key] ?? 0) + 1
        }
      }
    }),
  )
  clearInterval(progress)
  const joined: Record<string, number> = {}
  for (const c of clients) if (c.spec.room) joined[c.spec.room] = (joined[c.spec.room] ?? 0) + 1
  send({ type: 'ready', connected, failed, errors, joined })
}

function pad(size: number, prefix: string): string {
  return prefix.length >= size ? prefix : prefix + 'x'.repeat(size - prefix.length)
}

async function doRun(msg: RunMsg): Promise<void> {
  const st = newStep(msg.step)
  current = st
  const senders = clients.filter((c) => c.spec.sender && c.socket.connected)
  const credit = new Map<Client, number>(senders.map((c, i) => [c, -i / Math.max(1, senders.length)])) // stagger senders
  const tickMs = 5
  let last = now()
  const sendOne = (c: Client) => {
    const sentAt = now()
    const text = pad(setup.size, `${msg.step}|${sentAt.toFixed(3)}|`)
    st.sent++
    progressSent++
    c.socket.timeout(setup.ackTimeoutMs).emit('chat:message', { roomId: c.spec.room, text }, (err: Error | null, res?: { status: string; code?: string }) => {
      if (err) st.ackErrors.TIMEOUT = (st.ackErrors.TIMEOUT ?? 0) + 1
      else if (res?.status === 'ok') {
        st.acked++
        st.ackedByRoom[c.spec.room!] = (st.ackedByRoom[c.spec.room!] ?? 0) + 1
        recordMs(st.ack, now() - sentAt)
      } else {
        const code = res?.code ?? 'UNKNOWN'
        st.ackErrors[code] = (st.ackErrors[code] ?? 0) + 1
      }
    })
  }
  const progress = setInterval(() => send({ type: 'progress', connected, failed, sent: progressSent, received: progressReceived }), 1000)
  const resolutionMs = 5
  const loop = monitorEventLoopDelay({ resolution: resolutionMs })
  loop.enable()
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const t = now()
      const dt = (t - last) / 1000
      last = t
      if (t - st.startedAt >= msg.durationMs) {
        clearInterval(timer)
        return resolve()
      }
      for (const c of senders) {
        let cr = credit.get(c)! + msg.ratePerSender * dt
        while (cr >= 1) {
          sendOne(c)
          cr -= 1
        }
        credit.set(c, cr)
      }
    }, tickMs)
  })
  loop.disable()
  // The monitor records the whole interval between its ticks: the delay is what exceeds one.
  const ms = (ns: number) => Math.max(0, Math.round(ns / 10_000) / 100 - resolutionMs)
  const loopDelayMs = { p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max) }
  // Let in-flight messages land; later deliveries still count for this step.
  late.set(st.step, st)
  current = undefined
  await new Promise((r) => setTimeout(r, msg.drainMs))
  clearInterval(progress)
  late.delete(st.step)
  const result: StepResult = {
    step: st.step,
    sent: st.sent,
    acked: st.acked,
    ackedByRoom: st.ackedByRoom,
    ackErrors: st.ackErrors,
    received: st.received,
    latency: encode(st.latency),
    ack: encode(st.ack),
    loopDelayMs,
    perSecond: st.perSecond.map((p) => ({ deliveries: p.deliveries, latency: encode(p.latency) })),
  }
  send({ type: 'result', result })
}

/**
 * Resolves once no HTTP request is in flight on any agent, or after `ms`. A websocket client's
 * disconnect is written at once; a long-polling client's goes out as a POST (and its pending
 * GET is answered by the server). Exiting before they complete left those sessions on the
 * server until its heartbeat timed them out.
 */
async function flushed(ms: number): Promise<void> {
  const until = Date.now() + ms
  const busy = () => [...agents.values()].some((a) => Object.values(a.sockets).some((list) => (list?.length ?? 0) > 0))
  while (busy() && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
}

process.on('message', (msg: ParentMsg) => {
  const run = async () => {
    if (msg.type === 'setup') await doSetup(msg)
    else if (msg.type === 'run') await doRun(msg)
    else if (msg.type === 'stop') {
      for (const c of clients) c.socket.disconnect()
      clients = []
      await flushed(3000)
      for (const a of agents.values()) a.destroy()
      process.exit(0)
    }
  }
  run().catch((err: Error) => send({ type: 'error', message: err.stack ?? err.message }))
})
process.on('disconnect', () => process.exit(0))
