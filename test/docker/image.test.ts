import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import http from 'node:http'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { startNginx } from '../../infra/cluster.ts'
import {
  claimRunDir,
  cleanStaleRuns,
  containerNodeLauncher,
  importNodeStandIn,
  isRunning,
  podRunArgs,
  requireRoot,
  startDockerd,
  type Dockerd,
  type DockerdTraces,
  type StandInTimings,
} from '../../infra/docker.ts'
import { answers, freePort, requirePrograms, type Proc } from '../../infra/processes.ts'
import { createTestDatabase, REDIS_URL, redisPrefix } from '../../services/chat/test/helpers.ts'
import { ack, clientFrom, closeAll, devToken, eventually, octetsByNode, RoomMember, sourceAddress } from '../cluster/helpers.ts'
import { clusterSuite } from '../cluster/suite.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))

/**
 * The Dockerfile, built and run the way Kubernetes runs it (k8s/base/node-deployment.yaml): a
 * dockerd of this test's own, the base image replaced by a stand-in (debootstrap + the machine's
 * Node 20, D145), `docker build --network host`, then two node containers with a read-only root
 * filesystem (a tmpfs on /tmp, as the pod's emptyDir), uid 1000, no capabilities, configuration
 * only from the environment, on the host network behind the host's nginx. Real protocol checks go
 * through nginx; then the cluster suite (test/cluster/suite.ts) runs on two more containers of
 * the image, started by startCluster's `launchNode` (D149). At the end every container and image
 * is removed and dockerd stopped; what a killed earlier run left is removed at the start (D155).
 */
