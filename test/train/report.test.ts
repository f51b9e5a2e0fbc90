// The curves and the HTML report: Vega-Lite renders them in Node without a
// warning, the loss panel overlays raw / smoothed train loss and eval loss,
// the best checkpoint is marked, both axes are labelled; per-class metrics
// and the confusion matrix follow scikit-learn; the HTML fetches nothing.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { curvesSpec, renderSvg, smoothLosses, perClassMetrics, reportHtml, writeReport, type ReportInput } from '../../lib/train/report.js'
import type { LogEntry } from '../../lib/train/callbacks.js'

function history(steps: number, evalEvery: number): LogEntry[] {
  const h: LogEntry[] = []
  for (let s = 1; s <= steps; s++) {
    h.push({ loss: 0.7 * Math.exp(-s / 20) + 0.05 * Math.sin(s), learningRate: 1e-3, gradNorm: 1, step: s, epoch: s / 20 })
    if (evalEvery && s % evalEvery === 0) h.push({ evalLoss: 0.6 - s / 200, evalAccuracy: 0.5 + s / 100, evalF1: 0.45 + s / 100, evalRuntime: 1, evalSamplesPerSecond: 9, step: s, epoch: s / 20 })
  }
  h.push({ trainLoss: 0.3, trainRuntime: 10, trainSamplesPerSecond: 5, step: steps, epoch: steps / 20 })
  return h
}

const input = (h: LogEntry[], extra: Partial<ReportInput> = {}): ReportInput => ({
  title: 'run', history: h, maxSteps: 40, epochsPerStep: 1 / 20, best: null, config: [['model', 'tiny']], finalMetrics: {}, lastEval: null, ...extra,
})

t.test('smoothing: debiased, the first point is itself', async (t) => {
  t.same(smoothLosses([]), [])
  t.same(smoothLosses([2, 2, 2]), [2, 2, 2])
  const s = smoothLosses(Array.from({ length: 100 }, (_, i) => (i % 2 ? 1 : 0)))
  t.equal(s[0], 0)
  t.ok(Math.abs(s[99] - 0.5) < 0.1, `smoothed ${s[99]} sits near the mean`)
})

t.test('curves: loss overlay, eval metrics, best checkpoint, step and epoch axes, no warnings', async (t) => {
  const { svg, warnings } = await renderSvg(curvesSpec(input(history(40, 10), { best: { step: 30, metric: 'evalF1', value: 0.75 } })))
  t.same(warnings, [], 'Vega-Lite and Vega warn of nothing')
  for (const text of ['Loss', 'Evaluation metrics', 'train loss (raw)', 'train loss (smoothed)', 'eval loss', 'accuracy', 'f1', 'step', 'epoch', 'best: f1 0.7500 @ step 30']) {
    t.ok(svg.includes(`>${text}<`), `the picture says "${text}"`)
  }
  t.notOk(/>(trainLoss|evalRuntime|learningRate|gradNorm)</.test(svg), 'no panel for run totals, runtimes, lr or grad norm')
  const ticks = [...svg.matchAll(/role-axis-label.*?<\/g>/gs)].length
  t.ok(ticks >= 4, `${ticks} labelled axes (step and epoch on each panel)`)
})

t.test('curves of a run with one logging point and no evaluation still render', async (t) => {
  const { svg, warnings } = await renderSvg(curvesSpec(input([{ loss: 0.5, step: 534, epoch: 1 }], { maxSteps: 534, epochsPerStep: 1 / 534 })))
  t.same(warnings, [])
  t.ok(svg.includes('>Loss<') && !svg.includes('>Evaluation metrics<'), 'the loss panel alone')
})

t.test('per-class metrics and the confusion matrix', async (t) => {
  // y = [0,0,1,1,2,2], ŷ = [0,1,1,1,0,2] → class 0: P 1/2 R 1/2; class 1: P 2/3 R 1; class 2: P 1 R 1/2.
  const m = perClassMetrics({ labels: Int32Array.from([0, 0, 1, 1, 2, 2]), predicted: Int32Array.from([0, 1, 1, 1, 0, 2]), numLabels: 3, labelNames: ['neg', 'neu', 'pos'] })
  t.same(m.matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
  const close = (a: number, b: number) => Math.abs(a - b) < 1e-12
  t.ok(close(m.rows[0].precision, 0.5) && close(m.rows[0].recall, 0.5) && close(m.rows[0].f1, 0.5))
  t.ok(close(m.rows[1].precision, 2 / 3) && close(m.rows[1].recall, 1) && close(m.rows[1].f1, 0.8))
  t.ok(close(m.rows[2].precision, 1) && close(m.rows[2].recall, 0.5) && close(m.rows[2].f1, 2 / 3))
  t.same(m.rows.map((r) => [r.label, r.support]), [['neg', 2], ['neu', 2], ['pos', 2]])
  const never = perClassMetrics({ labels: Int32Array.from([0, 0]), predicted: Int32Array.from([0, 0]), numLabels: 2, labelNames: null })
  t.same([never.rows[1].precision, never.rows[1].recall, never.rows[1].f1, never.rows[1].label], [0, 0, 0, '1'], 'a class never seen nor predicted: zero_division 0')
})

t.test('report.html: configuration, metrics, curves, per-class table, confusion matrix; fetches nothing', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-report-'))
  const lastEval = { labels: Int32Array.from([0, 1, 1, 0]), predicted: Int32Array.from([0, 1, 0, 0]), numLabels: 2, labelNames: ['neg', 'pos'] }
  const r = await writeReport(dir, input(history(40, 10), { finalMetrics: { evalF1: 0.85, trainLoss: 0.3 }, lastEval, config: [['dataset', 'a <b> & c']] }))
  t.same(r.warnings, [])
  const html = readFileSync(r.html, 'utf8')
  for (const h of ['Configuration', 'Final metrics', 'Curves', 'Per class (last evaluation, 4 rows)', 'Confusion matrix']) t.ok(html.includes(`<h2>${h}</h2>`), h)
  t.ok(html.includes('a &lt;b&gt; &amp; c'), 'text is escaped')
  t.ok(html.includes('<svg'), 'the curves are inline')
  t.notOk(/<script|\bsrc=|<link|@import|url\(/i.test(html), 'no script, no external resource')
  t.equal(readFileSync(r.svg, 'utf8').slice(0, 4), '<svg')
  t.match(reportHtml(input([]), '<svg></svg>'), /<h2>Curves<\/h2>/)
  rmSync(dir, { recursive: true, force: true })
})
