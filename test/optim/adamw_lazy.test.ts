// AdamW's deferred rows (lazyRows) against the dense step, bit for bit: the
// same training run with row-sparse embedding gradients and deferred row
// updates, and with BERTKIT_LAZY_ROWS=0 (every gradient dense, every row
// updated every step), must give the very same weights, moments, norms,
// lookups and saved state at every point anyone can read them.
import t from 'tap'
import { createHash } from 'node:crypto'
import {
  tensor, keep, AdamW, clipGradNorm, embedding, linear, mul, sum, add, noGrad, tidy, type Tensor,
} from '../../lib/index.js'
import { native } from '../../lib/native.js'
import { randomArray, rng } from '../helpers/reference.js'

const ROWS = 300, WIDTH = 240  // 72000 elements: above the row-sparse threshold
const SMALL_ROWS = 40          // a table below it keeps dense gradients

function hash(a: Float32Array): string {
  return createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex')
}

function leaf(n: number, seed: number, shape: number[]): Tensor {
  return keep(tensor(Float32Array.from(randomArray(n, seed, -0.5, 0.5)), { shape, requiresGrad: true }))
}

interface RunOptions {
  lazy: boolean
  steps: number
  accumulation: number
  /** Per step: the ids of each micro-batch (one array per micro-batch). */
  ids: (step: number, micro: number) => number[]
  clip: number | null
  /** Also use the word table densely (a tied output layer): its gradient falls back to dense. */
  tied?: boolean
  /** Read things in the middle of the run (what a trainer's logging, eval and save do). */
  observeAt?: number[]
  /** Replace the optimizer by a new one restored from the saved state at this step (resume). */
  resumeAt?: number
}

interface RunResult {
  final: string[]
  observed: string[]
  norms: number[]
  counts: Record<string, number>
}

