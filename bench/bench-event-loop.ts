// How long a training run holds Node's event loop: the Trainer fine-tunes a
// randomly initialised BERT on synthetic sentences while a 10 ms interval timer
// records how late each tick fires (and perf_hooks' event-loop delay histogram
// watches too). Run once with CPU ops queued on the stream thread (the default)
// and once with them run on the main thread (setCpuAsync(false), the old way),
// same model, data and seed; the steps/s of each show what queueing costs.
// Usage: npx tsc -p tsconfig.json && node dist/bench/bench-event-loop.js
//   [--shape bert-base|minilm] [--steps 8] [--threads 2] [--batch 16] [--seq 64]
//   [--save-steps N]  (also write a checkpoint — weights + optimizer state — every N steps)
import { writeFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { BertConfig, BertForSequenceClassification, Dataset, DataCollatorWithPadding, Trainer, TrainingArguments, manualSeed, loadNative } from '../lib/index.js'
import { native, DEVICE_CODE } from '../lib/native.js'
import { args, flag } from './common.js'

const shapeName = flag('shape', 'bert-base')
const steps = Number(flag('steps', '8'))
const threads = Number(flag('threads', '2'))
const batch = Number(flag('batch', '16'))
const seq = Number(flag('seq', '64'))
const saveSteps = Number(flag('save-steps', '0'))
native().setNumThreads(threads)

const shapes: Record<string, Record<string, number>> = {
  'bert-base': { vocab_size: 28996, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072 },
  minilm: { vocab_size: 30522, hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 12, intermediate_size: 1536 },
}
const shape = shapes[shapeName]
if (!shape) throw new Error(`--shape must be one of ${Object.keys(shapes).join(', ')}`)

// Sentences of seq-8 .. seq tokens, as dynamic padding sees real data.
function syntheticData(n: number): Dataset {
  let state = 12345
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  const ids: number[][] = []
  const labels: number[] = []
  for (let i = 0; i < n; i++) {
    const len = seq - Math.floor(next() * 8)
    ids.push([101, ...Array.from({ length: len - 2 }, () => 1000 + Math.floor(next() * 20000)), 102])
    labels.push(i % 2)
  }
  return Dataset.fromColumns({ input_ids: ids, label: labels })
}

interface Run {
  mode: string
  steps: number
  trainSeconds: number
  stepsPerSecond: number
  ticks: number
  maxTickLateMs: number
  p99TickLateMs: number
  loopDelayMaxMs: number
  loopDelayP99Ms: number
}

async function run(queued: boolean): Promise<Run> {
  native().setCpuAsync(queued)
  manualSeed(0)
  const model = new BertForSequenceClassification(new BertConfig({ ...shape, max_position_embeddings: 512, type_vocab_size: 2, num_labels: 2 }))
  const outputDir = mkdtempSync(join(os.tmpdir(), 'bertkit-loop-'))
  const trainer = new Trainer({
    model,
    args: new TrainingArguments(outputDir, { maxSteps: steps, perDeviceTrainBatchSize: batch, learningRate: 2e-5, saveStrategy: saveSteps > 0 ? 'steps' : 'no', saveSteps: saveSteps > 0 ? saveSteps : 500, saveTotalLimit: 1, loggingSteps: 4, disableTqdm: true, plotCurves: false, seed: 42 }),
    trainDataset: syntheticData(steps * batch),
    dataCollator: DataCollatorWithPadding({ tokenizer: 0 }),
  })
  const late: number[] = []
  const period = 10
  let expected = performance.now() + period
  const timer = setInterval(() => {
    const now = performance.now()
    late.push(Math.max(0, now - expected))
    expected = now + period
  }, period)
  const histogram = monitorEventLoopDelay({ resolution: 5 })
  histogram.enable()
  const start = performance.now()
  await trainer.train()
  const trainSeconds = (performance.now() - start) / 1000
  histogram.disable()
  clearInterval(timer)
  trainer.dispose()
  model.dispose()
  rmSync(outputDir, { recursive: true, force: true })
  const sorted = [...late].sort((a, b) => a - b)
  return {
    mode: queued ? 'queued (stream thread, default)' : 'inline (main thread)',
    steps,
    trainSeconds,
    stepsPerSecond: steps / trainSeconds,
    ticks: late.length,
    maxTickLateMs: sorted[sorted.length - 1] ?? NaN,
    p99TickLateMs: sorted[Math.floor(sorted.length * 0.99)] ?? NaN,
    loopDelayMaxMs: histogram.max / 1e6,
    loopDelayP99Ms: histogram.percentile(99) / 1e6,
  }
}

async function main(): Promise<void> {
const results: Run[] = []
for (const queued of [false, true, false, true]) {
  const r = await run(queued)
  results.push(r)
  process.stderr.write(`${r.mode}: ${r.stepsPerSecond.toFixed(3)} steps/s, timer late by max ${r.maxTickLateMs.toFixed(0)} ms (p99 ${r.p99TickLateMs.toFixed(0)} ms)\n`)
}
native().setCpuAsync(true)

const { addon } = loadNative()
const f = (x: number, d = 0) => x.toFixed(d)
const lines = [
  '# Event loop during training (CPU)',
  '',
  `The Trainer fine-tunes a randomly initialised ${shapeName}-shaped BERT (${JSON.stringify(shape)}) for ${steps} steps, batch ${batch}, sentences of ${seq - 7}-${seq} tokens, fp32, logging every 4 steps${saveSteps > 0 ? `, a checkpoint (weights + AdamW state, atomic) every ${saveSteps} steps` : ''}, while a 10 ms setInterval records how late each tick fires; perf_hooks.monitorEventLoopDelay watches too. Each mode runs twice, alternating.`,
  `Machine: ${os.cpus()[0]?.model ?? 'unknown'} (${os.cpus().length} cores), ${addon.probeDevice(DEVICE_CODE.cpu).description}; date ${new Date().toISOString().slice(0, 10)}.`,
  `Command: \`node dist/bench/bench-event-loop.js ${args.join(' ')}\``,
  '',
  '| mode | train time (s) | steps/s | timer ticks | tick late by: max (ms) | p99 (ms) | loop delay max (ms) | p99 (ms) |',
  '|---|---|---|---|---|---|---|---|',
  ...results.map((r) => `| ${r.mode} | ${f(r.trainSeconds, 1)} | ${f(r.stepsPerSecond, 3)} | ${r.ticks} | ${f(r.maxTickLateMs)} | ${f(r.p99TickLateMs)} | ${f(r.loopDelayMaxMs)} | ${f(r.loopDelayP99Ms)} |`),
]
const table = lines.join('\n') + '\n'
mkdirSync('benchmarks', { recursive: true })
writeFileSync(join('benchmarks', `event-loop-cpu-${shapeName}.md`), table)
writeFileSync(join('benchmarks', `event-loop-cpu-${shapeName}.json`), JSON.stringify({ date: new Date().toISOString(), args, results }, null, 2) + '\n')
console.log(table)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
