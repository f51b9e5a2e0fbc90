// Attention on this CPU: the materialised op (attentionForward/Backward, which
// saves the [batch, heads, seq, seq] probabilities) against the fused one
// (flashAttentionForward/Backward, which saves the per-row log-sum-exp only),
// at the MiniLM / BERT shapes, with attention dropout 0.1 as in training.
// It decides the CPU default of attention() (lib/tensor/ops.ts).
//
// Usage: npx tsc -p tsconfig.json && node dist/bench/bench-attention.js [--threads 2 --rounds 3 --no-write]
//   (BERTKIT_ADDON_PATH picks a private build of the addon)
//
// Both sides run in this process, interleaved: for every round and shape each
// side runs back to back, and the table keeps each side's best round (the one
// least disturbed by other work on the machine). Every number is a median of
// repetitions after a warm-up. "Saved" is what backward keeps beyond q, k, v,
// out and mask (which the autograd tape holds either way): probs, or lse.
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { DEVICE_CODE, DTYPE_CODE, native, type NativeBuffer } from '../lib/native.js'
import { rng } from '../test/helpers/reference.js'
import { args, REPO_ROOT, middleSample, numberFlag } from './common.js'

const root = REPO_ROOT
const threads = numberFlag('threads', 2)
const rounds = numberFlag('rounds', 3)
const write = !args.includes('--no-write')
const addon = native()
addon.setNumThreads(threads)
const CPU = DEVICE_CODE.cpu

interface Shape { batch: number; seq: number; heads: number; headDim: number; padded: boolean }
const shapes: Shape[] = []
for (const [heads, headDim] of [[12, 32], [12, 64]]) {
  for (const seq of [64, 128]) {
    shapes.push({ batch: 16, seq, heads, headDim, padded: false })
  }
}
// Dynamic padding as a real batch has it: lengths spread over the bucket.
shapes.push({ batch: 16, seq: 128, heads: 12, headDim: 64, padded: true })

function f32(values: Float32Array): NativeBuffer {
  const b = new addon.NativeBuffer(CPU, DTYPE_CODE.float32, values.length)
  b.write(values)
  return b
}
function random(n: number, seed: number): NativeBuffer {
  const r = rng(seed)
  return f32(Float32Array.from({ length: n }, () => 2 * r() - 1))
}

/** ms per call of fn, median of reps after 2 warm-ups (each call synchronised: CPU ops may be queued). */
function time(fn: () => void, budgetMs = 400): number {
  for (let i = 0; i < 2; i++) { fn(); addon.synchronize(CPU) }
  const samples: number[] = []
  const start = performance.now()
  while (samples.length < 5 || (samples.length < 40 && performance.now() - start < budgetMs)) {
    const t0 = performance.now()
    fn()
    addon.synchronize(CPU)
    samples.push(performance.now() - t0)
  }
  return middleSample(samples)
}

type Side = 'materialized' | 'fused'
interface Row { shape: Shape; side: Side; forwardMs: number; backwardMs: number; savedBytes: number }

function measure(shape: Shape, side: Side): Row {
  const { batch, seq, heads, headDim } = shape
  const n = batch * seq * heads * headDim
  const scale = 1 / Math.sqrt(headDim)
  const p = 0.1
  const lengths = Array.from({ length: batch }, (_, b) => (shape.padded ? (b === 0 ? seq : 24 + ((b * 37) % (seq - 24))) : seq))
  const mask = new addon.NativeBuffer(CPU, DTYPE_CODE.int32, batch * seq)
  mask.write(Int32Array.from(lengths.flatMap((len) => Array.from({ length: seq }, (_, j) => (j < len ? 1 : 0)))))
  const q = random(n, 1), k = random(n, 2), v = random(n, 3), g = random(n, 4)
  const out = f32(new Float32Array(n))
  const dq = f32(new Float32Array(n)), dk = f32(new Float32Array(n)), dv = f32(new Float32Array(n))
  const savedNumel = side === 'fused' ? batch * heads * seq : batch * heads * seq * seq
  const saved = f32(new Float32Array(savedNumel))
  const forward = side === 'fused'
    ? () => addon.flashAttentionForward(batch, seq, heads, headDim, scale, p, 7n, 0n, q, k, v, mask, saved, out)
    : () => addon.attentionForward(batch, seq, heads, headDim, scale, p, 7n, 0n, q, k, v, mask, saved, out)
  const backward = side === 'fused'
    ? () => addon.flashAttentionBackward(batch, seq, heads, headDim, scale, p, 7n, 0n, q, k, v, mask, saved, out, g, dq, dk, dv)
    : () => addon.attentionBackward(batch, seq, heads, headDim, scale, p, 7n, 0n, q, k, v, saved, g, dq, dk, dv)
  try {
    const forwardMs = time(forward)
    forward()
    const backwardMs = time(backward)
    return { shape, side, forwardMs, backwardMs, savedBytes: savedNumel * 4 }
  } finally {
    for (const b of [mask, q, k, v, g, out, dq, dk, dv, saved]) b.free()
  }
}

