// Optimizer step on this CPU: the per-tensor loop (one sumSquares and one
// adamwStep per parameter tensor, as before issue 5) against the multi-tensor
// ops (one multiTensorSumSquares for the global norm, one multiTensorAdamw per
// param group), both with global-norm clipping, over bert-base-cased's 201
// parameter shapes in the Trainer's two groups (decay / no decay).
//
// Usage: node dist/bench/bench-optimizer.js [--threads 2 --reps 10 --layers 12 --no-write]
//
// Both variants update the same buffers (the values do not change the cost),
// so the memory is that of one bert-base optimizer: 4 x 108M floats. Each
// step is issued, then waited for (synchronize), and timed as a whole. The
// machine is shared and noisy, so the variants are interleaved: every
// repetition runs one step of each, back to back, alternating which goes
// first; the table gives the median of the repetitions after a warm-up.
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import { join, relative } from 'node:path'
import { DEVICE_CODE, DTYPE_CODE, native, type NativeBuffer } from '../lib/native.js'
import { args, REPO_ROOT, median, numberFlag } from './common.js'

const threads = numberFlag('threads', 2)
const reps = numberFlag('reps', 10)
const layers = numberFlag('layers', 12)
const warmup = 2

interface Shape { name: string; n: number; decay: boolean }

/** bert-base-cased's parameters in named_parameters() order, with Hugging Face's no-decay rule. */
function bertBaseShapes(layerCount: number): Shape[] {
  const H = 768, FF = 3072, VOCAB = 28996
  const out: Shape[] = []
  const add = (name: string, n: number) => out.push({ name, n, decay: !/bias$|LayerNorm\.weight$/.test(name) })
  add('bert.embeddings.word_embeddings.weight', VOCAB * H)
  add('bert.embeddings.position_embeddings.weight', 512 * H)
  add('bert.embeddings.token_type_embeddings.weight', 2 * H)
  add('bert.embeddings.LayerNorm.weight', H)
  add('bert.embeddings.LayerNorm.bias', H)
  const perLayer: Array<[string, number, number]> = [
    ['attention.self.query', H * H, H], ['attention.self.key', H * H, H], ['attention.self.value', H * H, H],
    ['attention.output.dense', H * H, H], ['attention.output.LayerNorm', H, H], ['intermediate.dense', FF * H, FF],
    ['output.dense', H * FF, H], ['output.LayerNorm', H, H],
  ]
  for (let l = 0; l < layerCount; l++) {
    for (const [name, w, b] of perLayer) {
      add(`bert.encoder.layer.${l}.${name}.weight`, w)
      add(`bert.encoder.layer.${l}.${name}.bias`, b)
    }
  }
  add('bert.pooler.dense.weight', H * H)
  add('bert.pooler.dense.bias', H)
  add('classifier.weight', 2 * H)
  add('classifier.bias', 2)
  return out
}

const N = native()
N.setNumThreads(threads)
const cpu = DEVICE_CODE.cpu
const shapes = bertBaseShapes(layers)
const total = shapes.reduce((s, x) => s + x.n, 0)

function filled(n: number, value: number): NativeBuffer {
  const b = new N.NativeBuffer(cpu, DTYPE_CODE.float32, n)
  N.fill(b, n, value)
  return b
}

const tensors = shapes.map((s, i) => ({ ...s, g: filled(s.n, 1e-3 * (1 + (i % 5))), p: filled(s.n, 0.5), m: filled(s.n, 0), v: filled(s.n, 0) }))
const groups = [tensors.filter((t) => t.decay), tensors.filter((t) => !t.decay)]
const sumSq = filled(1, 0), coef = filled(1, 0)
const LR = 2e-5, WD = 0.01, MAX_NORM = 1
let step = 0

const variants: Record<string, () => void> = {
  'per tensor': () => {
    step++
    N.fill(sumSq, 1, 0)
    for (const t of tensors) N.sumSquares(t.n, t.g, sumSq)
    N.clipCoefficient(sumSq, MAX_NORM, coef)
    for (const t of tensors) N.adamwStep(t.n, LR, 0.9, 0.999, 1e-8, t.decay ? WD : 0, step, coef, t.g, t.p, t.m, t.v)
  },
  'multi-tensor': () => {
    step++
    N.fill(sumSq, 1, 0)
    N.multiTensorSumSquares(tensors.length, tensors.map((t) => t.n), tensors.map((t) => t.g), sumSq)
    N.clipCoefficient(sumSq, MAX_NORM, coef)
    for (const [gi, g] of groups.entries()) {
      N.multiTensorAdamw(g.length, g.map((t) => t.n), g.map((t) => t.p), g.map((t) => t.g), g.map((t) => t.m),
        g.map((t) => t.v), LR, 0.9, 0.999, 1e-8, gi === 0 ? WD : 0, g.map(() => step), coef, null)
    }
  },
}
const names = Object.keys(variants)

