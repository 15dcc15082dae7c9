import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { plan, programsTheTestsNeed, type Program } from '../../infra/pretest.ts'
import { findExecutable, MissingProgramError, requirePrograms } from '../../infra/processes.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))

describe('missing programs are named with the command that installs them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-preflight-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('finds executables on a PATH, and only executables', () => {
    const bin = join(dir, 'bin')
    const file = join(dir, 'bin', 'tool')
    mkdirSync(bin)
    writeFileSync(file, '#!/bin/sh\n')
    assert.equal(findExecutable('tool', `/nonexistent:${bin}`), undefined, 'not executable yet')
    chmodSync(file, 0o755)
    assert.equal(findExecutable('tool', `/nonexistent:${bin}`), file)
    assert.equal(findExecutable(file, ''), file, 'an absolute path is checked as it is')
    assert.equal(findExecutable('tool', '/nonexistent'), undefined)
    assert.throws(() => requirePrograms([{ binary: 'tool', aptPackage: 'tool-pkg' }], '/nonexistent'), {
      name: 'MissingProgramError',
      message: 'tool not found: apt-get install -y tool-pkg',
    })
    assert.doesNotThrow(() => requirePrograms([{ binary: 'tool', aptPackage: 'tool-pkg' }], bin))
    const two = new MissingProgramError([
      { binary: 'nginx', aptPackage: 'nginx' },
      { binary: 'redis-server', aptPackage: 'redis-server', instead: 'or set REDIS_URL' },
    ])
    assert.equal(two.message, 'nginx, redis-server not found: apt-get install -y nginx redis-server (or set REDIS_URL)')
  })

  it('npm run cluster without nginx says so in one line and exits non-zero, before starting anything', async () => {
    const emptyPath = mkdtempSync(join(dir, 'path-'))
    const launch = (env: Record<string, string>) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', 'infra/cluster.ts', '--dir', join(dir, 'cluster'), '--nodes', '1', '--port', '0'], {
          cwd: root,
          env: { HOME: process.env.HOME ?? '', PATH: emptyPath, ...env },
          stdio: ['ignore', 'pipe', 'pipe'],
        })
        let stdout = ''
        let stderr = ''
        child.stdout.on('data', (d) => (stdout += d))
        child.stderr.on('data', (d) => (stderr += d))
        const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`still running after 30 s:\n${stdout}${stderr}`))), 30_000)
        child.once('exit', (code) => (clearTimeout(timer), resolve({ code, stdout, stderr })))
      })
    // Databases given: only nginx is needed.
    const onlyNginx = await launch({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', REDIS_URL: 'redis://127.0.0.1:1' })
    assert.notEqual(onlyNginx.code, 0)
    assert.equal(onlyNginx.stderr, 'nginx not found: apt-get install -y nginx\n')
    assert.doesNotMatch(onlyNginx.stdout, /process exited|\n\s+at /)
    // Nothing given: Redis is started here too, so redis-server is named in the same line.
    const nothing = await launch({})
    assert.notEqual(nothing.code, 0)
    assert.match(nothing.stderr, /^nginx, redis-server(, initdb)? not found: apt-get install -y nginx redis-server( postgresql)? \(or set REDIS_URL(; or set DATABASE_URL)?\)\n$/)
  })
})

