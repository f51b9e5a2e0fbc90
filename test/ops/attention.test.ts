// attentionForward / attentionBackward on every backend, against a float64
// JavaScript reference (with the Philox port for attention dropout) and
// against central finite differences of that reference.
import { t } from 'tap'
import { native, type NativeBuffer } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { compare, f32Buffer, i32Buffer, poisoned, randomArray, readF64 } from '../helpers/reference.js'
import { track } from '../helpers/checks.js'
import {
  FLT_MAX, dropoutFactors, finiteDifferences, inputsFor, maskRows, maxAbs, referenceBackward, referenceForward, scaleOf,
  type AttentionCase, type Inputs,
} from '../helpers/attention_reference.js'

type Case = AttentionCase

// hidden 72 = 3 heads x 24, as the issue asks. Batch row 1 pads its last keys,
// batch row 2 is all padding.
const SEQ = 37
const cases: Case[] = [
  { name: 'seq 37, partly and fully padded rows', batch: 3, seq: SEQ, heads: 3, headDim: 24,
    mask: maskRows(SEQ, [SEQ, 26, 0]), p: 0, seed: 0n, offset: 0n },
  { name: 'seq 37 with dropout 0.1', batch: 3, seq: SEQ, heads: 3, headDim: 24,
    mask: maskRows(SEQ, [SEQ, 26, 0]), p: 0.1, seed: 0xfeedface12345678n, offset: 0xfffffff0n },
  { name: 'seq 1, one row all padding', batch: 2, seq: 1, heads: 3, headDim: 24,
    mask: [1, 0], p: 0, seed: 0n, offset: 0n },
  { name: 'seq 1 with dropout 0.5', batch: 4, seq: 1, heads: 3, headDim: 24,
    mask: [1, 1, 0, 1], p: 0.5, seed: 5n, offset: 17n },
  { name: 'seq 5, one head of 7, keys padded', batch: 2, seq: 5, heads: 1, headDim: 7,
    mask: [1, 1, 1, 0, 0, 1, 0, 1, 1, 1], p: 0.3, seed: 9n, offset: 0n },
]

