// A Docker daemon of our own and the stand-in for the node:20 base image, for test/docker (the
// image built and run the way Kubernetes runs it). Everything here is a child of ours, kept under
// one folder, and removed by `stop()`; nothing touches the machine's own Docker (if it has one).
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { appendFileSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, renameSync, rmSync, rmdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import type { NodeLauncher } from './cluster.ts'
import { exitCause, findExecutable, requirePrograms, start, waitFor, type Proc } from './processes.ts'

/** What dockerd needs (Debian's docker.io: dockerd, docker, containerd, runc). */
const dockerRequirements = [
  { binary: 'dockerd', aptPackage: 'docker.io' },
  { binary: 'docker', aptPackage: 'docker.io' },
]

/** One line when this cannot work here: dockerd (and debootstrap) need root. */
export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new Error(`${what} needs root (dockerd and debootstrap run as root): run it as root, as CI does`)
}

export interface DockerResult {
  code: number | null
  stdout: string
  stderr: string
}

/** What the daemon left on the machine outside its folder, measured at `stop()`: all empty when it behaved. */
export interface DockerdTraces {
  /** Network interfaces that appeared while it ran (docker0, br-*, veth*); removed by `stop()`. */
  interfaces: string[]
  /** iptables chains that appeared while it ran (DOCKER, DOCKER-USER, …). */
  iptablesChains: string[]
  /** Whether /proc/sys/net/ipv4/ip_forward changed. */
  ipForwardChanged: boolean
  /** Processes with our folder on their command line still running after dockerd exited (killed by pid). */
  leftoverProcesses: number[]
  /** Mounts under our folder still there after dockerd exited, unmounted by `stop()` (dockerd 20.10 leaves its `exec-root/netns/default`). */
  unmounted: string[]
  /** Mounts under our folder after that (should be none: the folder is then removed). */
  mountsLeft: string[]
}

export interface Dockerd {
  /** `unix://<dir>/docker.sock` */
  host: string
  proc: Proc
  /** The environment for the docker client: our socket, a private client config, the classic builder. */
  env: NodeJS.ProcessEnv
  /** Runs the docker client against our daemon; rejects on a non-zero exit unless `allowFailure`. */
  docker(args: string[], opts?: { env?: NodeJS.ProcessEnv; allowFailure?: boolean; logFile?: string; stdin?: NodeJS.ReadableStream }): Promise<DockerResult>
  /** Removes every container and image of this daemon; returns what is still listed afterwards (should be nothing). */
  removeEverything(): Promise<{ containers: string[]; images: string[] }>
  /** Stops dockerd (its pid, SIGTERM), removes what it created, then its folder. */
  stop(): Promise<DockerdTraces>
}

const netInterfaces = () => (existsSync('/sys/class/net') ? readdirSync('/sys/class/net') : [])
const ipForward = () => (existsSync('/proc/sys/net/ipv4/ip_forward') ? readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim() : '')

/** Chain names of the filter and nat tables (empty without iptables). */
async function iptablesChains(): Promise<string[]> {
  if (!findExecutable('iptables')) return []
  const chains: string[] = []
  for (const table of ['filter', 'nat']) {
    const r = await run('iptables', ['-t', table, '-S'], {})
    for (const line of r.stdout.split('\n')) if (line.startsWith('-N ')) chains.push(`${table}/${line.slice(3).trim()}`)
  }
  return chains
}

/** What dockerd starts (and only that: other programs that mention our folder are not ours to end). */
const DOCKERD_CHILDREN = /^(dockerd|containerd|containerd-shim(-runc-v2)?|runc|docker-proxy|docker-init)$/

/** Processes started by our dockerd (its programs, with `path` on their command line), still running. */
function processesOn(path: string): number[] {
  const pids: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0')
      if (DOCKERD_CHILDREN.test(argv[0].split('/').pop() ?? '') && argv.join(' ').includes(path)) pids.push(Number(name))
    } catch {
      // gone
    }
  }
  return pids
}

const mountsUnder = (path: string) =>
  readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1])
    .filter((m) => m && (m === path || m.startsWith(`${path}/`)))

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: NodeJS.ReadableStream; logFile?: string }): Promise<DockerResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d) => (stdout += d))
    child.stderr!.on('data', (d) => (stderr += d))
    if (opts.stdin) opts.stdin.pipe(child.stdin!)
    child.once('error', reject)
    child.once('close', (code) => resolvePromise({ code, stdout, stderr }))
  })
}

