import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual, promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import pg from 'pg'
import { startPostgres, type LocalPostgres, type LocalRedisCluster } from '../../infra/services.ts'
import { tcpProxy } from '../../services/chat/test/helpers.ts'
import { portOf, startReplica, type Replica } from '../../services/chat/test/replica.ts'
import { ack, closeAll, eventually, FAULT_TEST_ENV, octetsByNode, sleep, startTestCluster, type TestCluster, type TestClusterOnRedisCluster } from '../cluster/helpers.ts'
import { ChaosClient, durability, markdownTable, resyncStats, storedView, type FaultRow } from './harness.ts'

/**
 * Chaos suite (issue 17): three real nodes behind nginx under a steady load of clients that send
 * (resending with the same clientMsgId), edit, delete and react, while one fault at a time hits
 * the cluster. After each fault: every acked message is stored exactly once, every client's view
 * (after its resyncs) equals the database, presence equals the truth within 30 s with no ghost,
 * and no node crashed but the one killed (SPEC §4 Versions, presence; §5.1–5.6).
 *
 * Every node reaches Postgres (and, on one Redis, Redis) through TCP proxies of this file, so a
 * fault can cut either. The whole suite runs once per Redis setup (SETUPS, issue 18): the faults
 * that make sense there, each setup on a cluster, Redis and private Postgres of its own (D115).
 * On a Redis Cluster, a master SIGKILLed and failed over, and a master restarted empty (it rejoins
 * as a replica), stand in for the single Redis's restart and blip (D159). In one setup the last
 * fault streams the primary to a synchronous standby (D117), crashes the primary under load
 * (immediate shutdown, as a lost host), promotes the standby and points the Postgres proxy
 * (`pgTarget`) at it. A synchronous standby has every acknowledged commit, so that fault too must
 * lose nothing; the loss an async replica allows, and how nodes detect and heal it, is
 * services/chat/test/failover.test.ts.
 */

const STEADY = 6
const ACTION_GAP_MS = 500
const MAX_QUEUE = 3
/** Steady load before each fault, and at least as long after it. */
const LOAD_MS = 2000
const PREFIX = 'sbchaos:'

/**
 * The Redis setups the whole suite runs on (issue 18, D159): one Redis with the classic adapter,
 * one Redis with the sharded adapter (sharded pub/sub on a single Redis), and a private Redis
 * Cluster (3 masters, one replica each, cluster-node-timeout 1 s) with the sharded adapter. Each
 * setup has its own cluster, Redis and private Postgres; the faults are one list, filtered by
 * where they make sense (`Fault.on`). The Postgres failover kills the setup's primary, so it runs
 * in one setup only (`pgFailover`), last there (D160).
 */
const SETUPS = [
  { key: 'classic', name: 'one Redis, classic adapter', adapter: 'classic', redis: 'single', pgFailover: false },
  { key: 'sharded', name: 'one Redis, sharded adapter', adapter: 'sharded', redis: 'single', pgFailover: true },
  { key: 'cluster', name: 'Redis Cluster 3+3, sharded adapter', adapter: 'sharded', redis: 'cluster', pgFailover: false },
] as const
type Setup = (typeof SETUPS)[number]
type RedisKind = Setup['redis']

interface FaultContext {
  /** The steady clients (their load runs during inject). */
  clients: ChaosClient[]
  /** Connected before the fault, gone for good during it: must end offline (no ghost). */
  leaver: ChaosClient
  roomIds: string[]
}

interface Fault {
  name: string
  /** The Redis setups this fault makes sense on. */
  on: readonly RedisKind[]
  /** Node index the leaver sits on (its socket dies with a killed node). */
  leaverNode?: number
  /** Node index this fault kills: not counted as a crash, restarted afterwards. */
  kills?: number
  /** Before the fault's load starts (not timed). */
  prepare?(): Promise<void>
  /** Causes the fault, retires the leaver while it lasts, and returns once the fault is over. */
  inject(ctx: FaultContext): Promise<void>
  /** After every check passed: checks of this fault alone. */
  verify?(): Promise<void>
  /** Always, after the fault's run: puts back what the fault broke for the next one. */
  cleanup?(): Promise<void>
}

const logSize = (file: string) => (existsSync(file) ? statSync(file).size : 0)

/** A node's log lines at level error or above (pino level >= 50) written after byte `from`, for a failure's output. */
function errorsSince(nodeId: string, file: string, from: number): string {
  const text = existsSync(file) ? readFileSync(file).subarray(from).toString() : ''
  const lines = text.split('\n').filter((l) => Number(/"level":(\d+)/.exec(l)?.[1] ?? 0) >= 50)
  return `${nodeId}: ${lines.length} error lines${lines.length ? '\n  ' : ''}${lines.slice(0, 15).map((l) => l.slice(0, 800)).join('\n  ')}`
}

