// The run as pictures: training_curves.svg (train loss at every logging step,
// raw and smoothed, with the eval loss on one panel; eval metrics on a
// second; the best checkpoint marked; step and epoch axes) and report.html,
// one self-contained file with the run's configuration, final metrics, the
// curves, per-class precision / recall / F1 and the confusion matrix of the
// last evaluation. The charts are Vega-Lite specifications rendered to SVG
// by Vega in Node (no browser, no canvas), loaded only when a report is made.
import type { LogEntry } from './callbacks.js'
import { atomicWriteFile } from '../hub/safetensors.js'
import { join } from 'node:path'

export interface LastEvaluation {
  labels: Int32Array
  predicted: Int32Array
  numLabels: number
  /** id2label of the model, when it names its classes. */
  labelNames: string[] | null
}

export interface ReportInput {
  title: string
  history: LogEntry[]
  maxSteps: number
  /** Epochs per optimizer step (1 / steps per epoch): the epoch axis. */
  epochsPerStep: number
  best: { step: number; metric: string; value: number } | null
  /** Rows of the configuration table (name → value). */
  config: Array<[string, string]>
  finalMetrics: Record<string, number>
  lastEval: LastEvaluation | null
}

type Row = { step: number; series: string; value: number }

const SERIES_COLORS: Array<[string, string]> = [
  ['train loss (raw)', '#9ecae9'], ['train loss (smoothed)', '#1f77b4'], ['eval loss', '#ff7f0e'],
]
const METRIC_COLORS = ['#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f']

const isEvalMetric = (k: string) => /^eval[A-Z]/.test(k) && k !== 'evalLoss' && !/(Runtime|PerSecond)$/.test(k)
const displayName = (k: string) => {
  const s = k.replace(/^eval/, '')
  return s.charAt(0).toLowerCase() + s.slice(1)
}

/**
 * Exponential smoothing as TensorBoard's slider does it, debiased so the
 * first point is itself; the weight follows the number of points, so about a
 * tenth of the run is averaged.
 */
export function smoothLosses(values: number[]): number[] {
  const beta = Math.max(0, 1 - 10 / Math.max(1, values.length))
  let m = 0, w = 0
  return values.map((v) => {
    m = beta * m + (1 - beta) * v
    w = beta * w + (1 - beta)
    return m / w
  })
}

/** Steps at which the epoch axis has a tick: every epoch, or every quarter / tenth of one for short runs. */
function epochTickSteps(maxEpoch: number, epochsPerStep: number): number[] {
  const every = maxEpoch >= 4 ? Math.ceil(maxEpoch / 10) : maxEpoch >= 1 ? 0.25 : 0.1
  const ticks: number[] = []
  for (let e = 0; e <= maxEpoch + 1e-9; e += every) ticks.push(Math.round((e / epochsPerStep) * 1e6) / 1e6)
  return ticks
}

