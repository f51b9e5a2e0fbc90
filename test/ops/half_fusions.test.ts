// The ops fused for autocast's half copies, each against the unfused ops bit
// for bit on shapes that stay on one thread, split between threads and cross
// block edges, with bad buffers refused:
// - activationForward and layernormForward with a trailing float16 / bfloat16
//   buffer: the float32 results unchanged, the buffer = cast of the output;
// - activationBackwardCastSumRows: activationBackward (write) followed by
//   castSumRows, for every activation kind, with and without the sums.
import t from 'tap'
import { native, ACTIVATION_CODE, DTYPE_CODE, type NativeBuffer } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { f32Buffer, randomArray } from '../helpers/reference.js'
import { track } from '../helpers/checks.js'

const N = native()
const bits32 = (b: NativeBuffer) => Array.from(new Uint32Array((b.read() as Float32Array).buffer))
const bits16 = (b: NativeBuffer) => Array.from(b.read() as Uint16Array)

for (const dev of devicesUnderTest()) {
  t.test(`ops fused for autocast's half copies on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const d = dev.code
    const liveBefore = N.memoryStats().liveBuffers

    await t.test('activationForward: y unchanged, half = cast(y)', async (t) => {
      const buf = track(t)
      for (const n of [1, 17, 4096, 4097, 70001]) {
        const values = randomArray(n, n, -9, 9)
        if (n > 8) values.set([NaN, Infinity, -Infinity, -0, 0, 1e-40, -30, 30])
        const x = buf(f32Buffer(d, values))
        for (const [kind, code] of Object.entries(ACTIVATION_CODE)) {
          const plain = buf(f32Buffer(d, new Float32Array(n)))
          N.activationForward(code, n, x, plain)
          const plainBits = bits32(plain)
          for (const dtype of ['bfloat16', 'float16'] as const) {
            const want = buf(new (N.NativeBuffer)(d, DTYPE_CODE[dtype], n))
            N.cast(n, plain, want)
            const y = buf(f32Buffer(d, new Float32Array(n).fill(NaN)))
            const half = buf(new (N.NativeBuffer)(d, DTYPE_CODE[dtype], n))
            N.activationForward(code, n, x, y, half)
            const wantBits = bits16(want)
            const ok = bits32(y).every((v, i) => v === plainBits[i]) && bits16(half).every((v, i) => v === wantBits[i])
            if (!ok || kind === 'gelu') t.ok(ok, `${kind}, n=${n}, ${dtype}: y and its cast bit for bit`)
          }
        }
      }
      const x = buf(f32Buffer(d, [1, 2, 3]))
      const y = buf(f32Buffer(d, [0, 0, 0]))
      t.throws(() => N.activationForward(0, 3, x, y, buf(f32Buffer(d, [0, 0, 0]))), /^activationForward: 'half' must be float16 or bfloat16, got float32/)
      t.throws(() => N.activationForward(0, 3, x, y, buf(new (N.NativeBuffer)(d, DTYPE_CODE.bfloat16, 2))), /^activationForward: tensor 'half' holds 2 elements but shape \[3\] needs 3/)
      t.throws(() => N.activationForward(0, 3, x, y, 5 as unknown as NativeBuffer), /^activationForward: 'half' must be a NativeBuffer or null/)
    })

    await t.test('layernormForward: outputs unchanged, half = cast(y)', async (t) => {
      const buf = track(t)
      for (const [rows, cols] of [[1, 1], [3, 384], [433, 384], [70, 1000]] as const) {
        const n = rows * cols
        const x = buf(f32Buffer(d, randomArray(n, rows + cols, -4, 4)))
        const residual = buf(f32Buffer(d, randomArray(n, rows + cols + 1)))
        const gamma = buf(f32Buffer(d, randomArray(cols, cols + 2)))
        const beta = buf(f32Buffer(d, randomArray(cols, cols + 3)))
        for (const withResidual of [false, true]) {
          const run = (half: NativeBuffer | null) => {
            const y = buf(f32Buffer(d, new Float32Array(n).fill(NaN)))
            const summed = buf(f32Buffer(d, new Float32Array(n)))
            const mean = buf(f32Buffer(d, new Float32Array(rows)))
            const rstd = buf(f32Buffer(d, new Float32Array(rows)))
            N.layernormForward(rows, cols, 1e-12, x, withResidual ? residual : null, gamma, beta, y, withResidual ? summed : null, mean, rstd, half)
            return [y, summed, mean, rstd].map(bits32)
          }
          const plain = run(null)
          const yPlain = buf(f32Buffer(d, new Float32Array(n)))
          yPlain.write(new Float32Array(Uint32Array.from(plain[0]).buffer))
          for (const dtype of ['bfloat16', 'float16'] as const) {
            const want = buf(new (N.NativeBuffer)(d, DTYPE_CODE[dtype], n))
            N.cast(n, yPlain, want)
            const half = buf(new (N.NativeBuffer)(d, DTYPE_CODE[dtype], n))
            const got = run(half)
            t.same(got, plain, `${rows}x${cols}${withResidual ? ' + residual' : ''}, ${dtype}: y, x + residual, mean, rstd unchanged`)
            t.same(bits16(half), bits16(want), `${rows}x${cols}${withResidual ? ' + residual' : ''}, ${dtype}: half = cast(y)`)
          }
        }
      }
      const one = buf(f32Buffer(d, [1, 2]))
      const out = buf(f32Buffer(d, [0, 0]))
      const stat = buf(f32Buffer(d, [0]))
      t.throws(() => N.layernormForward(1, 2, 1e-5, one, null, one, one, out, null, stat, stat, buf(new (N.NativeBuffer)(d, DTYPE_CODE.float16, 1))),
        /^layernormForward: tensor 'half' holds 1 elements? but shape \[1, 2\] needs 2/)
      t.throws(() => N.layernormForward(1, 2, 1e-5, one, null, one, one, out, null, stat, stat, out), /^layernormForward: 'half' must be float16 or bfloat16, got float32/)
    })

    await t.test('activationBackwardCastSumRows = activationBackward (write) + castSumRows', async (t) => {
      const buf = track(t)
      for (const [rows, cols] of [[1, 1], [3, 17], [433, 384], [97, 1536], [40, 600]] as const) {
        const n = rows * cols
        const hv = randomArray(n, n + 1, -9, 9)
        if (n > 8) hv.set([NaN, Infinity, -Infinity, -0, 0, 1e-40, -30, 30])
        const h = buf(f32Buffer(d, hv))
        const dy = buf(f32Buffer(d, randomArray(n, n + 2, -2, 2)))
        const sums0 = randomArray(cols, n + 3)
        for (const [kind, code] of Object.entries(ACTIVATION_CODE)) {
          const dh = buf(f32Buffer(d, new Float32Array(n)))
          N.activationBackward(code, n, h, dy, dh, true)
          for (const dtype of ['bfloat16', 'float16'] as const) {
            for (const sumsMode of ['add', 'write', 'none'] as const) {
              const wantHalf = buf(new (N.NativeBuffer)(d, DTYPE_CODE[dtype], n))
              const wantSums = buf(f32Buffer(d, sums0))
              if (sumsMode === 'none') N.cast(n, dh, wantHalf)
              else N.castSumRows(rows, cols, dh, wantHalf, wantSums, sumsMode === 'write')
              const gotHalf = buf(new (N.NativeBuffer)(d, DTYPE_CODE[dtype], n))
              const gotSums = buf(f32Buffer(d, sums0))
              const scratch = buf(f32Buffer(d, new Float32Array(n)))
              N.activationBackwardCastSumRows(code, rows, cols, h, dy, scratch, gotHalf, sumsMode === 'none' ? null : gotSums, sumsMode === 'write')
              const ok = bits16(gotHalf).join() === bits16(wantHalf).join() && bits32(gotSums).join() === bits32(wantSums).join()
              if (!ok || kind === 'gelu') t.ok(ok, `${kind}, ${rows}x${cols} -> ${dtype}, sums ${sumsMode}: half and sums bit for bit`)
            }
          }
        }
      }
      const x = buf(f32Buffer(d, [1, 2, 3, 4]))
      const s2 = buf(f32Buffer(d, [0, 0]))
      const h16 = buf(new (N.NativeBuffer)(d, DTYPE_CODE.bfloat16, 4))
      const scratch = buf(f32Buffer(d, [0, 0, 0, 0]))
      t.throws(() => N.activationBackwardCastSumRows(0, 2, 2, x, x, scratch, scratch, s2), /^activationBackwardCastSumRows: 'dst' must be float16 or bfloat16, got float32/)
      t.throws(() => N.activationBackwardCastSumRows(0, 2, 3, x, x, scratch, h16, s2), /^activationBackwardCastSumRows: tensor 'h' holds 4 elements but shape \[2, 3\] needs 6/)
      t.throws(() => N.activationBackwardCastSumRows(0, 2, 2, x, x, scratch, h16, buf(f32Buffer(d, [0]))), /^activationBackwardCastSumRows: tensor 'sums' holds 1 elements? but shape \[2\] needs 2/)
      t.throws(() => N.activationBackwardCastSumRows(0, 2, 2, x, x, x, h16, s2), /^activationBackwardCastSumRows: .*'scratch'.*'h'/)
      t.throws(() => N.activationBackwardCastSumRows(99, 2, 2, x, x, scratch, h16, s2), /^activationBackwardCastSumRows: .*kind/i)
    })

    t.equal(N.memoryStats().liveBuffers, liveBefore, 'every buffer the tests made was freed')
  })
}
