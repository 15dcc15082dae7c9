import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parse, parseAllDocuments } from 'yaml'
import { CONFIG_VARIABLES, loadConfig } from '../../services/chat/src/config.ts'
import { exportedMetricNames, metricNames } from './metric-names.ts'

// The Kubernetes manifests, alert rules and runbooks, checked against the Kubernetes schemas
// (kubernetes-models) and against the code they deploy. Needs `kubectl` (Debian: kubernetes-client).

const root = fileURLToPath(new URL('../..', import.meta.url))
const read = (p: string) => readFileSync(join(root, p), 'utf8')

// Loose shapes: the schema validation below is what checks structure.
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [k: string]: any }; [k: string]: any }

function kustomize(dir: string): Obj[] {
  const out = execFileSync('kubectl', ['kustomize', join(root, dir)], { encoding: 'utf8' })
  const objs = parseAllDocuments(out).map((d) => d.toJS() as Obj).filter(Boolean)
  // kustomize wraps long base64 Secret values over lines; the API server ignores the newlines,
  // the schema's "byte" format does not.
  for (const o of objs) if (o.kind === 'Secret') for (const k of Object.keys(o.data ?? {})) o.data[k] = o.data[k].replace(/\s+/g, '')
  return objs
}

/** The kubernetes-models class for an object (`apps/v1` + `Deployment` → kubernetes-models/apps/v1/Deployment). */
async function modelFor(o: Obj): Promise<new (data: object) => { validate(): void }> {
  const module = o.apiVersion.startsWith('monitoring.coreos.com/')
    ? `@kubernetes-models/prometheus-operator/${o.apiVersion}/${o.kind}`
    : `kubernetes-models/${o.apiVersion}/${o.kind}`
  const m = (await import(module)) as Record<string, new (data: object) => { validate(): void }>
  assert.ok(m[o.kind], `no schema for ${o.apiVersion} ${o.kind}`)
  return m[o.kind]
}

const find = (objs: Obj[], kind: string, name: string) => {
  const o = objs.find((x) => x.kind === kind && (x.metadata.name === name || x.metadata.name.startsWith(`${name}-`)))
  assert.ok(o, `${kind} ${name} is rendered`)
  return o
}
const isOurImage = (image: string) => /(^|\/)switchboard(:|@|$)/.test(image)
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v)

const overlays = { dev: [] as Obj[], prod: [] as Obj[] }
let monitoring: Obj[] = []

before(() => {
  // The overlays use kustomize v4+ fields (labels, patches with targets). Debian bookworm's
  // kubernetes-client is 1.20 (kustomize v2.0.3) and cannot render them: say so plainly.
  const version = execFileSync('kubectl', ['version', '--client'], { encoding: 'utf8' })
  const kustomizeMajor = Number(/Kustomize Version: v(\d+)/.exec(version)?.[1] ?? 0)
  assert.ok(kustomizeMajor >= 4, `kubectl with kustomize >= v4 needed (kubectl 1.21+), found:\n${version}`)
  overlays.dev = kustomize('k8s/overlays/dev')
  overlays.prod = kustomize('k8s/overlays/prod')
  monitoring = kustomize('k8s/monitoring')
})

