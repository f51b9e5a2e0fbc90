// Classification heads: bmm, masked mean and max pooling against float64
// references and finite differences; BertForSequenceClassification with
// classifier_pooling cls / mean / max against a float64 head on its own hidden
// states; the field saved to and reloaded from config.json.
import t from 'tap'
import { mkdtempSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import {
  BertForSequenceClassification, BertConfig, tensor, tidy, noGrad, keep, sum, mul, bmm, maskedMeanPool, maskedMaxPool, type Tensor,
} from '../../lib/index.js'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { randomArray, compare, rng } from '../helpers/reference.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'bert')

function leaf(values: ArrayLike<number>, shape: number[]): Tensor {
  return keep(tensor(Float32Array.from(values), { shape, requiresGrad: true }))
}

/** d/dx of sum(f(x) ⊙ r) by central differences in float32, at a few coordinates. */
function finiteDifferences(f: (x: Tensor) => Tensor, x0: Float32Array, shape: number[], r: Float32Array, coords: number[], eps: number): number[] {
  const loss = (values: Float32Array) => noGrad(() => tidy(() => {
    const x = tensor(values, { shape })
    return sum(mul(f(x), tensor(r, { shape: f(x).shape }))).item()
  }))
  return coords.map((i) => {
    const plus = Float32Array.from(x0), minus = Float32Array.from(x0)
    plus[i] += eps
    minus[i] -= eps
    return (loss(plus) - loss(minus)) / (2 * eps)
  })
}

function gradientOf(f: (x: Tensor) => Tensor, x0: Float32Array, shape: number[], r: Float32Array): Float32Array {
  const x = leaf(x0, shape)
  tidy(() => {
    const y = f(x)
    sum(mul(y, tensor(r, { shape: y.shape }))).backward()
  })
  const g = x.grad!.toFloat32Array()
  x.dispose()
  return g
}

function pick(n: number, count: number, seed: number): number[] {
  const r = rng(seed)
  return Array.from({ length: count }, () => Math.floor(r() * n))
}

t.test('bmm: float64 reference, gradients, finite differences', (t) => {
  const [B, m, k, n] = [3, 2, 5, 4]
  const a0 = randomArray(B * m * k, 1), b0 = randomArray(B * k * n, 2), r0 = randomArray(B * m * n, 3)
  const ref = new Float64Array(B * m * n)
  const ga = new Float64Array(B * m * k), gb = new Float64Array(B * k * n)
  for (let z = 0; z < B; z++) {
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let s = 0
      for (let p = 0; p < k; p++) s += a0[z * m * k + i * k + p] * b0[z * k * n + p * n + j]
      ref[z * m * n + i * n + j] = s
      for (let p = 0; p < k; p++) {
        ga[z * m * k + i * k + p] += r0[z * m * n + i * n + j] * b0[z * k * n + p * n + j]
        gb[z * k * n + p * n + j] += r0[z * m * n + i * n + j] * a0[z * m * k + i * k + p]
      }
    }
  }
  const a = leaf(a0, [B, m, k]), b = leaf(b0, [B, k, n])
  tidy(() => {
    const y = bmm(a, b)
    t.same(y.shape, [B, m, n])
    const c = compare(y.toFloat32Array(), ref, 1e-6, 1e-6)
    t.ok(c.ok, `forward: ${c.message}`)
    sum(mul(y, tensor(Float32Array.from(r0), { shape: [B, m, n] }))).backward()
  })
  const cA = compare(a.grad!.toFloat32Array(), ga, 1e-5, 1e-6), cB = compare(b.grad!.toFloat32Array(), gb, 1e-5, 1e-6)
  t.ok(cA.ok, `d/da: ${cA.message}`)
  t.ok(cB.ok, `d/db: ${cB.message}`)
  const bFixed = tensor(Float32Array.from(b0), { shape: [B, k, n] })
  const coords = pick(B * m * k, 8, 4)
  const fd = finiteDifferences((x) => bmm(x, bFixed), Float32Array.from(a0), [B, m, k], Float32Array.from(r0), coords, 1e-2)
  const c = compare(fd, coords.map((i) => ga[i]), 1e-3, 1e-3)
  t.ok(c.ok, `finite differences: ${c.message}`)
  t.throws(() => bmm(a, a), /bmm: cannot multiply \[3, 2, 5\] by \[3, 2, 5\]/)
  for (const x of [a, b, bFixed]) x.dispose()
  t.end()
})

// Rows of different real lengths; padding deliberately holds the largest values.
const [B, S, D] = [3, 5, 4]
const lengths = [5, 2, 3]
const maskValues = Int32Array.from({ length: B * S }, (_, i) => (i % S < lengths[Math.floor(i / S)] ? 1 : 0))

function hiddenValues(): Float32Array {
  // Distinct values at least 0.05 apart per feature, so finite differences never cross an arg-max tie.
  const r = rng(7)
  const h = new Float32Array(B * S * D)
  for (let b = 0; b < B; b++) for (let d = 0; d < D; d++) {
    const order = Array.from({ length: S }, (_, s) => s).sort(() => r() - 0.5)
    for (let s = 0; s < S; s++) {
      h[(b * S + s) * D + d] = maskValues[b * S + s] ? Math.fround(order[s] * 0.2 - 0.5 + 0.01 * r()) : 10 + s
    }
  }
  return h
}

