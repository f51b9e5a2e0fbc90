// Autocast on the CPU: under autocast('bfloat16') Linear, matmul, bmm and
// bmmTransposed (torch's CPU autocast runs linear, mm and bmm in bfloat16)
// multiply bfloat16 copies of their operands with float32 accumulation, on
// each of the CPU's bfloat16 paths (AMX tiles, AVX512-BF16, widening), and
// their results and gradients stay within bfloat16's bound of a float64
// reference: each operand rounds by at most 2^-9 relatively, so a product
// term by at most ~2^-8, plus float32 accumulation (k · 2^-24), relative to
// sum |a b|. A Trainer with bf16 trains on the CPU, close to float32.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { tensor, tidy, keep, linear, matmul, bmm, bmmTransposed, sum, mul, autocast, BertForSequenceClassification, type Tensor } from '../../lib/index.js'
import { native } from '../../lib/native.js'
import { Dataset, type Row } from '../../lib/data/dataset.js'
import { Trainer, type DataCollator } from '../../lib/train/trainer.js'
import { TrainingArguments } from '../../lib/train/training_args.js'
import { randomArray } from '../helpers/reference.js'

const N = native()

/** |got - want| <= bound * scale elementwise; returns the worst ratio. */
function worstRatio(got: Float32Array, want: Float64Array, scale: Float64Array, bound: number): number {
  let worst = 0
  for (let i = 0; i < want.length; i++) {
    const r = Math.abs(got[i] - want[i]) / (bound * scale[i] + 1e-30)
    if (!(r <= worst)) worst = Number.isNaN(r) ? Infinity : r
  }
  return worst
}

/** C = A · op(B) in float64 with sum |a b|, A [m, k], B [k, n] or [n, k] (transB). */
function product(A: ArrayLike<number>, B: ArrayLike<number>, m: number, n: number, k: number, transB: boolean) {
  const values = new Float64Array(m * n), scale = new Float64Array(m * n)
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0, a = 0
      for (let p = 0; p < k; p++) {
        const v = A[i * k + p] * (transB ? B[j * k + p] : B[p * n + j])
        s += v
        a += Math.abs(v)
      }
      values[i * n + j] = s
      scale[i * n + j] = a
    }
  }
  return { values, scale }
}

function transpose(x: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols)
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = x[i * cols + j]
  return out
}

const path = (p: string) => N.setCpuGemmBf16(p)

for (const name of ['amx', 'avx512-bf16', 'widen']) {
  t.test(`linear under autocast bf16 (${name}): forward and gradients within bf16's bound`, async (t) => {
    const used = path(name)
    t.comment(`bfloat16 products: ${used}`)
    try {
      const [rows, inF, outF] = [37, 70, 45]
      const x0 = randomArray(rows * inF, 1, -2, 2), w0 = randomArray(outF * inF, 2), b0 = randomArray(outF, 3), g0 = randomArray(rows * outF, 4)
      const x = keep(tensor(Float32Array.from(x0), { shape: [rows, inF], requiresGrad: true }))
      const w = keep(tensor(Float32Array.from(w0), { shape: [outF, inF], requiresGrad: true }))
      const b = keep(tensor(Float32Array.from(b0), { shape: [outF], requiresGrad: true }))
      const xs = Float64Array.from(Float32Array.from(x0)), ws = Float64Array.from(Float32Array.from(w0)), gs = Float64Array.from(Float32Array.from(g0))
      let out: Float32Array = new Float32Array(0)
      tidy(() => autocast('bfloat16', () => {
        const y = linear(x, w, b)
        out = y.toFloat32Array()
        sum(mul(y, tensor(Float32Array.from(g0), { shape: [rows, outF] }))).backward()
      }))
      // bf16: 2^-8 per product term; fp32 accumulation: k * 2^-24.
      const bound = (k: number) => 2 ** -8 + k * 2 ** -24
      const fwd = product(xs, ws, rows, outF, inF, true)
      const want = fwd.values.map((v, i) => v + b0[i % outF])
      const scaleF = fwd.scale.map((v, i) => v + Math.abs(b0[i % outF]) / 2 ** -8)
      t.ok(worstRatio(out, want, scaleF, bound(inF)) <= 1, `y: worst ${worstRatio(out, want, scaleF, bound(inF)).toFixed(3)} of the bound`)
      const dx = product(gs, ws, rows, inF, outF, false)
      const rx = worstRatio(x.grad!.toFloat32Array(), dx.values, dx.scale, bound(outF))
      t.ok(rx <= 1, `dx: worst ${rx.toFixed(3)} of the bound`)
      const dw = product(transpose(gs, rows, outF), xs, outF, inF, rows, false)
      const rw = worstRatio(w.grad!.toFloat32Array(), dw.values, dw.scale, bound(rows))
      t.ok(rw <= 1, `dW: worst ${rw.toFixed(3)} of the bound`)
      // The bias gradient is a float32 column sum (not a product): tight.
      const db = new Float64Array(outF)
      for (let i = 0; i < rows; i++) for (let j = 0; j < outF; j++) db[j] += gs[i * outF + j]
      const gotDb = b.grad!.toFloat32Array()
      t.ok(db.every((v, j) => Math.abs(gotDb[j] - v) <= 1e-5 * Math.max(1, Math.abs(v))), 'db: a float32 sum')
      // And it really ran in bf16: the result differs from float32's.
      const fp32 = tidy(() => linear(x, w, b).toFloat32Array())
      t.ok(out.some((v, i) => v !== fp32[i]), 'the bf16 result differs from the float32 one')
      for (const p of [x, w, b]) p.dispose()
    } finally {
      path('auto')
    }
  })
}

