// `npm test`'s own setup (the `pretest` script): the programs the suite drives must be installed.
// Missing ones are installed with apt-get when we are root on a Debian-like machine (what CI
// and our machines are); otherwise it stops with one line giving the exact command.
import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { findExecutable } from './processes.ts'
import { findPostgresBinDir } from './services.ts'

/** A program the tests drive, where it was looked for, and the Debian package that has it. */
export interface Program {
  name: string
  /** Which tests need it. */
  for: string
  aptPackage: string
  present: boolean
  /** Set when an environment variable points somewhere that apt-get cannot fix. */
  pointedBy?: string
  /** Installed with --no-install-recommends (docker.io would bring needrestart, apparmor, criu, git). */
  noRecommends?: boolean
}

/**
 * What the suite needs (test/cluster and the browser tests start nginx, Redis and Postgres; test/k8s
 * runs kubectl; test/docker starts its own dockerd and builds a stand-in base image with debootstrap).
 */
export function programsTheTestsNeed(env: NodeJS.ProcessEnv = process.env, find = findExecutable): Program[] {
  const chromium = env.CHROMIUM_PATH || '/usr/bin/chromium'
  return [
    { name: 'nginx', for: 'test/cluster, services/web/test', aptPackage: 'nginx', present: !!find('nginx', env.PATH) },
    { name: 'redis-server', for: 'test/cluster, services/web/test', aptPackage: 'redis-server', present: !!find('redis-server', env.PATH) },
    // The Redis Cluster tests create their cluster with `redis-cli --cluster create` (D128).
    { name: 'redis-cli', for: 'test/cluster', aptPackage: 'redis-tools', present: !!find('redis-cli', env.PATH) },
    { name: 'initdb', for: 'test/cluster', aptPackage: 'postgresql', present: !!findPostgresBinDir() },
    {
      name: chromium,
      for: 'services/web/test',
      aptPackage: 'chromium',
      present: !!find(chromium, env.PATH),
      ...(env.CHROMIUM_PATH ? { pointedBy: 'CHROMIUM_PATH' } : {}),
    },
    { name: 'kubectl', for: 'test/k8s', aptPackage: 'kubernetes-client', present: !!find('kubectl', env.PATH) },
    // Debian's docker.io has dockerd, the docker client, containerd and runc.
    { name: 'dockerd', for: 'test/docker', aptPackage: 'docker.io', noRecommends: true, present: !!find('dockerd', env.PATH) && !!find('docker', env.PATH) },
    { name: 'debootstrap', for: 'test/docker', aptPackage: 'debootstrap', noRecommends: true, present: !!find('debootstrap', env.PATH) },
  ]
}

export type Plan =
  | { action: 'none' }
  | { action: 'install'; packages: string[]; commands: string[][] }
  | { action: 'stop'; message: string }

/** The pure decision: given what is missing and who we are, do nothing, install, or say the command. */
export function plan(programs: readonly Program[], who: { root: boolean; aptGet: boolean }): Plan {
  const missing = programs.filter((p) => !p.present)
  if (missing.length === 0) return { action: 'none' }
  const pointed = missing.find((p) => p.pointedBy)
  if (pointed) {
    return { action: 'stop', message: `npm test: ${pointed.pointedBy}=${pointed.name} is not an executable (${pointed.for} need it): fix it, or unset it and run apt-get install -y ${pointed.aptPackage}` }
  }
  const packages = [...new Set(missing.map((p) => p.aptPackage))]
  const withRecommends = [...new Set(missing.filter((p) => !p.noRecommends).map((p) => p.aptPackage))]
  const lean = [...new Set(missing.filter((p) => p.noRecommends).map((p) => p.aptPackage))]
  const installs = [
    ...(withRecommends.length ? [['apt-get', 'install', '-y', ...withRecommends]] : []),
    ...(lean.length ? [['apt-get', 'install', '-y', '--no-install-recommends', ...lean]] : []),
  ]
  const names = missing.map((p) => p.name).join(', ')
  if (who.root && who.aptGet) {
    return { action: 'install', packages, commands: [['apt-get', 'update'], ...installs] }
  }
  const install = ['apt-get update', ...installs.map((c) => `DEBIAN_FRONTEND=noninteractive ${c.join(' ')}`)].join(' && ')
  if (who.aptGet) return { action: 'stop', message: `npm test needs ${names}: run  sudo sh -c '${install}'` }
  return { action: 'stop', message: `npm test needs ${names}: install the packages ${packages.join(', ')} (Debian: ${install})` }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const who = { root: process.getuid?.() === 0, aptGet: !!findExecutable('apt-get') }
  const decided = plan(programsTheTestsNeed(), who)
  if (decided.action === 'stop') {
    console.error(decided.message)
    process.exit(1)
  }
  if (decided.action === 'install') {
    console.log(`npm test: installing ${decided.packages.join(' ')} with apt-get (needed by the tests)`)
    const began = performance.now()
    for (const [cmd, ...args] of decided.commands) {
      const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
      if (r.status !== 0) {
        console.error(`npm test: \`${[cmd, ...args].join(' ')}\` failed (exit ${r.status ?? r.signal}); run it yourself and retry`)
        process.exit(1)
      }
    }
    const still = programsTheTestsNeed().filter((p) => !p.present)
    if (still.length) {
      console.error(`npm test: still not found after apt-get (is its folder on PATH?): ${still.map((p) => p.name).join(', ')}`)
      process.exit(1)
    }
    console.log(`npm test: apt-get installed ${decided.packages.join(' ')} in ${((performance.now() - began) / 1000).toFixed(1)} s`)
  }
}
