// The seed's recipe as a benchmark: fine-tune on rotten tomatoes (8,530 train
// / 1,066 test, batch 16, lr 2e-5, weight decay 0.01, 1 epoch) with the three
// freezing strategies, and print the seed's table — train time, train loss,
// eval F1, eval time, samples/s — beside the reference T4 numbers and, with
// --hf, Hugging Face's Trainer measured in the same run on the same machine,
// data, hyperparameters and weights.
//
// bertkit bench --model DIR --tokenized rt.json [--hf] [--strategies full,head,index100]
//   [--precision fp32,bf16] [--epochs 1] [--max-steps N] [--seeds 42] [--lr 2e-5] [--out benchmarks/recipe-cpu]
//   [--runs 3] [--pad-to-multiple-of 8] [--no-warmup] [--hf-cudnn-sdpa on|off] [--hf-nan-inf-filter on|off]
// Fairness (issue 13, item 20): each configuration runs --runs times (default 3), the two
// libraries alternating which goes first, and the table shows medians with the min-max
// spread. Both sides warm up the same way before their timed train() and evaluate() —
// untimed forward + backward at every (batch size, padded length) the data can give, and
// eval forwards at every eval shape — so neither pays start-up inside its timings (bertkit's
// later runs share a process, each HF run is a fresh Python process). --pad-to-multiple-of
// goes to both collators. The HF side runs with cuDNN attention off by default (it builds a
// graph per shape on sm_90) and with transformers' default logging_nan_inf_filter (a host
// sync per step on CUDA); see bench/bench_hf_trainer.py.
// Strategy `lora` trains a LoRA adapter (r=8, alpha 16, dropout 0.1, query+value,
// classifier saved) — bertkit's peft port against peft itself on the HF side.
//   (also `npm run bench -- ...`)
// rt.json comes from bench/tokenize_rotten_tomatoes.py (the same ids for both libraries).
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { join, dirname } from 'node:path'
import os from 'node:os'
import { AutoModelForSequenceClassification } from '../models/auto.js'
import { freezeAllExcept, freezeIndexRange } from '../nn/freezing.js'
import { memoryStats } from '../tensor/tensor.js'
import { getDefaultDevice, synchronizeAsync } from '../tensor/device.js'
import { tidy, noGrad, autocast, type Tensor } from '../tensor/index.js'
import { native, loadNative, DEVICE_CODE } from '../native.js'
import { Dataset } from '../data/dataset.js'
import { DataCollatorWithPadding } from '../data/data_collator.js'
import { Trainer } from '../train/trainer.js'
import { TrainingArguments } from '../train/training_args.js'
import { f1 } from '../train/metrics.js'
import { makeDirs } from '../hub/dirs.js'
import { intFlag, numberFlag } from './args.js'
import { getPeftModel, LoraConfig, type LoraConfigInit } from '../peft/index.js'

/** The adapter both libraries train for strategy `lora` (the issue's r=8, query+value, classifier saved). */
const BENCH_LORA: LoraConfigInit = { r: 8, loraAlpha: 16, loraDropout: 0.1, targetModules: ['query', 'value'], modulesToSave: ['classifier'] }

