// flashAttentionForward / flashAttentionBackward (the fused attention that
// saves one log-sum-exp per row instead of the probabilities) on every
// backend: against a float64 JavaScript reference (with the Philox port for
// dropout), against central finite differences of that reference, and against
// the materialised attentionForward / attentionBackward, with the same
// dropout mask bit for bit. Shapes cover several and ragged 64-wide tiles
// (seq 130), odd head dims (24, 72, 7), seq 1, keys padded at the end and in
// the middle, and batch rows whose keys are all padding. The last tests run
// the TypeScript attention() both ways and check its switch.
import { t } from 'tap'
import { native, type NativeBuffer } from '../../lib/native.js'
import {
  attention, attentionImplementation, setAttentionImplementation, tensor, type Tensor,
} from '../../lib/index.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { dropoutMask } from '../helpers/philox.js'
import { compare, f32Buffer, i32Buffer, poisoned, randomArray, readF64 } from '../helpers/reference.js'
import { track } from '../helpers/checks.js'
import {
  dropoutFactors, finiteDifferences, inputsFor, maskRows, maxAbs, referenceBackward, referenceForward, scaleOf,
  type AttentionCase, type Inputs,
} from '../helpers/attention_reference.js'

interface Case extends AttentionCase {
  /** elements per input sampled for finite differences */
  fdSamples: number
}

const cases: Case[] = [
  { name: 'seq 37, 3 heads x 24, partly and fully padded rows', batch: 3, seq: 37, heads: 3, headDim: 24,
    mask: maskRows(37, [37, 26, 0]), p: 0, seed: 0n, offset: 0n, fdSamples: 30 },
  { name: 'seq 37 with dropout 0.1', batch: 3, seq: 37, heads: 3, headDim: 24,
    mask: maskRows(37, [37, 26, 0]), p: 0.1, seed: 0xfeedface12345678n, offset: 0xfffffff0n, fdSamples: 30 },
  { name: 'seq 1, one row all padding', batch: 2, seq: 1, heads: 3, headDim: 24,
    mask: [1, 0], p: 0, seed: 0n, offset: 0n, fdSamples: 30 },
  { name: 'seq 1 with dropout 0.5', batch: 4, seq: 1, heads: 3, headDim: 24,
    mask: [1, 1, 0, 1], p: 0.5, seed: 5n, offset: 17n, fdSamples: 30 },
  { name: 'seq 5, one head of 7, keys padded in the middle', batch: 2, seq: 5, heads: 1, headDim: 7,
    mask: [1, 1, 1, 0, 0, 1, 0, 1, 1, 1], p: 0.3, seed: 9n, offset: 0n, fdSamples: 30 },
  // Three key tiles of 64, the last two wide; length 70 leaves the third tile
  // all padding, length 1 the second and third (skipped tiles).
  { name: 'seq 130, 3 heads x 72, dropout 0.1, tiles skipped', batch: 4, seq: 130, heads: 3, headDim: 72,
    mask: maskRows(130, [130, 70, 1, 0]), p: 0.1, seed: 1234n, offset: 3n, fdSamples: 4 },
  { name: 'seq 130, 2 heads x 24, no dropout', batch: 2, seq: 130, heads: 2, headDim: 24,
    mask: maskRows(130, [129, 64]), p: 0, seed: 0n, offset: 0n, fdSamples: 6 },
  { name: 'seq 64, 2 heads x 32 (MiniLM head), dropout 0.1', batch: 2, seq: 64, heads: 2, headDim: 32,
    mask: maskRows(64, [64, 40]), p: 0.1, seed: 77n, offset: 1000n, fdSamples: 8 },
]

/**
 * Absolute tolerance of a gradient against the float64 reference. dV, as in
 * attention.test.ts: 1e-6 of the largest element, plus the rounding of
 * subtracting the random start. dQ and dK go through dS = P (dP - D) with
 * D = <dO, O> taken from the rounded output (FlashAttention-2's shortcut for
 * rowsum(P dP)); where the exact dS is 0 (a row with one unpadded key, seq 1)
 * dP - D cancels only to float rounding of dP, a few 1e-7 of |dO| |v|, so
 * those allow 4e-6 of the largest element (at least of 1).
 */
function gradientAtol(name: 'dq' | 'dk' | 'dv', want: ArrayLike<number>): number {
  const scale = Math.max(maxAbs(want), 1e-3)
  return name === 'dv' ? 1e-6 * scale + 2e-7 : 4e-6 * Math.max(scale, 1)
}

