/** Messages between the load runner (parent) and its worker processes. */

export interface ClientSpec {
  id: number
  /** Source address 127.0.<octet>.1 (nginx ip_hash spreads by it). */
  octet: number
  room: string | null
  token?: string
  transport: 'websocket' | 'polling'
  sender: boolean
}

export interface SetupMsg {
  type: 'setup'
  url: string
  namespace: string
  clients: ClientSpec[]
  /** Bytes of message text. */
  size: number
  ackTimeoutMs: number
  connectConcurrency: number
  /** Clients with a token announce `auth.batches` and take `chat:messages`, as the SDK does. */
  batches: boolean
}

export interface RunMsg {
  type: 'run'
  step: number
  /** Messages per second for each sender of this worker. */
  ratePerSender: number
  durationMs: number
  drainMs: number
}

export type ParentMsg = SetupMsg | RunMsg | { type: 'stop' }

/** One step's counts; `H` is a latency histogram (µs): live in the worker, compressed in the result. */
export interface StepCounts<H> {
  step: number
  sent: number
  acked: number
  /** Acked messages per room: each is owed to every member of its room. */
  ackedByRoom: Record<string, number>
  ackErrors: Record<string, number>
  /** Deliveries of this step's messages. */
  received: number
  /** Delivery latency. */
  latency: H
  /** Ack latency. */
  ack: H
  /**
   * This worker's own event-loop delay over the sending window (ms): how long a ready socket
   * could wait before the load generator read it. Every latency it measures includes this.
   */
  loopDelayMs: { p50: number; p99: number; max: number }
  /** Per second since the step started: deliveries and their latency. */
  perSecond: { deliveries: number; latency: H }[]
}

export type StepResult = StepCounts<string>

export type WorkerMsg =
  | { type: 'progress'; connected: number; failed: number; sent: number; received: number }
  | { type: 'ready'; connected: number; failed: number; errors: Record<string, number>; joined: Record<string, number> }
  | { type: 'result'; result: StepResult }
  | { type: 'error'; message: string }