t.test('maskedMeanPool: float64 reference, gradients, finite differences', (t) => {
  const h0 = hiddenValues(), r0 = Float32Array.from(randomArray(B * D, 8))
  const ref = new Float64Array(B * D), grad = new Float64Array(B * S * D)
  for (let b = 0; b < B; b++) for (let d = 0; d < D; d++) {
    for (let s = 0; s < lengths[b]; s++) {
      ref[b * D + d] += h0[(b * S + s) * D + d] / lengths[b]
      grad[(b * S + s) * D + d] = r0[b * D + d] / lengths[b]
    }
  }
  const mask = tensor(maskValues, { shape: [B, S], dtype: 'int32' })
  const f = (x: Tensor) => maskedMeanPool(x, mask)
  const y = noGrad(() => tidy(() => f(tensor(h0, { shape: [B, S, D] })).toFloat32Array()))
  const c = compare(y, ref, 1e-6, 1e-6)
  t.ok(c.ok, `forward (padding, holding the largest values, is ignored): ${c.message}`)
  const g = gradientOf(f, h0, [B, S, D], r0)
  const cg = compare(g, grad, 1e-6, 1e-7)
  t.ok(cg.ok, `gradient: ${cg.message} (zero on padding)`)
  const coords = pick(B * S * D, 12, 9)
  const fd = finiteDifferences(f, h0, [B, S, D], r0, coords, 1e-2)
  const cf = compare(fd, coords.map((i) => grad[i]), 1e-3, 1e-3)
  t.ok(cf.ok, `finite differences: ${cf.message}`)
  const all = noGrad(() => tidy(() => maskedMeanPool(tensor(h0, { shape: [B, S, D] }), null).toFloat32Array()))
  t.ok(Math.abs(all[0] - Array.from({ length: S }, (_, s) => h0[s * D]).reduce((a, v) => a + v, 0) / S) < 1e-5, 'a null mask averages every token')
  mask.dispose()
  t.end()
})

t.test('maskedMaxPool: float64 reference, gradients, finite differences', (t) => {
  const h0 = hiddenValues(), r0 = Float32Array.from(randomArray(B * D, 10))
  const ref = new Float64Array(B * D), grad = new Float64Array(B * S * D)
  for (let b = 0; b < B; b++) for (let d = 0; d < D; d++) {
    let best = 0
    for (let s = 1; s < lengths[b]; s++) if (h0[(b * S + s) * D + d] > h0[(b * S + best) * D + d]) best = s
    ref[b * D + d] = h0[(b * S + best) * D + d]
    grad[(b * S + best) * D + d] = r0[b * D + d]
  }
  const mask = tensor(maskValues, { shape: [B, S], dtype: 'int32' })
  const f = (x: Tensor) => maskedMaxPool(x, mask)
  const y = noGrad(() => tidy(() => f(tensor(h0, { shape: [B, S, D] })).toFloat32Array()))
  t.same(Array.from(y), Array.from(ref), 'forward: the exact maximum over the unpadded tokens (padding holds larger values)')
  const g = gradientOf(f, h0, [B, S, D], r0)
  t.same(Array.from(g), Array.from(grad, (v) => Math.fround(v)), 'gradient: the incoming gradient at the arg-max token, zero elsewhere')
  const coords = [...pick(B * S * D, 12, 11), ...Array.from(grad.keys()).filter((i) => grad[i] !== 0).slice(0, 6)]
  const fd = finiteDifferences(f, h0, [B, S, D], r0, coords, 1e-2)
  const cf = compare(fd, coords.map((i) => grad[i]), 1e-3, 1e-3)
  t.ok(cf.ok, `finite differences: ${cf.message}`)
  const tied = tensor(new Float32Array(2 * 3).fill(1), { shape: [1, 3, 2] })
  const x = leaf(tied.toFloat32Array(), [1, 3, 2])
  tidy(() => sum(maskedMaxPool(x, null)).backward())
  t.same(x.grad!.toArray(), [1, 1, 0, 0, 0, 0], 'ties: the first token takes the gradient')
  const empty = tensor(new Int32Array([1, 1, 1, 0, 0, 0]), { shape: [2, 3], dtype: 'int32' })
  t.throws(() => maskedMaxPool(tensor(new Float32Array(12), { shape: [2, 3, 2] }), empty), /maskedMaxPool: row 1 of the attention mask has no unpadded token to pool over/)
  t.throws(() => maskedMeanPool(tensor(new Float32Array(12), { shape: [2, 3, 2] }), empty), /maskedMeanPool: row 1/)
  t.throws(() => maskedMeanPool(tensor(new Float32Array(12), { shape: [2, 3, 2] }), mask), /mask \[3, 5\] must be \[2, 3\]/)
  for (const z of [mask, tied, x, empty]) z.dispose()
  t.end()
})