/** The Vega-Lite specification of the two panels (the second only when something was evaluated). */
export function curvesSpec(input: ReportInput): Record<string, unknown> {
  const train = input.history.filter((e) => e.loss !== undefined && Number.isFinite(e.loss))
  const smooth = smoothLosses(train.map((e) => e.loss))
  const lossRows: Row[] = [
    ...train.map((e) => ({ step: e.step, series: 'train loss (raw)', value: e.loss })),
    ...train.map((e, i) => ({ step: e.step, series: 'train loss (smoothed)', value: smooth[i] })),
    ...input.history.filter((e) => e.evalLoss !== undefined).map((e) => ({ step: e.step, series: 'eval loss', value: e.evalLoss })),
  ]
  const metricKeys = [...new Set(input.history.flatMap((e) => Object.keys(e).filter(isEvalMetric)))]
  const metricRows: Row[] = input.history.flatMap((e) => metricKeys.filter((k) => e[k] !== undefined && Number.isFinite(e[k])).map((k) => ({ step: e.step, series: displayName(k), value: e[k] })))
  const maxStep = Math.max(1, input.maxSteps, ...input.history.map((e) => e.step))
  const maxEpoch = maxStep * input.epochsPerStep
  const width = 720, height = 250
  const stepAxis = { title: 'step', grid: true, tickMinStep: 1, format: 'd', labelFontSize: 11, titleFontSize: 12 }
  const stepScale = { domain: [0, maxStep], nice: false, zero: true }
  // The epoch axis: a second axis on the step scale, at whole (or quarter) epochs, labelled in epochs.
  const epochTicks = epochTickSteps(maxEpoch, input.epochsPerStep)
  const epochLayer = {
    data: { values: [{ step: 0 }, { step: maxStep }] },
    mark: { type: 'rule', opacity: 0 },
    encoding: {
      x: { field: 'step', type: 'quantitative', scale: stepScale,
        axis: { orient: 'top', title: 'epoch', grid: false, values: epochTicks, labelExpr: `format(datum.value * ${input.epochsPerStep}, '.2~f')`, labelFontSize: 11, titleFontSize: 12 } },
    },
  }
  const bestLayers = (y0: number) => input.best === null ? [] : [{
    data: { values: [{ step: input.best.step, label: `best: ${displayName(input.best.metric.startsWith('eval') ? input.best.metric : 'eval' + input.best.metric)} ${input.best.value.toFixed(4)} @ step ${input.best.step}` }] },
    layer: [
      { mark: { type: 'rule', strokeDash: [6, 4], color: '#2ca02c', strokeWidth: 1.5 }, encoding: { x: { field: 'step', type: 'quantitative', scale: stepScale, axis: null } } },
      { mark: { type: 'text', align: 'right', dx: -4, y: y0, fontSize: 11, color: '#2ca02c' }, encoding: { x: { field: 'step', type: 'quantitative', scale: stepScale, axis: null }, text: { field: 'label' } } },
    ],
  }]
  const panel = (title: string, rows: Row[], marks: Record<string, unknown>[]) => ({
    title: { text: title, anchor: 'start', fontSize: 14 },
    width, height,
    layer: [{ data: { values: rows }, layer: marks }, ...bestLayers(8), epochLayer],
    resolve: { axis: { x: 'independent' } },
  })
  const color = (colors: Array<[string, string]>) => ({
    field: 'series', type: 'nominal', title: null,
    scale: { domain: colors.map((c) => c[0]), range: colors.map((c) => c[1]) },
    legend: { orient: 'right', labelFontSize: 11, symbolType: 'stroke', labelLimit: 260 },
  })
  const lineMarks = (colors: Array<[string, string]>, yTitle: string) => {
    const encoding = {
      x: { field: 'step', type: 'quantitative', scale: stepScale, axis: stepAxis },
      y: { field: 'value', type: 'quantitative', title: yTitle, scale: { zero: false, nice: true }, axis: { grid: true, tickCount: 6, labelFontSize: 11, titleFontSize: 12 } },
      color: color(colors),
      tooltip: [{ field: 'series' }, { field: 'step' }, { field: 'value', format: '.4f' }],
    }
    // A layer only for series that have rows: an empty layer makes Vega warn of an infinite extent.
    const layer = (names: string[], mark: Record<string, unknown>) => names.length === 0 ? [] : [{
      transform: [{ filter: { field: 'series', oneOf: names } }], mark, encoding,
    }]
    const present = colors.map((c) => c[0])
    const smoothed = present.filter((n) => n === 'train loss (smoothed)')
    const evaluated = present.filter((n) => !n.startsWith('train loss'))
    return [
      ...layer(present.filter((n) => n !== 'train loss (smoothed)'), { type: 'line', strokeWidth: 1.5 }),
      ...layer(smoothed, { type: 'line', strokeWidth: 2.5 }),
      ...layer(evaluated, { type: 'point', filled: true, size: 40 }),
    ]
  }
  const lossColors = SERIES_COLORS.filter(([name]) => lossRows.some((r) => r.series === name))
  const panels = [panel('Loss', lossRows, lineMarks(lossColors, 'loss'))]
  if (metricRows.length) {
    const colors: Array<[string, string]> = metricKeys.map((k, i) => [displayName(k), METRIC_COLORS[i % METRIC_COLORS.length]])
    panels.push(panel('Evaluation metrics', metricRows, lineMarks(colors, 'metric')))
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    padding: 12,
    vconcat: panels,
    spacing: 28,
    resolve: { scale: { color: 'independent' }, legend: { color: 'independent' } },
    config: { font: 'DejaVu Sans, Helvetica, Arial, sans-serif', view: { stroke: '#ccc' }, axis: { gridColor: '#e6e6e6' } },
  }
}

/**
 * A Vega-Lite specification rendered to an SVG document, with the warnings
 * Vega-Lite and Vega gave (collected rather than printed in the middle of a run).
 */
export async function renderSvg(spec: Record<string, unknown>): Promise<{ svg: string; warnings: string[] }> {
  // ES modules: import() loads them from this CommonJS build on every Node version bertkit supports.
  const [vega, vl] = await Promise.all([import('vega'), import('vega-lite')])
  const warnings: string[] = []
  interface Logger {
    level(): Logger
    warn(...m: unknown[]): Logger
    error(...m: unknown[]): Logger
    info(): Logger
    debug(): Logger
  }
  const logger: Logger = {
    level: () => logger,
    warn: (...m) => {
      warnings.push(m.join(' '))
      return logger
    },
    error: (...m) => {
      throw new Error(m.join(' '))
    },
    info: () => logger,
    debug: () => logger,
  }
  const compiled = vl.compile(spec as never, { logger: logger as never }).spec
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logger: logger as never, logLevel: vega.Warn })
  try {
    return { svg: await view.toSVG(), warnings }
  } finally {
    view.finalize()
  }
}