describe('pretest: which programs are missing, and what to do about it', () => {
  const program = (name: string, aptPackage: string, present: boolean, extra: Partial<Program> = {}): Program => ({ name, for: 'tests', aptPackage, present, ...extra })

  it('does nothing when everything is installed', () => {
    assert.deepEqual(plan([program('nginx', 'nginx', true), program('kubectl', 'kubernetes-client', true)], { root: false, aptGet: false }), { action: 'none' })
  })

  it('installs exactly the missing packages with apt-get when root', () => {
    const programs = [program('nginx', 'nginx', false), program('/usr/bin/chromium', 'chromium', false), program('kubectl', 'kubernetes-client', false), program('redis-server', 'redis-server', true)]
    assert.deepEqual(plan(programs, { root: true, aptGet: true }), {
      action: 'install',
      packages: ['nginx', 'chromium', 'kubernetes-client'],
      commands: [['apt-get', 'update'], ['apt-get', 'install', '-y', 'nginx', 'chromium', 'kubernetes-client']],
    })
  })

  it('installs docker.io and debootstrap without their recommendations, in a command of their own', () => {
    const programs = [program('nginx', 'nginx', false), program('dockerd', 'docker.io', false, { noRecommends: true }), program('debootstrap', 'debootstrap', false, { noRecommends: true })]
    assert.deepEqual(plan(programs, { root: true, aptGet: true }), {
      action: 'install',
      packages: ['nginx', 'docker.io', 'debootstrap'],
      commands: [['apt-get', 'update'], ['apt-get', 'install', '-y', 'nginx'], ['apt-get', 'install', '-y', '--no-install-recommends', 'docker.io', 'debootstrap']],
    })
    assert.deepEqual(plan(programs.slice(1), { root: true, aptGet: true }), {
      action: 'install',
      packages: ['docker.io', 'debootstrap'],
      commands: [['apt-get', 'update'], ['apt-get', 'install', '-y', '--no-install-recommends', 'docker.io', 'debootstrap']],
    })
    const notRoot = plan(programs, { root: false, aptGet: true }) as { message: string }
    assert.equal(
      notRoot.message,
      "npm test needs nginx, dockerd, debootstrap: run  sudo sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io debootstrap'",
    )
  })

  it('otherwise stops with one line giving the exact command', () => {
    const programs = [program('nginx', 'nginx', false), program('kubectl', 'kubernetes-client', false)]
    const notRoot = plan(programs, { root: false, aptGet: true })
    assert.equal(notRoot.action, 'stop')
    assert.equal(
      (notRoot as { message: string }).message,
      "npm test needs nginx, kubectl: run  sudo sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx kubernetes-client'",
    )
    const noApt = plan(programs, { root: true, aptGet: false })
    assert.equal(noApt.action, 'stop')
    assert.match((noApt as { message: string }).message, /^npm test needs nginx, kubectl: install the packages nginx, kubernetes-client \(Debian: .*apt-get install -y nginx kubernetes-client\)$/)
    for (const p of [notRoot, noApt]) assert.doesNotMatch((p as { message: string }).message, /\n/)
  })

  it('a CHROMIUM_PATH that points nowhere is not apt-get’s to fix', () => {
    const decided = plan([program('/opt/nope/chrome', 'chromium', false, { pointedBy: 'CHROMIUM_PATH' }), program('nginx', 'nginx', false)], { root: true, aptGet: true })
    assert.equal(decided.action, 'stop')
    assert.match((decided as { message: string }).message, /^npm test: CHROMIUM_PATH=\/opt\/nope\/chrome is not an executable/)
  })

  it('looks for nginx, redis-server, redis-cli, initdb, Chromium (or CHROMIUM_PATH), kubectl, dockerd and docker, debootstrap', () => {
    const seen: string[] = []
    const none = programsTheTestsNeed({ PATH: '/nowhere' }, (cmd) => (seen.push(cmd), undefined))
    // `docker` is only looked for once dockerd is found (both come with docker.io).
    assert.deepEqual(seen, ['nginx', 'redis-server', 'redis-cli', '/usr/bin/chromium', 'kubectl', 'dockerd', 'debootstrap'])
    assert.deepEqual(
      none.filter((p) => p.name !== 'initdb').map((p) => [p.name, p.aptPackage, p.present]),
      [
        ['nginx', 'nginx', false],
        ['redis-server', 'redis-server', false],
        ['redis-cli', 'redis-tools', false],
        ['/usr/bin/chromium', 'chromium', false],
        ['kubectl', 'kubernetes-client', false],
        ['dockerd', 'docker.io', false],
        ['debootstrap', 'debootstrap', false],
      ],
    )
    const clientOnly = programsTheTestsNeed({ PATH: '/nowhere' }, (cmd) => (cmd === 'docker' ? '/usr/bin/docker' : undefined))
    assert.equal(clientOnly.find((p) => p.name === 'dockerd')!.present, false, 'a docker client alone is not enough')
    const pointed = programsTheTestsNeed({ PATH: '/nowhere', CHROMIUM_PATH: '/opt/chrome' }, (cmd) => (cmd === '/opt/chrome' ? cmd : undefined))
    const chromium = pointed.find((p) => p.aptPackage === 'chromium')!
    assert.deepEqual([chromium.name, chromium.present, chromium.pointedBy], ['/opt/chrome', true, 'CHROMIUM_PATH'])
    // On this machine (the tests' own requirements), everything is there: pretest would do nothing.
    assert.deepEqual(plan(programsTheTestsNeed(), { root: false, aptGet: false }), { action: 'none' })
  })
})
