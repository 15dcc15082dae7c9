import { collectDefaultMetrics, Registry } from 'prom-client'
import { createMetrics } from '../../services/chat/src/metrics.ts'

// Metric names for the alert-rule and dashboard tests: what the node really exports, read from
// its registry, and the names a PromQL expression refers to.

/** Every series name a node exports: histograms add `_bucket`, `_sum`, `_count`; summaries `_sum`, `_count`. */
export async function exportedMetricNames(): Promise<Set<string>> {
  const names = new Set<string>()
  for (const m of await createMetrics('metric-names').registry.getMetricsAsJSON()) {
    names.add(m.name)
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s)
    if (String(m.type) === 'summary') for (const s of ['_sum', '_count']) names.add(m.name + s)
  }
  return names
}

/** The names of prom-client's default metrics (with the node's prefix), as opposed to the app's own. */
export async function defaultMetricNames(): Promise<Set<string>> {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'switchboard_' })
  return new Set((await registry.getMetricsAsJSON()).map((m) => m.name))
}

const NOT_NAMES = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'atan2', 'Inf', 'NaN', 'inf', 'nan'])

/**
 * The metric names a PromQL expression selects (Grafana variables allowed). Not a parser: it
 * drops string literals, Grafana `$variables`, label matchers `{…}`, ranges `[…]` and label
 * lists (`by (…)`, `on (…)`, …); what is left that is an identifier, not a keyword and not
 * called like a function (`rate(`, `sum (`) is a metric name. Every name is reported, with or
 * without the `switchboard_` prefix, so a misspelt or unprefixed one is caught too.
 */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\$\{[^}]*\}|\$\w+/g, '')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '')
  const names: string[] = []
  for (const m of bare.matchAll(/(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?/g)) {
    if (m[2] || NOT_NAMES.has(m[1])) continue
    names.push(m[1])
  }
  return names
}
