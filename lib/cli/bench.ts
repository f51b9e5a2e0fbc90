// The seed's recipe as a benchmark: fine-tune on rotten tomatoes (8,530 train
// / 1,066 test, batch 16, lr 2e-5, weight decay 0.01, 1 epoch) with the three
// freezing strategies, and print the seed's table — train time, train loss,
// eval F1, eval time, samples/s — beside the reference T4 numbers and, with
// --hf, Hugging Face's Trainer measured in the same run on the same machine,
// data, hyperparameters and weights.
//
// bertkit bench --model DIR --tokenized rt.json [--hf] [--strategies full,head,index100]
//   [--precision fp32,bf16] [--epochs 1] [--max-steps N] [--seeds 42] [--lr 2e-5] [--out benchmarks/recipe-cpu]
// Strategy `lora` trains a LoRA adapter (r=8, alpha 16, dropout 0.1, query+value,
// classifier saved) — bertkit's peft port against peft itself on the HF side.
//   (also `npm run bench -- ...`)
// rt.json comes from scripts/tokenize_rotten_tomatoes.py (the same ids for both libraries).
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { join, dirname } from 'node:path'
import os from 'node:os'
import { AutoModelForSequenceClassification } from '../models/auto.js'
import { freezeAllExcept, freezeIndexRange } from '../nn/freezing.js'
import { memoryStats } from '../tensor/tensor.js'
import { getDefaultDevice } from '../tensor/device.js'
import { native, loadNative, DEVICE_CODE } from '../native.js'
import { Dataset } from '../data/dataset.js'
import { DataCollatorWithPadding } from '../data/data_collator.js'
import { Trainer } from '../train/trainer.js'
import { TrainingArguments } from '../train/training_args.js'
import { f1 } from '../train/metrics.js'
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
const epochs = Number(opt('epochs', '1'))
const maxSteps = Number(opt('max-steps', '-1'))
const seeds = opt('seeds', '42').split(',').map(Number)
const learningRate = Number(opt('lr', '2e-5'))
if (!(learningRate > 0)) throw new Error(`bench: --lr must be a positive number, got ${opt('lr', '')}`)
const outBase = opt('out', join('benchmarks', `recipe-${os.hostname().slice(0, 12)}`))
const threads = Number(opt('threads', '0'))
if (threads > 0) native().setNumThreads(threads)

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
  error?: string
}

const data = JSON.parse(readFileSync(tokenized, 'utf8')) as Record<string, { input_ids: number[][]; labels: number[] }>
const split = (name: string) => Dataset.fromColumns({ input_ids: data[name].input_ids, label: data[name].labels })
const train = split('train')
const test = split('test')

async function runBertkit(strategy: Strategy, precision: Precision, seed: number, startFrom = modelDir): Promise<Result> {
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
  const padTokenId = 0
  const trainer = new Trainer({
    model, args, trainDataset: train, evalDataset: test, dataCollator: DataCollatorWithPadding({ tokenizer: padTokenId }),
    computeMetrics: (p) => ({ f1: f1(p.labelIds!, p.predictedLabels) }),
  })
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
    steps: out.globalStep,
  }
}

