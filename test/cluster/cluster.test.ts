import { clusterSuite } from './suite.ts'

/**
 * Three real nodes behind real nginx, once per Redis setup (SPEC §7): one Redis with the classic
 * adapter, one Redis with sharded pub/sub, and a Redis Cluster of our own (3 masters, 3 replicas)
 * with the sharded adapter. The cases are in ./suite.ts (test/docker/image.test.ts runs them on
 * two containers of the image too).
 */
clusterSuite({ title: 'cluster behind nginx (classic Redis adapter)', label: 'classic', env: { REDIS_ADAPTER: 'classic' } })
clusterSuite({ title: 'cluster behind nginx (sharded Redis adapter)', label: 'sharded', env: { REDIS_ADAPTER: 'sharded' } })
clusterSuite({ title: 'cluster behind nginx (sharded adapter on a Redis Cluster)', label: 'sharded on a Redis Cluster', env: { REDIS_ADAPTER: 'sharded' }, redisCluster: true })
