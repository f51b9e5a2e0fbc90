// What the GPU run of the backend table adds to the cases: checks of the
// device itself (out of memory, the TF32 switch, the fused attention against
// the materialised one on the device alone) and timings at BERT-base shapes
// (batch 16, seq 128, hidden 768, 12 heads, intermediate 3072). Run through
// backend_ops.ts's command line.
import { native, DEVICE_CODE } from '../../lib/native.js'
import { randomArray } from '../helpers/reference.js'
import { closeToBackend, runCase, type OpCase, type PerfCase, type Verdict } from './backend_ops.js'
import { maskRows } from '../helpers/attention_reference.js'
import { someIds, type IdKind } from './cases/embedding.js'
import { halfValues } from './cases/gemm.js'

const N = () => native()

interface DeviceCheck { op: string; label: string; verdict: Verdict }

/** The checks that concern the device rather than one op's numbers. */
export function deviceChecks(opts: { device: number; rehearsal: boolean; quick: boolean }): DeviceCheck[] {
  const { device, rehearsal, quick } = opts
  const checks: DeviceCheck[] = []
  const CUDA = DEVICE_CODE.cuda, CPU = DEVICE_CODE.cpu
  if (!rehearsal) {
    // Far beyond any GPU's memory: a clean OutOfMemory, then the backend still works.
    let verdict: Verdict
    try {
      const b = new (N().NativeBuffer)(CUDA, 0, 2.5e11)
      b.free()
      verdict = { ok: false, text: 'allocation unexpectedly succeeded' }
    } catch (e) {
      const err = e as Error & { code?: string }
      verdict = { ok: err.code === 'ERR_BERTKIT_OOM' && /lower the batch size/.test(err.message), text: `code=${err.code}: ${err.message}` }
    }
    checks.push({ op: 'out of memory', label: '1 TB buffer', verdict })
    const after = runCase(fillCase, CUDA)
    checks.push({ op: 'out of memory', label: 'the backend works after it',
      verdict: 'error' in after ? { ok: false, text: after.error } : { ok: after.outputs.x.every((v) => v === 1), text: 'fill ok' } })

    // TF32 on: the same product rounds its inputs to 10-bit mantissas (~1e-3); off again: fp32 within 1e-5.
    const cpu = runCase(tf32Product, CPU)
    for (const allow of [true, false]) {
      N().setAllowTf32(CUDA, allow)
      const gpu = runCase(tf32Product, CUDA)
      const description = N().probeDevice(CUDA).description ?? ''
      if ('error' in gpu || 'error' in cpu) {
        checks.push({ op: 'setAllowTf32', label: String(allow), verdict: { ok: false, text: 'error' in gpu ? gpu.error : (cpu as { error: string }).error } })
        continue
      }
      const cmp = closeToBackend(gpu.outputs.c, cpu.outputs.c, allow ? 1e-2 : 1e-5)
      const says = allow ? /TF32 allowed/.test(description) : /without TF32/.test(description)
      const changes = !allow || !closeToBackend(gpu.outputs.c, cpu.outputs.c, 1e-6).ok  // TF32 must change the result
      checks.push({ op: 'setAllowTf32', label: `${allow} then gemm 256x384x512`,
        verdict: { ok: cmp.ok && says && changes, text: `${cmp.text}; the description ${says ? 'says so' : 'does not say so'}` } })
    }
    N().setAllowTf32(CUDA, false)
  }
  checks.push({ op: 'flashVsMaterialized', label: `fused against materialised on the device, seq ${quick ? 37 : 128}, p=0.1`,
    verdict: fusedAgainstMaterialised(device, quick ? 37 : 128) })
  return checks
}

const fillCase: OpCase = {
  op: 'fill', label: 'after out of memory', size: 'quick',
  setup: (io) => { const x = io.nan(5); return { call: () => N().fill(x, 5, 1), outputs: { x } } },
}