/** Resolves once nothing listens on 127.0.0.1:`port` (a SIGKILLed Redis is gone). */
const closed = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(false)))
    s.once('error', () => resolve(true))
  })

for (const setup of SETUPS) describe(`chaos (${setup.name}): one fault at a time under steady load`, () => {
  let test: TestCluster | TestClusterOnRedisCluster
  let db: pg.Pool
  let octets: Map<string, number[]>
  let redisPort = 0
  let primary: LocalPostgres | undefined
  let replica: Replica | undefined
  /** Where the Postgres proxy connects: the primary, then the promoted replica. */
  const pgTarget = { host: '127.0.0.1', port: 0 }
  /** The current primary, straight (not through the proxy): the checks read it. */
  const directUrl = () => `postgres://postgres@127.0.0.1:${pgTarget.port}/switchboard`
  let pgProxy: Awaited<ReturnType<typeof tcpProxy>>
  /**
   * One Redis only. A Redis Cluster gets no proxy: its nodes announce their own addresses
   * (CLUSTER SLOTS, MOVED), so a client that reached a node through a proxy is sent straight to
   * the real ports and the proxy is bypassed; its Redis faults are master failovers instead.
   */
  let redisProxy: Awaited<ReturnType<typeof tcpProxy>> | undefined
  const table: FaultRow[] = []
  const dir = mkdtempSync(join(tmpdir(), `sb-chaos-${setup.key}-`))
  chmodSync(dir, 0o755) // the postgres user walks into it
  const on = (node: number, k: number) => octets.get(test.cluster.nodes[node].id)![k]
  const single = () => {
    if (!('redis' in test)) throw new Error(`${setup.name} has no single Redis`)
    return test.redis
  }
  const redisCluster = (): LocalRedisCluster => {
    if (!('redisCluster' in test)) throw new Error(`${setup.name} has no Redis Cluster`)
    return test.redisCluster
  }
  let startedAt = 0

  before(async () => {
    startedAt = Date.now()
    primary = await startPostgres(join(dir, 'primary'))
    pgTarget.port = portOf(primary.url)
    // The cluster's migrations run on the shared test database startTestCluster makes; this one needs its own.
    await promisify(execFile)(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../../services/chat/src/store/migrate.ts', import.meta.url))], {
      env: { ...process.env, DATABASE_URL: primary.url, JWT_SECRET: 'chaos-migrate-secret-0123456789abcdef', LOG_LEVEL: 'warn' },
      timeout: 60_000,
    })
    pgProxy = await tcpProxy(() => pgTarget.port, pgTarget.host)
    if (setup.redis === 'single') redisProxy = await tcpProxy(() => redisPort)
    const env = {
      ...FAULT_TEST_ENV,
      REDIS_ADAPTER: setup.adapter,
      GROUP_COMMIT_MAX_QUEUE: String(MAX_QUEUE),
    }
    const nodeEnv = (_i: number, e: Readonly<Record<string, string>>): Record<string, string> => {
      const DATABASE_URL = `postgres://postgres@127.0.0.1:${pgProxy.port}/switchboard`
      if (!redisProxy) return { DATABASE_URL }
      redisPort = Number(new URL(e.REDIS_URL).port)
      return { DATABASE_URL, REDIS_URL: `redis://127.0.0.1:${redisProxy.port}` }
    }
    test =
      setup.redis === 'cluster'
        ? await startTestCluster(dir, PREFIX, env, 3, nodeEnv, { redisCluster: {} })
        : await startTestCluster(dir, PREFIX, env, 3, nodeEnv)
    db = new pg.Pool({ connectionString: directUrl(), max: 3 })
    octets = await octetsByNode(
      test.cluster.url,
      test.cluster.nodes.map((n) => n.id),
      4,
    )
  })

  after(async () => {
    closeAll()
    await db?.end().catch(() => undefined)
    await test?.stop()
    await pgProxy?.close()
    await redisProxy?.close()
    // Only the Postgres this file started, each by its own pid.
    await replica?.stop().catch(() => undefined)
    await primary?.stop().catch(() => undefined)
    rmSync(dir, { recursive: true, force: true })
    if (table.length > 0) console.log(`chaos summary (${setup.name}, ${Math.round((Date.now() - startedAt) / 1000)} s)\n${markdownTable(table)}\n`)
  })

  const alive = (i: number) => {
    const c = test.cluster.nodes[i].proc.child
    return c.exitCode === null && c.signalCode === null
  }

  /** Runs one fault under load, adds its row to the table and checks every guarantee afterwards. */
  async function run(fault: Fault): Promise<void> {
    const tag = fault.name.replace(/[^a-z0-9]+/gi, '-')
    const roomIds = [`${tag}-a`, `${tag}-b`]
    const clients: ChaosClient[] = []
    let finished = false
    // Where each node's log stood when the fault's run began: on a failure, its errors since then are printed.
    const logFrom = test.cluster.nodes.map((n) => logSize(n.proc.logFile))
    try {
      await fault.prepare?.()
      for (let i = 0; i < STEADY; i++) clients.push(await ChaosClient.start(test.cluster.url, `${tag}-c${i}`, on(i % 3, Math.floor(i / 3)), roomIds))
      const leaver = await ChaosClient.start(test.cluster.url, `${tag}-leaver`, on(fault.leaverNode ?? 2, 2), roomIds, false)
      const observer = await ChaosClient.start(test.cluster.url, `${tag}-observer`, on(0, 3), roomIds)

      for (const c of clients) c.startLoad(ACTION_GAP_MS)
      // Load runs before the fault: wait until every client has had a send acked.
      await eventually(() => clients.every((c) => c.acked.length > 0), 20_000, 'every client acked before the fault')
      await sleep(LOAD_MS) // a while of steady load: the fault hits a cluster in use
      await fault.inject({ clients, leaver, roomIds })
      const overAt = Date.now()
      // Presence: the steady clients and the observer online, the leaver not (no ghost), within 30 s
      // of the fault's end; watched while the load goes on.
      const truth = [...clients, observer].map((c) => c.userId).sort()
      let seen: string[] = []
      let presenceMs = NaN
      const presence = eventually(
        async () => {
          if (finished) throw new Error('the fault run ended')
          if (!observer.ready) return false
          const r = await ack(observer.socket, 'room:join', { roomId: roomIds[0] }, 3000).catch(() => null)
          seen = r?.status === 'ok' ? r.online.map((u: { userId: string }) => u.userId).sort() : []
          return JSON.stringify(seen) === JSON.stringify(truth)
        },
        30_000,
        'presence equal to the truth',
      ).then(
        () => void (presenceMs = Date.now() - overAt),
        (err) => {
          throw new Error(`${err.message}: online ${JSON.stringify(seen)}, truth ${JSON.stringify(truth)}, leaver ${leaver.userId}`)
        },
      )
      presence.catch(() => undefined) // awaited below
      // Load goes on after the fault until every client has had another send acked.
      const mark = clients.map((c) => c.acked.length)
      await eventually(() => clients.every((c, i) => c.acked.length > mark[i]), 60_000, 'every client acked after the fault')
      await sleep(Math.max(0, overAt + LOAD_MS - Date.now()))
      await Promise.all(clients.map((c) => c.stopLoad()))
      await presence

      // Durability: every acked message stored once, nothing stored that was not acked (every send ended acked).
      const acked = clients.flatMap((c) => c.acked)
      const d = await durability(db, roomIds, [...acked, ...leaver.acked, ...observer.acked])

      // Views: every steady client (after its resyncs) and the observer hold exactly what the database holds.
      const views = [...clients, observer]
      let diff = ''
      await eventually(
        async () => {
          if (!views.every((c) => c.ready)) return false
          for (const roomId of roomIds) {
            const stored = await storedView(db, roomId)
            for (const c of views) {
              const mine = c.view(roomId)
              if (!isDeepStrictEqual(mine, stored)) {
                diff = describeDiff(c.name, roomId, mine, stored)
                return false
              }
            }
          }
          return true
        },
        20_000,
        'every view equal to the database',
      ).catch((err) => {
        throw new Error(`${err.message}\n${diff}`)
      })

      const rs = resyncStats(clients)
      const row: FaultRow = {
        setup: setup.key,
        fault: fault.name,
        acked: acked.length,
        lost: d.lost,
        duplicated: d.duplicated,
        reconnects: rs.n,
        'resync p50 ms': rs.p50,
        'resync max ms': rs.max,
        'presence ms': presenceMs,
        unavailable: clients.reduce((n, c) => n + c.unavailable, 0),
        'refused w/ retryAfterMs': clients.reduce((n, c) => n + c.refusedWithRetry, 0),
      }
      table.push(row)
      console.log(`chaos: ${setup.key}: ${fault.name}\n${markdownTable([row])}\n`)

      assert.deepEqual([d.lost, d.duplicated, d.unacked], [0, 0, 0], `lost / duplicated / stored-but-never-acked: ${JSON.stringify(d)}`)
      assert.equal(d.rows, acked.length + leaver.acked.length + observer.acked.length)
      assert.deepEqual(
        views.flatMap((c) => c.anomalies),
        [],
        'no unexpected error, no hasMore in a resync, no change for an unknown message',
      )
      for (const [i] of test.cluster.nodes.entries()) {
        if (i !== fault.kills) assert.ok(alive(i), `${test.cluster.nodes[i].id} did not crash`)
      }
      for (const [i, n] of test.cluster.nodes.entries()) {
        if (i !== fault.kills) assert.equal((await fetch(`${n.url}/healthz`)).status, 200, `${n.id} answers`)
      }
      await fault.verify?.()
    } catch (err) {
      console.log(`chaos: ${setup.key}: ${fault.name} failed; node errors during it:\n${test.cluster.nodes.map((n, i) => errorsSince(n.id, n.proc.logFile, logFrom[i])).join('\n')}`)
      throw err
    } finally {
      finished = true
      await Promise.all(clients.map((c) => c.stopLoad()))
      closeAll()
      if (fault.kills !== undefined && !alive(fault.kills)) await test.cluster.restartNode(fault.kills)
      await fault.cleanup?.()
    }
  }

  /**
   * A Redis Cluster master SIGKILLed while the load runs: the one serving most of the adapter's
   * main channel and the fault's room channels. Returns once its replica serves its slots (and
   * every node says cluster_state:ok); the leaver leaves while the master is down.
   */
  async function failOverMaster(roomIds: string[], leaver: ChaosClient): Promise<number> {
    const rc = redisCluster()
    const channels = [`${PREFIX}socket.io#/chat#`, ...roomIds.flatMap((r) => [`${PREFIX}room:{${r}}`, `${PREFIX}socket.io#/chat#${r}#`])]
    const owners = await Promise.all(channels.map(async (c) => rc.masterOf(await rc.slotOf(c))))
    const count = (p: number) => owners.filter((o) => o === p).length
    const victim = [...owners].sort((a, b) => count(b) - count(a))[0]
    console.log(`chaos: ${setup.key}: SIGKILL of Redis master 127.0.0.1:${victim}, serving ${count(victim)} of the ${channels.length} channels ${channels.join(' ')}`)
    const failover = rc.killMaster(victim)
    failover.catch(() => undefined) // awaited below
    await eventually(() => closed(victim), 10_000, `redis ${victim} gone`)
    leaver.retire()
    await failover
    return victim
  }

  let killedMaster: number | undefined
  let regressionsBefore = 0

  const faults: Fault[] = [
    {
      name: 'SIGKILL node-2',
      on: ['single', 'cluster'],
      leaverNode: 1,
      kills: 1,
      async inject() {
        // The leaver's only socket is on the victim and does not reconnect: presence must notice via liveness.
        await test.cluster.nodes[1].proc.stop('SIGKILL')
      },
    },
    {
      name: 'Redis restarted empty',
      on: ['single'],
      async inject({ leaver }) {
        await single().stop()
        // Gone while Redis is down: its presence entry cannot be removed now, and Redis comes back without any.
        leaver.retire()
        await sleep(1000)
        await single().start()
      },
    },
    {
      name: 'Redis blip',
      on: ['single'],
      async inject({ leaver }) {
        // The proxy in front of Redis refuses and drops every connection: commands fail; Redis itself keeps its data.
        redisProxy!.cut()
        leaver.retire()
        await sleep(1500)
        redisProxy!.restore()
      },
    },
    {
      name: 'Redis master failover',
      on: ['cluster'],
      async inject({ roomIds, leaver }) {
        // The promoted replica has the data (up to what async replication had not sent yet).
        killedMaster = await failOverMaster(roomIds, leaver)
      },
      async cleanup() {
        // Back as a replica of the promoted one, so the next fault finds every master with a replica.
        if (killedMaster !== undefined) await redisCluster().restartNode(killedMaster)
        killedMaster = undefined
      },
    },
    {
      name: 'Redis master restarted empty',
      on: ['cluster'],
      async inject({ roomIds, leaver }) {
        // Killed, failed over, and started again with no data: it rejoins (its nodes.conf) as a
        // replica of the promoted one and resyncs from it, all while the load runs.
        const victim = await failOverMaster(roomIds, leaver)
        await redisCluster().restartNode(victim)
      },
    },
    {
      name: 'CLIENT KILL pubsub',
      on: ['single', 'cluster'],
      async inject({ leaver }) {
        // A Redis Cluster: on every master (the sharded subscribers hold one connection per master).
        const ports = setup.redis === 'single' ? [single().port] : (await redisCluster().topology()).filter((n) => n.role === 'master' && !n.failed).map((n) => n.port)
        let killed = 0
        for (const port of ports) {
          const admin = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 })
          try {
            await admin.connect()
            killed += Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'))
          } finally {
            admin.disconnect()
          }
        }
        assert.ok(killed > 0, 'the nodes had pub/sub connections to kill')
        leaver.retire()
      },
    },
    {
      name: 'Postgres cut 5 s',
      on: ['single', 'cluster'],
      async inject({ leaver }) {
        pgProxy.cut()
        leaver.retire()
        await sleep(5000)
        pgProxy.restore()
      },
    },
    {
      name: 'Postgres stalled',
      on: ['single', 'cluster'],
      async inject({ clients, leaver, roomIds }) {
        // Straight to Postgres (not through the proxy): a transaction holding both rooms' rows, so every commit to them waits.
        const holder = new pg.Client({ connectionString: directUrl() })
        await holder.connect()
        try {
          await holder.query('begin')
          await holder.query('select id from rooms where id = any($1) for update', [roomIds])
          const refusedBefore = clients[0].refusedWithRetry
          // More sends at once on one node than GROUP_COMMIT_MAX_QUEUE: the queue fills and refuses.
          const burst = clients[0].burst(MAX_QUEUE + 3)
          await eventually(() => clients[0].refusedWithRetry > refusedBefore, 15_000, 'UNAVAILABLE with retryAfterMs from the full queue')
          leaver.retire()
          await sleep(2000)
          await holder.query('rollback')
          await burst
        } finally {
          await holder.end()
        }
      },
    },
  ]
  // Last, and in one setup only: the setup's primary is gone afterwards (D160).
  if (setup.pgFailover) {
    faults.push({
      name: 'Postgres failover',
      on: ['single', 'cluster'],
      async prepare() {
        replica = await startReplica(join(dir, 'replica'), pgTarget.port, { synchronous: true })
      },
      async inject({ clients, leaver }) {
        regressionsBefore = await regressions()
        // Commits in flight when the primary goes: the load keeps sending until it does.
        const acks = clients.reduce((n, c) => n + c.acked.length, 0)
        await eventually(() => clients.reduce((n, c) => n + c.acked.length, 0) > acks, 10_000, 'sends acked on the primary just before it crashes')
        leaver.retire()
        // The checks' pool holds connections to the primary: they die with it.
        await db.end()
        // Immediate shutdown (SIGQUIT to the postmaster, our own pid): no checkpoint, no goodbye to the standby, as a lost host.
        await primary!.proc.stop('SIGQUIT')
        await replica!.promote()
        pgTarget.port = replica!.port
        pgProxy.cut() // the nodes' connections to the dead primary go; new ones reach the promoted standby
        pgProxy.restore()
        db = new pg.Pool({ connectionString: directUrl(), max: 3 })
      },
      async verify() {
        // Nothing the nodes had delivered went missing: no room's head went back (D105).
        assert.equal(await regressions(), regressionsBefore, 'no seq or version regression after a synchronous failover')
      },
    })
  }

  for (const fault of faults.filter((f) => f.on.includes(setup.redis))) it(fault.name, () => run(fault))

  /** `switchboard_feed_regressions_total` summed over the nodes that answer. */
  async function regressions(): Promise<number> {
    let sum = 0
    for (const [i, n] of test.cluster.nodes.entries()) {
      if (!alive(i)) continue
      const text = await (await fetch(`${n.url}/metrics`)).text()
      for (const m of text.matchAll(/^switchboard_feed_regressions_total(?:\{[^}]*\})? (\d+(?:\.\d+)?)$/gm)) sum += Number(m[1])
    }
    return sum
  }
})

function describeDiff(name: string, roomId: string, mine: ReturnType<ChaosClient['view']>, stored: Awaited<ReturnType<typeof storedView>>): string {
  const lines = [`${name} in ${roomId}: version ${mine.version} vs stored ${stored.version}; ${mine.messages.length} vs ${stored.messages.length} messages`]
  const bySeq = new Map(mine.messages.map((m) => [m.seq, m]))
  for (const s of stored.messages) {
    const m = bySeq.get(s.seq)
    if (!isDeepStrictEqual(m, s)) lines.push(`  seq ${s.seq}: view ${JSON.stringify(m)} stored ${JSON.stringify(s)}`)
    if (lines.length > 8) break
  }
  return lines.join('\n')
}
