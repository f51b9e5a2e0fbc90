// Losses with float targets, as transformers computes them
// (test/fixtures/generators/make_parity_fixtures.py): multi-label BCEWithLogits with
// probability targets in [0, 1] for every family, and DeBERTa's soft-label
// cross-entropy (float label vectors, problem_type unset). Logits, loss and
// gradients; then the binaryCrossEntropyWithLogits / softTargetCrossEntropy
// ops alone against float64 formulas and finite differences, and bad targets.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { AutoModelForSequenceClassification, tensor, tidy, type Tensor } from '../../lib/index.js'
import { binaryCrossEntropyWithLogits, softTargetCrossEntropy } from '../../lib/tensor/ops.js'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { goldenIds, relErr } from '../helpers/golden.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures')
const meta = JSON.parse(readFileSync(join(fixtures, 'parity', 'soft_targets.json'), 'utf8')) as Record<string, { base: string; problem_type: string | null; grads: string[] }>
const expected = readSafetensors(join(fixtures, 'parity', 'soft_targets.safetensors')).tensors


for (const [name, m] of Object.entries(meta)) {
  if (name === 'versions') continue
  t.test(`${name}: loss and gradients equal transformers'`, async (t) => {
    const dir = join(fixtures, m.base)
    const model = await AutoModelForSequenceClassification.fromPretrained(dir, { problemType: (m.problem_type ?? undefined) as never })
    if (m.problem_type === null) t.equal(model.config.problem_type, null, 'problem_type unset: DeBERTa\'s own choice of loss')
    const labels = expected.get(`${name}/labels`)!
    const params = new Map<string, Tensor>(model.namedParameters())
    const got = tidy(() => {
      const out = model.forward({ ...goldenIds(dir), labels: tensor(labels.data as Float32Array, { shape: labels.shape }) } as never)
      out.loss!.backward()
      return { logits: out.logits.toFloat32Array(), loss: out.loss!.toFloat32Array() }
    })
    const want = (k: string) => expected.get(`${name}/${k}`)!.data as Float32Array
    t.ok(relErr(got.logits, want('logits')) <= 1e-5, 'logits')
    const lossErr = relErr(got.loss, want('loss'))
    t.ok(lossErr <= 1e-5, `loss ${got.loss[0]} vs ${want('loss')[0]} (rel ${lossErr.toExponential(1)})`)
    for (const g of m.grads) {
      const e = relErr(params.get(g)!.grad!.toFloat32Array(), want(`grad.${g}`))
      t.ok(e <= 1e-4, `gradient of ${g} (rel ${e.toExponential(1)})`)
    }
    model.dispose()
  })
}

// ---- the ops alone -------------------------------------------------------------------------

const bce64 = (x: number[], y: number[]) => x.reduce((s, v, i) => s + Math.max(v, 0) - v * y[i] + Math.log1p(Math.exp(-Math.abs(v))), 0) / x.length
function softCe64(x: number[], y: number[], classes: number): number {
  let s = 0
  for (let r = 0; r < x.length / classes; r++) {
    const row = x.slice(r * classes, (r + 1) * classes)
    const max = Math.max(...row)
    const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0))
    row.forEach((v, c) => { s -= y[r * classes + c] * (v - lse) })
  }
  return s / (x.length / classes)
}

t.test('binaryCrossEntropyWithLogits and softTargetCrossEntropy against float64 and finite differences', async (t) => {
  const x = [0.3, -2.5, 40, -40, 1e-3, 7.5, -0.75, 2]
  const y = [0.2, 1, 0, 0.5, 0.999, 1, 0, 0.35]
  for (const [op, ref] of [[binaryCrossEntropyWithLogits, (v: number[]) => bce64(v, y)], [softTargetCrossEntropy, (v: number[]) => softCe64(v, y, 4)]] as const) {
    const logits = tensor(Float32Array.from(x), { shape: [2, 4], requiresGrad: true })
    const loss = op(logits, Float32Array.from(y))
    const value = loss.toFloat32Array()[0]
    t.ok(Math.abs(value - ref(x)) <= 1e-6 * Math.abs(ref(x)), `${op.name}: ${value} vs float64 ${ref(x)}`)
    loss.backward()
    const grad = logits.grad!.toFloat32Array()
    const h = 1e-4
    const fd = x.map((_, i) => (ref(x.map((v, j) => (j === i ? v + h : v))) - ref(x.map((v, j) => (j === i ? v - h : v)))) / (2 * h))
    t.ok(grad.every((g, i) => Math.abs(g - fd[i]) <= 1e-5), `${op.name}: gradient = finite differences (${Array.from(grad, (g) => g.toFixed(5)).join(', ')})`)
    loss.dispose()
    logits.dispose()
  }
})

t.test('multi-label targets outside [0, 1] are refused, naming the element', async (t) => {
  const model = await AutoModelForSequenceClassification.fromPretrained(join(fixtures, 'bert', 'multi_label'))
  const ids = tensor(new Int32Array([2, 5, 7, 2, 6, 3]), { shape: [2, 3], dtype: 'int32' })
  for (const [bad, shown] of [[1.5, '1.5'], [-0.25, '-0.25'], [NaN, 'NaN']] as const) {
    const labels = tensor(Float32Array.of(0, 1, 0.5, 1, 0, bad), { shape: [2, 3] })
    t.throws(() => model.forward({ inputIds: ids, labels }), new RegExp(`multi-label targets must be probabilities in \\[0, 1\\], got ${shown} at \\[1, 2\\]`))
    labels.dispose()
  }
  ids.dispose()
  model.dispose()
})