for (const dev of devicesUnderTest()) {
  t.test(`flash attention on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const addon = native()
    const liveBefore = addon.memoryStats().liveBuffers
    const keep = track(t)
    const buf = (values: ArrayLike<number>) => keep(f32Buffer(dev.code, values))

    const runFlash = (c: Case, x: Inputs) => {
      const hidden = c.heads * c.headDim
      const lse = keep(poisoned(dev.code, c.batch * c.heads * c.seq))
      const out = keep(poisoned(dev.code, c.batch * c.seq * hidden))
      const bufs = { q: buf(x.q), k: buf(x.k), v: buf(x.v), mask: keep(i32Buffer(dev.code, c.mask)), lse, out }
      addon.flashAttentionForward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset,
        bufs.q, bufs.k, bufs.v, bufs.mask, lse, out)
      return bufs
    }
    const runMaterialized = (c: Case, x: Inputs) => {
      const hidden = c.heads * c.headDim
      const probs = keep(poisoned(dev.code, c.batch * c.heads * c.seq * c.seq))
      const out = keep(poisoned(dev.code, c.batch * c.seq * hidden))
      const bufs = { q: buf(x.q), k: buf(x.k), v: buf(x.v), mask: keep(i32Buffer(dev.code, c.mask)), probs, out }
      addon.attentionForward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset,
        bufs.q, bufs.k, bufs.v, bufs.mask, probs, out)
      return bufs
    }

    cases.forEach((c, caseIndex) => {
      t.test(`forward: ${c.name}`, async (t) => {
        const x = inputsFor(c, 100 + caseIndex * 10)
        const factor = dropoutFactors(c)
        const ref = referenceForward(c, x, factor)
        const { out, lse } = runFlash(c, x)
        const gotOut = readF64(out)
        const gotLse = readF64(lse)
        t.ok(gotOut.every(Number.isFinite) && gotLse.every(Number.isFinite), 'out and lse are finite (every element written, no NaN)')
        const co = compare(gotOut, ref.out, 1e-5, 2e-6)
        t.ok(co.ok, `out matches the float64 reference (${co.message})`)
        const cl = compare(gotLse, ref.lse, 1e-6, 2e-6)
        t.ok(cl.ok, `lse matches the reference (${cl.message})`)

        const mat = runMaterialized(c, x)
        const cm = compare(gotOut, readF64(mat.out), 1e-5, 1e-6)
        t.ok(cm.ok, `out matches the materialised op's, dropout included (${cm.message})`)

        for (let b = 0; b < c.batch; b++) {
          const valid = c.mask.slice(b * c.seq, (b + 1) * c.seq).reduce((a, m) => a + m, 0)
          if (valid !== 0) continue
          // All keys padded: the uniform softmax of transformers, lse = log(seq) for scores of 0.
          const rows = gotLse.subarray(b * c.heads * c.seq, (b + 1) * c.heads * c.seq)
          t.ok(rows.every((l) => Math.abs(l - Math.log(c.seq)) <= 1e-6), `batch row ${b} (all padding): lse = log(${c.seq})`)
        }
        if (factor) {
          const plain = referenceForward(c, x, null).out
          t.ok(compare(gotOut, plain, 1e-3, 1e-3).ok === false, 'dropout changes the output')
        }
      })
    })

    t.test('forward: the dropout mask is the materialised op\'s, bit for bit', async (t) => {
      // With head_dim = seq and V = I, out[i, j] = P_ij * z_ij: the kept
      // elements are exactly the non-zero outputs (P > 0 for unpadded keys).
      for (const [seq, p, seed, offset] of [[37, 0.1, 0xfeedface12345678n, 0xfffffff0n], [70, 0.3, 3n, 5n], [5, 0.5, 11n, 2n]] as const) {
        const c: Case = { name: 'mask probe', batch: 2, seq, heads: 2, headDim: seq, mask: maskRows(seq, [seq, seq]),
          p, seed, offset, fdSamples: 0 }
        const hidden = c.heads * c.headDim
        const n = c.batch * c.seq * hidden
        const eye = new Float64Array(n)
        for (let b = 0; b < c.batch; b++) for (let j = 0; j < seq; j++) for (let h = 0; h < c.heads; h++) eye[(b * seq + j) * hidden + h * seq + j] = 1
        const x = { q: randomArray(n, 900 + seq, -1, 1), k: randomArray(n, 901 + seq, -1, 1), v: eye }
        const got = readF64(runFlash(c, x).out)
        const mat = runMaterialized(c, x)
        const probs = readF64(mat.probs)
        const want = dropoutMask(c.batch * c.heads * seq * seq, p, seed, offset)
        let differ = 0, kept = 0, matDiffer = 0
        for (let b = 0; b < c.batch; b++) {
          for (let h = 0; h < c.heads; h++) {
            for (let i = 0; i < seq; i++) {
              for (let j = 0; j < seq; j++) {
                const e = ((b * c.heads + h) * seq + i) * seq + j
                const flash = got[(b * seq + i) * hidden + h * seq + j] !== 0 ? 1 : 0
                if (flash !== want[e]) differ++
                kept += flash
                // The materialised op's weights P * z through the same probe.
                if (probs[e] <= 0) matDiffer++
              }
            }
          }
        }
        const matOut = readF64(mat.out)
        let outDiffer = 0
        for (let e = 0; e < got.length; e++) if ((got[e] !== 0) !== (matOut[e] !== 0)) outDiffer++
        t.equal(differ, 0, `seq ${seq}, p ${p}: every keep bit equals philox_keep (${kept} kept of ${want.length})`)
        t.equal(outDiffer, 0, `seq ${seq}, p ${p}: the same elements are dropped as by attentionForward`)
        t.equal(matDiffer, 0, 'every probability of the probe is positive, so zeros are drops')
      }
    })

    t.test('forward: an all-padding row stays uniform even with scores near 1e3', async (t) => {
      const c: Case = { name: 'large scores', batch: 2, seq: 6, heads: 2, headDim: 4, mask: maskRows(6, [4, 0]),
        p: 0, seed: 0n, offset: 0n, fdSamples: 0 }
      const n = c.batch * c.seq * c.heads * c.headDim
      const x = { q: randomArray(n, 700, -40, 40), k: randomArray(n, 701, -40, 40), v: randomArray(n, 702) }
      const { out } = runFlash(c, x)
      const hidden = c.heads * c.headDim
      const mean = new Float64Array(hidden)
      for (let j = 0; j < c.seq; j++) for (let e = 0; e < hidden; e++) mean[e] += x.v[(c.seq + j) * hidden + e] / c.seq
      const rows = readF64(out).subarray(c.seq * hidden)
      const cmp = compare(rows, Array.from({ length: rows.length }, (_, i) => mean[i % hidden]), 1e-5, 1e-6)
      t.ok(cmp.ok, `batch row 1: its outputs are the mean of v (${cmp.message})`)
    })

    cases.forEach((c, caseIndex) => {
      t.test(`backward: ${c.name}`, async (t) => {
        const x = inputsFor(c, 200 + caseIndex * 10)
        const n = x.q.length
        const factor = dropoutFactors(c)
        const ref = referenceForward(c, x, factor)
        const g = randomArray(n, 300 + caseIndex)
        const want = referenceBackward(c, x, factor, ref.probs, g)
        const fwd = runFlash(c, x)
        const dout = buf(g)
        // Gradients accumulate: start from nonzero contents.
        const init = { dq: randomArray(n, 1), dk: randomArray(n, 2), dv: randomArray(n, 3) }
        const grads = { dq: buf(init.dq), dk: buf(init.dk), dv: buf(init.dv) }
        addon.flashAttentionBackward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset,
          fwd.q, fwd.k, fwd.v, fwd.mask, fwd.lse, fwd.out, dout, grads.dq, grads.dk, grads.dv)
        const got = {
          dq: readF64(grads.dq).map((v, i) => v - init.dq[i]),
          dk: readF64(grads.dk).map((v, i) => v - init.dk[i]),
          dv: readF64(grads.dv).map((v, i) => v - init.dv[i]),
        }
        for (const name of ['dq', 'dk', 'dv'] as const) {
          const cmp = compare(got[name], want[name], 1e-4, gradientAtol(name, want[name]))
          t.ok(cmp.ok, `${name} += the analytic reference (${cmp.message})`)
        }

        // The materialised op's backward from the same start.
        const mat = runMaterialized(c, x)
        const matGrads = { dq: buf(init.dq), dk: buf(init.dk), dv: buf(init.dv) }
        addon.attentionBackward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset,
          mat.q, mat.k, mat.v, mat.probs, dout, matGrads.dq, matGrads.dk, matGrads.dv)
        for (const name of ['dq', 'dk', 'dv'] as const) {
          const other = readF64(matGrads[name])
          const mine = readF64(grads[name])
          const cmp = compare(mine, other, 1e-5, 2e-6 * Math.max(maxAbs(other), 1))
          t.ok(cmp.ok, `${name} matches attentionBackward (${cmp.message})`)
        }

        // Central differences of sum(g * out) through the float64 reference forward.
        for (const { dname, fd, got: mine } of finiteDifferences(c, x, factor, g, got, c.fdSamples, 400 + caseIndex)) {
          const scale = Math.max(maxAbs(fd), 1e-3)
          const cmp = compare(mine, fd, 1e-3, 1e-5 * scale + 3e-7)
          t.ok(cmp.ok, `${dname} matches finite differences at ${fd.length} sampled elements (${cmp.message})`)
        }
      })
    })

    t.test('backward: accumulates across calls, and null outputs skip their work', async (t) => {
      const c = cases[5]
      const x = inputsFor(c, 500)
      const n = x.q.length
      const factor = dropoutFactors(c)
      const ref = referenceForward(c, x, factor)
      const g = randomArray(n, 501)
      const want = referenceBackward(c, x, factor, ref.probs, g)
      const fwd = runFlash(c, x)
      const dout = buf(g)
      const call = (dq: NativeBuffer | null, dk: NativeBuffer | null, dv: NativeBuffer | null) =>
        addon.flashAttentionBackward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset,
          fwd.q, fwd.k, fwd.v, fwd.mask, fwd.lse, fwd.out, dout, dq, dk, dv)
      const twice = { dq: buf(new Float64Array(n)), dk: buf(new Float64Array(n)), dv: buf(new Float64Array(n)) }
      call(twice.dq, twice.dk, twice.dv)
      call(twice.dq, twice.dk, twice.dv)
      for (const name of ['dq', 'dk', 'dv'] as const) {
        const doubled = want[name].map((v) => 2 * v)
        const cmp = compare(readF64(twice[name]), doubled, 1e-4, gradientAtol(name, doubled))
        t.ok(cmp.ok, `two calls give 2 x ${name} (${cmp.message})`)
      }
      for (const only of ['dq', 'dk', 'dv'] as const) {
        const target = buf(new Float64Array(n))
        call(only === 'dq' ? target : null, only === 'dk' ? target : null, only === 'dv' ? target : null)
        const cmp = compare(readF64(target), want[only], 1e-4, gradientAtol(only, want[only]))
        t.ok(cmp.ok, `${only} alone, the others null (${cmp.message})`)
      }
      t.doesNotThrow(() => call(null, null, null), 'all gradients null is a no-op')
    })

    t.test('arguments are validated with the tensor and its shape', async (t) => {
      const c = cases[0]
      const x = inputsFor(c, 800)
      const fwd = runFlash(c, x)
      const short = buf(new Float64Array(c.batch * c.heads * c.seq - 1))
      t.throws(() => addon.flashAttentionForward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), 0, 0n, 0n,
        fwd.q, fwd.k, fwd.v, fwd.mask, short, fwd.out), /flashAttentionForward: .*lse.*\[3, 3, 37\]/, 'a short lse names lse and its shape')
      t.throws(() => addon.flashAttentionForward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), 0, 0n, 0n,
        fwd.q, fwd.k, fwd.v, fwd.mask, fwd.lse, fwd.q), /flashAttentionForward: .*'out'.*'q'/, 'out may not alias q')
      t.throws(() => addon.flashAttentionBackward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), 1, 0n, 0n,
        fwd.q, fwd.k, fwd.v, fwd.mask, fwd.lse, fwd.out, fwd.out, null, null, null), /dropoutP/, 'dropout 1 is refused')
      t.throws(() => addon.flashAttentionBackward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), 0, 0n, 0n,
        fwd.q, fwd.k, fwd.v, fwd.mask, fwd.lse, fwd.out, fwd.out, fwd.q, null, null), /'dq'.*'q'/, 'dq may not alias q')
    })

    if (dev.name === 'cpu') {
      t.test('results do not depend on the thread count', async (t) => {
        const c = cases[5]
        const x = inputsFor(c, 600)
        const g = buf(randomArray(x.q.length, 601))
        const before = addon.getNumThreads()
        const run = (threads: number) => {
          addon.setNumThreads(threads)
          const fwd = runFlash(c, x)
          const dq = buf(new Float64Array(x.q.length))
          const dk = buf(new Float64Array(x.q.length))
          const dv = buf(new Float64Array(x.q.length))
          addon.flashAttentionBackward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset,
            fwd.q, fwd.k, fwd.v, fwd.mask, fwd.lse, fwd.out, g, dq, dk, dv)
          return [fwd.lse, fwd.out, dq, dk, dv].map((b) => Array.from(readF64(b)))
        }
        try {
          t.same(run(1), run(3), 'lse, out, dq, dk, dv identical with 1 and 3 threads')
        } finally {
          addon.setNumThreads(before)
        }
      })
    } else {
      t.test('results are identical run to run (no atomics)', async (t) => {
        const c = cases[5]
        const x = inputsFor(c, 610)
        const g = buf(randomArray(x.q.length, 611))
        const run = () => {
          const fwd = runFlash(c, x)
          const dq = buf(new Float64Array(x.q.length))
          const dk = buf(new Float64Array(x.q.length))
          const dv = buf(new Float64Array(x.q.length))
          addon.flashAttentionBackward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset,
            fwd.q, fwd.k, fwd.v, fwd.mask, fwd.lse, fwd.out, g, dq, dk, dv)
          return [fwd.lse, fwd.out, dq, dk, dv].map((b) => Array.from(readF64(b)))
        }
        t.same(run(), run(), 'lse, out, dq, dk, dv identical in two runs')
      })
    }

    t.test('attention(): fused and materialized agree through autograd', async (t) => {
      const device = dev.name
      const [batch, seq, heads, headDim] = [3, 37, 3, 24]
      const n = batch * seq * heads * headDim
      const mask = maskRows(seq, [37, 20, 0])
      const run = (implementation: 'fused' | 'materialized') => {
        const mk = (seed: number) => tensor(Float32Array.from(randomArray(n, seed)), { shape: [batch, seq, heads * headDim], device, requiresGrad: true })
        const q = mk(1), k = mk(2), v = mk(3)
        const m = tensor(Int32Array.from(mask), { shape: [batch, seq], dtype: 'int32', device })
        const out: Tensor = attention(q, k, v, m, { heads, dropoutP: 0.1, training: true, implementation })
        const g = tensor(Float32Array.from(randomArray(n, 4)), { shape: out.shape, device })
        out.backward(g)
        const result = [out, q.grad!, k.grad!, v.grad!].map((x) => Float64Array.from(x.toArray() as ArrayLike<number>))
        for (const x of [q, k, v, m, out, g]) x.dispose()
        return result
      }
      const { manualSeed } = await import('../../lib/index.js')
      manualSeed(5)
      const fused = run('fused')
      manualSeed(5)
      const materialized = run('materialized')
      const names = ['out', 'dq', 'dk', 'dv']
      fused.forEach((f, i) => {
        const cmp = compare(f, materialized[i], 1e-5, 2e-6 * Math.max(maxAbs(materialized[i]), 1))
        t.ok(cmp.ok, `${names[i]}: fused matches materialized with dropout 0.1 (${cmp.message})`)
      })
    })

    t.test('every buffer is freed', async (t) => {
      keep.freeNow()
      t.equal(addon.memoryStats().liveBuffers, liveBefore)
    })
  })
}

