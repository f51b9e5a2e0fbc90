// Times the ops whose transcendental / random-number work native/src/cpu/vecmath.h
// vectorises (GELU both forms, attention softmax, dropout masks) at MiniLM's
// training shapes: 6 layers, hidden 384, 12 heads, FFN 1536, batch 16 x seq 64
// = 1024 tokens. Several builds of the addon can be compared in one process:
//
//   npx tsc -p tsconfig.json
//   node dist/scripts/bench-vecmath.js [--addon old.node] [--addon new.node] [--threads 2] [--rounds 5]
//
// Without --addon it times the addon lib/native.ts would load. Each addon gets
// its own inputs (same values) and keeps its own thread pool. Measurements are
// interleaved (every round runs each case on each addon back to back) so a
// burst of other load on the machine hits them alike; each cell is the median
// of repetitions, and the table keeps each addon's best round.
import { ACTIVATION_CODE, DEVICE_CODE, DTYPE_CODE, native, type NativeAddon, type NativeBuffer } from '../lib/native.js'

const args = process.argv.slice(2)
function opt(name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? Number(args[i + 1]) : fallback
}
const addonPaths: string[] = []
for (let i = 0; i < args.length; i++) if (args[i] === '--addon') addonPaths.push(args[i + 1])
const threads = opt('threads', 2)
const rounds = opt('rounds', 5)
const reps = opt('reps', 15)

const TOKENS = 16 * 64
const HIDDEN = 384
const FFN = 1536
const [B, S, H, D] = [16, 64, 12, 32]

interface Case {
  id: string
  label: string
  setup: (n: NativeAddon, f32: (count: number, lo?: number, hi?: number) => NativeBuffer) => () => void
}

const CASES: Case[] = [
  // Not vectorised by vecmath: the memory-bound floor for the elementwise rows below.
  { id: 'relu_fwd', label: `(floor) ReLU forward, ${TOKENS}x${FFN}`, setup: (n, f32) => {
    const x = f32(TOKENS * FFN, -6, 6), y = f32(TOKENS * FFN)
    return () => n.activationForward(ACTIVATION_CODE.relu, TOKENS * FFN, x, y)
  } },
  { id: 'relu_bwd', label: `(floor) ReLU backward, ${TOKENS}x${FFN}`, setup: (n, f32) => {
    const x = f32(TOKENS * FFN, -6, 6), dy = f32(TOKENS * FFN), dx = f32(TOKENS * FFN, 0, 0)
    return () => n.activationBackward(ACTIVATION_CODE.relu, TOKENS * FFN, x, dy, dx)
  } },
  { id: 'gelu_fwd', label: `GELU erf forward, ${TOKENS}x${FFN}`, setup: (n, f32) => {
    const x = f32(TOKENS * FFN, -6, 6), y = f32(TOKENS * FFN)
    return () => n.activationForward(ACTIVATION_CODE.gelu, TOKENS * FFN, x, y)
  } },
  { id: 'gelu_bwd', label: `GELU erf backward, ${TOKENS}x${FFN}`, setup: (n, f32) => {
    const x = f32(TOKENS * FFN, -6, 6), dy = f32(TOKENS * FFN), dx = f32(TOKENS * FFN, 0, 0)
    return () => n.activationBackward(ACTIVATION_CODE.gelu, TOKENS * FFN, x, dy, dx)
  } },
  { id: 'gelu_tanh_fwd', label: `GELU tanh forward, ${TOKENS}x${FFN}`, setup: (n, f32) => {
    const x = f32(TOKENS * FFN, -6, 6), y = f32(TOKENS * FFN)
    return () => n.activationForward(ACTIVATION_CODE.gelu_new, TOKENS * FFN, x, y)
  } },
  { id: 'gelu_tanh_bwd', label: `GELU tanh backward, ${TOKENS}x${FFN}`, setup: (n, f32) => {
    const x = f32(TOKENS * FFN, -6, 6), dy = f32(TOKENS * FFN), dx = f32(TOKENS * FFN, 0, 0)
    return () => n.activationBackward(ACTIVATION_CODE.gelu_new, TOKENS * FFN, x, dy, dx)
  } },
  { id: 'dropout_fwd', label: `dropout forward p=0.1, ${TOKENS}x${HIDDEN}`, setup: (n, f32) => {
    const x = f32(TOKENS * HIDDEN), y = f32(TOKENS * HIDDEN)
    return () => n.dropoutForward(TOKENS * HIDDEN, 0.1, 42, 0, x, y)
  } },
  { id: 'dropout_bwd', label: `dropout backward p=0.1, ${TOKENS}x${HIDDEN}`, setup: (n, f32) => {
    const dy = f32(TOKENS * HIDDEN), dx = f32(TOKENS * HIDDEN, 0, 0)
    return () => n.dropoutBackward(TOKENS * HIDDEN, 0.1, 42, 0, dy, dx)
  } },
  { id: 'attention_fwd', label: `attention forward p=0.1, ${B}x${S}x${H}x${D}`, setup: (n, f32) => {
    const q = f32(B * S * H * D), k = f32(B * S * H * D), v = f32(B * S * H * D)
    const mask = new n.NativeBuffer(DEVICE_CODE.cpu, DTYPE_CODE.int32, B * S)
    mask.write(Int32Array.from({ length: B * S }, (_, i) => ((i % S) < S - (i / S | 0) ? 1 : 0)))
    const probs = f32(B * H * S * S), out = f32(B * S * H * D)
    return () => n.attentionForward(B, S, H, D, 1 / Math.sqrt(D), 0.1, 42, 0, q, k, v, mask, probs, out)
  } },
  { id: 'attention_fwd_nodrop', label: `attention forward p=0, ${B}x${S}x${H}x${D}`, setup: (n, f32) => {
    const q = f32(B * S * H * D), k = f32(B * S * H * D), v = f32(B * S * H * D)
    const mask = new n.NativeBuffer(DEVICE_CODE.cpu, DTYPE_CODE.int32, B * S)
    mask.write(new Int32Array(B * S).fill(1))
    const probs = f32(B * H * S * S), out = f32(B * S * H * D)
    return () => n.attentionForward(B, S, H, D, 1 / Math.sqrt(D), 0, 42, 0, q, k, v, mask, probs, out)
  } },
  { id: 'attention_bwd', label: `attention backward p=0.1, ${B}x${S}x${H}x${D}`, setup: (n, f32) => {
    const q = f32(B * S * H * D), k = f32(B * S * H * D), v = f32(B * S * H * D)
    const probs = f32(B * H * S * S, 0, 1 / S), dout = f32(B * S * H * D)
    const dq = f32(B * S * H * D, 0, 0), dk = f32(B * S * H * D, 0, 0), dv = f32(B * S * H * D, 0, 0)
    return () => n.attentionBackward(B, S, H, D, 1 / Math.sqrt(D), 0.1, 42, 0, q, k, v, probs, dout, dq, dk, dv)
  } },
]

