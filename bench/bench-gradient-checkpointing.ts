// Gradient checkpointing on this CPU: peak memory and step time of a training
// step (forward + backward + clip + AdamW) of the bert-base shape, batch 32,
// sequence 128, with and without checkpointed encoder layers. Each variant
// runs in a process of its own, so each peak is its own.
// Usage: node dist/bench/bench-gradient-checkpointing.js [--steps 2] [--batch 32] [--seq 128] [--variants full,full+ckpt]
// Writes benchmarks/gradient-checkpointing-cpu.{json,md}.
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { BertConfig, BertForSequenceClassification, AdamW, clipGradNorm, tidy, tensor, manualSeed, memoryStats, synchronize } from '../lib/index.js'
import { native } from '../lib/native.js'
import { args, flag } from './common.js'

const steps = Number(flag('steps', '2'))
// e.g. -mmap for a run under MALLOC_MMAP_THRESHOLD_ (glibc then maps every large block and unmaps it when freed).
const suffix = flag('out-suffix', '')
const batch = Number(flag('batch', '32'))
const seq = Number(flag('seq', '128'))
const shape = { vocab_size: 28996, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072, max_position_embeddings: 512, type_vocab_size: 2, num_labels: 2 }

function statusMiB(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
}

interface Result { variant: string; stepSeconds: number[]; peakTensorsMiB: number; weightsGradsOptimizerMiB: number; peakRssMiB: number; loss: number[] }

/** One variant, in this process. */
function run(variant: string): Result {
  manualSeed(0)
  const model = new BertForSequenceClassification(new BertConfig(shape))
  model.train()
  if (variant.endsWith('+ckpt')) model.gradientCheckpointingEnable()
  const trainable = model.parameters()
  const optimizer = new AdamW(trainable, { lr: 2e-5, weightDecay: 0.01 })
  const ids = Int32Array.from({ length: batch * seq }, (_, i) => (i * 7919) % shape.vocab_size)
  const labels = Int32Array.from({ length: batch }, (_, i) => i % 2)
  native().emptyCache()
  native().resetPeakMemory()
  writeFileSync('/proc/self/clear_refs', '5')
  const times: number[] = [], losses: number[] = []
  for (let s = 0; s < steps; s++) {
    const t0 = process.hrtime.bigint()
    losses.push(tidy(() => {
      const out = model.forward({ inputIds: tensor(ids, { shape: [batch, seq], dtype: 'int32' }), labels: tensor(labels, { dtype: 'int32' }) })
      out.loss!.backward()
      const clip = clipGradNorm(trainable, 1.0)
      optimizer.step({ gradScale: clip.coefficient })
      optimizer.zeroGrad()
      return out.loss!.item()
    }))
    synchronize()
    times.push(Number(process.hrtime.bigint() - t0) / 1e9)
  }
  // What stays between steps: weights, AdamW's two moments (the gradients are freed by zeroGrad).
  const resident = memoryStats().cpuBytes
  const result = { variant, stepSeconds: times, peakTensorsMiB: memoryStats().peakCpuBytes / 2 ** 20, weightsGradsOptimizerMiB: resident / 2 ** 20, peakRssMiB: statusMiB('VmHWM'), loss: losses }
  optimizer.dispose()
  model.dispose()
  return result
}