/** Milliseconds of one whole step: issue, then wait for the CPU stream to finish it. */
function timeStep(name: string): number {
  const t0 = process.hrtime.bigint()
  variants[name]()
  N.synchronize(cpu)
  return Number(process.hrtime.bigint() - t0) / 1e6
}

const loadBefore = os.loadavg()
const times: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]))
for (let r = 0; r < warmup + reps; r++) {
  const order = r % 2 === 0 ? names : [...names].reverse()
  for (const name of order) {
    const ms = timeStep(name)
    if (r >= warmup) times[name].push(ms)
  }
}
const loadAfter = os.loadavg()

const bytesPerStep = total * 4 * (1 + 7)  // norm reads grads; the step reads 4 arrays and writes 3
const rows = names.map((name) => {
  const ms = median(times[name])
  return { name, ms, min: Math.min(...times[name]), max: Math.max(...times[name]), gbs: bytesPerStep / ms / 1e6 }
})
const opsPerStep: Record<string, string> = {
  'per tensor': `${2 * tensors.length + 2} ops (${tensors.length} sumSquares, clipCoefficient, ${tensors.length} adamwStep, + fill)`,
  'multi-tensor': `${3 + groups.length} ops (1 multiTensorSumSquares, clipCoefficient, ${groups.length} multiTensorAdamw, + fill)`,
}
for (const r of rows) console.log(`${r.name.padEnd(13)} median ${r.ms.toFixed(1)} ms (min ${r.min.toFixed(1)}, max ${r.max.toFixed(1)}), ${r.gbs.toFixed(1)} GB/s`)
const speedup = rows[0].ms / rows[1].ms
console.log(`multi-tensor / per tensor: ${speedup.toFixed(2)}x faster`)

if (!args.includes('--no-write')) {
  const root = REPO_ROOT
  const commandLine = [process.env.BERTKIT_ADDON_PATH ? `BERTKIT_ADDON_PATH=${relative(root, process.env.BERTKIT_ADDON_PATH)}` : '',
    'node', relative(root, process.argv[1]), ...args].filter(Boolean).join(' ')
  const cpus = os.cpus()
  const md = `# Optimizer step on the CPU: per-tensor loop vs multi-tensor AdamW

Machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}, Node ${process.version}; shared with other work.
Date: ${new Date().toISOString()}. Command: \`${commandLine}\`.
Addon: ${process.env.BERTKIT_ADDON_PATH ? relative(root, process.env.BERTKIT_ADDON_PATH) : 'the default build'}, CPU GEMM ${N.getCpuGemm()} (unused here).
Load average (1, 5, 15 min) before: ${loadBefore.map((x) => x.toFixed(2)).join(' ')}, after: ${loadAfter.map((x) => x.toFixed(2)).join(' ')}.

One AdamW step of bert-base-cased (${tensors.length} parameter tensors, ${total.toLocaleString('en-US')} parameters, the Trainer's
two groups: ${groups[0].length} with weight decay ${WD}, ${groups[1].length} without), global-norm clipping included
(max norm ${MAX_NORM}, the coefficient handed to the step as gradScale), on ${threads} threads. Time from issuing
the step to the CPU stream having finished it. Median of ${reps} repetitions after ${warmup} warm-up ones; the two
variants interleaved (one step of each per repetition, alternating which goes first) on the same buffers.

| variant | ops per step | median ms | min ms | max ms | GB/s (${(bytesPerStep / 1e9).toFixed(2)} GB moved) |
|---|---|---|---|---|---|
${rows.map((r) => `| ${r.name} | ${opsPerStep[r.name]} | ${r.ms.toFixed(1)} | ${r.min.toFixed(1)} | ${r.max.toFixed(1)} | ${r.gbs.toFixed(1)} |`).join('\n')}

Multi-tensor is ${speedup.toFixed(2)}x the speed of the per-tensor loop here. The step is bound by memory bandwidth
(${(bytesPerStep / 1e9).toFixed(2)} GB per step), so on the CPU the gain is the per-op cost the loop pays ${2 * tensors.length} times
(queueing on the CPU stream, waking the thread pool, splitting each small tensor over the threads); on a GPU the
same change turns at least ${2 * tensors.length + 2} kernel launches per step into ${1 + 2 + 1 + groups.length} (see the optimizer timings of test/ops/backend_ops_gpu.ts).

Raw times (ms):
${names.map((n) => `- ${n}: ${times[n].map((x) => x.toFixed(1)).join(', ')}`).join('\n')}
`
  const out = join(root, 'benchmarks', 'optimizer-cpu.md')
  writeFileSync(out, md)
  console.log(`wrote ${out}`)
}