function runHf(strategy: Strategy, precision: Precision, seed: number, initDir: string | null = null): Result {
  const script = join(__dirname, '..', '..', '..', 'scripts', 'bench_hf_trainer.py')
  const args = [script, '--model', modelDir, '--data', tokenized, '--strategy', strategy, '--precision', precision,
    '--epochs', String(epochs), '--max-steps', String(maxSteps), '--seed', String(seed), '--lr', String(learningRate)]
  if (initDir) args.push('--init-dir', initDir)
  if (threads > 0) args.push('--threads', String(threads))
  const r = spawnSync('python3', args, { encoding: 'utf8', maxBuffer: 64 << 20 })
  const last = r.stdout.trim().split('\n').pop() ?? ''
  if (r.status !== 0 || !last.startsWith('{')) {
    const error = (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')
    return { library: 'transformers', strategy, precision, seed, trainRuntime: NaN, trainLoss: NaN, trainSamplesPerSecond: NaN, evalF1: NaN, evalRuntime: NaN, peakMemoryMiB: null, steps: 0, error }
  }
  return { ...(JSON.parse(last) as Result), seed }
}

/** Results so far, so a run cut short by a time limit still leaves its numbers. */
function saveProgress(results: Result[]): void {
  mkdirSync(dirname(outBase) || '.', { recursive: true })
  writeFileSync(`${outBase}.partial.json`, JSON.stringify({ argv, results }, null, 2) + '\n')
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
const fmt = (x: number | null | undefined, d = 3) => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(d))

async function main() {
  const results: Result[] = []
  for (const precision of precisions) {
    for (const strategy of strategies) {
      for (const seed of seeds) {
        // --same-init: the HF run saves its initialised model (its seeded new classifier
        // included) and bertkit starts from exactly those weights.
        const initDir = flag('same-init') ? mkdtempSync(join(os.tmpdir(), 'bertkit-init-')) : null
        const runTheirs = () => {
          const theirs = runHf(strategy, precision, seed, initDir)
          results.push(theirs)
          saveProgress(results)
          process.stderr.write(`transformers ${strategy} ${precision} seed ${seed}: ${theirs.error ?? `${theirs.trainRuntime.toFixed(1)} s, loss ${theirs.trainLoss.toFixed(3)}, F1 ${theirs.evalF1.toFixed(3)}`}\n`)
        }
        if (initDir) runTheirs()
        const ours = await runBertkit(strategy, precision, seed, initDir ?? modelDir)
        results.push(ours)
        saveProgress(results)
        process.stderr.write(`bertkit ${strategy} ${precision} seed ${seed}: ${ours.trainRuntime.toFixed(1)} s, loss ${ours.trainLoss.toFixed(3)}, F1 ${ours.evalF1.toFixed(3)}\n`)
        if (flag('hf') && !initDir) runTheirs()
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
    `Model: ${modelDir}. Data: ${tokenized} (${train.length} train / ${test.length} test). Batch 16, lr ${learningRate}, weight decay 0.01, ${maxSteps > 0 ? `${maxSteps} steps` : `${epochs} epoch(s)`}, seeds ${seeds.join(', ')} (means shown).${flag('same-init') ? ' Same initial weights: for each seed the HF run saved its initialised model (seeded new classifier included) and bertkit started from it.' : ''}`,
    `Machine: ${os.cpus()[0]?.model ?? 'unknown'} (${os.cpus().length} cores); device: ${deviceText}; date ${new Date().toISOString().slice(0, 10)}.`,
    `Command: \`npm run bench -- ${argv.join(' ')}\``,
    '',
    'TFLOP/s (full fine-tuning of bert-base-shaped models only) uses DESIGN.md\'s count of ~2e14 FLOP for one epoch on this data, scaled by the steps run.',
    '',
    '| strategy | precision | library | train time (s) | train loss | eval F1 | eval time (s) | train samples/s | peak memory (MiB) | TFLOP/s | T4 reference: time / loss / F1 |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
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
          lines.push(`| ${strategy} | ${precision} | ${library} | error: ${failed!.error!.slice(0, 120)} | | | | | | | |`)
          continue
        }
        const peaks = rs.map((r) => r.peakMemoryMiB).filter((x): x is number => x !== null)
        lines.push(`| ${strategy} | ${precision} | ${library} | ${fmt(mean(rs.map((r) => r.trainRuntime)), 1)} | ${fmt(mean(rs.map((r) => r.trainLoss)))} | ${fmt(mean(rs.map((r) => r.evalF1)))} | ${fmt(mean(rs.map((r) => r.evalRuntime)), 2)} | ${fmt(mean(rs.map((r) => r.trainSamplesPerSecond)), 1)} | ${peaks.length ? fmt(mean(peaks), 0) : 'n/a'} | ${strategy === 'full' && bertBase ? fmt((2e14 * mean(rs.map((r) => r.steps)) / 534) / mean(rs.map((r) => r.trainRuntime)) / 1e12, 1) : ''} | ${refText} |`)
      }
    }
  }
  const table = lines.join('\n') + '\n'
  mkdirSync(dirname(outBase) || '.', { recursive: true })
  writeFileSync(`${outBase}.md`, table)
  writeFileSync(`${outBase}.json`, JSON.stringify({ date: new Date().toISOString(), argv, device: deviceText, results }, null, 2) + '\n')
  console.log(table)
}

await main()
}
