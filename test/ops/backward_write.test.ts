// The writing mode of the accumulating backward ops (the trailing write
// flags of activationBackward, sumRows, dropoutRowsBackward,
// varlenAttentionBackward and layernormBackward): the autograd engine passes
// it for a gradient buffer that holds nothing yet instead of zero-filling the
// buffer first. Writing into a NaN-poisoned buffer must give exactly the bits
// of a zero fill followed by the accumulating op, -0 included (0 + -0 is +0:
// the inputs make products of -0 on purpose), on every device. Sizes are odd
// so vector tails and thread splits are crossed.
import { t } from 'tap'
import { native, type NativeBuffer } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { f32Buffer, i32Buffer, poisoned, randomArray, zeros } from '../helpers/reference.js'
import { track } from '../helpers/checks.js'

/** Index and values of the first element that differs bit for bit (-0 is not +0), or 'none'. */
function firstDifference(actual: Float32Array, expected: Float32Array): string {
  if (actual.length !== expected.length) return `length ${actual.length} != ${expected.length}`
  for (let i = 0; i < actual.length; i++) {
    if (!Object.is(actual[i], expected[i])) return `[${i}]: got ${actual[i]}, want ${expected[i]}`
  }
  return 'none'
}

/** Inputs with exact zeros and negative values, so some products are -0. */
function withZeros(n: number, seed: number): Float64Array {
  const x = randomArray(n, seed, -3, 3)
  for (let i = 0; i < n; i += 7) x[i] = i % 2 ? -0 : 0
  return x
}