describe('the node image, built and run as Kubernetes runs it', { timeout: 20 * 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-docker-'))
  // Ours while this process runs: a later run removes it (and what runs in it) only once we are gone.
  claimRunDir(dir)
  const tag = `switchboard-image-test:${randomBytes(4).toString('hex')}`
  const names = ['docker-1', 'docker-2']
  const containers = names.map((n) => `sb-${n}-${randomBytes(3).toString('hex')}`)
  const prefix = redisPrefix()
  const jwtSecret = randomBytes(32).toString('base64url')
  const phases: [string, number][] = []
  let dockerd: Dockerd | undefined
  let database: Awaited<ReturnType<typeof createTestDatabase>> | undefined
  let nginx: Proc | undefined
  let url = ''
  let ports: number[] = []
  let standIn: StandInTimings | undefined
  let traces: DockerdTraces | undefined
  let leftovers: { containers: string[]; images: string[] } | undefined
  let cleanedUp: Promise<void> | undefined
  /** When the protocol and runtime checks (the tests below) began. */
  let checksFrom = 0

  const timed = async <T>(phase: string, fn: () => Promise<T>): Promise<T> => {
    const t = performance.now()
    try {
      return await fn()
    } finally {
      phases.push([phase, performance.now() - t])
    }
  }
  const docker = (args: string[], opts?: Parameters<Dockerd['docker']>[1]) => dockerd!.docker(args, { logFile: join(dir, 'docker.log'), ...opts })
  const inspect = async (container: string) => JSON.parse((await docker(['inspect', container])).stdout)[0]
  const logsOf = async (container: string) => {
    const r = await docker(['logs', '--tail', '20', container], { allowFailure: true })
    return `${r.stdout}${r.stderr}`.trim()
  }

  /** The environment a node gets, and nothing else: Kubernetes' ConfigMap and Secret. */
  const nodeEnv = (i: number): Record<string, string> => ({
    HOST: '127.0.0.1',
    PORT: String(ports[i]),
    NODE_ID: names[i],
    DATABASE_URL: database!.url,
    REDIS_URL,
    REDIS_PREFIX: prefix.prefix,
    JWT_SECRET: jwtSecret,
    AUTH_DEV_TOKENS: 'true',
    MIGRATE_ON_START: 'false',
    RATE_LIMIT_MESSAGES: '1000',
    SHUTDOWN_GRACE_MS: '8000',
    LOG_LEVEL: 'info',
  })
  /** `docker run` as the pod spec has it; values reach the client in its environment, not on its command line. */
  const runArgs = (env: Record<string, string>) => podRunArgs(Object.keys(env))
  /** The cluster suite's nodes: containers of the image (created in the suite's `before`). */
  let launcher: ReturnType<typeof containerNodeLauncher> | undefined
  let suiteFrom = 0

  before(async () => {
    // One line and no half-started daemon when this machine cannot do it.
    requireRoot('test/docker')
    requirePrograms([
      { binary: 'dockerd', aptPackage: 'docker.io' },
      { binary: 'docker', aptPackage: 'docker.io' },
      { binary: 'debootstrap', aptPackage: 'debootstrap' },
      { binary: 'nginx', aptPackage: 'nginx' },
    ])
    // A run killed midway (SIGKILL, a lost runner) left its dockerd, containers, nginx, mounts: gone first.
    const stale = await timed('stale runs', () => cleanStaleRuns(tmpdir(), 'sb-docker-'))
    for (const line of stale) console.log(`# test/docker: removed what a killed run left: ${line}`)
    dockerd = await timed('dockerd start', () => startDockerd(join(dir, 'dockerd')))
    standIn = await timed('stand-in base image', () =>
      importNodeStandIn(dockerd!, { workDir: join(dir, 'standin'), cacheDir: join(tmpdir(), 'switchboard-docker-cache'), tag: 'node:20-bookworm-slim' }),
    )
    await timed('docker build', async () => {
      const r = await docker(['build', '--network', 'host', '--tag', tag, '--file', join(root, 'Dockerfile'), root], { allowFailure: true, logFile: join(dir, 'build.log') })
      if (r.code !== 0) throw new Error(`docker build failed (log: ${join(dir, 'build.log')}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`)
    })
    database = await createTestDatabase()
    ports = [await freePort(), await freePort()]
    await timed('run: migrate + 2 containers + nginx', async () => {
      // The migration Job (k8s/base/migrate-job.yaml): the same image, the same restrictions.
      const migrateEnv = { DATABASE_URL: database!.url, JWT_SECRET: jwtSecret }
      const migrate = await docker(['run', '--rm', ...runArgs(migrateEnv), tag, 'node', 'dist/services/chat/src/store/migrate.js'], { env: migrateEnv, allowFailure: true })
      assert.equal(migrate.code, 0, `migrations in the image failed: ${migrate.stderr}${migrate.stdout}`)
      for (const [i, name] of containers.entries()) {
        const env = nodeEnv(i)
        await docker(['run', '--detach', '--name', name, ...runArgs(env), tag], { env })
      }
      for (const [i, name] of containers.entries()) {
        const until = Date.now() + 60_000
        while (!(await answers(`http://127.0.0.1:${ports[i]}/readyz`).catch(() => false))) {
          const state = (await inspect(name)).State
          if (!state.Running) throw new Error(`container ${names[i]} exited (${state.ExitCode}): ${await logsOf(name)}`)
          if (Date.now() > until) throw new Error(`container ${names[i]} not ready within 60 s: ${await logsOf(name)}`)
          await new Promise((r) => setTimeout(r, 200))
        }
      }
      const front = await startNginx({ dir: join(dir, 'front'), upstreamPorts: ports })
      nginx = front.proc
      url = front.url
    })
    checksFrom = performance.now()
  })

  const cleanUp = () =>
    (cleanedUp ??= (async () => {
      if (checksFrom) phases.push(['checks', (suiteFrom || performance.now()) - checksFrom])
      if (suiteFrom) phases.push(['cluster suite on 2 containers', performance.now() - suiteFrom])
      closeAll()
      // Each step runs even when one before it failed; the first failure is rethrown at the end.
      const failures: unknown[] = []
      const step = async (fn: () => Promise<unknown>) => void (await fn().catch((err) => failures.push(err)))
      await step(async () => nginx?.stop('SIGQUIT', 5000))
      if (dockerd) {
        await step(async () => (leftovers = await timed('remove containers and images', () => dockerd!.removeEverything())))
        await step(async () => (traces = await timed('dockerd stop', () => dockerd!.stop())))
      }
      await step(async () => database?.drop())
      await step(() => prefix.clear())
      rmSync(dir, { recursive: true, force: true })
      const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`
      const standInNote = standIn
        ? ` (${standIn.cached ? `cached tarball unpacked ${s(standIn.unpackMs)}` : `debootstrap ${s(standIn.debootstrapMs)}, cached ${s(standIn.cacheMs)}`}, node + docker import ${s(standIn.importMs)})`
        : ''
      if (phases.length) console.log(`test/docker phases: ${phases.map(([p, ms]) => `${p} ${s(ms)}${p === 'stand-in base image' ? standInNote : ''}`).join('; ')}`)
      if (failures.length) throw failures[0]
    })())
  after(cleanUp)

  it('the image is built from the stand-in base and declares the non-root user', async () => {
    const image = JSON.parse((await docker(['image', 'inspect', tag])).stdout)[0]
    assert.equal(image.Config.User, 'node')
    assert.deepEqual(image.Config.Cmd, ['node', 'dist/services/chat/src/server.js'])
    assert.equal(image.Config.Env.find((e: string) => e.startsWith('NODE_ENV=')), 'NODE_ENV=production')
    const base = JSON.parse((await docker(['image', 'inspect', 'node:20-bookworm-slim'])).stdout)[0]
    assert.ok(image.RootFS.Layers[0] === base.RootFS.Layers[0], 'the first layer is the stand-in base')
    const node = await docker(['run', '--rm', '--network', 'host', '--read-only', tag, 'node', '-p', 'process.versions.node + " " + process.getuid()'])
    assert.equal(node.stdout.trim(), `${process.versions.node} 1000`, 'the machine’s Node 20, run as the image’s user node (1000)')
  })

  it('both containers answer health and readiness through nginx, each under its own NODE_ID; the web client is served', async () => {
    const octets = await octetsByNode(url, names, 1)
    for (const name of names) {
      const octet = octets.get(name)![0]
      for (const path of ['/healthz', '/readyz', '/']) {
        const res = await get(url, path, octet)
        assert.equal(res.status, 200, `${path} via ${name}: ${res.body}`)
        // (nginx caches the web client's files: `/` may come from the other node's copy.)
        if (path !== '/') assert.equal(res.node, name, `${path} from 127.0.${octet}.1 served by ${name}`)
        if (path === '/readyz') assert.deepEqual(JSON.parse(res.body), { status: 'ready', node: name, checks: { postgres: 'ok', redis: 'ok' } })
        if (path === '/') assert.match(res.body, /<html/i)
      }
    }
  })

  it('two clients, one on each container, exchange messages in order; history over HTTP has them all', async () => {
    const octets = await octetsByNode(url, names, 1)
    const room = 'docker-image'
    const a = await devToken(url, 'image-a')
    const b = await devToken(url, 'image-b')
    const ma = new RoomMember(clientFrom(url, a.token, octets.get(names[0])![0]), room)
    const mb = new RoomMember(clientFrom(url, b.token, octets.get(names[1])![0]), room)
    const texts = new Map<RoomMember, string[]>([[ma, []], [mb, []]])
    for (const m of [ma, mb]) m.socket.on('chat:message', (msg: { roomId: string; text: string }) => msg.roomId === room && texts.get(m)!.push(msg.text))
    await ma.join()
    await mb.join()
    const sent: string[] = []
    for (let i = 0; i < 6; i++) {
      const [from, text] = i % 2 === 0 ? [ma, `from a ${i}`] : [mb, `from b ${i}`]
      const r = await ack(from.socket, 'chat:message', { roomId: room, text, clientMsgId: `image-${i}` })
      assert.equal(r.status, 'ok', JSON.stringify(r))
      assert.equal(r.seq, i + 1)
      sent.push(text)
      // The other container delivers it before the next one is sent: a real exchange.
      const other = from === ma ? mb : ma
      await eventually(() => other.seen.length === i + 1, 10_000, `message ${i + 1} reached the client on the other container`)
    }
    for (const m of [ma, mb]) {
      assert.deepEqual(m.seen, [1, 2, 3, 4, 5, 6])
      assert.deepEqual(texts.get(m), sent)
      assert.equal(m.liveRepeats, 0)
    }
    for (const [name, token] of [[names[0], a.token], [names[1], b.token]] as const) {
      const res = await get(url, `/api/rooms/${room}/messages`, octets.get(name)![0], token)
      assert.equal(res.status, 200, res.body)
      assert.equal(res.node, name)
      const page = JSON.parse(res.body) as { messages: { seq: number; text: string }[] }
      assert.deepEqual(page.messages.map((m) => m.text), [...sent].reverse(), 'newest first')
    }
    // The migration container made the schema: every migration file is recorded.
    const db = new pg.Client({ connectionString: database!.url })
    await db.connect()
    try {
      const applied = (await db.query('select name from kysely_migration order by name')).rows.map((r) => r.name)
      const files = readdirSync(join(root, 'migrations')).filter((f) => f.endsWith('.ts')).map((f) => f.replace(/\.ts$/, '')).sort()
      assert.deepEqual(applied, files)
    } finally {
      await db.end()
    }
  })

  it('each node runs as uid 1000 on the host network with a read-only root, no mounts, configuration from the environment only', async () => {
    for (const [i, name] of containers.entries()) {
      const c = await inspect(name)
      assert.equal(c.HostConfig.NetworkMode, 'host')
      assert.equal(c.HostConfig.ReadonlyRootfs, true)
      assert.equal(c.Config.User, '1000:1000')
      assert.deepEqual(c.HostConfig.CapDrop, ['ALL'])
      assert.deepEqual(c.Mounts, [], 'no volumes or bind mounts: nothing but the environment configures it')
      assert.deepEqual(Object.keys(c.HostConfig.Tmpfs ?? {}), ['/tmp'])
      assert.deepEqual(c.NetworkSettings.Networks.host?.IPAddress ?? '', '', 'no bridge address')
      // The node process, seen from the host: uid and gid 1000 (real, effective, saved, filesystem).
      const status = readFileSync(`/proc/${c.State.Pid}/status`, 'utf8')
      assert.match(status, /^Uid:\s+1000\s+1000\s+1000\s+1000$/m)
      assert.match(status, /^Gid:\s+1000\s+1000\s+1000\s+1000$/m)
      assert.equal(readFileSync(`/proc/${c.State.Pid}/cmdline`, 'utf8').split('\0').slice(1, 2)[0], 'dist/services/chat/src/server.js')
      // Writing: / and /app refuse (EROFS), /tmp (the tmpfs) takes it — the same probe, so a broken exec cannot pass.
      const probe = await docker([
        'exec', name, 'node', '-e',
        "for (const p of ['/probe', '/app/probe', '/tmp/probe']) { try { require('fs').writeFileSync(p, 'x'); console.log(p + ' ok') } catch (e) { console.log(p + ' ' + e.code) } }",
      ])
      assert.deepEqual(probe.stdout.trim().split('\n'), ['/probe EROFS', '/app/probe EROFS', '/tmp/probe ok'])
      assert.equal((await docker(['exec', name, 'id', '-u'])).stdout.trim(), '1000')
      // The image's HEALTHCHECK follows PORT (not a fixed 3000).
      await eventually(async () => (await inspect(name)).State.Health?.Status === 'healthy', 40_000, `${names[i]} healthy by its HEALTHCHECK`)
    }
  })

  it('a node stopped as the kubelet stops a pod (SIGTERM) drains and exits 0; its client carries on through nginx on the other', async () => {
    const octets = await octetsByNode(url, names, 1)
    const room = 'docker-drain'
    const a = await devToken(url, 'drain-a')
    const b = await devToken(url, 'drain-b')
    const onFirst = new RoomMember(clientFrom(url, a.token, octets.get(names[0])![0], { reconnection: true }), room)
    const onSecond = new RoomMember(clientFrom(url, b.token, octets.get(names[1])![0]), room)
    await onFirst.join()
    await onSecond.join()
    assert.equal((await ack(onFirst.socket, 'chat:message', { roomId: room, text: 'before the stop', clientMsgId: 'drain-0' })).seq, 1)
    await timed('docker stop (drain)', () => docker(['stop', containers[0]]))
    const state = (await inspect(containers[0])).State
    assert.equal(state.ExitCode, 0, `exit ${state.ExitCode} (137 would be SIGKILL after the grace): ${await logsOf(containers[0])}`)
    assert.match(await logsOf(containers[0]), /"msg":"bye"/)
    // The client reconnects through nginx, now to the other container, and goes on.
    await eventually(() => onFirst.socket.connected, 20_000, 'the drained client reconnected through nginx')
    await onFirst.join()
    assert.equal((await ack(onFirst.socket, 'chat:message', { roomId: room, text: 'after the stop', clientMsgId: 'drain-1' })).seq, 2)
    await eventually(() => onSecond.seen.length === 2, 10_000, 'both messages at the client on the other container')
    assert.deepEqual(onFirst.seen, [1, 2])
    const res = await get(url, '/healthz', octets.get(names[0])![0])
    assert.equal(res.node, names[1], 'nginx sends the stopped node’s clients to the other')
  })

  it('a killed `docker run` client does not leave its container running: the launcher removes it', async () => {
    const one = containerNodeLauncher(dockerd!, { image: tag, namePrefix: 'sb-killed-', logFile: join(dir, 'docker.log') })
    const port = await freePort()
    const env = { ...nodeEnv(0), NODE_ID: 'docker-killed', PORT: String(port) }
    const proc = one({ id: 'docker-killed', port, index: 0, env: { ...env, PATH: process.env.PATH ?? '', HOME: '/root' }, logFile: join(dir, 'killed.log'), onLine: () => {} })
    await eventually(() => answers(`http://127.0.0.1:${port}/readyz`).catch(() => false), 60_000, 'the container answers /readyz')
    const [name] = one.containers()
    const c = await inspect(name)
    assert.equal(c.State.Running, true)
    assert.ok(!c.Config.Env.some((e: string) => e.startsWith('HOME=/root')), 'this machine’s HOME stays outside')
    proc.child.kill('SIGKILL')
    await proc.exited
    assert.equal((await docker(['ps', '-aq', '--filter', `name=${name}`])).stdout.trim(), '', 'the container is gone with its client')
    await assert.rejects(answers(`http://127.0.0.1:${port}/readyz`), 'nothing answers on its port')
  })

  it('what a killed run left (its dockerd gone, a container still running under its shim) is removed by the next run; runs still going are not', async () => {
    // A run of its own: a dockerd on a folder of the same prefix, a container of a tiny image
    // (an empty root with the host's /usr mounted read-only, running `sleep`).
    const staleDir = mkdtempSync(join(tmpdir(), 'sb-docker-'))
    const stale = await startDockerd(join(staleDir, 'dockerd'))
    const rootfs = join(staleDir, 'rootfs')
    mkdirSync(join(rootfs, 'usr'), { recursive: true })
    for (const l of ['bin', 'lib', 'lib64', 'sbin']) if (existsSync(`/usr/${l}`)) symlinkSync(`usr/${l}`, join(rootfs, l))
    const tar = spawn('tar', ['-c', '-C', rootfs, '.'], { stdio: ['ignore', 'pipe', 'inherit'] })
    await stale.docker(['import', '-', 'stale-probe:1'], { stdin: tar.stdout })
    await stale.docker(['run', '--detach', '--name', 'stale-probe', '--network', 'host', '--volume', '/usr:/usr:ro', 'stale-probe:1', '/usr/bin/sleep', '600'])
    const containerPid = JSON.parse((await stale.docker(['inspect', 'stale-probe'])).stdout)[0].State.Pid as number
    assert.ok(containerPid > 0 && isRunning(containerPid))
    // The run dies as a SIGKILLed test's would at its exit handler: dockerd killed, the shim and
    // the container left running; its owner (a process that has ended) is gone.
    await stale.proc.stop('SIGKILL')
    assert.ok(isRunning(containerPid), 'the container outlives its dockerd')
    const gone = spawnSync('true')
    writeFileSync(join(staleDir, 'owner.json'), JSON.stringify({ pid: gone.pid, start: 'gone' }))

    const report = await cleanStaleRuns(tmpdir(), 'sb-docker-')
    const line = report.find((l) => l.startsWith(`${staleDir}:`))
    assert.ok(line, `reported: ${report.join(' | ')}`)
    assert.match(line!, /container process sleep/)
    assert.match(line!, /, removed$/)
    await eventually(() => !isRunning(containerPid), 10_000, 'the container process ended')
    assert.equal(existsSync(staleDir), false, 'the folder is gone')
    assert.deepEqual(readFileSync('/proc/mounts', 'utf8').split('\n').filter((m) => m.includes(staleDir)), [])
    // This run (its owner alive) was not touched: its dockerd still answers.
    assert.ok(existsSync(dir))
    assert.equal((await docker(['version', '--format', '{{.Server.Version}}'])).code, 0)
  })

  clusterSuite({
    title: 'the cluster suite on two containers of the image behind the host nginx',
    label: 'containers',
    nodes: 2,
    launchNode: () => {
      suiteFrom = performance.now()
      return (launcher = containerNodeLauncher(dockerd!, { image: tag, namePrefix: 'sb-cluster-', logFile: join(dir, 'docker.log') }))
    },
    dir: () => join(dir, 'cluster'),
  })

  it('the cluster suite’s nodes were containers, and stopping the cluster removed every one of them', async () => {
    // Two at the start, one more after the SIGKILL and one after the SIGTERM case.
    assert.equal(launcher?.containers().length, 4, `containers started: ${launcher?.containers().join(', ')}`)
    assert.equal((await docker(['ps', '-aq', '--filter', 'name=sb-cluster-'])).stdout.trim(), '', 'none left, running or stopped')
  })

  it('removes every container and image it made, stops its dockerd, and leaves no bridge, iptables chain or process behind', async () => {
    await cleanUp()
    assert.deepEqual(leftovers, { containers: [], images: [] })
    const { unmounted, ...left } = traces!
    assert.deepEqual(left, { interfaces: [], iptablesChains: [], ipForwardChanged: false, leftoverProcesses: [], mountsLeft: [] }, `(unmounted after dockerd: ${unmounted.join(', ') || 'nothing'})`)
    assert.ok(!readdirSync('/sys/class/net').includes('docker0'), 'no docker0')
  })
})

function get(url: string, path: string, octet: number, token?: string) {
  return new Promise<{ status: number; node: string; body: string }>((resolve, reject) => {
    const req = http.get(`${url}${path}`, { localAddress: sourceAddress(octet), headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = ''
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, node: String(res.headers['x-switchboard-node']), body }))
    })
    req.on('error', reject)
  })
}