t.test('matmul, bmm and bmmTransposed under autocast bf16: within bf16\'s bound', async (t) => {
  const [batch, m, k, n] = [3, 9, 40, 11]
  const a0 = randomArray(batch * m * k, 5), b0 = randomArray(batch * k * n, 6), bt0 = randomArray(batch * n * k, 7)
  const bound = 2 ** -8 + k * 2 ** -24
  const check = (label: string, got: Float32Array, A: Float64Array, B: Float64Array, transB: boolean) => {
    let worst = 0
    for (let z = 0; z < batch; z++) {
      const ref = product(A.subarray(z * m * k, (z + 1) * m * k), B.subarray(z * k * n, (z + 1) * k * n), m, n, k, transB)
      worst = Math.max(worst, worstRatio(got.subarray(z * m * n, (z + 1) * m * n), ref.values, ref.scale, bound))
    }
    t.ok(worst <= 1, `${label}: worst ${worst.toFixed(3)} of the bound`)
  }
  const A = Float64Array.from(Float32Array.from(a0)), B = Float64Array.from(Float32Array.from(b0)), BT = Float64Array.from(Float32Array.from(bt0))
  tidy(() => autocast('bfloat16', () => {
    const a = tensor(Float32Array.from(a0), { shape: [batch, m, k], requiresGrad: true })
    const b = tensor(Float32Array.from(b0), { shape: [batch, k, n], requiresGrad: true })
    const bt = tensor(Float32Array.from(bt0), { shape: [batch, n, k], requiresGrad: true })
    check('bmm', bmm(a, b).toFloat32Array(), A, B, false)
    check('bmmTransposed', bmmTransposed(a, bt).toFloat32Array(), A, BT, true)
    const a2 = tensor(Float32Array.from(a0.subarray(0, m * k)), { shape: [m, k] })
    const b2 = tensor(Float32Array.from(b0.subarray(0, k * n)), { shape: [k, n] })
    const got = matmul(a2, b2).toFloat32Array()
    const ref = product(A.subarray(0, m * k), B.subarray(0, k * n), m, n, k, false)
    t.ok(worstRatio(got, ref.values, ref.scale, bound) <= 1, 'matmul')
    // Gradients of sum(bmm(a, b)): da = 1 · bᵀ, db = aᵀ · 1, through the half path.
    sum(bmm(a, b)).backward()
    const ones = new Float64Array(m * n).fill(1)
    let worst = 0
    const ga = a.grad!.toFloat32Array()
    for (let z = 0; z < batch; z++) {
      const bz = B.subarray(z * k * n, (z + 1) * k * n)
      const ref2 = product(ones, transpose(bz, k, n), m, k, n, false)
      worst = Math.max(worst, worstRatio(ga.subarray(z * m * k, (z + 1) * m * k), ref2.values, ref2.scale, 2 ** -8 + n * 2 ** -24))
    }
    t.ok(worst <= 1, `bmm da: worst ${worst.toFixed(3)} of the bound`)
    t.ok(b.grad !== null, 'bmm db computed')
  }))
})

t.test('Trainer with bf16 on the CPU trains, close to float32', async (t) => {
  const fixture = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'bert', 'one_layer')
  const rows: Row[] = Array.from({ length: 32 }, (_, i) => ({ input_ids: [1, 10 + (i % 7), 11 + (i % 5), ...(i % 2 ? [7] : []), 2], label: i % 2 }))
  const collator: DataCollator = (batch) => {
    const longest = Math.max(...batch.map((r) => (r.input_ids as number[]).length))
    const ids = new Int32Array(batch.length * longest), mask = new Int32Array(batch.length * longest)
    batch.forEach((r, i) => (r.input_ids as number[]).forEach((v, j) => { ids[i * longest + j] = v; mask[i * longest + j] = 1 }))
    return {
      inputIds: tensor(ids, { shape: [batch.length, longest], dtype: 'int32' }), attentionMask: tensor(mask, { shape: [batch.length, longest], dtype: 'int32' }),
      labels: tensor(Int32Array.from(batch.map((r) => r.label as number)), { dtype: 'int32' }),
    }
  }
  const losses: Record<string, number[]> = {}
  for (const bf16 of [false, true]) {
    const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-bf16-'))
    const model = await BertForSequenceClassification.fromPretrained(fixture, { numLabels: 2 })
    const args = new TrainingArguments(dir, { learningRate: 5e-3, perDeviceTrainBatchSize: 8, maxSteps: 6, loggingSteps: 1, saveStrategy: 'no', disableTqdm: true, seed: 3, bf16, device: 'cpu' })
    const trainer = new Trainer({ model, args, trainDataset: Dataset.fromRows(rows), dataCollator: collator })
    await trainer.train()
    losses[String(bf16)] = trainer.state.logHistory.filter((e) => 'loss' in e).map((e) => e.loss as number)
    const evalOut = await trainer.evaluate(Dataset.fromRows(rows))
    t.ok(Number.isFinite(evalOut.evalLoss), `bf16 ${bf16}: eval loss ${evalOut.evalLoss}`)
    trainer.dispose()
    model.dispose()
    rmSync(dir, { recursive: true, force: true })
  }
  const [fp32, half] = [losses.false, losses.true]
  t.equal(half.length, 6)
  const worst = Math.max(...fp32.map((v, i) => Math.abs(v - half[i]) / Math.abs(v)))
  t.ok(worst < 0.05, `bf16 losses within 5 % of float32's over 6 steps (worst ${(100 * worst).toFixed(2)} %)`)
  t.ok(fp32.some((v, i) => v !== half[i]), 'and not identical: the products ran in bf16')
})