/**
 * Starts dockerd with everything of its own under `dir`: `--data-root`, `--exec-root`, the socket,
 * the pid file. No bridge, no iptables rules, no IP forwarding, no masquerading: containers and
 * builds use `--network host` only, so nothing here ever talks to a bridge network's private
 * addresses. The storage driver is dockerd's own choice (overlay2 where the kernel and the
 * data root's filesystem allow it, else down its list to vfs, which works anywhere).
 */
export async function startDockerd(dir: string): Promise<Dockerd> {
  requireRoot('starting dockerd')
  requirePrograms(dockerRequirements)
  dir = resolve(dir)
  mkdirSync(join(dir, 'client'), { recursive: true })
  const socket = join(dir, 'docker.sock')
  const pidFile = join(dir, 'dockerd.pid')
  const host = `unix://${socket}`
  // Folders dockerd and containerd make outside their roots whatever the flags: removed when we made them and they are empty.
  const systemDirs = ['/run/docker', '/run/containerd'].filter((d) => !existsSync(d))
  const before = { interfaces: netInterfaces(), chains: await iptablesChains(), ipForward: ipForward() }
  const args = [
    '--data-root', join(dir, 'data'),
    '--exec-root', join(dir, 'exec'),
    '--host', host,
    '--pidfile', pidFile,
    '--bridge', 'none',
    '--iptables=false',
    '--ip6tables=false',
    '--ip-forward=false',
    '--ip-masq=false',
    '--userland-proxy=false',
  ]
  const proc = start('dockerd', 'dockerd', args, { logFile: join(dir, 'dockerd.log'), stopSignal: 'SIGTERM' })
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DOCKER_HOST: host,
    // Not the machine's ~/.docker: no credentials, no contexts, no plugins of anyone else.
    DOCKER_CONFIG: join(dir, 'client'),
    // The classic builder: Debian's docker.io has no buildx, and it honours `--network host` for RUN.
    DOCKER_BUILDKIT: '0',
  }
  const docker: Dockerd['docker'] = async (dockerArgs, o = {}) => {
    const r = await run('docker', dockerArgs, { env: { ...env, ...o.env }, stdin: o.stdin })
    if (o.logFile) {
      appendFileSync(o.logFile, `$ docker ${dockerArgs.join(' ')}\n${r.stdout}${r.stderr}\n`)
    }
    if (r.code !== 0 && !o.allowFailure) {
      const tail = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-5).join(' | ')
      throw new Error(`docker ${dockerArgs.slice(0, 2).join(' ')} failed (exit ${r.code}): ${tail}`)
    }
    return r
  }
  let stopped: Promise<DockerdTraces> | undefined
  const handle: Dockerd = {
    host,
    proc,
    env,
    docker,
    async removeEverything() {
      const containers = (await docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean)
      if (containers.length) await docker(['rm', '-f', '-v', ...containers])
      // Every image, tagged or intermediate (the classic builder keeps one per step).
      for (let round = 0; round < 5; round++) {
        const images = [...new Set((await docker(['images', '-aq'])).stdout.split('\n').filter(Boolean))]
        if (!images.length) break
        await docker(['rmi', '-f', ...images], { allowFailure: true })
      }
      await docker(['builder', 'prune', '-af'], { allowFailure: true })
      return {
        containers: (await docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean),
        images: (await docker(['images', '-aq'])).stdout.split('\n').filter(Boolean),
      }
    },
    stop() {
      stopped ??= (async () => {
        await proc.stop('SIGTERM', 30_000)
        // containerd (dockerd's child) and shims end with dockerd; any that did not are ours: by pid.
        const leftoverProcesses = processesOn(`${dir}/`)
        for (const pid of leftoverProcesses) {
          try {
            process.kill(pid, 'SIGKILL')
          } catch {
            // already gone
          }
        }
        const unmounted = mountsUnder(dir)
        for (const m of [...unmounted].reverse()) await run('umount', ['-l', m], {})
        const mountsLeft = mountsUnder(dir)
        const created = netInterfaces().filter((i) => !before.interfaces.includes(i) && /^(docker|br-|veth)/.test(i))
        for (const i of created) await run('ip', ['link', 'delete', i], {})
        const chains = (await iptablesChains()).filter((c) => !before.chains.includes(c))
        for (const d of systemDirs) removeEmptyTree(d)
        if (mountsLeft.length === 0) rmSync(dir, { recursive: true, force: true })
        return { interfaces: created, iptablesChains: chains, ipForwardChanged: ipForward() !== before.ipForward, leftoverProcesses, unmounted, mountsLeft }
      })()
      return stopped
    },
  }
  try {
    await waitFor('dockerd', async () => (await run('docker', ['version', '--format', '{{.Server.Version}}'], { env })).code === 0, 60_000, proc)
    const pid = Number(readFileSync(pidFile, 'utf8').trim())
    if (pid !== proc.child.pid) throw new Error(`dockerd wrote pid ${pid} to ${pidFile}, but we started ${proc.child.pid}`)
  } catch (err) {
    await handle.stop()
    throw err
  }
  return handle
}