/** Confusion matrix [true][predicted] and per-class precision / recall / F1 / support (scikit-learn's zero_division=0). */
export function perClassMetrics(e: LastEvaluation): { matrix: number[][]; rows: Array<{ label: string; precision: number; recall: number; f1: number; support: number }> } {
  const k = e.numLabels
  const matrix = Array.from({ length: k }, () => new Array<number>(k).fill(0))
  for (let i = 0; i < e.labels.length; i++) {
    const y = e.labels[i], p = e.predicted[i]
    if (y >= 0 && y < k && p >= 0 && p < k) matrix[y][p]++
  }
  const rows = matrix.map((row, c) => {
    const tp = row[c]
    const support = row.reduce((a, b) => a + b, 0)
    const predicted = matrix.reduce((a, r) => a + r[c], 0)
    const precision = predicted ? tp / predicted : 0
    const recall = support ? tp / support : 0
    const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0
    return { label: e.labelNames?.[c] ?? String(c), precision, recall, f1, support }
  })
  return { matrix, rows }
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)

function table(header: string[], rows: string[][], numericFrom = 1): string {
  const th = header.map((h) => `<th>${escapeHtml(h)}</th>`).join('')
  const body = rows.map((r) => `<tr>${r.map((c, i) => `<td${i >= numericFrom ? ' class="num"' : ''}>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n')
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table>`
}

function confusionTable(matrix: number[][], names: string[]): string {
  const max = Math.max(1, ...matrix.flat())
  const head = `<tr><th class="corner">true \\ predicted</th>${names.map((n) => `<th>${escapeHtml(n)}</th>`).join('')}</tr>`
  const rows = matrix.map((row, i) => `<tr><th>${escapeHtml(names[i])}</th>${row.map((v, j) => {
    const shade = Math.round(255 - (v / max) * 170)
    const fill = i === j ? `rgb(${shade},${Math.min(255, shade + 40)},${shade})` : `rgb(255,${shade},${shade})`
    return `<td class="num" style="background:${fill}">${v}</td>`
  }).join('')}</tr>`).join('\n')
  return `<table class="confusion">${head}\n${rows}</table>`
}

/** report.html: everything inline (styles and SVG), no script, nothing fetched. */
export function reportHtml(input: ReportInput, curvesSvg: string): string {
  const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(4))
  const metrics = Object.entries(input.finalMetrics).filter(([k]) => k !== 'epoch')
  const sections: string[] = []
  sections.push(`<h2>Configuration</h2>\n${table(['setting', 'value'], input.config.map(([k, v]) => [k, v]), 2)}`)
  if (metrics.length) sections.push(`<h2>Final metrics</h2>\n${table(['metric', 'value'], metrics.map(([k, v]) => [k, fmt(v)]))}`)
  sections.push(`<h2>Curves</h2>\n<div class="chart">${curvesSvg.replace(/^<\?xml[^>]*>\s*/, '')}</div>`)
  if (input.lastEval && input.lastEval.labels.length) {
    const { matrix, rows } = perClassMetrics(input.lastEval)
    const names = rows.map((r) => r.label)
    sections.push(`<h2>Per class (last evaluation, ${input.lastEval.labels.length} rows)</h2>\n${table(['class', 'precision', 'recall', 'F1', 'support'], rows.map((r) => [r.label, r.precision.toFixed(4), r.recall.toFixed(4), r.f1.toFixed(4), String(r.support)]))}`)
    sections.push(`<h2>Confusion matrix</h2>\n${confusionTable(matrix, names)}`)
  }
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(input.title)}</title>
<style>
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:24px auto;max-width:980px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 10px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}thead th{background:#f4f4f4}
table.confusion th{background:#f4f4f4}table.confusion td{min-width:56px}th.corner{font-weight:normal;color:#666}
.chart svg{max-width:100%;height:auto}.sub{color:#666;font-size:13px}
</style></head><body>
<h1>${escapeHtml(input.title)}</h1>
<div class="sub">written by bertkit at ${escapeHtml(new Date().toISOString())}</div>
${sections.join('\n')}
</body></html>
`
}

/** Writes training_curves.svg and report.html into dir. */
export async function writeReport(dir: string, input: ReportInput): Promise<{ svg: string; html: string; warnings: string[] }> {
  const { svg: svgText, warnings } = await renderSvg(curvesSpec(input))
  const svg = join(dir, 'training_curves.svg')
  const html = join(dir, 'report.html')
  atomicWriteFile(svg, svgText)
  atomicWriteFile(html, reportHtml(input, svgText))
  return { svg, html, warnings }
}