const tf32Product: OpCase = (() => {
  const [m, n, k] = [256, 384, 512]
  const A = randomArray(m * k, 1), B = randomArray(k * n, 2)
  return {
    op: 'gemm', label: 'TF32', size: 'quick',
    setup: (io) => {
      const a = io.f32(A), b = io.f32(B), c = io.nan(m * n)
      return { call: () => N().gemm(false, false, m, n, k, 1, a, b, 0, c, 1, 0, 0, 0), outputs: { c } }
    },
  }
})()

/** BERT-base attention with dropout, forward and backward, fused and materialised: out and gradients agree (same mask). */
function fusedAgainstMaterialised(device: number, seq: number): Verdict {
  const [batch, heads, headDim, p, seed, offset] = [16, 12, 64, 0.1, 99n, 5n]
  const n = batch * seq * heads * headDim
  const q = randomArray(n, 1, -4, 4), k = randomArray(n, 2, -2, 2), v = randomArray(n, 3), g = randomArray(n, 4)
  const mask = maskRows(seq, Array.from({ length: batch }, (_, b) => (b === 3 ? 0 : 20 + ((b * 37) % seq))))
  const scale = Math.fround(1 / Math.sqrt(headDim))
  const run = (fused: boolean) => runCase({
    op: fused ? 'flashAttention' : 'attention', label: '', size: 'big',
    setup: (io) => {
      const x = { q: io.f32(q), k: io.f32(k), v: io.f32(v), mask: io.i32(mask), out: io.nan(n), dout: io.f32(g) }
      const grads = { dq: io.f32(new Float32Array(n)), dk: io.f32(new Float32Array(n)), dv: io.f32(new Float32Array(n)) }
      const saved = io.nan(fused ? batch * heads * seq : batch * heads * seq * seq)
      const call = fused
        ? () => {
          N().flashAttentionForward(batch, seq, heads, headDim, scale, p, seed, offset, x.q, x.k, x.v, x.mask, saved, x.out)
          N().flashAttentionBackward(batch, seq, heads, headDim, scale, p, seed, offset, x.q, x.k, x.v, x.mask, saved, x.out, x.dout,
            grads.dq, grads.dk, grads.dv)
        }
        : () => {
          N().attentionForward(batch, seq, heads, headDim, scale, p, seed, offset, x.q, x.k, x.v, x.mask, saved, x.out)
          N().attentionBackward(batch, seq, heads, headDim, scale, p, seed, offset, x.q, x.k, x.v, saved, x.dout, grads.dq, grads.dk, grads.dv)
        }
      return { call, outputs: { out: x.out, ...grads } }
    },
  }, device)
  const fused = run(true), mat = run(false)
  if ('error' in fused || 'error' in mat) return { ok: false, text: `threw: ${'error' in fused ? fused.error : (mat as { error: string }).error}` }
  const parts = Object.keys(mat.outputs).map((name) => [name, closeToBackend(fused.outputs[name], mat.outputs[name], 1e-5)] as const)
  return { ok: parts.every(([, c]) => c.ok), text: parts.map(([name, c]) => `${name}: ${c.text}`).join('; ') }
}

// ---- timings --------------------------------------------------------------------------------

/** bert-base-cased's 201 parameters in named_parameters() order, with HF's decay / no-decay split. */
function bertBaseShapes(layers: number, vocab: number): Array<{ name: string; n: number; decay: boolean }> {
  const H = 768, FF = 3072
  const out: Array<{ name: string; n: number; decay: boolean }> = []
  const add = (name: string, n: number) => out.push({ name, n, decay: !/bias$|LayerNorm\.weight$/.test(name) })
  add('embeddings.word_embeddings.weight', vocab * H)
  add('embeddings.position_embeddings.weight', 512 * H)
  add('embeddings.token_type_embeddings.weight', 2 * H)
  add('embeddings.LayerNorm.weight', H)
  add('embeddings.LayerNorm.bias', H)
  for (let l = 0; l < layers; l++) {
    for (const [name, w, b] of [['attention.self.query', H * H, H], ['attention.self.key', H * H, H], ['attention.self.value', H * H, H],
      ['attention.output.dense', H * H, H], ['attention.output.LayerNorm', H, H], ['intermediate.dense', FF * H, FF],
      ['output.dense', H * FF, H], ['output.LayerNorm', H, H]] as const) {
      add(`encoder.layer.${l}.${name}.weight`, w)
      add(`encoder.layer.${l}.${name}.bias`, b)
    }
  }
  add('pooler.dense.weight', H * H)
  add('pooler.dense.bias', H)
  add('classifier.weight', 2 * H)
  add('classifier.bias', 2)
  return out
}