/** Removes `dir` if it holds nothing but empty folders. */
function removeEmptyTree(dir: string): void {
  if (!existsSync(dir)) return
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) return
    removeEmptyTree(join(dir, entry.name))
  }
  try {
    rmdirSync(dir)
  } catch {
    // not empty after all: someone else's
  }
}

export interface StandInTimings {
  /** debootstrap itself (0 when the cached tarball was used). */
  debootstrapMs: number
  /** Unpacking the cached tarball (0 right after debootstrap). */
  unpackMs: number
  /** Writing the day's tarball after a debootstrap. */
  cacheMs: number
  /** Node, npm, the user, and `docker import`. */
  importMs: number
  cached: boolean
}

const DEBIAN_MIRROR = 'http://deb.debian.org/debian'

/**
 * The stand-in for `node:20-bookworm-slim`, which cannot be pulled here: `debootstrap
 * --variant=minbase bookworm` (cached as a tarball in `cacheDir` for the day), the machine's own
 * Node 20 binary and npm under /usr/local as in the real image, a `node` user and group (1000),
 * imported with `docker import` as `tag`. The machine's CA bundle goes in too when its Node
 * trusts one through NODE_EXTRA_CA_CERTS (an intercepting proxy's root), so `npm ci` in the build
 * reaches the registry exactly as the machine's npm does.
 */