for (const dev of devicesUnderTest()) {
  t.test(`attention on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const addon = native()
    const liveBefore = addon.memoryStats().liveBuffers
    const keep = track(t)
    const buf = (values: ArrayLike<number>) => keep(f32Buffer(dev.code, values))

    const runForward = (c: Case, x: Inputs) => {
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
        const { probs, out } = runForward(c, x)
        const gotProbs = readF64(probs)
        const gotOut = readF64(out)
        t.ok(gotProbs.every(Number.isFinite) && gotOut.every(Number.isFinite), 'probs and out are finite (no NaN)')
        const cp = compare(gotProbs, ref.probs, 1e-5, 1e-7)
        t.ok(cp.ok, `probs (before dropout) match the reference (${cp.message})`)
        const co = compare(gotOut, ref.out, 1e-5, 2e-6)
        t.ok(co.ok, `out matches the reference (${co.message})`)

        // Rows whose keys are all padding: a uniform softmax, as transformers gives.
        for (let b = 0; b < c.batch; b++) {
          const valid = c.mask.slice(b * c.seq, (b + 1) * c.seq).reduce((a, m) => a + m, 0)
          const start = b * c.heads * c.seq * c.seq
          const block = gotProbs.subarray(start, start + c.heads * c.seq * c.seq)
          if (valid === 0) {
            const uniform = Math.fround(1 / c.seq)
            t.ok(block.every((p) => Math.abs(p - uniform) <= 1e-7), `batch row ${b} (all padding): every prob is 1/${c.seq}`)
          } else if (valid < c.seq) {
            let maskedMass = 0
            for (let e = 0; e < block.length; e++) if (!c.mask[b * c.seq + (e % c.seq)]) maskedMass += block[e]
            t.equal(maskedMass, 0, `batch row ${b}: padded keys get exactly zero probability`)
          }
        }
        if (factor) {
          const plain = referenceForward(c, x, null).out
          t.ok(compare(gotOut, plain, 1e-3, 1e-3).ok === false, 'dropout changes the output')
        }
      })
    })

    t.test('forward: an all-padding row stays uniform even with scores near 1e3', async (t) => {
      // A smaller negative bias (say -1e9) would let scores this large show
      // through; -FLT_MAX swallows any finite score, as in transformers.
      const c: Case = { name: 'large scores', batch: 2, seq: 6, heads: 2, headDim: 4,
        mask: maskRows(6, [4, 0]), p: 0, seed: 0n, offset: 0n }
      const n = c.batch * c.seq * c.heads * c.headDim
      const x = { q: randomArray(n, 700, -40, 40), k: randomArray(n, 701, -40, 40), v: randomArray(n, 702) }
      const { probs, out } = runForward(c, x)
      const got = readF64(probs)
      const padded = got.subarray(c.heads * c.seq * c.seq)
      t.ok(padded.every((p) => p === Math.fround(1 / 6)), 'batch row 1: every prob is float32(1/6)')
      const hidden = c.heads * c.headDim
      const mean = new Float64Array(hidden)
      for (let j = 0; j < c.seq; j++) for (let e = 0; e < hidden; e++) mean[e] += x.v[(c.seq + j) * hidden + e] / c.seq
      const rows = readF64(out).subarray(c.seq * hidden)
      const cmp = compare(rows, Array.from({ length: rows.length }, (_, i) => mean[i % hidden]), 1e-5, 1e-6)
      t.ok(cmp.ok, `its outputs are the mean of v (${cmp.message})`)
      t.ok(got.subarray(0, c.heads * c.seq * c.seq).some((p) => p > 0.99), 'the unpadded row is far from uniform')
    })

    cases.forEach((c, caseIndex) => {
      t.test(`backward: ${c.name}`, async (t) => {
        const x = inputsFor(c, 200 + caseIndex * 10)
        const n = x.q.length
        const factor = dropoutFactors(c)
        const ref = referenceForward(c, x, factor)
        const g = randomArray(n, 300 + caseIndex)
        const want = referenceBackward(c, x, factor, ref.probs, g)
        const fwd = runForward(c, x)
        const dout = buf(g)
        // Gradients accumulate: start from nonzero contents.
        const init = { dq: randomArray(n, 1), dk: randomArray(n, 2), dv: randomArray(n, 3) }
        const grads = { dq: buf(init.dq), dk: buf(init.dk), dv: buf(init.dv) }
        addon.attentionBackward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset,
          fwd.q, fwd.k, fwd.v, fwd.probs, dout, grads.dq, grads.dk, grads.dv)
        const got = {
          dq: readF64(grads.dq).map((v, i) => v - init.dq[i]),
          dk: readF64(grads.dk).map((v, i) => v - init.dk[i]),
          dv: readF64(grads.dv).map((v, i) => v - init.dv[i]),
        }
        for (const name of ['dq', 'dk', 'dv'] as const) {
          const scale = Math.max(maxAbs(want[name]), 1e-3)
          // Subtracting the random start costs float32 rounding of |start| <= 1.
          const cmp = compare(got[name], want[name], 1e-4, 1e-6 * scale + 2e-7)
          t.ok(cmp.ok, `${name} += the analytic reference (${cmp.message})`)
        }

        // Central differences of sum(g * out) through the float64 reference
        // forward, at a sample of elements of each input.
        for (const { dname, fd, got: native } of finiteDifferences(c, x, factor, g, got, 40, 400 + caseIndex)) {
          const scale = Math.max(maxAbs(fd), 1e-3)
          const cmp = compare(native, fd, 1e-3, 1e-5 * scale + 3e-7)
          t.ok(cmp.ok, `${dname} matches finite differences at ${fd.length} sampled elements (${cmp.message})`)
        }
      })
    })

    t.test('backward: accumulates across calls, and null outputs skip their work', async (t) => {
      const c = cases[1]
      const x = inputsFor(c, 500)
      const n = x.q.length
      const factor = dropoutFactors(c)
      const ref = referenceForward(c, x, factor)
      const g = randomArray(n, 501)
      const want = referenceBackward(c, x, factor, ref.probs, g)
      const fwd = runForward(c, x)
      const dout = buf(g)
      const call = (dq: NativeBuffer | null, dk: NativeBuffer | null, dv: NativeBuffer | null) =>
        addon.attentionBackward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset,
          fwd.q, fwd.k, fwd.v, fwd.probs, dout, dq, dk, dv)
      const twice = { dq: buf(new Float64Array(n)), dk: buf(new Float64Array(n)), dv: buf(new Float64Array(n)) }
      call(twice.dq, twice.dk, twice.dv)
      call(twice.dq, twice.dk, twice.dv)
      for (const name of ['dq', 'dk', 'dv'] as const) {
        const doubled = want[name].map((v) => 2 * v)
        const cmp = compare(readF64(twice[name]), doubled, 1e-4, 1e-6 * maxAbs(doubled))
        t.ok(cmp.ok, `two calls give 2 x ${name} (${cmp.message})`)
      }
      for (const only of ['dq', 'dk', 'dv'] as const) {
        const target = buf(new Float64Array(n))
        call(only === 'dq' ? target : null, only === 'dk' ? target : null, only === 'dv' ? target : null)
        const cmp = compare(readF64(target), want[only], 1e-4, 1e-6 * maxAbs(want[only]))
        t.ok(cmp.ok, `${only} alone, the others null (${cmp.message})`)
      }
      t.doesNotThrow(() => call(null, null, null), 'all gradients null is a no-op')
    })

    t.test('results do not depend on the thread count', async (t) => {
      const c = cases[1]
      const x = inputsFor(c, 600)
      const g = buf(randomArray(x.q.length, 601))
      const before = addon.getNumThreads()
      const run = (threads: number) => {
        addon.setNumThreads(threads)
        const fwd = runForward(c, x)
        const dq = buf(new Float64Array(x.q.length))
        const dk = buf(new Float64Array(x.q.length))
        const dv = buf(new Float64Array(x.q.length))
        addon.attentionBackward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset,
          fwd.q, fwd.k, fwd.v, fwd.probs, g, dq, dk, dv)
        return [fwd.probs, fwd.out, dq, dk, dv].map((b) => Array.from(readF64(b)))
      }
      try {
        t.same(run(1), run(2), 'probs, out, dq, dk, dv identical with 1 and 2 threads')
      } finally {
        addon.setNumThreads(before)
      }
    })

    t.test('every buffer is freed', async (t) => {
      keep.freeNow()
      t.equal(addon.memoryStats().liveBuffers, liveBefore)
    })
  })
}
