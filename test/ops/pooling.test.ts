// Masked max pooling (the "max" classification head): ties, NaN, padding on
// either side, a row with no token (random values against the float64
// reference are cases of the backend table, cases/pooling.ts); backward
// against finite differences of the op itself and accumulating into a
// non-zero dh; bad input naming the tensor. Then, through the tensor API, that
// maskedMaxPool queues its work instead of reading h back to the host.
import t from 'tap'
import { native, DEVICE_CODE, DTYPE_CODE, type NativeBuffer } from '../../lib/native.js'
import { tensor, tidy, keep, sum, mul, maskedMaxPool, type Tensor } from '../../lib/index.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { randomArray, rng, f32Buffer, i32Buffer, poisoned, readF64, compare, freeAll } from '../helpers/reference.js'
import { track } from '../helpers/checks.js'
import { lengthsMask, maxPool, maxPoolGrad } from './cases/pooling.js'

const N = native()

/**
 * Values whose maxima are well separated (every column's values are a shuffle
 * of 0, 0.05, 0.1, ... plus noise under 0.01), so a finite-difference step of
 * 1e-2 never changes which token is the maximum. Padded slots hold 10 + s, larger
 * than any token, so an op that looked at them would be caught.
 */
function separatedValues(batch: number, seq: number, dim: number, mask: number[], seed: number): Float32Array {
  const r = rng(seed)
  const h = new Float32Array(batch * seq * dim)
  for (let b = 0; b < batch; b++) {
    for (let d = 0; d < dim; d++) {
      const order = Array.from({ length: seq }, (_, s) => s)
      for (let i = seq - 1; i > 0; i--) {
        const j = Math.floor(r() * (i + 1))
        ;[order[i], order[j]] = [order[j], order[i]]
      }
      for (let s = 0; s < seq; s++) {
        h[(b * seq + s) * dim + d] = mask[b * seq + s] ? order[s] * 0.05 - 1 + 0.01 * r() : 10 + s
      }
    }
  }
  return h
}

/** An int32 buffer of n elements, poisoned with -7 (no op writes that), so a forgotten element shows. */
function poisonedIndex(device: number, n: number): NativeBuffer {
  return i32Buffer(device, new Int32Array(n).fill(-7))
}

function readI32(b: NativeBuffer): number[] {
  return Array.from(b.read() as Int32Array)
}

/** Values and arg-max must equal the reference exactly (NaN where it has NaN). */
function sameResult(t: tap.Test, label: string, out: NativeBuffer, argmax: NativeBuffer, want: { out: Float64Array; argmax: Int32Array }) {
  const got = readF64(out)
  let bad = -1
  for (let i = 0; i < want.out.length && bad < 0; i++) {
    const ok = Number.isNaN(want.out[i]) ? Number.isNaN(got[i]) : got[i] === want.out[i]
    if (!ok) bad = i
  }
  t.ok(bad < 0, `${label}: out exact${bad < 0 ? '' : ` (first difference at [${bad}]: got ${got[bad]}, want ${want.out[bad]})`}`)
  t.same(readI32(argmax), Array.from(want.argmax), `${label}: argmax exact`)
}

