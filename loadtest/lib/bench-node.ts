import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { NodeLauncher } from '../../infra/cluster.ts'
import { start } from '../../infra/processes.ts'

// What `npm run bench` and `npm run bench:profile` give the Switchboard nodes they start.

/** The JWT secret the bench signs its load clients' tokens with. */
export const BENCH_SECRET = 'bench-secret-bench-secret-bench-secret'

/**
 * The nodes' settings: limits out of the way (the bench measures throughput: one user floods
 * HTTP history, the load generator's 50 source addresses hold thousands of sessions each), then
 * the `--env` settings being tried.
 */
export function benchNodeEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    JWT_SECRET: BENCH_SECRET,
    RATE_LIMIT_MESSAGES: '100000000',
    RATE_LIMIT_HTTP: '100000000',
    MAX_CONNECTIONS_PER_IP: '1000000',
    LOG_LEVEL: 'warn',
    AUTH_DEV_TOKENS: 'false',
    ...extra,
  }
}

/** `--env NAME=value` (repeatable) as an environment; anything else throws "`--env must be …`". */
export function envOption(values: readonly string[] = []): Record<string, string> {
  const env: Record<string, string> = {}
  for (const e of values) {
    if (!/^[A-Z_][A-Z0-9_]*=/.test(e)) throw new Error(`--env must be NAME=value (got "${e}")`)
    const at = e.indexOf('=')
    env[e.slice(0, at)] = e.slice(at + 1)
  }
  return env
}

/**
 * `--compiled`: the Switchboard nodes run the compiled build as the image does
 * (`node dist/services/chat/src/server.js`, built here by `npm run build:server`) instead of
 * `node --import tsx` on the sources.
 */
export function compiledLauncher(): NodeLauncher {
  const root = fileURLToPath(new URL('../..', import.meta.url))
  execFileSync('npm', ['run', '--silent', 'build:server'], { cwd: root, stdio: 'inherit' })
  return (x) => start(x.id, process.execPath, ['dist/services/chat/src/server.js'], { cwd: root, env: x.env, logFile: x.logFile, onLine: x.onLine })
}