if (args.includes('--child')) {
  console.log(JSON.stringify(run(flag('variant', 'full'))))
} else {
  const variants = flag('variants', 'full,full+ckpt').split(',')
  const results: Result[] = []
  const loadavg = os.loadavg().map((x) => x.toFixed(2)).join(' ')
  for (const variant of variants) {
    const r = spawnSync(process.execPath, [__filename, '--child', '--variant', variant, '--steps', String(steps), '--batch', String(batch), '--seq', String(seq)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
    if (r.status !== 0) throw new Error(`variant ${variant} failed (exit ${r.status})`)
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as Result
    console.error(`${variant}: peak tensors ${res.peakTensorsMiB.toFixed(0)} MiB, peak RSS ${res.peakRssMiB.toFixed(0)} MiB, steps ${res.stepSeconds.map((s) => s.toFixed(1)).join(', ')} s`)
    results.push(res)
  }
  const date = new Date().toISOString().slice(0, 10)
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
  const malloc = Object.entries(process.env).filter(([k]) => k.startsWith('MALLOC_')).map(([k, v]) => `${k}=${v} `).join('')
  const command = `${malloc}node dist/bench/bench-gradient-checkpointing.js --steps ${steps} --batch ${batch} --seq ${seq} --variants ${variants.join(',')}${suffix ? ` --out-suffix ${suffix}` : ''}`
  const out = join(__dirname, '..', '..', 'benchmarks')
  mkdirSync(out, { recursive: true })
  writeFileSync(join(out, `gradient-checkpointing-cpu${suffix}.json`), JSON.stringify({ date, cpu, cores: os.cpus().length, loadavgAtStart: loadavg, command, shape, batch, seq, steps, results }, null, 2) + '\n')
  const base = results.find((r) => r.variant === 'full')
  const lines = [
    '# Gradient checkpointing: memory and time of a training step on this CPU',
    '',
    `bert-base shape (12 layers, hidden 768, 12 heads, intermediate 3072, vocab 28996), batch ${batch}, sequence ${seq}, fp32, full fine-tuning: forward + backward + clip + AdamW, ${steps} step(s) per variant, each variant in a process of its own.`,
    `Machine: ${cpu} (${os.cpus().length} cores), ${date}; shared with other jobs (load average ${loadavg} at the start), so step times are indicative only; the peak of live tensor bytes does not depend on load and is the figure to read. Command: \`${command}\`.`,
    '',
    '"Peak tensors" is the peak of live native tensor bytes during the steps (weights, gradients, AdamW moments, activations); "between steps" is what stays after a step (weights + AdamW moments); the difference is what the step itself needs at its peak. "Peak RSS" is the process high-water mark (it also counts the allocator\'s cache).',
    '',
    '| variant | peak tensors MiB | between steps MiB | step peak above that MiB | peak RSS MiB | step times s | loss |',
    '|---|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.variant === 'full' ? 'plain' : 'gradient checkpointing'} | ${r.peakTensorsMiB.toFixed(0)} | ${r.weightsGradsOptimizerMiB.toFixed(0)} | ${(r.peakTensorsMiB - r.weightsGradsOptimizerMiB).toFixed(0)} | ${r.peakRssMiB.toFixed(0)} | ${r.stepSeconds.map((s) => s.toFixed(1)).join(', ')} | ${r.loss.map((l) => l.toFixed(6)).join(', ')} |`),
  ]
  const ck = results.find((r) => r.variant === 'full+ckpt')
  if (base && ck) {
    const saved = 1 - (ck.peakTensorsMiB - ck.weightsGradsOptimizerMiB) / (base.peakTensorsMiB - base.weightsGradsOptimizerMiB)
    const last = (r: Result) => r.stepSeconds[r.stepSeconds.length - 1]
    lines.push('', `Checkpointing cuts the step's own peak (activations and gradients above the resident weights and moments) by ${(saved * 100).toFixed(0)} % and the total peak of live tensors from ${base.peakTensorsMiB.toFixed(0)} to ${ck.peakTensorsMiB.toFixed(0)} MiB (${((1 - ck.peakTensorsMiB / base.peakTensorsMiB) * 100).toFixed(0)} %). It computes one more forward pass of every layer (about a third more arithmetic per step); the last steps took ${last(base).toFixed(1)} s plain and ${last(ck).toFixed(1)} s checkpointed (ratio ${(last(ck) / last(base)).toFixed(2)}), but other jobs shared these two cores, so that ratio says little. The losses are the same to the last digit: the recomputed layers replay their dropout masks.`)
  }
  writeFileSync(join(out, `gradient-checkpointing-cpu${suffix}.md`), lines.join('\n') + '\n')
  console.log(lines.join('\n'))
}
