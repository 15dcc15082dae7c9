import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'
import { defaultMetricNames, exportedMetricNames, metricNames } from './metric-names.ts'

// The Grafana dashboard (k8s/monitoring/grafana/) against the metrics the node really exports
// and the kustomizations that ship it. Needs `kubectl` with kustomize v4+ (as k8s.test.ts).

const root = fileURLToPath(new URL('../..', import.meta.url))
const DASHBOARD = 'k8s/monitoring/grafana/switchboard-dashboard.json'
const CONFIGMAP = 'switchboard-grafana-dashboard'

type Target = { expr?: string; refId: string; datasource?: { uid?: string } }
type Panel = { id: number; type: string; title: string; gridPos: { x: number; y: number; w: number; h: number }; datasource?: { type?: string; uid?: string }; targets?: Target[]; panels?: Panel[] }
type Variable = { name: string; type: string; query?: unknown; definition?: string; multi?: boolean; includeAll?: boolean }

const dashboard = JSON.parse(readFileSync(join(root, DASHBOARD), 'utf8')) as { uid: string; title: string; panels: Panel[]; templating: { list: Variable[] } }
const allPanels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])])
const graphs = allPanels.filter((p) => p.type !== 'row')
const queries = graphs.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr ?? '' })))
const variable = (name: string) => dashboard.templating.list.find((v) => v.name === name)
const variableQuery = (v: Variable) => (typeof v.query === 'string' ? v.query : (v.query as { query: string }).query)

function kustomize(dir: string) {
  const out = execFileSync('kubectl', ['kustomize', join(root, dir)], { encoding: 'utf8' })
  return parseAllDocuments(out).map((d) => d.toJS()).filter(Boolean) as { kind: string; metadata: any; data?: Record<string, string> }[]
}

let exported = new Set<string>()
before(async () => {
  exported = await exportedMetricNames()
})

describe('Grafana dashboard', () => {
  it('parses, has a stable uid, a Prometheus data source variable and a multi-value node variable', () => {
    assert.equal(dashboard.uid, 'switchboard-overview')
    assert.equal(dashboard.title, 'Switchboard')
    const ds = variable('datasource')
    assert.ok(ds, 'a datasource variable')
    assert.equal(ds.type, 'datasource')
    assert.equal(ds.query, 'prometheus')
    const node = variable('node')
    assert.ok(node, 'a node variable')
    assert.equal(node.type, 'query')
    assert.ok(node.multi && node.includeAll, 'node: multi-value with All')
    const m = /^label_values\((\w+),\s*node\)$/.exec(variableQuery(node))
    assert.ok(m, `node variable query: ${variableQuery(node)}`)
    assert.ok(exported.has(m[1]), `node variable reads ${m[1]}, which the node exports`)
  })

  it('lays out unique panels on the 24-column grid without overlaps, every one on the data source variable', () => {
    assert.ok(graphs.length >= 20, `${graphs.length} panels`)
    assert.equal(new Set(allPanels.map((p) => p.id)).size, allPanels.length, 'unique panel ids')
    const cells = new Set<string>()
    for (const p of allPanels) {
      const { x, y, w, h } = p.gridPos
      assert.ok(x >= 0 && w > 0 && h > 0 && x + w <= 24, `${p.title} fits the grid`)
      for (let i = x; i < x + w; i++) for (let j = y; j < y + h; j++) {
        assert.ok(!cells.has(`${i},${j}`), `${p.title} overlaps another panel at ${i},${j}`)
        cells.add(`${i},${j}`)
      }
    }
    for (const p of graphs) {
      assert.equal(p.datasource?.uid, '${datasource}', `${p.title} datasource`)
      assert.ok(p.targets?.length, `${p.title} has queries`)
      for (const t of p.targets ?? []) {
        assert.ok(t.expr?.trim(), `${p.title} ${t.refId} has an expression`)
        assert.equal(t.datasource?.uid, '${datasource}', `${p.title} ${t.refId} datasource`)
      }
    }
  })

  it('queries only metric names the node exports', () => {
    const unknown = queries.flatMap(({ panel, expr }) => metricNames(expr).filter((n) => !exported.has(n)).map((n) => `${panel}: ${n}`))
    assert.deepEqual(unknown, [], 'names not exported by services/chat/src/metrics.ts')
  })

  it("graphs every one of the app's own metrics, and the event-loop lag", async () => {
    const defaults = await defaultMetricNames()
    const used = new Set(queries.flatMap(({ expr }) => metricNames(expr)).map((n) => n.replace(/_(bucket|sum|count)$/, '')))
    const own = [...exported].filter((n) => !defaults.has(n) && !/_(bucket|sum|count)$/.test(n))
    assert.ok(own.length >= 20)
    const missing = [...own, 'switchboard_nodejs_eventloop_lag_p99_seconds'].filter((n) => !used.has(n))
    assert.deepEqual(missing, [], 'metrics with no panel')
  })

  it('shows p50 and p99 of the ack, batch size and commit latency histograms', () => {
    for (const h of ['switchboard_ack_seconds', 'switchboard_db_batch_size', 'switchboard_db_batch_seconds']) {
      for (const q of ['0.5', '0.99']) {
        const found = queries.some(({ expr }) => expr.includes(`histogram_quantile(${q},`) && metricNames(expr).includes(`${h}_bucket`))
        assert.ok(found, `histogram_quantile(${q}) of ${h}`)
      }
    }
  })

  it('filters every series on $node and rates over $__rate_interval', () => {
    for (const { panel, expr } of queries) {
      for (const m of expr.matchAll(/\bswitchboard_\w+(\{[^}]*\})?/g)) {
        assert.ok(m[1]?.includes('node=~"$node"'), `${panel}: ${m[0]} filters node=~"$node"`)
      }
      for (const m of expr.matchAll(/\b(?:rate|irate|increase)\([^[]*\[([^\]]*)\]/g)) {
        assert.equal(m[1], '$__rate_interval', `${panel}: ${m[0]}`)
      }
    }
  })
})

describe('Grafana dashboard ConfigMap', () => {
  for (const dir of ['k8s/overlays/dev', 'k8s/monitoring']) {
    it(`${dir} renders it for the kube-prometheus-stack sidecar, with the JSON as is`, () => {
      const maps = kustomize(dir).filter((o) => o.kind === 'ConfigMap' && o.metadata.labels?.grafana_dashboard === '1')
      assert.equal(maps.length, 1, 'one ConfigMap labelled grafana_dashboard: "1"')
      const [map] = maps
      assert.equal(map.metadata.name, CONFIGMAP, 'a fixed name, no hash suffix')
      assert.equal(map.metadata.namespace, 'switchboard')
      const files = Object.keys(map.data ?? {})
      assert.deepEqual(files, ['switchboard-dashboard.json'])
      assert.deepEqual(JSON.parse(map.data![files[0]]), dashboard)
      // kubectl apply keeps a copy in an annotation, and annotations are limited to 256 KiB.
      assert.ok(Buffer.byteLength(map.data![files[0]]) < 200 * 1024, 'small enough for kubectl apply')
    })
  }
})