export async function importNodeStandIn(
  dockerd: Dockerd,
  opts: { workDir: string; cacheDir: string; tag?: string; print?: (line: string) => void },
): Promise<StandInTimings> {
  requireRoot('building the stand-in base image')
  requirePrograms([{ binary: 'debootstrap', aptPackage: 'debootstrap' }, { binary: 'tar', aptPackage: 'tar' }])
  if (!process.versions.node.startsWith('20.')) throw new Error(`the stand-in for node:20-bookworm-slim needs the machine's Node to be 20 (it is ${process.versions.node})`)
  const tag = opts.tag ?? 'node:20-bookworm-slim'
  const print = opts.print ?? (() => {})
  const rootfs = join(resolve(opts.workDir), 'rootfs')
  rmSync(rootfs, { recursive: true, force: true })
  mkdirSync(rootfs, { recursive: true })
  mkdirSync(opts.cacheDir, { recursive: true })
  const name = `bookworm-minbase-${process.arch}-${new Date().toISOString().slice(0, 10)}.tar`
  const cached = join(opts.cacheDir, name)
  const timings: StandInTimings = { debootstrapMs: 0, unpackMs: 0, cacheMs: 0, importMs: 0, cached: existsSync(cached) }
  const must = async (what: string, cmd: string, args: string[], logFile?: string) => {
    const log = logFile ?? join(resolve(opts.workDir), `${what}.log`)
    const p = start(what, cmd, args, { logFile: log })
    const code = await p.exited
    if (code !== 0) throw new Error(`${what} failed (exit ${code}): ${exitCause(p) ?? 'no output'} (log: ${log})`)
  }
  let t = performance.now()
  if (timings.cached) {
    await must('unpack', 'tar', ['-x', '--numeric-owner', '-f', cached, '-C', rootfs])
    timings.unpackMs = performance.now() - t
  } else {
    print(`debootstrap --variant=minbase bookworm from ${DEBIAN_MIRROR} …`)
    await must('debootstrap', 'debootstrap', ['--variant=minbase', 'bookworm', rootfs, DEBIAN_MIRROR])
    // The downloaded packages are not part of the image (the real one ships none either).
    for (const f of readdirSync(join(rootfs, 'var/cache/apt/archives'))) if (f.endsWith('.deb')) rmSync(join(rootfs, 'var/cache/apt/archives', f))
    timings.debootstrapMs = performance.now() - t
    t = performance.now()
    // Cache for the day (one tarball: older days' are removed), written under a temporary name first.
    for (const f of readdirSync(opts.cacheDir)) if (/^bookworm-minbase-.*\.tar(\.partial)?$/.test(f)) rmSync(join(opts.cacheDir, f), { force: true })
    await must('cache', 'tar', ['-c', '--numeric-owner', '-f', `${cached}.partial`, '-C', rootfs, '.'])
    renameSync(`${cached}.partial`, cached)
    timings.cacheMs = performance.now() - t
  }

  t = performance.now()
  // Node and npm where the real image has them (/usr/local), from the machine's own.
  mkdirSync(join(rootfs, 'usr/local/bin'), { recursive: true })
  mkdirSync(join(rootfs, 'usr/local/lib/node_modules'), { recursive: true })
  copyFileSync(process.execPath, join(rootfs, 'usr/local/bin/node'))
  const npmCli = findExecutable('npm')
  if (!npmCli) throw new Error('npm not found on PATH (the stand-in image copies the machine\'s npm)')
  const npmDir = resolve(dirname(realpathSync(npmCli)), '..')
  cpSync(npmDir, join(rootfs, 'usr/local/lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true })
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(rootfs, 'usr/local/bin/npm'))
  symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(rootfs, 'usr/local/bin/npx'))
  const changes = ['ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', `ENV NODE_VERSION=${process.versions.node}`, 'CMD ["node"]']
  const extraCa = process.env.NODE_EXTRA_CA_CERTS
  if (extraCa && existsSync(extraCa)) {
    mkdirSync(join(rootfs, 'usr/local/share/ca-certificates'), { recursive: true })
    copyFileSync(extraCa, join(rootfs, 'usr/local/share/ca-certificates/machine-extra-ca.crt'))
    changes.push('ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/machine-extra-ca.crt')
  }
  // The real image's user: `groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node`.
  await must('groupadd', 'groupadd', ['--root', rootfs, '--gid', '1000', 'node'])
  await must('useradd', 'useradd', ['--root', rootfs, '--uid', '1000', '--gid', 'node', '--shell', '/bin/bash', '--create-home', 'node'])

  const tar = spawn('tar', ['-c', '--numeric-owner', '-C', rootfs, '.'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let tarErr = ''
  tar.stderr.on('data', (d) => (tarErr += d))
  const tarDone = new Promise<number | null>((r) => tar.once('close', r))
  await dockerd.docker(['import', ...changes.flatMap((c) => ['--change', c]), '-', tag], { stdin: tar.stdout })
  if ((await tarDone) !== 0) throw new Error(`tar of the stand-in root failed: ${tarErr.trim()}`)
  rmSync(rootfs, { recursive: true, force: true })
  timings.importMs = performance.now() - t
  return timings
}

/**
 * `docker run` as the pod spec (k8s/base/node-deployment.yaml) runs a node: host network, read-only
 * root, a tmpfs on /tmp (the pod's emptyDir), uid/gid 1000, no capabilities, no privilege
 * escalation, SIGKILL 40 s after SIGTERM (terminationGracePeriodSeconds). Configuration is
 * `-e NAME` only: the values travel in the client's environment, not on its command line.
 */
export const podRunArgs = (envNames: readonly string[]): string[] => [
  '--network', 'host',
  '--read-only',
  '--tmpfs', '/tmp:rw,nosuid,nodev,size=64m',
  '--user', '1000:1000',
  '--cap-drop', 'ALL',
  '--security-opt', 'no-new-privileges',
  '--stop-timeout', '40',
  ...envNames.flatMap((k) => ['-e', k]),
]

/** This machine's variables that a launcher hands every node process, which a container must not get (the image has its own). */
const HOST_ONLY = new Set(['PATH', 'HOME'])

/**
 * A `launchNode` for startCluster (infra/cluster.ts): each node is an attached `docker run` of
 * `image` on our dockerd ({@link podRunArgs}), named `<namePrefix><id>-<random>`, its output
 * streamed by the client into the node's log. The returned Proc is the client, with the stop
 * semantics of a pod: SIGTERM is `docker stop --time <timeout>` (the node drains; SIGKILL at the
 * end of the time), SIGKILL is `docker kill`, another signal `docker kill --signal`. The client
 * ends with its container and exits with its code; a client that ends otherwise (killed, its
 * daemon gone) does not take the container with it, so `exited` settles only after
 * `docker rm -f` of the container: once it has, nothing of the node runs.
 */
export function containerNodeLauncher(dockerd: Dockerd, opts: { image: string; namePrefix: string; logFile?: string }): NodeLauncher & { containers: () => string[] } {
  const names: string[] = []
  const docker = (args: string[]) => dockerd.docker(args, { allowFailure: true, logFile: opts.logFile })
  const launch: NodeLauncher = ({ id, env, logFile, onLine }) => {
    const name = `${opts.namePrefix}${id}-${randomBytes(3).toString('hex')}`
    names.push(name)
    const nodeEnv = Object.fromEntries(Object.entries(env).filter(([k]) => !HOST_ONLY.has(k)))
    const client = start(id, 'docker', ['run', '--name', name, ...podRunArgs(Object.keys(nodeEnv)), opts.image], {
      env: { ...dockerd.env, ...nodeEnv },
      logFile,
      onLine,
      // The base Proc (stopAll, the exit handler) signals the client, which passes SIGTERM on (--sig-proxy).
      stopSignal: 'SIGTERM',
    })
    const exited = client.exited.then(async (code) => {
      await docker(['rm', '--force', '--volumes', name])
      return code
    })
    const ended = () => client.child.exitCode !== null || client.child.signalCode !== null
    return {
      ...client,
      exited,
      async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000) {
        if (ended()) return exited
        // Whatever happens to the daemon call, the client and the container end within the time.
        const fallback = setTimeout(() => void docker(['kill', name]).finally(() => client.child.kill('SIGKILL')), timeoutMs + 5000)
        try {
          if (signal === 'SIGTERM') await docker(['stop', '--time', String(Math.max(1, Math.ceil(timeoutMs / 1000))), name])
          else await docker(['kill', ...(signal === 'SIGKILL' ? [] : ['--signal', signal]), name])
          return await exited
        } finally {
          clearTimeout(fallback)
        }
      },
    }
  }
  return Object.assign(launch, { containers: () => [...names] })
}

/** A run folder's owner: the process that made it, with its start time (so a reused pid is not mistaken for it). */
const OWNER_FILE = 'owner.json'

/** Start time of `pid` in clock ticks since boot (/proc/<pid>/stat field 22), or undefined when it is gone. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

/** Marks `dir` as this process's, for {@link cleanStaleRuns} of later runs. */
export function claimRunDir(dir: string): void {
  writeFileSync(join(dir, OWNER_FILE), JSON.stringify({ pid: process.pid, start: startTimeOf(process.pid) }))
}

/** Whether the process that claimed `dir` still runs: true, false, or undefined when nothing claimed it. */
function ownerRuns(dir: string): boolean | undefined {
  try {
    const { pid, start } = JSON.parse(readFileSync(join(dir, OWNER_FILE), 'utf8')) as { pid: number; start?: string }
    return startTimeOf(pid) !== undefined && startTimeOf(pid) === start
  } catch {
    return existsSync(join(dir, OWNER_FILE)) ? false : undefined
  }
}

/** The programs a run of the image test starts, and that the stale-run cleanup may end. */
const RUN_PROGRAMS = /^(dockerd|containerd|containerd-shim(-runc-v2)?|runc|docker-proxy|docker-init|docker|nginx|redis-server)$/

/**
 * Processes of a run folder: one of {@link RUN_PROGRAMS} with the folder on its command line, as its
 * working directory (redis-server renames itself but stays in its `--dir`) or as its
 * `DOCKER_HOST` (a `docker run` client), and every process in the cgroup of a container whose
 * record is in the folder's data roots (a container outlives its shim).
 */
function processesOfRun(dir: string): { pid: number; program: string }[] {
  const containerIds = new Set<string>()
  const dataRoots = (d: string, depth: number): string[] =>
    depth > 3 || !existsSync(d) ? [] : readdirSync(d, { withFileTypes: true }).flatMap((e) => (!e.isDirectory() ? [] : e.name === 'containers' && existsSync(join(d, 'image')) ? [join(d, e.name)] : dataRoots(join(d, e.name), depth + 1)))
  for (const containers of dataRoots(dir, 0)) for (const id of readdirSync(containers)) if (/^[0-9a-f]{64}$/.test(id)) containerIds.add(id)
  const found: { pid: number; program: string }[] = []
  for (const name of readdirSync('/proc')) {
    const pid = Number(name)
    if (!/^\d+$/.test(name) || pid === process.pid) continue
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
      const program = (argv[0].split(' ')[0].split('/').pop() ?? '').replace(/:$/, '')
      const cgroup = containerIds.size ? readFileSync(`/proc/${pid}/cgroup`, 'utf8') : ''
      if (containerIds.size && [...containerIds].some((id) => cgroup.includes(id))) {
        found.push({ pid, program: `container process ${program}` })
        continue
      }
      if (!RUN_PROGRAMS.test(program)) continue
      const onLine = argv.join(' ').includes(`${dir}/`)
      const cwd = (() => {
        try {
          return readlinkSync(`/proc/${pid}/cwd`)
        } catch {
          return ''
        }
      })()
      const dockerHost = program === 'docker' && readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').some((v) => v.startsWith(`DOCKER_HOST=unix://${dir}/`))
      if (onLine || cwd === dir || cwd.startsWith(`${dir}/`) || dockerHost) found.push({ pid, program })
    } catch {
      // gone, or not ours to read
    }
  }
  return found
}