/** Deterministic inputs, identical for every addon. */
function values(count: number, lo: number, hi: number, seed: number): Float32Array {
  const out = new Float32Array(count)
  let s = seed >>> 0
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    out[i] = lo + ((s >>> 8) / 16777216) * (hi - lo)
  }
  return out
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

function main() {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const addons: { name: string; n: NativeAddon }[] = addonPaths.length
    ? addonPaths.map((p) => ({ name: p, n: require(p) as NativeAddon }))
    : [{ name: 'default', n: native() }]
  const runs = addons.map(({ n }) => {
    n.setNumThreads(threads)
    return CASES.map((c, ci) => {
      let k = 0
      const f32 = (count: number, lo = -1, hi = 1) => {
        const b = new n.NativeBuffer(DEVICE_CODE.cpu, DTYPE_CODE.float32, count)
        b.write(values(count, lo, hi, 1000 * ci + k++))
        return b
      }
      return c.setup(n, f32)
    })
  })
  const best = addons.map(() => CASES.map(() => Infinity))
  for (let r = 0; r < rounds; r++) {
    for (let ci = 0; ci < CASES.length; ci++) {
      for (let ai = 0; ai < addons.length; ai++) {
        const fn = runs[ai][ci]
        fn()
        fn()
        const times: number[] = []
        for (let i = 0; i < reps; i++) {
          const t0 = process.hrtime.bigint()
          fn()
          times.push(Number(process.hrtime.bigint() - t0) / 1e6)
        }
        best[ai][ci] = Math.min(best[ai][ci], median(times))
      }
    }
  }
  console.log(`threads ${threads}, ${rounds} rounds x ${reps} reps, best round's median, ms`)
  addons.forEach((a, i) => console.log(`  [${i}] ${a.name}`))
  const header = ['op'.padEnd(44), ...addons.map((_, i) => `[${i}]`.padStart(9))]
  if (addons.length > 1) header.push('  [0]/[last]')
  console.log(header.join(''))
  CASES.forEach((c, ci) => {
    const row = [c.label.padEnd(44), ...addons.map((_, ai) => best[ai][ci].toFixed(3).padStart(9))]
    if (addons.length > 1) row.push(`${(best[0][ci] / best[addons.length - 1][ci]).toFixed(2).padStart(10)}x`)
    console.log(row.join(''))
  })
}

main()
