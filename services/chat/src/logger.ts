import { pino, type Logger, type LoggerOptions } from 'pino'

/** JSON logs (pino); pretty only when stdout is a terminal and pino-pretty is installed. */
export function createLogger(level: string, base: Record<string, unknown>): Logger {
  const options: LoggerOptions = { level, base }
  if (process.stdout.isTTY && process.env.NODE_ENV !== 'production') {
    try {
      import.meta.resolve('pino-pretty')
      return pino({ ...options, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l' } } })
    } catch {
      // pino-pretty is a dev dependency; plain JSON without it.
    }
  }
  return pino(options)
}
export type { Logger }