t.test('under autocast, gelu and layerNorm hand the next Linear their output already cast', async (t) => {
  const { gelu, layerNorm } = await import('../../lib/tensor/ops.js')
  const { halfActivation, castHalf } = await import('../../lib/tensor/autocast.js')
  const x = keep(tensor(Float32Array.from(randomArray(37 * 70, 5, -3, 3)), { shape: [37, 70] }))
  const gamma = keep(tensor(Float32Array.from(randomArray(70, 6)), { shape: [70] }))
  const beta = keep(tensor(Float32Array.from(randomArray(70, 7)), { shape: [70] }))
  const realCast = N.cast
  let casts = 0
  try {
    for (const [name, op] of [['gelu', () => gelu(x)], ['layerNorm', () => layerNorm(x, gamma, beta, 1e-12)], ['layerNorm + residual', () => layerNorm(x, gamma, beta, 1e-12, x)]] as const) {
      tidy(() => autocast('bfloat16', () => {
        const y = op()
        N.cast = (...args: Parameters<typeof realCast>) => { casts++; return realCast.apply(N, args) }
        casts = 0
        const twin = halfActivation(y)
        t.equal(casts, 0, `${name}: halfActivation(y) casts nothing`)
        N.cast = realCast
        const recast = castHalf(y, 'bfloat16')
        t.same(Array.from(twin.buffer.read() as Uint16Array), Array.from(recast.buffer.read() as Uint16Array), `${name}: the twin is cast(y) bit for bit`)
        recast.dispose()
      }))
    }
    // Outside autocast nothing extra is made.
    const live = N.memoryStats().liveBuffers
    const y = gelu(x)
    t.equal(N.memoryStats().liveBuffers, live + 1, 'without autocast gelu allocates only its output')
    y.dispose()
  } finally {
    N.cast = realCast
    for (const p of [x, gamma, beta]) p.dispose()
  }
})

t.test('linearActivation under autocast equals activation(linear(...)) bit for bit, gradients included', async (t) => {
  const { linearActivation, activation } = await import('../../lib/tensor/ops.js')
  const [rows, inF, outF] = [53, 64, 150]
  for (const kind of ['gelu', 'gelu_new', 'relu'] as const) {
    for (const withBias of [true, false]) {
      for (const needs of [{ x: true, w: true }, { x: false, w: true }, { x: true, w: false }]) {
        const run = (fused: boolean) => tidy(() => {
          const x = tensor(Float32Array.from(randomArray(rows * inF, 11, -2, 2)), { shape: [rows, inF], requiresGrad: needs.x })
          const w = tensor(Float32Array.from(randomArray(outF * inF, 12)), { shape: [outF, inF], requiresGrad: needs.w })
          const b = withBias ? tensor(Float32Array.from(randomArray(outF, 13)), { shape: [outF], requiresGrad: true }) : null
          const g = tensor(Float32Array.from(randomArray(rows * outF, 14)), { shape: [rows, outF] })
          let y: Float32Array = new Float32Array(0)
          autocast('bfloat16', () => {
            const out = fused ? linearActivation(x, w, b, kind) : activation(linear(x, w, b), kind)
            y = out.toFloat32Array()
            sum(mul(out, g)).backward()
          })
          return [y, x.grad?.toFloat32Array() ?? null, w.grad?.toFloat32Array() ?? null, b?.grad?.toFloat32Array() ?? null]
        })
        const bits = (a: Float32Array | null) => (a ? Array.from(new Uint32Array(a.buffer)) : null)
        const [want, got] = [run(false), run(true)]
        const label = `${kind}, ${withBias ? 'bias' : 'no bias'}, grads for ${Object.entries(needs).filter(([, v]) => v).map(([k]) => k).join(' ')}`
        t.same(got.map(bits), want.map(bits), `${label}: output and gradients`)
      }
    }
  }
})