describe('k8s manifests are valid Kubernetes objects', () => {
  it('every object of both overlays and the monitoring rules passes its schema', async () => {
    for (const o of [...overlays.dev, ...overlays.prod, ...monitoring]) {
      const Model = await modelFor(o)
      assert.doesNotThrow(() => new Model(o).validate(), `${o.kind} ${o.metadata.name}`)
    }
  })

  it('the Secret example validates too, and only dev ships a Secret', async () => {
    const example = parse(read('k8s/base/secret.example.yaml')) as Obj
    const Model = await modelFor(example)
    new Model(example).validate()
    for (const key of Object.keys(example.stringData)) assert.ok(CONFIG_VARIABLES.includes(key), `secret.example: ${key}`)
    assert.equal(overlays.prod.filter((o) => o.kind === 'Secret').length, 0, 'prod expects an external Secret')
    assert.ok(overlays.dev.find((o) => o.kind === 'Secret' && o.metadata.name === 'switchboard-secrets'))
  })

  it('prod points at a Redis Cluster through the ConfigMap (REDIS_CLUSTER_NODES, sharded adapter); dev at one Redis', () => {
    const configOf = (objs: Obj[]) => find(objs, 'ConfigMap', 'switchboard-config').data as Record<string, string>
    const prod = loadConfig({ ...configOf(overlays.prod), JWT_SECRET: 'x'.repeat(32) })
    assert.ok(prod.redisClusterNodes.length >= 3, 'several nodes of the Redis Cluster')
    assert.equal(prod.REDIS_ADAPTER, 'sharded')
    const dev = find(overlays.dev, 'Secret', 'switchboard-secrets')
    assert.ok(dev.data?.REDIS_URL, 'dev: one Redis in the Secret')
    assert.equal(configOf(overlays.dev).REDIS_CLUSTER_NODES, undefined)
  })

  it('prod also scales on connections per pod, a custom metric the adapter values derive from one the node exports', async () => {
    const hpa = find(overlays.prod, 'HorizontalPodAutoscaler', 'switchboard-node')
    const pods = hpa.spec.metrics.find((m: any) => m.type === 'Pods')
    assert.equal(pods?.pods.metric.name, 'switchboard_connections_per_pod')
    assert.equal(pods.pods.target.type, 'AverageValue')
    assert.ok(hpa.spec.metrics.some((m: any) => m.type === 'Resource' && m.resource.name === 'cpu'), 'CPU stays')
    const values = parse(read('k8s/monitoring/prometheus-adapter-values.yaml'))
    const rule = values.rules.custom.find((r: any) => r.name.as === 'switchboard_connections_per_pod')
    assert.ok(rule, 'the adapter exposes the metric the HPA names')
    const exported = await exportedMetricNames()
    const names = [...metricNames(rule.seriesQuery), ...metricNames(rule.metricsQuery.replace(/<<[^>]*>>/g, ''))]
    assert.deepEqual([...new Set(names)], ['switchboard_sockets_connected'])
    assert.ok(exported.has('switchboard_sockets_connected'))
    assert.deepEqual(rule.resources.overrides.pod, { resource: 'pod' })
  })

  it('puts every namespaced object in one namespace', () => {
    for (const objs of Object.values(overlays)) {
      for (const o of objs.filter((x) => x.kind !== 'Namespace')) assert.equal(o.metadata.namespace, 'switchboard', `${o.kind} ${o.metadata.name}`)
    }
  })
})