function run(o: RunOptions): RunResult {
  const previous = process.env.BERTKIT_LAZY_ROWS
  process.env.BERTKIT_LAZY_ROWS = o.lazy ? '1' : '0'
  const N = native()
  const counts: Record<string, number> = {}
  const originals: Record<string, unknown> = {}
  for (const k of ['adamwRows', 'embeddingBackwardRows', 'multiTensorSumSquaresRows', 'zeroUnmarkedRows'] as const) {
    const f = N[k] as (...a: unknown[]) => void
    originals[k] = f
    ;(N as unknown as Record<string, unknown>)[k] = (...a: unknown[]) => { counts[k] = (counts[k] ?? 0) + 1; return f(...a) }
  }
  try {
    const word = leaf(ROWS * WIDTH, 1, [ROWS, WIDTH])
    const small = leaf(SMALL_ROWS * WIDTH, 2, [SMALL_ROWS, WIDTH])
    const head = leaf(8 * WIDTH, 3, [8, WIDTH])
    const bias = leaf(8, 4, [8])
    const params = [word, small, head, bias]
    const groups = [{ params: [word, head], weightDecay: 0.01 }, { params: [small, bias], weightDecay: 0 }]
    let opt = new AdamW(groups, { lr: 1e-2, betas: [0.9, 0.99] })
    const observed: string[] = []
    const norms: number[] = []
    const readAll = (tag: string) => {
      for (const p of params) {
        observed.push(`${tag} p ${hash(p.toFloat32Array())}`)
        const st = opt.stateOf(p)
        if (st) observed.push(`${tag} m ${hash(st.expAvg.toFloat32Array())} v ${hash(st.expAvgSq.toFloat32Array())} ${st.step}`)
      }
    }
    for (let step = 0; step < o.steps; step++) {
      for (const g of opt.paramGroups) g.lr = 1e-2 * (1 - step / (o.steps + 1))  // a schedule: lr changes every step
      tidy(() => {
        for (let micro = 0; micro < o.accumulation; micro++) {
          const ids = o.ids(step, micro)
          const idT = tensor(Int32Array.from(ids), { shape: [ids.length], dtype: 'int32' })
          const smallIds = tensor(Int32Array.from(ids.map((i) => i % SMALL_ROWS)), { shape: [ids.length], dtype: 'int32' })
          // Two lookups of the same table in one forward (their gradients add into one), one with a padding row.
          const e1 = embedding(idT, word)
          const e2 = embedding(tensor(Int32Array.from(ids.slice().reverse()), { shape: [ids.length], dtype: 'int32' }), word, { paddingIdx: 7 })
          const h = mul(e1, e2)
          const z = embedding(smallIds, small)
          const logits = linear(mul(h, z), head, bias)
          let loss = sum(mul(logits, logits))
          if (o.tied) loss = add(loss, sum(linear(e1, word)))
          loss.backward()
        }
        if (o.clip !== null) {
          const c = clipGradNorm(params, o.clip)
          norms.push(c.totalNorm())
          opt.step({ gradScale: c.coefficient })
        } else {
          opt.step()
        }
        opt.zeroGrad()
      })
      if (o.observeAt?.includes(step)) {
        // A lookup in evaluation (only some rows caught up), then a read of everything.
        const probe = noGrad(() => tidy(() => embedding(tensor(Int32Array.from([0, 5, ROWS - 1]), { dtype: 'int32' }), word).toFloat32Array()))
        observed.push(`probe ${hash(probe)}`)
        readAll(`step ${step}`)
      }
      if (o.resumeAt === step) {
        // Save (read) the state, drop the optimizer, restore a new one from it.
        const saved = params.map((p) => {
          const st = opt.stateOf(p)
          return st ? { step: st.step, m: st.expAvg.toFloat32Array(), v: st.expAvgSq.toFloat32Array() } : null
        })
        opt.dispose()
        opt = new AdamW(groups, { lr: 1e-2, betas: [0.9, 0.99] })
        params.forEach((p, i) => { const s = saved[i]; if (s) opt.setState(p, s.step, s.m, s.v) })
      }
    }
    const final: string[] = []
    for (const p of params) {
      final.push(hash(p.toFloat32Array()))
      const st = opt.stateOf(p)!
      final.push(hash(st.expAvg.toFloat32Array()), hash(st.expAvgSq.toFloat32Array()))
    }
    opt.dispose()
    for (const p of params) p.dispose()
    return { final, observed, norms, counts }
  } finally {
    for (const [k, f] of Object.entries(originals)) (N as unknown as Record<string, unknown>)[k] = f
    if (previous === undefined) delete process.env.BERTKIT_LAZY_ROWS
    else process.env.BERTKIT_LAZY_ROWS = previous
  }
}

/** Ids from a small pool, plus rows that appear only at given steps (first touched late). */
function idsFor(seed: number, late: Record<number, number[]>): (step: number, micro: number) => number[] {
  return (step, micro) => {
    const r = rng(seed + 1000 * step + micro)
    const ids = Array.from({ length: 12 }, () => Math.floor(r() * 40))
    ids.push(7, 7)  // the padding row of the second lookup, repeated
    return [...ids, ...(late[step] ?? [])]
  }
}

const cases: Array<{ name: string; options: Omit<RunOptions, 'lazy'> }> = [
  {
    name: 'clipping, a row first touched after 70 steps (past a full catch-up), reads mid-run',
    options: { steps: 75, accumulation: 1, clip: 0.05, ids: idsFor(1, { 3: [200], 71: [250, 200], 74: [299] }), observeAt: [2, 40, 73] },
  },
  {
    name: 'gradient accumulation over 3 micro-batches, no clipping',
    options: { steps: 12, accumulation: 3, clip: null, ids: idsFor(2, { 9: [120] }) },
  },
  {
    name: 'save and resume in the middle',
    options: { steps: 14, accumulation: 2, clip: 1, ids: idsFor(3, { 12: [280] }), resumeAt: 6, observeAt: [10] },
  },
  {
    name: 'a tied (dense) use of the table: falls back to dense gradients',
    options: { steps: 6, accumulation: 1, clip: 1, ids: idsFor(4, {}), tied: true },
  },
]

