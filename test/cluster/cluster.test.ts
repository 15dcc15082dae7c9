import { clusterSuite } from './suite.ts'

/**
 * Three real nodes behind real nginx, once per adapter variant: the cases are in ./suite.ts
 * (test/docker/image.test.ts runs them on two containers of the image too).
 */
for (const adapter of ['classic', 'sharded']) {
  clusterSuite({ title: `cluster behind nginx (${adapter} Redis adapter)`, label: adapter, env: { REDIS_ADAPTER: adapter } })
}