for (const [overlay, get] of [['dev', () => overlays.dev], ['prod', () => overlays.prod]] as const) {
  describe(`${overlay} overlay stays consistent with the code`, () => {
    const node = () => find(get(), 'Deployment', 'switchboard-node')
    const container = () => node().spec.template.spec.containers.find((c: any) => isOurImage(c.image))
    const config = () => find(get(), 'ConfigMap', 'switchboard-config').data as Record<string, string>

    it('sets only variables config.ts reads (NODE_ENV picks its defaults)', () => {
      const allowed = new Set([...CONFIG_VARIABLES, 'NODE_ENV'])
      for (const o of get().filter((x) => x.spec?.template?.spec)) {
        for (const c of o.spec.template.spec.containers.filter((x: any) => isOurImage(x.image))) {
          for (const e of c.env ?? []) assert.ok(allowed.has(e.name), `${o.metadata.name}: env ${e.name}`)
          for (const from of c.envFrom ?? []) {
            const ref = from.configMapRef ?? from.secretRef
            const source = get().find((x) => (x.kind === 'ConfigMap' || x.kind === 'Secret') && x.metadata.name === ref.name)
            if (!source) continue // the prod Secret is created outside kustomize
            for (const key of Object.keys(source.data ?? {})) assert.ok(allowed.has(key), `${ref.name}: ${key}`)
          }
        }
      }
      const c = container()
      assert.ok(c.envFrom.some((f: any) => f.secretRef?.name === 'switchboard-secrets'))
      assert.equal(c.env.find((e: any) => e.name === 'NODE_ID')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name')
      assert.equal(config().NODE_ENV, 'production')
      assert.equal(config().HOST, '0.0.0.0')
      assert.equal(config().MIGRATE_ON_START, 'false', 'the Job migrates')
      loadConfig({ ...config(), JWT_SECRET: 'x'.repeat(32) }) // the ConfigMap's values pass the node's own validation
    })

    it('listens on PORT and probes routes that exist in health.ts', () => {
      const c = container()
      const port = c.ports.find((p: any) => p.name === 'http')
      assert.equal(String(port.containerPort), config().PORT)
      const routes = new Set([...read('services/chat/src/http/health.ts').matchAll(/app\.get\(\s*'([^']+)'/g)].map((m) => m[1]))
      assert.equal(c.readinessProbe.httpGet.path, '/readyz')
      assert.equal(c.livenessProbe.httpGet.path, '/healthz')
      for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
        assert.ok(routes.has(c[probe].httpGet.path), `${probe} path ${c[probe].httpGet.path} is a route`)
        assert.equal(c[probe].httpGet.port, 'http')
      }
      const annotations = node().spec.template.metadata.annotations
      assert.equal(annotations['prometheus.io/port'], config().PORT)
      assert.ok(routes.has(annotations['prometheus.io/path']))
    })

    it('gives the drain time to finish: grace ≥ preStop sleep + SHUTDOWN_GRACE_MS', () => {
      const sleep = Number(container().lifecycle.preStop.exec.command.at(-1))
      assert.ok(sleep >= 1)
      const graceMs = Number(config().SHUTDOWN_GRACE_MS ?? loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32) }).SHUTDOWN_GRACE_MS)
      const termination = node().spec.template.spec.terminationGracePeriodSeconds
      assert.ok(termination >= sleep + graceMs / 1000, `${termination} s ≥ ${sleep} s + ${graceMs / 1000} s`)
    })

    it('runs locked down: non-root user 1000, read-only root, no privileges, /tmp an emptyDir', () => {
      for (const o of get().filter((x) => x.metadata.labels?.['app.kubernetes.io/part-of'] === 'switchboard' && x.spec?.template?.spec)) {
        const spec = o.spec.template.spec
        if (o.metadata.name === 'redis' || o.metadata.name === 'postgres') continue
        assert.equal(spec.securityContext.runAsNonRoot, true, o.metadata.name)
        assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault', o.metadata.name)
        assert.equal(spec.automountServiceAccountToken, false, o.metadata.name)
        for (const c of spec.containers) {
          assert.equal(c.securityContext.readOnlyRootFilesystem, true, c.name)
          assert.equal(c.securityContext.allowPrivilegeEscalation, false, c.name)
          assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], c.name)
          assert.ok(c.resources.requests && c.resources.limits, `${c.name} resources`)
          const tmp = c.volumeMounts.find((m: any) => m.mountPath === '/tmp')
          assert.ok(spec.volumes.find((v: any) => v.name === tmp.name).emptyDir, `${c.name} /tmp`)
        }
        if (spec.containers.some((c: any) => isOurImage(c.image))) assert.equal(spec.securityContext.runAsUser, 1000)
      }
      assert.equal(find(get(), 'ServiceAccount', 'switchboard').automountServiceAccountToken, false)
    })

    it('autoscales the node Deployment, scales in slowly, and budgets disruptions', () => {
      const hpa = find(get(), 'HorizontalPodAutoscaler', 'switchboard-node')
      assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: node().metadata.name })
      assert.equal(node().spec.replicas, undefined, 'the HPA owns replicas')
      const down = hpa.spec.behavior.scaleDown
      assert.ok(down.stabilizationWindowSeconds >= 600)
      for (const p of down.policies) assert.ok(p.type === 'Pods' && p.value === 1 && p.periodSeconds >= 300, 'one pod per 5 min')
      for (const name of ['switchboard-node', 'switchboard-nginx']) {
        const pdb = find(get(), 'PodDisruptionBudget', name)
        const deployment = find(get(), 'Deployment', name)
        assert.ok(matches(pdb.spec.selector.matchLabels, deployment.spec.template.metadata.labels), `${name} PDB selects its pods`)
      }
    })

    it('exposes the nodes through a headless Service that nginx resolves', () => {
      const svc = find(get(), 'Service', 'switchboard-nodes')
      assert.equal(svc.spec.clusterIP, 'None')
      assert.equal(svc.spec.publishNotReadyAddresses, false)
      assert.ok(matches(svc.spec.selector, node().spec.template.metadata.labels))
      assert.equal(String(svc.spec.ports[0].port), config().PORT)
      const conf = find(get(), 'ConfigMap', 'switchboard-nginx').data['nginx.conf'] as string
      assert.ok(conf.includes(`server ${svc.metadata.name}.${svc.metadata.namespace}.svc.cluster.local:${config().PORT} resolve;`))
      assert.match(conf, /^\s*zone switchboard \d+k;$/m, '`resolve` needs a zone')
      assert.match(conf, /^\s*resolver kube-dns\.kube-system\.svc\.cluster\.local valid=\d+s;$/m)
    })

    it('runs our nginx tier new enough for `resolve`, with the rendered config mounted', () => {
      const nginx = find(get(), 'Deployment', 'switchboard-nginx')
      const spec = nginx.spec.template.spec
      const c = spec.containers[0]
      const [major, minor, patch = 99] = (/^nginx:(\d+)\.(\d+)(?:\.(\d+))?/.exec(c.image) ?? []).slice(1).map(Number)
      assert.ok(major > 1 || minor > 27 || (minor === 27 && patch >= 3), `${c.image} supports server … resolve`)
      const conf = find(get(), 'ConfigMap', 'switchboard-nginx').data['nginx.conf'] as string
      const listen = /^\s*listen (\d+);/m.exec(conf)![1]
      assert.equal(String(c.ports.find((p: any) => p.name === 'http').containerPort), listen)
      const mount = c.volumeMounts.find((m: any) => spec.volumes.find((v: any) => v.name === m.name)?.configMap)
      assert.ok(c.command.join(' ').includes(`-c ${mount.mountPath}/nginx.conf`))
      assert.ok(c.command.join(' ').includes('mkdir -p /tmp/nginx') && conf.includes('pid /tmp/nginx/nginx.pid;'))
      const lb = find(get(), 'Service', 'switchboard-nginx')
      assert.equal(lb.spec.type, 'LoadBalancer')
      assert.equal(lb.spec.externalTrafficPolicy, 'Local')
      assert.ok(matches(lb.spec.selector, nginx.spec.template.metadata.labels))
    })

    it('migrates with a Job that runs the built migrator', () => {
      const job = find(get(), 'Job', 'switchboard-migrate')
      const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: { migrate: { command: string[] } } }
      assert.deepEqual(job.spec.template.spec.containers[0].command, compose.services.migrate.command)
      assert.equal(job.spec.template.spec.restartPolicy, 'OnFailure')
      assert.ok(job.spec.backoffLimit > 0)
    })

    it('lets only nginx and Prometheus reach the nodes', () => {
      const policy = find(get(), 'NetworkPolicy', 'switchboard-node')
      assert.ok(matches(policy.spec.podSelector.matchLabels, node().spec.template.metadata.labels))
      const nginxLabels = find(get(), 'Deployment', 'switchboard-nginx').spec.template.metadata.labels
      const [rule] = policy.spec.ingress
      assert.equal(policy.spec.ingress.length, 1)
      assert.deepEqual(rule.ports, [{ protocol: 'TCP', port: Number(config().PORT) }])
      assert.ok(rule.from.some((f: any) => f.podSelector && matches(f.podSelector.matchLabels, nginxLabels)))
      assert.ok(rule.from.every((f: any) => f.podSelector || f.namespaceSelector), 'no ipBlock')
      const edge = find(get(), 'NetworkPolicy', 'switchboard-nginx')
      assert.deepEqual(edge.spec.ingress, [{ ports: [{ protocol: 'TCP', port: 8080 }] }])
    })
  })
}