for (const dev of devicesUnderTest()) {
  t.test(`backward ops write fresh gradients on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const N = native()
    const d = dev.code
    const buf = track(t)
    // run(out, write) fills out's role for one op; both runs start from fresh buffers.
    const same = (label: string, n: number, run: (out: NativeBuffer, write: boolean) => void) => {
      const added = buf(zeros(d, n))
      run(added, false)
      const written = buf(poisoned(d, n))
      run(written, true)
      t.equal(firstDifference(written.read() as Float32Array, added.read() as Float32Array), 'none', `${label}: written = zero-filled + accumulated, bit for bit`)
    }

    for (const n of [1, 17, 10007]) {
      const x = buf(f32Buffer(d, withZeros(n, 10 + n))), dy = buf(f32Buffer(d, withZeros(n, 20 + n)))
      for (const [kind, code] of Object.entries(N.codes.activation)) {
        same(`activationBackward ${kind} n=${n}`, n, (dx, write) => N.activationBackward(code, n, x, dy, dx, write))
      }
    }

    for (const [rows, cols] of [[1, 1], [37, 19], [437, 384]]) {
      const g = buf(f32Buffer(d, withZeros(rows * cols, rows)))
      same(`sumRows ${rows}x${cols}`, cols, (out, write) => N.sumRows(rows, cols, g, out, write))
      const rowIndex = buf(i32Buffer(d, Array.from({ length: rows }, (_, r) => 3 * r + (r % 3))))
      for (const p of [0, 0.1]) {
        same(`dropoutRowsBackward ${rows}x${cols} p=${p}`, rows * cols, (dx, write) =>
          N.dropoutRowsBackward(rows, cols, p, 7n, 1000n, rowIndex, g, dx, write))
      }
      const xs = buf(f32Buffer(d, randomArray(rows * cols, rows + 1)))
      const gamma = buf(f32Buffer(d, randomArray(cols, 5)))
      const mean = buf(f32Buffer(d, randomArray(rows, 6))), rstd = buf(f32Buffer(d, randomArray(rows, 7, 0.5, 2)))
      const dx = buf(zeros(d, rows * cols))
      same(`layernormBackward dgamma ${rows}x${cols}`, cols, (dgamma, write) =>
        N.layernormBackward(rows, cols, xs, gamma, mean, rstd, g, null, dgamma, null, write, false))
      same(`layernormBackward dbeta ${rows}x${cols}`, cols, (dbeta, write) =>
        N.layernormBackward(rows, cols, xs, gamma, mean, rstd, g, dx, null, dbeta, false, write))
      same(`layernormBackward dx ${rows}x${cols}`, rows * cols, (dxOut, write) =>
        N.layernormBackward(rows, cols, xs, gamma, mean, rstd, g, dxOut, null, null, false, false, write))
      // dx and dgamma / dbeta written together, and dx's copy (the residual's gradient) in the same pass.
      const dgA = buf(zeros(d, cols)), dbA = buf(zeros(d, cols)), dxA = buf(zeros(d, rows * cols))
      N.layernormBackward(rows, cols, xs, gamma, mean, rstd, g, dxA, dgA, dbA)
      const dgB = buf(poisoned(d, cols)), dbB = buf(poisoned(d, cols)), dxB = buf(poisoned(d, rows * cols)), copyB = buf(poisoned(d, rows * cols))
      N.layernormBackward(rows, cols, xs, gamma, mean, rstd, g, dxB, dgB, dbB, true, true, true, copyB)
      for (const [name, got, want] of [['dx', dxB, dxA], ['dx copy', copyB, dxA], ['dgamma', dgB, dgA], ['dbeta', dbB, dbA]] as const) {
        t.equal(firstDifference(got.read() as Float32Array, want.read() as Float32Array), 'none', `layernormBackward ${rows}x${cols} all written, ${name}: bit for bit`)
      }
    }
    {
      const one = buf(f32Buffer(d, [1, 2])), stat = buf(f32Buffer(d, [1]))
      t.throws(() => N.layernormBackward(1, 2, one, one, stat, stat, one, buf(zeros(d, 2)), null, null, false, false, false, buf(zeros(d, 2))),
        /^layernormBackward: 'dxCopy' needs a 'dx' that is written/)
      t.throws(() => N.layernormBackward(1, 2, one, one, stat, stat, one, buf(zeros(d, 2)), null, null, false, false, true, buf(zeros(d, 1))),
        /^layernormBackward: tensor 'dxCopy' holds 1 elements? but shape \[1, 2\] needs 2/)
    }

    for (const [heads, headDim] of [[3, 8], [12, 32]]) {
      const lens = [27, 1, 0, 40, 13, 33], seq = 40, hidden = heads * headDim
      const cu = [0]
      for (const l of lens) cu.push(cu[cu.length - 1] + l)
      const tokens = cu[cu.length - 1], squares = lens.reduce((a, l) => a + heads * l * l, 0)
      const cuSeqlens = buf(i32Buffer(d, cu))
      const q = buf(f32Buffer(d, randomArray(tokens * hidden, 1))), k = buf(f32Buffer(d, randomArray(tokens * hidden, 2)))
      const v = buf(f32Buffer(d, randomArray(tokens * hidden, 3))), dout = buf(f32Buffer(d, withZeros(tokens * hidden, 4)))
      const probs = buf(poisoned(d, squares)), out = buf(poisoned(d, tokens * hidden))
      const scale = 1 / Math.sqrt(headDim)
      for (const p of [0, 0.1]) {
        N.varlenAttentionForward(lens.length, seq, heads, headDim, scale, p, 3n, 50n, cuSeqlens, q, k, v, probs, out)
        const grads = (which: number, g: NativeBuffer, write: boolean) => {
          const role = [null, null, null] as Array<NativeBuffer | null>
          role[which] = g
          N.varlenAttentionBackward(lens.length, seq, heads, headDim, scale, p, 3n, 50n, cuSeqlens, q, k, v, probs, dout,
            role[0], role[1], role[2], which === 0 && write, which === 1 && write, which === 2 && write)
        }
        for (const [which, name] of ['dq', 'dk', 'dv'].entries()) {
          same(`varlenAttentionBackward ${heads}x${headDim} p=${p} ${name}`, tokens * hidden, (g, write) => grads(which, g, write))
        }
      }
    }

    t.throws(() => N.sumRows(1, 1, buf(zeros(d, 1)), buf(zeros(d, 1)), 1 as unknown as boolean), /^sumRows: 'write' must be a boolean/)
  })
}