const best = new Map<string, Row>()
const all: Row[] = []
const key = (s: Shape, side: Side) => `${s.batch}x${s.seq}x${s.heads}x${s.headDim}${s.padded ? 'p' : ''}:${side}`
const loadBefore = os.loadavg()
for (let round = 0; round < rounds; round++) {
  for (const shape of shapes) {
    const sides: Side[] = round % 2 === 0 ? ['materialized', 'fused'] : ['fused', 'materialized']
    for (const side of sides) {
      const row = measure(shape, side)
      all.push(row)
      const prev = best.get(key(shape, side))
      if (!prev || row.forwardMs + row.backwardMs < prev.forwardMs + prev.backwardMs) best.set(key(shape, side), row)
      console.log(`round ${round} ${key(shape, side)}: forward ${row.forwardMs.toFixed(2)} ms, backward ${row.backwardMs.toFixed(2)} ms`)
    }
  }
}
const loadAfter = os.loadavg()

const mib = (b: number) => `${(b / 2 ** 20).toFixed(b < 2 ** 20 ? 3 : 1)} MiB`
const lines: string[] = []
lines.push('# CPU attention: materialised vs fused (flash)', '')
lines.push(`Machine: ${os.cpus()[0]?.model ?? 'unknown'} (${os.cpus().length} cores, shared with other builds), Node ${process.version}, ${new Date().toISOString()}.`)
lines.push(`Threads: ${threads}. Load average before: ${loadBefore.map((x) => x.toFixed(2)).join(' ')}, after: ${loadAfter.map((x) => x.toFixed(2)).join(' ')}.`)
lines.push(`Command: \`npx tsc -p tsconfig.json && node dist/bench/bench-attention.js\`. Each number: median of 5-40 calls after 2 warm-ups; ${rounds} interleaved rounds, best round kept (all in attention-cpu.json).`)
lines.push('Attention dropout 0.1 (training). "Saved" = what backward keeps per layer beyond q, k, v, out and the mask, which the tape holds for either op: probs [batch, heads, seq, seq] or lse [batch, heads, seq], float32.')
lines.push('"padded": dynamic padding, lengths spread over 24..128 with one full row, where the fused op skips key tiles that are all padding.', '')
lines.push('| batch x seq x heads x head_dim | op | forward ms | backward ms | fwd + bwd ms | fused / materialised | saved per layer |')
lines.push('|---|---|---|---|---|---|---|')
for (const shape of shapes) {
  const m = best.get(key(shape, 'materialized'))!
  const f = best.get(key(shape, 'fused'))!
  const label = `${shape.batch} x ${shape.seq} x ${shape.heads} x ${shape.headDim}${shape.padded ? ' (padded)' : ''}`
  for (const row of [m, f]) {
    const total = row.forwardMs + row.backwardMs
    const ratio = row === f ? `${(total / (m.forwardMs + m.backwardMs)).toFixed(2)}` : ''
    lines.push(`| ${label} | ${row.side} | ${row.forwardMs.toFixed(2)} | ${row.backwardMs.toFixed(2)} | ${total.toFixed(2)} | ${ratio} | ${mib(row.savedBytes)} |`)
  }
}
const ratios = shapes.map((shape) => {
  const m = best.get(key(shape, 'materialized'))!, f = best.get(key(shape, 'fused'))!
  return (f.forwardMs + f.backwardMs) / (m.forwardMs + m.backwardMs)
})
const faster = ratios.filter((r) => r < 1).length
lines.push('', `Fused / materialised time: ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}; fused is faster at ${faster} of ${ratios.length} shapes. ` +
  `CPU default of attention(): **${faster > ratios.length / 2 ? 'fused' : 'materialized'}** (DEFAULT_ATTENTION in lib/tensor/ops.ts).`)
const text = lines.join('\n') + '\n'
console.log('\n' + text)
if (write) {
  writeFileSync(join(root, 'benchmarks', 'attention-cpu.md'), text)
  writeFileSync(join(root, 'benchmarks', 'attention-cpu.json'), JSON.stringify({ threads, rounds, loadBefore, loadAfter, rows: all }, null, 1) + '\n')
  console.log('wrote benchmarks/attention-cpu.md and benchmarks/attention-cpu.json')
}