export async function runBench(argv: string[]): Promise<void> {
const flag = (name: string) => argv.includes(`--${name}`)
const opt = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback
}
const modelDir = opt('model', '')
const tokenized = opt('tokenized', '')
if (!modelDir || !tokenized) {
  throw new Error('usage: bertkit bench --model DIR --tokenized rt.json [--hf] [--strategies full,head,index100] [--precision fp32,bf16]')
}
const strategies = opt('strategies', 'full,head,index100').split(',') as Strategy[]
const precisions = opt('precision', 'fp32').split(',') as Precision[]
const epochs = numberFlag(opt('epochs', '1'), 'epochs')
if (!(epochs > 0)) throw new Error(`bench: --epochs must be a positive number, got ${opt('epochs', '')}`)
const maxSteps = intFlag(opt('max-steps', '-1'), 'max-steps', -1)
if (maxSteps === 0) throw new Error('bench: --max-steps must be -1 (a whole epoch) or a positive integer, got 0')
const seeds = opt('seeds', '42').split(',').map((s) => intFlag(s, 'seeds', 0))
const learningRate = numberFlag(opt('lr', '2e-5'), 'lr')
if (!(learningRate > 0)) throw new Error(`bench: --lr must be a positive number, got ${opt('lr', '')}`)
const outBase = opt('out', join('benchmarks', `recipe-${os.hostname().slice(0, 12)}`))
const threads = intFlag(opt('threads', '0'), 'threads', 0)
if (threads > 0) native().setNumThreads(threads)
const runs = Number(opt('runs', '3'))
if (!Number.isInteger(runs) || runs < 1) throw new Error(`bench: --runs must be a positive integer, got ${opt('runs', '')}`)
const padText = opt('pad-to-multiple-of', '')
const padToMultipleOf = padText === '' ? undefined : Number(padText)
if (padToMultipleOf !== undefined && !(Number.isInteger(padToMultipleOf) && padToMultipleOf >= 1)) {
  throw new Error(`bench: --pad-to-multiple-of must be a positive integer, got ${padText}`)
}
const warmup = !flag('no-warmup')
const onOff = (name: string, fallback: 'on' | 'off') => {
  const v = opt(name, fallback)
  if (v !== 'on' && v !== 'off') throw new Error(`bench: --${name} must be on or off, got ${v}`)
  return v
}
const hfCudnnSdpa = onOff('hf-cudnn-sdpa', 'off')
const hfNanInfFilter = onOff('hf-nan-inf-filter', 'on')

type Strategy = 'full' | 'head' | 'index100' | 'lora'
type Precision = 'fp32' | 'fp16' | 'bf16'

const REFERENCE_T4: Partial<Record<Strategy, { trainTime: number; trainLoss: number; evalF1: number }>> = {
  full: { trainTime: 62, trainLoss: 0.418, evalF1: 0.857 },
  head: { trainTime: 15, trainLoss: 0.696, evalF1: 0.638 },
  index100: { trainTime: 21, trainLoss: 0.475, evalF1: 0.768 },
}

interface Result {
  library: string
  strategy: Strategy
  precision: Precision
  seed: number
  trainRuntime: number
  trainLoss: number
  trainSamplesPerSecond: number
  evalF1: number
  evalRuntime: number
  peakMemoryMiB: number | null
  steps: number
  /** Untimed warm-up before train() (null: --no-warmup). */
  warmupSeconds?: number | null
  run?: number
  error?: string
}

const data = JSON.parse(readFileSync(tokenized, 'utf8')) as Record<string, { input_ids: number[][]; labels: number[] }>
const split = (name: string) => Dataset.fromColumns({ input_ids: data[name].input_ids, label: data[name].labels })
const train = split('train')
const test = split('test')
const collator = DataCollatorWithPadding({ tokenizer: 0, padToMultipleOf })

/**
 * Row indices of one batch per (batch size, padded length) a run can meet: a row of that
 * length plus the shortest rows (bench/bench_hf_trainer.py builds the same shapes).
 */
function warmupBatches(ids: number[][], batchSize: number): number[][] {
  const firstOfLength = new Map<number, number>()
  ids.forEach((r, i) => { if (!firstOfLength.has(r.length)) firstOfLength.set(r.length, i) })
  const shortest = ids.map((_, i) => i).sort((a, b) => ids[a].length - ids[b].length || a - b)
  const m = padToMultipleOf ?? 1
  const sizes = [...new Set([batchSize, ...(ids.length % batchSize ? [ids.length % batchSize] : [])])].sort((a, b) => a - b)
  const seen = new Set<string>(), batches: number[][] = []
  for (const b of sizes) {
    for (const length of [...firstOfLength.keys()].sort((x, y) => x - y)) {
      const key = `${b}:${Math.ceil(length / m) * m}`
      if (seen.has(key)) continue
      seen.add(key)
      batches.push([firstOfLength.get(length)!, ...shortest.slice(0, b - 1)])
    }
  }
  return batches
}