function fixtureInputs() {
  const raw = JSON.parse(readFileSync(join(fixtures, 'one_layer', 'inputs.json'), 'utf8')) as Record<string, number[][]>
  const shape = [raw.input_ids.length, raw.input_ids[0].length]
  const ids = (rows: number[][]) => tensor(Int32Array.from(rows.flat()), { shape, dtype: 'int32' })
  return { inputIds: ids(raw.input_ids), attentionMask: ids(raw.attention_mask), tokenTypeIds: ids(raw.token_type_ids), mask: raw.attention_mask }
}

for (const pooling of ['cls', 'mean', 'max'] as const) {
  t.test(`classifier_pooling "${pooling}": logits = classifier(pool(h)) in float64; saved and reloaded`, async (t) => {
    const dir = join(fixtures, 'one_layer')
    const model = (await BertForSequenceClassification.fromPretrained(dir, { config: { classifier_pooling: pooling } })).eval()
    t.equal(model.config.classifier_pooling, pooling)
    t.same(model.loadingInfo!.missingKeys, [], 'the pooler is still loaded (names stay transformers\')')
    const inputs = fixtureInputs()
    const { logits, hidden } = noGrad(() => tidy(() => {
      const h = model.bert.forward(inputs).lastHiddenState
      return { logits: model.forward(inputs).logits.toFloat32Array(), hidden: h.toFloat32Array() }
    }))
    const [batch, seq] = inputs.inputIds.shape
    const width = model.config.hidden_size
    const w = model.classifier.weight.toFloat32Array(), bias = model.classifier.bias!.toFloat32Array()
    const ref = new Float64Array(batch * model.numLabels)
    for (let b = 0; b < batch; b++) {
      const rows = Array.from({ length: seq }, (_, s) => s).filter((s) => pooling === 'cls' ? s === 0 : inputs.mask[b][s] === 1)
      const pooled = Array.from({ length: width }, (_, d) => {
        const v = rows.map((s) => hidden[(b * seq + s) * width + d])
        return pooling === 'max' ? Math.max(...v) : v.reduce((a, x) => a + x, 0) / v.length
      })
      for (let c = 0; c < model.numLabels; c++) ref[b * model.numLabels + c] = bias[c] + pooled.reduce((a, x, d) => a + x * w[c * width + d], 0)
    }
    const c = compare(logits, ref, 1e-5, 1e-6)
    t.ok(c.ok, `logits: ${c.message}`)
    const fixtureLogits = readSafetensors(join(dir, 'expected.safetensors')).tensors.get('logits')!.data as Float32Array
    t.ok(Array.from(logits).some((v, i) => Math.abs(v - fixtureLogits[i]) > 1e-3), 'differs from the pooler head (the option is not a no-op)')

    // Training: gradients reach the encoder; the unused pooler is frozen and gets none.
    model.train()
    const pooler = model.bert.pooler!
    t.ok(pooler.parameters().every((p) => !p.requiresGrad), 'pooler frozen')
    tidy(() => {
      const out = model.forward({ ...inputs, labels: tensor(new Int32Array([0, 1, 1]), { dtype: 'int32' }) })
      out.loss!.backward()
    })
    t.ok(pooler.parameters().every((p) => p.grad === null), 'no gradient for the pooler')
    t.ok(model.bert.encoder.layer.items[0].attention.self.query.weight.grad !== null, 'the encoder gets gradients')

    const out = mkdtempSync(join(os.tmpdir(), `bertkit-pooling-${pooling}-`))
    model.savePretrained(out)
    const saved = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))
    t.equal(saved.classifier_pooling, pooling, 'config.json records classifier_pooling')
    t.ok(readSafetensors(join(out, 'model.safetensors')).tensors.has('bert.pooler.dense.weight'), 'the pooler stays in the checkpoint, so transformers loads it')
    const again = (await BertForSequenceClassification.fromPretrained(out)).eval()
    t.equal(again.config.classifier_pooling, pooling, 'reloaded from config.json')
    const back = noGrad(() => tidy(() => again.forward(inputs).logits.toFloat32Array()))
    const before = noGrad(() => tidy(() => model.eval().forward(inputs).logits.toFloat32Array()))
    t.same(Array.from(back), Array.from(before), 'same logits after the round trip')
    for (const x of [inputs.inputIds, inputs.attentionMask, inputs.tokenTypeIds]) x.dispose()
    model.dispose()
    again.dispose()
  })
}

t.test('classifier_pooling: the default is transformers\' and is not written; bad values are refused', async (t) => {
  const model = await BertForSequenceClassification.fromPretrained(join(fixtures, 'one_layer'))
  t.equal(model.config.classifier_pooling, 'pooler')
  t.notOk('classifier_pooling' in model.config.toJSON(), 'config.json stays as transformers writes it')
  t.ok(model.bert.pooler!.parameters().every((p) => p.requiresGrad), 'the pooler trains with the default head')
  model.dispose()
  t.throws(() => new BertConfig({ classifier_pooling: 'attention' as never }), /classifier_pooling must be one of "pooler", "cls", "mean", "max", got "attention"/)
})