for (const c of cases) {
  t.test(`lazy AdamW rows equal the dense step bit for bit: ${c.name}`, (t) => {
    const lazy = run({ ...c.options, lazy: true })
    const dense = run({ ...c.options, lazy: false })
    t.same(dense.counts, {}, 'the dense run uses no row-sparse op')
    if (c.options.tied) {
      t.ok((lazy.counts.zeroUnmarkedRows ?? 0) > 0 || (lazy.counts.embeddingBackwardRows ?? 0) === 0, 'the tied table\'s gradient is made dense')
    } else {
      t.ok((lazy.counts.adamwRows ?? 0) >= c.options.steps, `the lazy run defers rows (${lazy.counts.adamwRows} adamwRows calls)`)
      t.ok((lazy.counts.embeddingBackwardRows ?? 0) > 0, 'row-sparse gradients in use')
      if (c.options.clip !== null) t.ok((lazy.counts.multiTensorSumSquaresRows ?? 0) > 0, 'the norm reads their marked rows only')
      t.notOk(lazy.counts.zeroUnmarkedRows, 'no gradient was made dense')
    }
    t.same(lazy.norms, dense.norms, 'gradient norms')
    t.same(lazy.observed, dense.observed, 'lookups, weights and moments read in the middle of the run')
    t.same(lazy.final, dense.final, 'final weights, exp_avg and exp_avg_sq')
    t.end()
  })
}

t.test('a row-sparse gradient read through the public API is the dense gradient', (t) => {
  const w = leaf(ROWS * WIDTH, 9, [ROWS, WIDTH])
  const ids = tensor(Int32Array.from([3, 3, 17, 299]), { dtype: 'int32' })
  const out = embedding(ids, w)
  sum(mul(out, out)).backward()
  const marks = w.grad!.rawStorage.rowMarks
  t.ok(marks, 'the gradient is row-sparse after backward')
  const g = w.grad!.toFloat32Array()
  t.equal(w.grad!.rawStorage.rowMarks, null, 'reading it made it dense')
  const wv = w.toFloat32Array()
  let ok = true
  for (let r = 0; r < ROWS; r++) {
    const k = r === 3 ? 4 : r === 17 || r === 299 ? 2 : 0
    for (let c = 0; c < WIDTH; c++) if (g[r * WIDTH + c] !== Math.fround(k * wv[r * WIDTH + c])) ok = false
  }
  t.ok(ok, 'touched rows hold 2·count·w, every other row exactly 0')
  out.dispose()
  ids.dispose()
  w.dispose()
  t.end()
})

t.test('multiTensorSumSquaresRows equals the dense sum of the zeroed tensor bit for bit', (t) => {
  const N = native()
  // Widths that split rows across the 8192-element blocks and leave tails.
  for (const [rows, width] of [[3000, 7], [50, 1000], [9, 8193], [1, 5]]) {
    const n = rows * width
    const values = Float32Array.from(randomArray(n, rows + width, -3, 3))
    const r = rng(width)
    const marked = Int32Array.from({ length: rows }, () => (r() < 0.3 ? 1 : 0))
    const zeroed = values.slice()
    for (let i = 0; i < rows; i++) if (!marked[i]) zeroed.fill(0, i * width, (i + 1) * width)
    const x = keep(tensor(values)), z = keep(tensor(zeroed)), other = keep(tensor(Float32Array.from(randomArray(777, 5))))
    const marks = keep(tensor(marked, { dtype: 'int32' }))
    const a = keep(tensor([0])), b = keep(tensor([0]))
    N.multiTensorSumSquaresRows(2, [777, n], [other.buffer, x.buffer], [null, marks.buffer], [0, width], a.buffer)
    N.multiTensorSumSquares(2, [777, n], [other.buffer, z.buffer], b.buffer)
    t.equal(a.item(), b.item(), `[${rows}, ${width}]: ${a.item()}`)
    for (const v of [x, z, other, marks, a, b]) v.dispose()
  }
  t.throws(() => N.multiTensorSumSquaresRows(1, [10], [keep(tensor(new Float32Array(10))).buffer], [keep(tensor(new Int32Array(3), { dtype: 'int32' })).buffer], [3], keep(tensor([0])).buffer),
    /widths\[0\] = 3 does not divide sizes\[0\] = 10/)
  t.end()
})