/** Untimed passes at every train and eval shape, under the run's autocast; the Trainer reseeds at train(). */
async function warmUp(model: { forward: Trainer['model']['forward']; namedParameters(): Iterable<[string, Tensor]>; train(): unknown; eval(): unknown }, precision: Precision): Promise<number> {
  const start = process.hrtime.bigint()
  const half = precision === 'bf16' ? 'bfloat16' : precision === 'fp16' ? 'float16' : null
  model.train()
  for (const idx of warmupBatches(data.train.input_ids, 16)) {
    tidy(() => autocast(half, () => {
      const out = model.forward(collator(idx.map((i) => train.get(i))))
      // Nothing trainable (every parameter frozen): the Trainer says so clearly in train().
      if (out.loss!.requiresGrad) out.loss!.backward()
    }))
    for (const [, p] of model.namedParameters()) {
      p.grad?.dispose()
      p.grad = null
    }
  }
  model.eval()
  noGrad(() => {
    for (const idx of warmupBatches(data.test.input_ids, 16)) tidy(() => autocast(half, () => { model.forward(collator(idx.map((i) => test.get(i)))) }))
  })
  model.train()
  await synchronizeAsync(getDefaultDevice())
  return Number(process.hrtime.bigint() - start) / 1e9
}

async function runBertkit(strategy: Strategy, precision: Precision, seed: number, startFrom = modelDir, run = 0): Promise<Result> {
  const base = await AutoModelForSequenceClassification.fromPretrained(startFrom, { numLabels: 2, seed })
  if (strategy === 'head') freezeAllExcept(base, 'classifier')
  if (strategy === 'index100') freezeIndexRange(base, 0, 100)
  const model = strategy === 'lora'
    ? getPeftModel(base, new LoraConfig({ ...BENCH_LORA, taskType: 'SEQ_CLS' }), { seed })
    : base
  const outputDir = mkdtempSync(join(os.tmpdir(), 'bertkit-bench-'))
  const args = new TrainingArguments(outputDir, {
    learningRate, perDeviceTrainBatchSize: 16, perDeviceEvalBatchSize: 16, numTrainEpochs: epochs, maxSteps,
    weightDecay: 0.01, saveStrategy: 'no', seed, fp16: precision === 'fp16', bf16: precision === 'bf16', loggingSteps: 50,
    disableTqdm: !process.stderr.isTTY, plotCurves: false,
  })
  const trainer = new Trainer({
    model, args, trainDataset: train, evalDataset: test, dataCollator: collator,
    computeMetrics: (p) => ({ f1: f1(p.labelIds!, p.predictedLabels) }),
  })
  const warmupSeconds = warmup ? await warmUp(model, precision) : null
  native().resetPeakMemory()
  const out = await trainer.train()
  const device = getDefaultDevice()
  const stats = memoryStats()
  const peak = (device === 'cuda' ? stats.peakCudaBytes : stats.peakCpuBytes) / 2 ** 20
  const ev = await trainer.evaluate()
  trainer.dispose()
  model.dispose()
  rmSync(outputDir, { recursive: true, force: true })
  return {
    library: 'bertkit', strategy, precision, seed, trainRuntime: out.trainRuntime, trainLoss: out.trainLoss,
    trainSamplesPerSecond: out.trainSamplesPerSecond, evalF1: ev.evalF1, evalRuntime: ev.evalRuntime, peakMemoryMiB: peak,
    steps: out.globalStep, warmupSeconds, run,
  }
}