describe('k8s/base/nginx.conf', () => {
  it('is nginx/switchboard.conf.template rendered by k8s/render-nginx.mjs', () => {
    const rendered = execFileSync(process.execPath, [join(root, 'k8s/render-nginx.mjs'), '--stdout'], { encoding: 'utf8' })
    assert.equal(read('k8s/base/nginx.conf'), rendered, 'run `node k8s/render-nginx.mjs`')
    assert.doesNotMatch(rendered, /\{\{[A-Z_]+\}\}/)
  })
})

describe('alert rules and runbooks', () => {
  const sections = ['Meaning', 'Impact', 'Diagnosis', 'Mitigation', 'Follow-up']
  const rules = () => monitoring.filter((o) => o.kind === 'PrometheusRule').flatMap((o) => o.spec.groups.flatMap((g: any) => g.rules))
  // kube-state-metrics series the rules may use.
  const kubeMetrics = new Set([
    'kube_pod_container_status_waiting_reason',
    'kube_pod_container_status_restarts_total',
    'kube_deployment_status_replicas_unavailable',
    'kube_horizontalpodautoscaler_status_current_replicas',
    'kube_horizontalpodautoscaler_spec_max_replicas',
  ])

  it('use only metric names the node exports (or up and kube-state-metrics)', async () => {
    const exported = await exportedMetricNames()
    assert.ok(rules().length >= 10)
    for (const rule of rules()) {
      // Every name in the expression, prefixed or not (metric-names.ts).
      const names = metricNames(rule.expr as string)
      assert.ok(names.length > 0, `${rule.alert} uses a metric`)
      for (const n of names) {
        const known = n === 'up' || exported.has(n) || kubeMetrics.has(n)
        assert.ok(known, `${rule.alert}: ${n} is not exported by services/chat/src/metrics.ts`)
      }
    }
  })

  it('label a severity and link a runbook that exists and has every section', () => {
    for (const rule of rules()) {
      assert.match(rule.alert, /^Switchboard[A-Za-z]+$/)
      assert.ok(['critical', 'warning', 'info'].includes(rule.labels?.severity), `${rule.alert} severity`)
      for (const a of ['summary', 'description', 'runbook_url']) assert.ok(rule.annotations?.[a], `${rule.alert} ${a}`)
      const m = /^https:\/\/github\.com\/[\w.-]+\/switchboard\/blob\/main\/(infra\/runbooks\/[a-z0-9-]+\.md)$/.exec(rule.annotations.runbook_url)
      assert.ok(m, `${rule.alert} runbook_url form`)
      assert.ok(existsSync(join(root, m[1])), `${rule.alert}: ${m[1]} exists`)
    }
  })

  it('every runbook has the five sections and the index lists it', () => {
    const index = read('infra/runbooks/README.md')
    const pages = readdirSync(join(root, 'infra/runbooks')).filter((f) => f.endsWith('.md') && f !== 'README.md')
    assert.ok(pages.length >= 10)
    for (const page of pages) {
      const text = read(`infra/runbooks/${page}`)
      const headings = [...text.matchAll(/^## (.+)$/gm)].map((m) => m[1].trim())
      assert.deepEqual(headings, sections, `${page} sections in order`)
      assert.ok(index.includes(`](${page})`), `README links ${page}`)
    }
  })
})