/** Whether `pid` runs (a zombie, ended but not yet reaped, does not). */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}
const alive = isRunning

/**
 * Removes what runs of this test left when they were killed (SIGKILL, a lost CI runner): each
 * folder `<parent>/<prefix>*` whose owner ({@link claimRunDir}) no longer runs — or, unclaimed,
 * last changed more than an hour ago — has its dockerd's containers removed through its socket,
 * that dockerd stopped by the pid in its pid file, then any of its processes still running
 * ({@link processesOfRun}) ended by pid (SIGTERM, SIGKILL after 5 s), its mounts unmounted and the
 * folder deleted. Folders of runs still going are not touched. Returns what it removed, one line each.
 */
export async function cleanStaleRuns(parent: string, prefix: string): Promise<string[]> {
  const report: string[] = []
  for (const entry of existsSync(parent) ? readdirSync(parent) : []) {
    const dir = join(resolve(parent), entry)
    if (!entry.startsWith(prefix)) continue
    try {
      if (!statSync(dir).isDirectory()) continue
      const owner = ownerRuns(dir)
      if (owner === true || (owner === undefined && Date.now() - statSync(dir).mtimeMs < 3_600_000)) continue
    } catch {
      continue
    }
    const done: string[] = []
    // Its dockerd, if it still runs: containers first (the daemon knows them), then the daemon.
    for (const pidFile of findFiles(dir, 'dockerd.pid', 3)) {
      const pid = Number(readFileSync(pidFile, 'utf8').trim())
      const argv = (() => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
        } catch {
          return ''
        }
      })()
      if (!pid || !argv.startsWith('dockerd\0') && !argv.includes('/dockerd\0') || !argv.includes(`${dir}/`)) continue
      const socket = join(dirname(pidFile), 'docker.sock')
      const env = { PATH: process.env.PATH, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: join(dirname(pidFile), 'client') }
      const ids = (await run('docker', ['ps', '-aq'], { env })).stdout.split('\n').filter(Boolean)
      if (ids.length) await run('docker', ['rm', '--force', '--volumes', ...ids], { env })
      process.kill(pid, 'SIGTERM')
      for (let i = 0; i < 300 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100))
      done.push(`dockerd ${pid}${ids.length ? ` and ${ids.length} container(s)` : ''}`)
    }
    let left = processesOfRun(dir)
    for (const p of left) {
      try {
        process.kill(p.pid, 'SIGTERM')
      } catch {
        // gone
      }
    }
    for (let i = 0; i < 50 && left.some((p) => alive(p.pid)); i++) await new Promise((r) => setTimeout(r, 100))
    for (const p of left.filter((p) => alive(p.pid))) {
      try {
        process.kill(p.pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    for (let i = 0; i < 50 && left.some((p) => alive(p.pid)); i++) await new Promise((r) => setTimeout(r, 100))
    if (left.length) done.push(left.map((p) => `${p.program} ${p.pid}`).join(', '))
    left = processesOfRun(dir).filter((p) => alive(p.pid))
    const mounts = mountsUnder(dir)
    for (const m of [...mounts].reverse()) await run('umount', ['-l', m], {})
    if (mounts.length) done.push(`${mounts.length} mount(s)`)
    if (mountsUnder(dir).length === 0 && left.length === 0) rmSync(dir, { recursive: true, force: true })
    report.push(`${dir}: ${done.length ? `ended ${done.join('; ')}` : 'nothing running'}${existsSync(dir) ? ' (folder kept: still in use)' : ', removed'}`)
  }
  return report
}

/** Files named `name` at most `depth` folders below `dir`. */
function findFiles(dir: string, name: string, depth: number): string[] {
  if (depth < 0) return []
  try {
    return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? findFiles(join(dir, e.name), name, depth - 1) : e.name === name ? [join(dir, e.name)] : [],
    )
  } catch {
    return []
  }
}