/** The timed calls; `rehearsal` shrinks the batch to 1 so the CPU can run them once. */
export function PERF_CASES(opts: { rehearsal: boolean }): PerfCase[] {
  const { rehearsal } = opts
  const B = rehearsal ? 1 : 16, S = 128, H = 12, D = 64, HID = 768, FF = 3072, T = B * S
  const perf: PerfCase[] = []
  const dev = (io: { device: number }) => io.device

  const gemmShapes: Array<[number, number, number, boolean, boolean, string]> = [
    [T, FF, HID, false, true, 'FFN up, x Wt'], [T, HID, FF, false, true, 'FFN down, x Wt'], [T, HID, FF, false, false, 'dX = dY W'],
    [FF, HID, T, true, false, 'dW = dYt X'], [T, 3 * HID, HID, false, true, 'QKV'],
  ]
  for (const [m, n, k, ta, tb, what] of gemmShapes) {
    const shape = `${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} ${m}x${n}x${k} (${what})`
    for (const tf32 of [false, true]) {
      perf.push({
        label: `gemm fp32${tf32 ? ' tf32' : ''} ${shape}`, flop: 2 * m * n * k,
        setup: (io) => {
          N().setAllowTf32(dev(io), tf32)
          const a = io.f32(randomArray(m * k, 1)), b = io.f32(randomArray(k * n, 2)), c = io.empty('float32', m * n)
          return () => N().gemm(ta, tb, m, n, k, 1, a, b, 0, c, 1, 0, 0, 0)
        },
      })
    }
    for (const dtype of ['float16', 'bfloat16'] as const) {
      perf.push({
        label: `gemmMixed ${dtype === 'float16' ? 'fp16' : 'bf16'} ${shape}`, flop: 2 * m * n * k,
        setup: (io) => {
          N().setAllowTf32(dev(io), false)
          const a = io.half(dtype, halfValues(m * k, dtype, 3).bits), b = io.half(dtype, halfValues(k * n, dtype, 4).bits)
          const c = io.empty('float32', m * n)
          return () => N().gemmMixed(ta, tb, m, n, k, 1, a, b, 0, c, 1, 0, 0, 0)
        },
      })
    }
  }

  const n = T * HID
  const mask = maskRows(S, Array.from({ length: B }, (_, i) => 40 + ((i * 37) % 89)))
  const scale = 1 / Math.sqrt(D)
  const attFlop = 4 * B * H * S * S * D
  const inputs = (io: Parameters<PerfCase['setup']>[0], m = mask) => ({
    q: io.f32(randomArray(n, 5)), k: io.f32(randomArray(n, 6)), v: io.f32(randomArray(n, 7)), m: io.i32(m), out: io.empty('float32', n),
    probs: io.empty('float32', B * H * S * S), lse: io.empty('float32', B * H * S),
  })
  const grads = (io: Parameters<PerfCase['setup']>[0]) => ({ g: io.f32(randomArray(n, 8)), dq: io.filled(n, 0), dk: io.filled(n, 0), dv: io.filled(n, 0) })
  perf.push({
    label: `attentionForward ${B}x${S}x${H}x${D} p=0.1`, flop: attFlop,
    setup: (io) => { const a = inputs(io); return () => N().attentionForward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.probs, a.out) },
  })
  perf.push({
    label: `attentionBackward ${B}x${S}x${H}x${D} p=0.1 dq dk dv`, flop: 2 * attFlop,
    setup: (io) => {
      const a = inputs(io), d = grads(io)
      N().attentionForward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.probs, a.out)
      return () => N().attentionBackward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.probs, d.g, d.dq, d.dk, d.dv)
    },
  })
  // The fused op at the same shape (the decision to make it CUDA's default rests on these lines).
  perf.push({
    label: `flashAttentionForward ${B}x${S}x${H}x${D} p=0.1`, flop: attFlop,
    setup: (io) => { const a = inputs(io); return () => N().flashAttentionForward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.lse, a.out) },
  })
  perf.push({
    label: `flashAttentionBackward ${B}x${S}x${H}x${D} p=0.1 dq dk dv`, flop: 2.5 * attFlop,
    setup: (io) => {
      const a = inputs(io), d = grads(io)
      N().flashAttentionForward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.lse, a.out)
      return () => N().flashAttentionBackward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.lse, a.out, d.g, d.dq, d.dk, d.dv)
    },
  })
  // Full-length rows (no key tile skipped), fused and materialised side by side.
  const full = maskRows(S, new Array(B).fill(S))
  perf.push({
    label: `attentionForward ${B}x${S}x${H}x${D} p=0.1 full length`, flop: attFlop,
    setup: (io) => { const a = inputs(io, full); return () => N().attentionForward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.probs, a.out) },
  })
  perf.push({
    label: `flashAttentionForward ${B}x${S}x${H}x${D} p=0.1 full length`, flop: attFlop,
    setup: (io) => { const a = inputs(io, full); return () => N().flashAttentionForward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.lse, a.out) },
  })
  {
    const B2 = rehearsal ? 1 : 4, S2 = 512, n2 = B2 * S2 * HID
    const mask2 = maskRows(S2, new Array(B2).fill(S2))
    for (const fused of [false, true]) {
      perf.push({
        label: `${fused ? 'flashAttention' : 'attention'} forward + backward ${B2}x${S2}x${H}x${D} p=0.1`, iterations: 10,
        flop: 3 * 4 * B2 * H * S2 * S2 * D,
        setup: (io) => {
          const q = io.f32(randomArray(n2, 5)), k = io.f32(randomArray(n2, 6)), v = io.f32(randomArray(n2, 7)), m = io.i32(mask2)
          const out = io.empty('float32', n2), saved = io.empty('float32', fused ? B2 * H * S2 : B2 * H * S2 * S2)
          const g = io.f32(randomArray(n2, 8)), dq = io.filled(n2, 0), dk = io.filled(n2, 0), dv = io.filled(n2, 0)
          return fused
            ? () => {
              N().flashAttentionForward(B2, S2, H, D, scale, 0.1, 1n, 0n, q, k, v, m, saved, out)
              N().flashAttentionBackward(B2, S2, H, D, scale, 0.1, 1n, 0n, q, k, v, m, saved, out, g, dq, dk, dv)
            }
            : () => {
              N().attentionForward(B2, S2, H, D, scale, 0.1, 1n, 0n, q, k, v, m, saved, out)
              N().attentionBackward(B2, S2, H, D, scale, 0.1, 1n, 0n, q, k, v, saved, g, dq, dk, dv)
            }
        },
      })
    }
  }

  perf.push({
    label: `layernormForward ${T}x${HID} + residual`, bytes: 4 * n * 4,
    setup: (io) => {
      const x = io.f32(randomArray(n, 9)), r = io.f32(randomArray(n, 10)), g = io.filled(HID, 1), b = io.filled(HID, 0)
      const y = io.empty('float32', n), s = io.empty('float32', n), mean = io.empty('float32', T), rstd = io.empty('float32', T)
      return () => N().layernormForward(T, HID, 1e-12, x, r, g, b, y, s, mean, rstd)
    },
  })
  perf.push({
    label: `layernormBackward ${T}x${HID} dx dgamma dbeta`, bytes: 5 * n * 4,
    setup: (io) => {
      const x = io.f32(randomArray(n, 11)), g = io.filled(HID, 1), b = io.filled(HID, 0)
      const y = io.empty('float32', n), mean = io.empty('float32', T), rstd = io.empty('float32', T)
      N().layernormForward(T, HID, 1e-12, x, null, g, b, y, null, mean, rstd)
      const dy = io.f32(randomArray(n, 12)), dx = io.filled(n, 0), dg = io.filled(HID, 0), db = io.filled(HID, 0)
      return () => N().layernormBackward(T, HID, x, g, mean, rstd, dy, dx, dg, db)
    },
  })
  const nf = T * FF
  const gelu = N().codes.activation.GeluErf
  perf.push({
    label: `activationForward GeluErf ${T}x${FF}`, bytes: 2 * nf * 4,
    setup: (io) => { const x = io.f32(randomArray(nf, 13)), y = io.empty('float32', nf); return () => N().activationForward(gelu, nf, x, y) },
  })
  perf.push({
    label: `activationBackward GeluErf ${T}x${FF}`, bytes: 4 * nf * 4,
    setup: (io) => {
      const x = io.f32(randomArray(nf, 14)), dy = io.f32(randomArray(nf, 15)), dx = io.filled(nf, 0)
      return () => N().activationBackward(gelu, nf, x, dy, dx)
    },
  })
  perf.push({
    label: `sumRows ${T}x${FF} (bias grad)`, bytes: nf * 4,
    setup: (io) => { const x = io.f32(randomArray(nf, 16)), o = io.filled(FF, 0); return () => N().sumRows(T, FF, x, o) },
  })
  perf.push({
    label: `cast float32 -> bfloat16 ${T}x${FF}`, bytes: 6 * nf,
    setup: (io) => { const x = io.f32(randomArray(nf, 17)), y = io.empty('bfloat16', nf); return () => N().cast(nf, x, y) },
  })
  perf.push({
    label: `dropoutForward p=0.1 ${T}x${HID}`, bytes: 8 * n,
    setup: (io) => { const x = io.f32(randomArray(n, 18)), y = io.empty('float32', n); return () => N().dropoutForward(n, 0.1, 7n, 0n, x, y) },
  })
  for (const [vocab, pad, kind] of [[28996, 0, 'words'], [2, -1, 'types'], [512, -1, 'positions']] as Array<[number, number, IdKind]>) {
    const ids = someIds(T, vocab, 19, kind)
    perf.push({
      label: `embeddingForward ${T} ${kind}, vocab ${vocab}`,
      setup: (io) => {
        const idb = io.i32(ids), table = io.f32(randomArray(vocab * HID, 20)), out = io.empty('float32', n)
        return () => N().embeddingForward(T, HID, vocab, idb, table, out)
      },
    })
    perf.push({
      label: `embeddingBackward ${T} ${kind}, vocab ${vocab}, padding ${pad}`,
      setup: (io) => {
        const idb = io.i32(ids), dout = io.f32(randomArray(n, 21)), dtable = io.filled(vocab * HID, 0)
        return () => N().embeddingBackward(T, HID, vocab, idb, dout, dtable, pad)
      },
    })
  }
  perf.push({
    label: `maskedMaxPool forward + backward ${B}x${S}x${HID}`, bytes: 4 * (n + B * S + 4 * B * HID),
    setup: (io) => {
      const h = io.f32(randomArray(n, 23)), m = io.i32(mask)
      const out = io.empty('float32', B * HID), argmax = io.empty('int32', B * HID), dout = io.f32(randomArray(B * HID, 24)), dh = io.filled(n, 0)
      return () => { N().maskedMaxPoolForward(B, S, HID, h, m, out, argmax); N().maskedMaxPoolBackward(B, S, HID, argmax, dout, dh) }
    },
  })
  perf.push({
    label: `crossEntropy forward + backward ${B}x2`,
    setup: (io) => {
      const logits = io.f32(randomArray(B * 2, 22)), labels = io.i32(Array.from({ length: B }, (_, i) => i % 2)), loss = io.empty('float32', 1)
      const dloss = io.f32([1]), dl = io.filled(B * 2, 0)
      return () => {
        N().crossEntropyForward(B, 2, logits, labels, -100, null, loss)
        N().crossEntropyBackward(B, 2, logits, labels, -100, null, dloss, dl)
      }
    },
  })
  {
    const np = rehearsal ? 1_000_000 : 108_310_272  // bert-base-cased with a 2-label head, all in one tensor
    perf.push({
      label: `sumSquares ${np} (global grad norm)`, iterations: 10, bytes: 4 * np,
      setup: (io) => { const x = io.filled(np, 0.001), o = io.filled(1, 0); return () => N().sumSquares(np, x, o) },
    })
    perf.push({
      label: `adamwStep ${np} params with grad scale`, iterations: 10, bytes: 7 * 4 * np,
      setup: (io) => {
        const g = io.filled(np, 0.001), p = io.filled(np, 0.5), m = io.filled(np, 0), v = io.filled(np, 0), s = io.f32([0.5])
        let step = 1
        return () => N().adamwStep(np, 2e-5, 0.9, 0.999, 1e-8, 0.01, step++, s, g, p, m, v)
      },
    })
  }
  {
    // The optimizer step of bert-base-cased as the Trainer issues it: 201
    // tensors in two groups (decay / no decay), clipping included; per tensor
    // (201 sumSquares + 201 adamwStep launches) against multi-tensor (1 norm + 2 steps).
    const shapes = bertBaseShapes(rehearsal ? 2 : 12, rehearsal ? 1000 : 28996)
    const np = shapes.reduce((a, x) => a + x.n, 0)
    const tensorsOn = (io: Parameters<PerfCase['setup']>[0]) =>
      shapes.map((x, i) => ({ ...x, g: io.filled(x.n, 0.001 * (1 + (i % 5))), p: io.filled(x.n, 0.5), m: io.filled(x.n, 0), v: io.filled(x.n, 0) }))
    let step = 1
    perf.push({
      label: `optimizer step, ${shapes.length} tensors (${np} params), per tensor`, iterations: 10, bytes: 8 * 4 * np,
      setup: (io) => {
        const tensors = tensorsOn(io), sumSq = io.filled(1, 0), coef = io.filled(1, 0)
        return () => {
          N().fill(sumSq, 1, 0)
          for (const x of tensors) N().sumSquares(x.n, x.g, sumSq)
          N().clipCoefficient(sumSq, 1, coef)
          for (const x of tensors) N().adamwStep(x.n, 2e-5, 0.9, 0.999, 1e-8, x.decay ? 0.01 : 0, step, coef, x.g, x.p, x.m, x.v)
          step++
        }
      },
    })
    perf.push({
      label: `optimizer step, ${shapes.length} tensors (${np} params), multi-tensor`, iterations: 10, bytes: 8 * 4 * np,
      setup: (io) => {
        const tensors = tensorsOn(io), sumSq = io.filled(1, 0), coef = io.filled(1, 0)
        const grouped = [tensors.filter((x) => x.decay), tensors.filter((x) => !x.decay)]
        return () => {
          N().fill(sumSq, 1, 0)
          N().multiTensorSumSquares(tensors.length, tensors.map((x) => x.n), tensors.map((x) => x.g), sumSq)
          N().clipCoefficient(sumSq, 1, coef)
          for (const [gi, g] of grouped.entries()) {
            N().multiTensorAdamw(g.length, g.map((x) => x.n), g.map((x) => x.p), g.map((x) => x.g), g.map((x) => x.m), g.map((x) => x.v),
              2e-5, 0.9, 0.999, 1e-8, gi === 0 ? 0.01 : 0, g.map(() => step), coef, null)
          }
          step++
        }
      },
    })
  }
  return perf
}