function runHf(strategy: Strategy, precision: Precision, seed: number, initDir: string | null = null, run = 0): Result {
  const script = join(__dirname, '..', '..', '..', 'bench', 'bench_hf_trainer.py')
  const args = [script, '--model', modelDir, '--data', tokenized, '--strategy', strategy, '--precision', precision,
    '--epochs', String(epochs), '--max-steps', String(maxSteps), '--seed', String(seed), '--lr', String(learningRate)]
  if (initDir) args.push('--init-dir', initDir)
  if (threads > 0) args.push('--threads', String(threads))
  if (padToMultipleOf !== undefined) args.push('--pad-to-multiple-of', String(padToMultipleOf))
  if (!warmup) args.push('--no-warmup')
  args.push('--cudnn-sdpa', hfCudnnSdpa, '--nan-inf-filter', hfNanInfFilter)
  const r = spawnSync('python3', args, { encoding: 'utf8', maxBuffer: 64 << 20 })
  const last = r.stdout.trim().split('\n').pop() ?? ''
  if (r.status !== 0 || !last.startsWith('{')) {
    const error = (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')
    return { library: 'transformers', strategy, precision, seed, run, trainRuntime: NaN, trainLoss: NaN, trainSamplesPerSecond: NaN, evalF1: NaN, evalRuntime: NaN, peakMemoryMiB: null, steps: 0, error }
  }
  return { ...(JSON.parse(last) as Result), seed, run }
}

/** Results so far, so a run cut short by a time limit still leaves its numbers. */
function saveProgress(results: Result[]): void {
  makeDirs(dirname(outBase) || '.', '--out folder')
  writeFileSync(`${outBase}.partial.json`, JSON.stringify({ argv, results }, null, 2) + '\n')
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
/** "median [min-max]" of several runs; just the value for one. */
const spread = (xs: number[], d: number) => xs.length > 1
  ? `${fmt(median(xs), d)} [${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)}]`
  : fmt(median(xs), d)
const fmt = (x: number | null | undefined, d = 3) => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(d))

async function main() {
  const results: Result[] = []
  for (const precision of precisions) {
    for (const strategy of strategies) {
      for (const seed of seeds) {
        // --same-init: the HF run saves its initialised model (its seeded new classifier
        // included) and bertkit starts from exactly those weights.
        const initDir = flag('same-init') ? mkdtempSync(join(os.tmpdir(), 'bertkit-init-')) : null
        let initSaved = false
        for (let run = 0; run < runs; run++) {
          const runTheirs = () => {
            const theirs = runHf(strategy, precision, seed, initDir && !initSaved ? initDir : null, run)
            if (initDir) initSaved = true
            results.push(theirs)
            saveProgress(results)
            process.stderr.write(`transformers ${strategy} ${precision} seed ${seed} run ${run + 1}/${runs}: ${theirs.error ?? `${theirs.trainRuntime.toFixed(1)} s, loss ${theirs.trainLoss.toFixed(3)}, F1 ${theirs.evalF1.toFixed(3)}`}\n`)
          }
          const runOurs = async () => {
            const ours = await runBertkit(strategy, precision, seed, initDir ?? modelDir, run)
            results.push(ours)
            saveProgress(results)
            process.stderr.write(`bertkit ${strategy} ${precision} seed ${seed} run ${run + 1}/${runs}: ${ours.trainRuntime.toFixed(1)} s, loss ${ours.trainLoss.toFixed(3)}, F1 ${ours.evalF1.toFixed(3)}\n`)
          }
          // The library that goes first alternates from run to run (an order effect shows in
          // the spread instead of favouring one side); --same-init needs an HF run first once.
          const hfFirst = initDir ? run % 2 === 0 : run % 2 === 1
          let ranTheirs = false
          if ((initDir && !initSaved) || (flag('hf') && hfFirst)) {
            runTheirs()
            ranTheirs = true
          }
          await runOurs()
          if (flag('hf') && !ranTheirs) runTheirs()
        }
        if (initDir) rmSync(initDir, { recursive: true, force: true })
      }
    }
  }
  const { addon } = loadNative()
  // DESIGN.md's FLOP count is for bert-base; other shapes get no TFLOP/s figure.
  const config = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as { hidden_size?: number; num_hidden_layers?: number }
  const bertBase = config.hidden_size === 768 && config.num_hidden_layers === 12
  const device = getDefaultDevice()
  const deviceText = addon.probeDevice(DEVICE_CODE[device]).description
  const lines = [
    `# Recipe benchmark: rotten tomatoes, 1 epoch`,
    '',
    `Model: ${modelDir}. Data: ${tokenized} (${train.length} train / ${test.length} test). Batch 16, lr ${learningRate}, weight decay 0.01, ${maxSteps > 0 ? `${maxSteps} steps` : `${epochs} epoch(s)`}, seeds ${seeds.join(', ')}, ${runs} run(s) each: medians, times as median [min–max].${flag('same-init') ? ' Same initial weights: for each seed the HF run saved its initialised model (seeded new classifier included) and bertkit started from it.' : ''}`,
    `Both sides: ${warmup ? 'untimed warm-up at every train and eval shape before the timed train() and evaluate()' : 'no warm-up (--no-warmup: start-up costs fall inside the timings; bertkit\'s later runs share a process, each HF run is a fresh one)'}; padding ${padToMultipleOf ? `to a multiple of ${padToMultipleOf}` : 'to the longest row of each batch'}. HF side: cuDNN attention ${hfCudnnSdpa}, logging_nan_inf_filter ${hfNanInfFilter} (a host sync per step on CUDA when on).`,
    `Machine: ${os.cpus()[0]?.model ?? 'unknown'} (${os.cpus().length} cores); device: ${deviceText}; date ${new Date().toISOString().slice(0, 10)}.`,
    `Command: \`npm run bench -- ${argv.join(' ')}\``,
    '',
    'TFLOP/s (full fine-tuning of bert-base-shaped models only) uses DESIGN.md\'s count of ~2e14 FLOP for one epoch on this data, scaled by the steps run.',
    '',
    '| strategy | precision | library | train time (s) | train loss | eval F1 | eval time (s) | train samples/s | peak memory (MiB) | TFLOP/s | warm-up (s) | T4 reference: time / loss / F1 |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for (const precision of precisions) {
    for (const strategy of strategies) {
      for (const library of ['bertkit', 'transformers']) {
        const rs = results.filter((r) => r.strategy === strategy && r.precision === precision && r.library === library && !r.error)
        const failed = results.find((r) => r.strategy === strategy && r.precision === precision && r.library === library && r.error)
        if (!rs.length && !failed) continue
        const ref = REFERENCE_T4[strategy]
        const refText = ref ? `${ref.trainTime} / ${ref.trainLoss} / ${ref.evalF1}` : 'n/a'
        if (!rs.length) {
          lines.push(`| ${strategy} | ${precision} | ${library} | error: ${failed!.error!.slice(0, 120)} | | | | | | | | |`)
          continue
        }
        const peaks = rs.map((r) => r.peakMemoryMiB).filter((x): x is number => x !== null)
        const warm = rs.map((r) => r.warmupSeconds).filter((x): x is number => typeof x === 'number')
        lines.push(`| ${strategy} | ${precision} | ${library} | ${spread(rs.map((r) => r.trainRuntime), 2)} | ${fmt(median(rs.map((r) => r.trainLoss)))} | ${fmt(median(rs.map((r) => r.evalF1)))} | ${spread(rs.map((r) => r.evalRuntime), 2)} | ${fmt(median(rs.map((r) => r.trainSamplesPerSecond)), 1)} | ${peaks.length ? fmt(median(peaks), 0) : 'n/a'} | ${strategy === 'full' && bertBase ? fmt((2e14 * median(rs.map((r) => r.steps)) / 534) / median(rs.map((r) => r.trainRuntime)) / 1e12, 1) : ''} | ${warm.length ? fmt(median(warm), 1) : 'none'} | ${refText} |`)
      }
    }
  }
  const table = lines.join('\n') + '\n'
  makeDirs(dirname(outBase) || '.', '--out folder')
  writeFileSync(`${outBase}.md`, table)
  writeFileSync(`${outBase}.json`, JSON.stringify({ date: new Date().toISOString(), argv, device: deviceText, results }, null, 2) + '\n')
  console.log(table)
}

await main()
}