t.test('the attention switch: setAttentionImplementation and BERTKIT_ATTENTION', async (t) => {
  const saved = process.env.BERTKIT_ATTENTION
  t.teardown(() => {
    setAttentionImplementation('auto')
    if (saved === undefined) delete process.env.BERTKIT_ATTENTION
    else process.env.BERTKIT_ATTENTION = saved
  })
  delete process.env.BERTKIT_ATTENTION
  setAttentionImplementation('auto')
  t.equal(attentionImplementation('cuda'), 'materialized', 'CUDA defaults to materialized until the fused kernels pass on a GPU')
  t.match(attentionImplementation('cpu'), /^(fused|materialized)$/, `CPU default: ${attentionImplementation('cpu')}`)
  process.env.BERTKIT_ATTENTION = 'fused'
  t.equal(attentionImplementation('cuda'), 'fused', 'BERTKIT_ATTENTION=fused')
  process.env.BERTKIT_ATTENTION = 'Materialized'
  t.equal(attentionImplementation('cpu'), 'materialized', 'BERTKIT_ATTENTION is case-insensitive')
  setAttentionImplementation('fused')
  t.equal(attentionImplementation('cpu'), 'fused', 'the setter wins over the environment')
  setAttentionImplementation('auto')
  process.env.BERTKIT_ATTENTION = 'flash'
  t.throws(() => attentionImplementation('cpu'), /BERTKIT_ATTENTION must be fused, materialized or auto, got "flash"/)
  t.throws(() => setAttentionImplementation('fast' as 'fused'), /setAttentionImplementation must be fused, materialized or auto/)
})