for (const dev of devicesUnderTest()) {
  t.test(`masked max pooling on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const d = dev.code
    const liveBefore = N.memoryStats().liveBuffers

    // [batch, seq, dim, lengths per row]: padding, full rows, length 1, odd widths.
    const cases: Array<[number, number, number, number[]]> = [
      [3, 9, 7, [9, 4, 1]],
      [2, 5, 1, [5, 2]],
      [4, 33, 384, [33, 20, 1, 32]],
      [1, 1, 7, [1]],
      [16, 128, 768, Array.from({ length: 16 }, (_, i) => 1 + ((i * 37) % 128))],
    ]
    for (const [batch, seq, dim, lengths] of cases) {
      const what = `[${batch}, ${seq}, ${dim}], lengths ${lengths.length > 4 ? 'mixed' : lengths.join(' ')}`
      await t.test(`backward: ${what}`, async (t) => {
        const buf = track(t)
        const mask = lengthsMask(seq, lengths)
        const h = separatedValues(batch, seq, dim, mask, 3 * seq + dim)
        const dout = randomArray(batch * dim, 7)
        const start = randomArray(batch * seq * dim, 8)
        const hB = buf(f32Buffer(d, h)), maskB = buf(i32Buffer(d, mask))
        const out = buf(poisoned(d, batch * dim)), argmax = buf(poisonedIndex(d, batch * dim))
        N.maskedMaxPoolForward(batch, seq, dim, hB, maskB, out, argmax)
        const ref = maxPool(batch, seq, dim, h, mask)
        t.same(readI32(argmax), Array.from(ref.argmax), 'argmax exact')
        const doutB = buf(f32Buffer(d, dout))
        const dh = buf(f32Buffer(d, start))
        N.maskedMaxPoolBackward(batch, seq, dim, argmax, doutB, dh)
        const once = maxPoolGrad(batch, seq, dim, ref.argmax, dout, start)
        let c = compare(readF64(dh), once, 1e-6, 1e-7)
        t.ok(c.ok, `accumulates into a non-zero dh: ${c.message}`)
        N.maskedMaxPoolBackward(batch, seq, dim, argmax, doutB, dh)
        c = compare(readF64(dh), maxPoolGrad(batch, seq, dim, ref.argmax, dout, once), 1e-6, 2e-7)
        t.ok(c.ok, `twice: accumulates again: ${c.message}`)
        t.doesNotThrow(() => N.maskedMaxPoolBackward(batch, seq, dim, argmax, doutB, null), 'a null dh is skipped')

        if (batch * seq * dim <= 2000) {
          // d sum(dout * pool(h)) / dh by central differences through the op itself.
          const eps = 1e-2
          const loss = (values: Float32Array): number => {
            const hv = f32Buffer(d, values), o = poisoned(d, batch * dim), a = poisonedIndex(d, batch * dim)
            try {
              N.maskedMaxPoolForward(batch, seq, dim, hv, maskB, o, a)
              return readF64(o).reduce((s, v, i) => s + dout[i] * v, 0)
            } finally {
              freeAll(hv, o, a)
            }
          }
          const fd = new Float64Array(h.length)
          for (let i = 0; i < h.length; i++) {
            const plus = Float32Array.from(h), minus = Float32Array.from(h)
            plus[i] += eps
            minus[i] -= eps
            fd[i] = (loss(plus) - loss(minus)) / (plus[i] - minus[i])
          }
          const fresh = buf(f32Buffer(d, new Float64Array(h.length)))
          N.maskedMaxPoolBackward(batch, seq, dim, argmax, doutB, fresh)
          c = compare(readF64(fresh), fd, 1e-4, 1e-5)
          t.ok(c.ok, `backward vs finite differences (${h.length} coordinates): ${c.message}`)
        }
      })
    }

    await t.test('ties go to the first token, after left padding too', async (t) => {
      const buf = track(t)
      // Row 0: all equal, no padding. Row 1: left padding (0, 0, 1, 1, 1), equal values.
      // Row 2: the maximum 3 appears at tokens 1 and 3; -0 and 0 tie at tokens 0 and 2 in column 1.
      const [batch, seq, dim] = [3, 5, 2]
      const mask = [1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0]
      const h = [
        2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
        9, 9, 4, 4, 4, 4, 4, 4, 4, 4,
        1, -0, 3, -5, 1, 0, 3, -1, 7, 8,
      ]
      const out = buf(poisoned(d, batch * dim)), argmax = buf(poisonedIndex(d, batch * dim))
      N.maskedMaxPoolForward(batch, seq, dim, buf(f32Buffer(d, h)), buf(i32Buffer(d, mask)), out, argmax)
      t.same(readI32(argmax), [0, 0, 2, 2, 1, 0], 'the first of equal maxima; -0 and 0 are equal; the padded 8 is ignored')
      t.same(Array.from(readF64(out)), [2, 2, 4, 4, 3, -0])
      t.ok(Object.is(readF64(out)[5], -0), 'the first of -0 and 0 is the one taken')
      sameResult(t, 'reference agrees', out, argmax, maxPool(batch, seq, dim, h, mask))
    })

    await t.test('NaN wins, the first NaN among several; infinities are ordinary values', async (t) => {
      const buf = track(t)
      const [batch, seq, dim] = [2, 5, 4]
      const mask = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
      const h = new Float32Array(batch * seq * dim)
      const set = (b: number, s: number, c: number, v: number) => { h[(b * seq + s) * dim + c] = v }
      for (let s = 0; s < seq; s++) for (let c = 0; c < dim; c++) { set(0, s, c, s); set(1, s, c, -s) }
      set(0, 2, 0, NaN)       // column 0: NaN at 2, larger values after it
      set(0, 4, 0, NaN)
      set(0, 0, 1, NaN)       // column 1: NaN at the first token
      set(0, 3, 2, Infinity)  // column 2: +inf is the maximum
      set(1, 4, 0, NaN)       // row 1, column 0: NaN only in the padded slot: ignored
      for (let s = 0; s < seq; s++) set(1, s, 1, -Infinity) // all -inf: the first token
      set(1, 2, 3, NaN)
      set(1, 1, 3, Infinity)  // NaN beats an earlier +inf
      const out = buf(poisoned(d, batch * dim)), argmax = buf(poisonedIndex(d, batch * dim))
      N.maskedMaxPoolForward(batch, seq, dim, buf(f32Buffer(d, h)), buf(i32Buffer(d, mask)), out, argmax)
      t.same(readI32(argmax), [2, 0, 3, 4, 0, 0, 0, 2])
      const got = Array.from(readF64(out))
      t.ok(Number.isNaN(got[0]) && Number.isNaN(got[1]) && Number.isNaN(got[7]), 'NaN comes out where a token held NaN')
      t.same([got[2], got[3], got[4], got[5], got[6]], [Infinity, 4, -0, -Infinity, -0])
      sameResult(t, 'reference agrees', out, argmax, maxPool(batch, seq, dim, h, mask))
      const dh = buf(f32Buffer(d, new Float32Array(h.length)))
      N.maskedMaxPoolBackward(batch, seq, dim, argmax, buf(f32Buffer(d, [1, 2, 3, 4, 5, 6, 7, 8])), dh)
      const g = readF64(dh)
      t.same([g[(0 * seq + 2) * dim + 0], g[(0 * seq + 0) * dim + 1], g[(1 * seq + 2) * dim + 3]], [1, 2, 8], 'the gradient goes to the NaN token')
    })

    await t.test('a row with no token: out 0, argmax -1, no gradient', async (t) => {
      const buf = track(t)
      const [batch, seq, dim] = [3, 4, 3]
      const mask = [1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0]
      const h = randomArray(batch * seq * dim, 21)
      const out = buf(poisoned(d, batch * dim)), argmax = buf(poisonedIndex(d, batch * dim))
      N.maskedMaxPoolForward(batch, seq, dim, buf(f32Buffer(d, h)), buf(i32Buffer(d, mask)), out, argmax)
      const ref = maxPool(batch, seq, dim, h, mask)
      sameResult(t, 'middle row empty', out, argmax, ref)
      t.same(readI32(argmax).slice(dim, 2 * dim), [-1, -1, -1])
      t.same(Array.from(readF64(out)).slice(dim, 2 * dim), [0, 0, 0])
      const start = randomArray(batch * seq * dim, 22)
      const dout = randomArray(batch * dim, 23)
      const dh = buf(f32Buffer(d, start))
      N.maskedMaxPoolBackward(batch, seq, dim, argmax, buf(f32Buffer(d, dout)), dh)
      const got = readF64(dh)
      t.ok(got.subarray(seq * dim, 2 * seq * dim).every((v, i) => v === start[seq * dim + i]), 'the empty row of dh is untouched')
      const c = compare(got, maxPoolGrad(batch, seq, dim, ref.argmax, dout, start), 1e-6, 1e-7)
      t.ok(c.ok, `the other rows get theirs: ${c.message}`)
      // Whatever argmax holds, backward stays inside dh: values outside [0, seq) send nothing.
      const wild = buf(i32Buffer(d, [-1, 4, 1000, -7, 2147483647, -2147483648, 3, 0, -1]))
      const dh2 = buf(f32Buffer(d, new Float32Array(batch * seq * dim)))
      N.maskedMaxPoolBackward(batch, seq, dim, wild, buf(f32Buffer(d, [1, 2, 3, 4, 5, 6, 7, 8, 9])), dh2)
      const g2 = readF64(dh2)
      const want = new Float64Array(batch * seq * dim)
      want[(2 * seq + 3) * dim + 0] = 7
      want[(2 * seq + 0) * dim + 1] = 8
      t.same(Array.from(g2), Array.from(want), 'only the in-range entries land')
    })

    await t.test('empty shapes do nothing', async (t) => {
      const buf = track(t)
      const h = buf(f32Buffer(d, [1]))
      const m = buf(i32Buffer(d, [1]))
      const out = buf(poisoned(d, 1)), argmax = buf(poisonedIndex(d, 1))
      N.maskedMaxPoolForward(0, 1, 1, h, m, out, argmax)
      N.maskedMaxPoolForward(1, 1, 0, h, m, out, argmax)
      N.maskedMaxPoolBackward(0, 1, 1, argmax, out, h)
      t.ok(Number.isNaN(readF64(out)[0]), 'out untouched')
      t.same(readI32(argmax), [-7], 'argmax untouched')
      // seq 0: every row is empty.
      N.maskedMaxPoolForward(1, 0, 1, h, m, out, argmax)
      t.same([readF64(out)[0], readI32(argmax)[0]], [0, -1], 'seq 0: an empty row')
    })

    await t.test('argmax written from the host is not read back stale', async (t) => {
      const buf = track(t)
      // write() keeps a host copy of int32 values; the op must drop it.
      const argmax = buf(i32Buffer(d, [5, 5]))
      const out = buf(poisoned(d, 2))
      N.maskedMaxPoolForward(1, 2, 2, buf(f32Buffer(d, [0, 3, 1, 2])), buf(i32Buffer(d, [1, 1])), out, argmax)
      t.same(readI32(argmax), [1, 0])
      t.same(Array.from(readF64(out)), [1, 3])
    })

    if (dev.name === 'cpu') {
      await t.test('the result does not depend on the thread count', async (t) => {
        const buf = track(t)
        const [batch, seq, dim] = [16, 64, 96]
        const mask = lengthsMask(seq, Array.from({ length: batch }, (_, i) => 1 + ((i * 29) % seq)))
        const h = buf(f32Buffer(d, randomArray(batch * seq * dim, 31)))
        const m = buf(i32Buffer(d, mask))
        const saved = N.getNumThreads()
        const results: string[] = []
        for (const threads of [1, 2, 3]) {
          N.setNumThreads(threads)
          const out = buf(poisoned(d, batch * dim)), argmax = buf(poisonedIndex(d, batch * dim))
          N.maskedMaxPoolForward(batch, seq, dim, h, m, out, argmax)
          results.push(JSON.stringify([Array.from(readF64(out)), readI32(argmax)]))
        }
        N.setNumThreads(saved)
        t.equal(results[1], results[0], '2 threads == 1 thread')
        t.equal(results[2], results[0], '3 threads == 1 thread')
      })
    }

    await t.test('bad input names the op and the tensor', async (t) => {
      const buf = track(t)
      const [batch, seq, dim] = [2, 3, 4]
      const h = buf(f32Buffer(d, randomArray(batch * seq * dim, 1)))
      const mask = buf(i32Buffer(d, [1, 1, 1, 1, 0, 0]))
      const out = buf(poisoned(d, batch * dim)), argmax = buf(poisonedIndex(d, batch * dim))
      const fwd = /^maskedMaxPoolForward: /
      t.throws(() => N.maskedMaxPoolForward(batch, seq, dim, buf(i32Buffer(d, new Int32Array(24))), mask, out, argmax),
        /^maskedMaxPoolForward: tensor 'h' has dtype int32, expected float32/)
      t.throws(() => N.maskedMaxPoolForward(batch, seq, dim, h, buf(f32Buffer(d, [1, 1, 1, 1, 1, 1])), out, argmax),
        /^maskedMaxPoolForward: tensor 'mask' has dtype float32, expected int32/)
      t.throws(() => N.maskedMaxPoolForward(batch, seq, dim, h, mask, buf(i32Buffer(d, new Int32Array(8))), argmax),
        /^maskedMaxPoolForward: tensor 'out' has dtype int32, expected float32/)
      t.throws(() => N.maskedMaxPoolForward(batch, seq, dim, h, mask, out, buf(poisoned(d, 8))),
        /^maskedMaxPoolForward: tensor 'argmax' has dtype float32, expected int32/)
      t.throws(() => N.maskedMaxPoolForward(batch, seq + 1, dim, h, mask, out, argmax),
        /^maskedMaxPoolForward: tensor 'h' holds 24 elements but shape \[2, 4, 4\] needs 32/)
      t.throws(() => N.maskedMaxPoolForward(batch, seq, dim, h, buf(i32Buffer(d, [1, 1, 1, 1, 1])), out, argmax),
        /^maskedMaxPoolForward: tensor 'mask' holds 5 elements but shape \[2, 3\] needs 6/)
      t.throws(() => N.maskedMaxPoolForward(batch, seq, dim, h, mask, buf(poisoned(d, 7)), argmax),
        /^maskedMaxPoolForward: tensor 'out' holds 7 elements but shape \[2, 4\] needs 8/)
      t.throws(() => N.maskedMaxPoolForward(batch, seq, dim, h, mask, out, buf(poisonedIndex(d, 7))),
        /^maskedMaxPoolForward: tensor 'argmax' holds 7 elements but shape \[2, 4\] needs 8/)
      t.throws(() => N.maskedMaxPoolForward(batch, seq, dim, h, mask, h, argmax), /^maskedMaxPoolForward: output 'out' must not be the same buffer as input 'h'/)
      const both = buf(i32Buffer(d, new Int32Array(batch * dim).fill(1)))  // big enough to be either
      t.throws(() => N.maskedMaxPoolForward(batch, seq, dim, h, both, out, both), /^maskedMaxPoolForward: output 'argmax' must not be the same buffer as input 'mask'/)
      t.throws(() => N.maskedMaxPoolForward(-1, seq, dim, h, mask, out, argmax), fwd)
      t.throws(() => N.maskedMaxPoolForward(batch, 2 ** 31, dim, h, mask, out, argmax), /^maskedMaxPoolForward: 'seq' 2147483648 does not fit the int32 argmax/)
      const gone = f32Buffer(d, [0])
      gone.free()
      t.throws(() => N.maskedMaxPoolForward(batch, seq, dim, gone, mask, out, argmax), /^maskedMaxPoolForward: tensor 'h' was already freed/)
      t.ok(Number.isNaN(readF64(out)[0]) && readI32(argmax)[0] === -7, 'the rejected calls wrote nothing')

      const dh = buf(f32Buffer(d, new Float32Array(batch * seq * dim)))
      t.throws(() => N.maskedMaxPoolBackward(batch, seq, dim, out, out, dh), /^maskedMaxPoolBackward: tensor 'argmax' has dtype float32, expected int32/)
      t.throws(() => N.maskedMaxPoolBackward(batch, seq, dim, argmax, argmax, dh), /^maskedMaxPoolBackward: tensor 'dout' has dtype int32, expected float32/)
      t.throws(() => N.maskedMaxPoolBackward(batch, seq, dim, argmax, out, buf(poisoned(d, 23))),
        /^maskedMaxPoolBackward: tensor 'dh' holds 23 elements but shape \[2, 3, 4\] needs 24/)
      t.throws(() => N.maskedMaxPoolBackward(batch, seq, dim, argmax, buf(poisoned(d, 7)), dh),
        /^maskedMaxPoolBackward: tensor 'dout' holds 7 elements but shape \[2, 4\] needs 8/)
      t.throws(() => N.maskedMaxPoolBackward(batch, seq, dim, argmax, out, out), /^maskedMaxPoolBackward: /)
      t.ok(readF64(dh).every((v) => v === 0), 'the rejected backward calls wrote nothing')
      if (N.cudaCompiled && dev.name === 'cpu' && N.probeDevice(DEVICE_CODE.cuda).ok) {
        const other = buf(f32Buffer(DEVICE_CODE.cuda, randomArray(batch * seq * dim, 1)))
        t.throws(() => N.maskedMaxPoolForward(batch, seq, dim, other, mask, out, argmax), fwd)
      }
    })

    await t.test('maskedMaxPool (tensor API): forward and gradient on this device', async (t) => {
      const [batch, seq, dim] = [3, 6, 5]
      const lengths = [6, 3, 1]
      const maskValues = lengthsMask(seq, lengths)
      const h0 = separatedValues(batch, seq, dim, maskValues, 41)
      const r0 = Float32Array.from(randomArray(batch * dim, 42))
      const ref = maxPool(batch, seq, dim, h0, maskValues)
      const x = keep(tensor(h0, { shape: [batch, seq, dim], requiresGrad: true, device: dev.name }))
      const mask = keep(tensor(Int32Array.from(maskValues), { shape: [batch, seq], dtype: 'int32', device: dev.name }))
      try {
        const y = tidy(() => {
          const pooled = maskedMaxPool(x, mask)
          sum(mul(pooled, tensor(r0, { shape: [batch, dim], device: dev.name }))).backward()
          return Array.from(pooled.toFloat32Array())
        })
        t.same(y, Array.from(ref.out, (v) => Math.fround(v)), 'forward: the reference maxima')
        const g = Array.from(x.grad!.toFloat32Array())
        t.same(g, Array.from(maxPoolGrad(batch, seq, dim, ref.argmax, r0, new Float64Array(h0.length)), (v) => Math.fround(v)),
          'gradient: at the arg-max tokens only')
        const all = tidy(() => Array.from(maskedMaxPool(x, null).toFloat32Array()))
        t.same(all, Array.from(maxPool(batch, seq, dim, h0, new Array(batch * seq).fill(1)).out, (v) => Math.fround(v)),
          'a null mask pools over every token, padded slots included')
        const h2 = keep(tensor(new Float32Array(4), { shape: [2, 2], device: dev.name }))
        t.throws(() => maskedMaxPool(h2, null), /^maskedMaxPool: h must be 3-D \[batch, seq, dim\], got \[2, 2\]/)
        const m2 = keep(tensor(new Float32Array(batch * seq), { shape: [batch, seq], device: dev.name }))
        t.throws(() => maskedMaxPool(x, m2), /^maskedMaxPool: 'mask' must be int32, got float32/)
        h2.dispose()
        m2.dispose()
      } finally {
        x.dispose()
        mask.dispose()
      }
    })

    t.equal(N.memoryStats().liveBuffers, liveBefore, 'every buffer the tests made was freed')
  })
}

t.test('maskedMaxPool queues its work: no read of h, no wait for the ops before it (cpu stream)', async (t) => {
  const CPU = DEVICE_CODE.cpu
  const before = N.getCpuAsync()
  N.setCpuAsync(true)
  const made: NativeBuffer[] = []
  const tensors: Tensor[] = []
  t.teardown(() => {
    freeAll(...made)
    for (const z of tensors) z.dispose()
    N.setCpuAsync(before)
  })
  // An op queued ahead of the pooling that fails on the stream: ids written in
  // two parts have no host copy, so their range check runs when the op does.
  // Anything that waited for the queue (a read of h, as before) would throw
  // this error at once; the pooling must not.
  const table = f32Buffer(CPU, randomArray(10, 1))
  const ids = new N.NativeBuffer(CPU, DTYPE_CODE.int32, 2)
  ids.write(Int32Array.from([1]), 0)
  ids.write(Int32Array.from([9]), 1)
  const embedded = f32Buffer(CPU, new Float32Array(4))
  made.push(table, ids, embedded)
  N.embeddingForward(2, 2, 5, ids, table, embedded)
  const h = tensor(Float32Array.from([1, 5, 3, 2, 4, 0]), { shape: [1, 3, 2] })
  const mask = tensor(Int32Array.from([1, 1, 0]), { shape: [1, 3], dtype: 'int32' })
  tensors.push(h, mask)
  let pooled: Tensor | null = null
  t.doesNotThrow(() => { pooled = maskedMaxPool(h, mask) }, 'maskedMaxPool returns without waiting for the queue')
  t.doesNotThrow(() => { tensors.push(maskedMaxPool(h, null)) }, 'with a null mask as well')
  tensors.push(pooled!)
  t.throws(() => N.synchronize(CPU), /embeddingForward: ids\[1\] = 9 is out of range \[0, 5\)/, 'the queued error surfaces at the next wait')
  // Once the error has been read, the op runs again.
  const again = maskedMaxPool(h, mask)
  tensors.push(again)
  t.same(Array.from(again.toFloat32Array()), [3, 5])
})
