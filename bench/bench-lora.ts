// LoRA training step vs full fine-tuning step on this CPU: the MiniLM shape
// (6 layers, hidden 384, 12 heads, intermediate 1536), batch 16, sequence 64,
// forward + backward + clip + AdamW in fp32 — time, peak live native memory,
// and what the optimizer keeps state for. The machine is shared: steps of the
// strategies are interleaved, and everything is measured --repeats times.
// Usage: npx tsc -p tsconfig.json && node dist/bench/bench-lora.js [--steps 10 --warmup 2 --repeats 2 --threads 2]
import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import {
  BertConfig, BertForSequenceClassification, AdamW, clipGradNorm, tidy, tensor, manualSeed, memoryStats, loadNative,
  LoraConfig, getPeftModel, type Tensor, type LoraConfigInit,
} from '../lib/index.js'
import { native } from '../lib/native.js'
import { MINILM_SHAPE, middleSample, numberFlag } from './common.js'

const steps = numberFlag('steps', 10)
const warmup = numberFlag('warmup', 2)
const repeats = numberFlag('repeats', 2)
const threads = numberFlag('threads', 2)
const batch = numberFlag('batch', 16)
const seq = numberFlag('seq', 64)

const shape = MINILM_SHAPE
const strategies: Record<string, LoraConfigInit | null> = {
  full: null,
  'lora r=8 query+value (+classifier)': { r: 8, loraAlpha: 16, loraDropout: 0.1, targetModules: ['query', 'value'], modulesToSave: ['classifier'] },
  'lora r=8 all-linear (+classifier)': { r: 8, loraAlpha: 16, loraDropout: 0.1, targetModules: 'all-linear', modulesToSave: ['classifier'] },
}
type Strategy = keyof typeof strategies


const MiB = 2 ** 20

interface Setup {
  step(): number
  dispose(): void
  trainable: number
  trainableTensors: number
  total: number
  optimizerState(): { tensors: number; elements: number }
  summary: string | null
}

function setup(strategy: Strategy): Setup {
  manualSeed(0)
  const base = new BertForSequenceClassification(new BertConfig(shape))
  const spec = strategies[strategy]
  const model = spec ? getPeftModel(base, new LoraConfig(spec), { seed: 0 }) : base
  model.train()
  const named = [...model.namedParameters()]
  const trainable = named.filter(([, p]) => p.requiresGrad).map(([, p]) => p)
  const optimizer = new AdamW(trainable, { lr: 2e-5, weightDecay: 0.01 })
  const ids = Int32Array.from({ length: batch * seq }, (_, i) => (i * 7919) % shape.vocab_size)
  const mask = Int32Array.from({ length: batch * seq }, (_, i) => (i % seq < seq - (Math.floor(i / seq) % 8) * 4 ? 1 : 0))
  const labels = Int32Array.from({ length: batch }, (_, i) => i % 2)
  return {
    step() {
      const t0 = process.hrtime.bigint()
      tidy(() => {
        const out = model.forward({
          inputIds: tensor(ids, { shape: [batch, seq], dtype: 'int32' }),
          attentionMask: tensor(mask, { shape: [batch, seq], dtype: 'int32' }),
          labels: tensor(labels, { dtype: 'int32' }),
        } as never) as { loss: Tensor | null }
        out.loss!.backward()
        const clip = clipGradNorm(trainable, 1.0)
        optimizer.step({ gradScale: clip.coefficient })
        optimizer.zeroGrad()
        return out.loss!.item()
      })
      return Number(process.hrtime.bigint() - t0) / 1e6
    },
    dispose() {
      optimizer.dispose()
      model.dispose()
    },
    trainable: trainable.reduce((s, p) => s + p.numel, 0),
    trainableTensors: trainable.length,
    total: named.reduce((s, [, p]) => s + p.numel, 0),
    optimizerState() {
      let tensors = 0, elements = 0
      for (const [, p] of named) {
        if (optimizer.stateOf(p)) {
          tensors++
          elements += p.numel
        }
      }
      return { tensors, elements }
    },
    summary: model !== base ? (model as ReturnType<typeof getPeftModel>).trainableParametersLine() : null,
  }
}

/** Peak live native bytes of a step, with nothing else allocated (deterministic, unlike time). */
function measureMemory(strategy: Strategy) {
  const s = setup(strategy)
  native().emptyCache()
  native().resetPeakMemory()
  const weightsMiB = memoryStats().cpuBytes / MiB
  for (let i = 0; i < 2; i++) s.step()
  const peakMiB = memoryStats().peakCpuBytes / MiB
  const state = s.optimizerState()
  const out = { peakMiB, weightsMiB, trainable: s.trainable, trainableTensors: s.trainableTensors, total: s.total,
    stateTensors: state.tensors, stateElements: state.elements, stateMiB: (2 * state.elements * 4) / MiB, summary: s.summary }
  s.dispose()
  return out
}

/**
 * Step times with every strategy's model alive, one step of each per round
 * (the starting strategy rotating), so load from other processes falls on all
 * of them alike; the speed-up is the median of the per-round ratios.
 */
function measureTime(names: Strategy[]) {
  const setups = names.map(setup)
  const times = names.map(() => [] as number[])
  for (let round = 0; round < warmup + steps; round++) {
    for (let k = 0; k < names.length; k++) {
      const i = (round + k) % names.length
      const ms = setups[i].step()
      if (round >= warmup) times[i].push(ms)
    }
  }
  for (const s of setups) s.dispose()
  return names.map((name, i) => ({
    name, medianMs: middleSample(times[i]), minMs: Math.min(...times[i]),
    speedup: middleSample(times[0].map((full, r) => full / times[i][r])),
  }))
}

function main() {
  native().setNumThreads(threads)
  const { addon } = loadNative()
  const names = Object.keys(strategies) as Strategy[]
  const memory = Array.from({ length: repeats }, () => Object.fromEntries(names.map((n) => [n, measureMemory(n)])) as Record<Strategy, ReturnType<typeof measureMemory>>)
  const time: Array<ReturnType<typeof measureTime>> = []
  for (let r = 0; r < repeats; r++) {
    time.push(measureTime(names))
    process.stderr.write(`time run ${r + 1}: ${time[r].map((x) => `${x.name} ${x.medianMs.toFixed(1)} ms`).join(', ')}\n`)
  }
  const f = (n: number, d = 1) => n.toFixed(d)
  const lines = [
    `# LoRA vs full fine-tuning: one training step on this CPU`,
    ``,
    `MiniLM shape (6 layers, hidden 384, 12 heads, intermediate 1536, vocab 30522), batch ${batch}, sequence ${seq} (rows padded by 0-28 tokens), forward + backward + clip (max norm 1) + AdamW, fp32, dropout on, ${threads} threads.`,
    `Machine: ${os.cpus()[0]?.model ?? 'unknown'} (${os.cpus().length} cores, shared with other builds), ${new Date().toISOString().slice(0, 10)}; bertkit GEMM: ${addon.cpuGemm}. Command: \`npx tsc -p tsconfig.json && node dist/bench/bench-lora.js\`.`,
    ``,
    `## Time`,
    ``,
    `All three models alive at once, one step of each per round (starting strategy rotating), ${warmup} warm-up rounds then ${steps} measured; "vs full" is the median of the per-round ratios, so load from other processes falls on every strategy alike. Two runs.`,
    ``,
    `| strategy | run | step ms median (min) | speed-up vs full |`,
    `|---|---|---|---|`,
  ]
  time.forEach((run, r) => {
    for (const x of run) lines.push(`| ${x.name} | ${r + 1} | ${f(x.medianMs)} (${f(x.minMs)}) | ${f(x.speedup, 2)}× |`)
  })
  lines.push('', '## Memory and optimizer state', '',
    `Each strategy alone, two steps: "peak native" is memoryStats().peakCpuBytes over the steps (every live native tensor: weights, gradients, optimizer state, activations); "weights" is what was live before the first step. Optimizer state is AdamW's exp_avg + exp_avg_sq, counted with optimizer.stateOf() over every parameter after the steps. Two runs (memory is deterministic; they agree).`,
    '', `| strategy | run | peak native MiB | weights MiB | trainable params (tensors) | optimizer state: tensors, elements, MiB |`, `|---|---|---|---|---|---|`)
  memory.forEach((run, r) => {
    for (const n of names) {
      const b = run[n]
      lines.push(`| ${n} | ${r + 1} | ${f(b.peakMiB, 0)} | ${f(b.weightsMiB, 0)} | ${b.trainable.toLocaleString('en-US')} (${b.trainableTensors}) | ${b.stateTensors}, ${b.stateElements.toLocaleString('en-US')}, ${f(b.stateMiB)} |`)
    }
  })
  lines.push('', 'peft-style summaries (trainableParametersLine()):', '')
  for (const n of names) if (memory[0][n].summary) lines.push(`- ${n}: \`${memory[0][n].summary}\``)
  const out = join(__dirname, '..', '..', 'benchmarks')
  mkdirSync(out, { recursive: true })
  writeFileSync(join(out, 'lora-cpu.md'), lines.join('\n') + '\n')
  writeFileSync(join(out, 'lora-cpu.json'), JSON.stringify({ date: new Date().toISOString(), threads, batch, seq, steps, warmup, time, memory }, null, 2) + '\n')
  console.log(lines.join('\n'))
}

main()
