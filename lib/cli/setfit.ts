// bertkit setfit: few-shot training with SetFit from the command line —
// sample n examples per label (setfit's sample_dataset), train the body and
// the head, evaluate, save; prints a results JSON like `bertkit train`.
import { writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { loadDataset, loadRottenTomatoesRaw } from '../data/load_dataset.js'
import type { Dataset, DatasetDict } from '../data/dataset.js'
import { ensureWritableDir } from '../hub/dirs.js'
import { SetFitModel } from '../setfit/modeling.js'
import { Trainer, type Metric } from '../setfit/trainer.js'
import { TrainingArguments, type TrainingArgumentsInit } from '../setfit/training_args.js'
import { sampleDataset } from '../setfit/data.js'
import { SAMPLING_STRATEGIES, type SamplingStrategy } from '../setfit/sampler.js'
import { intFlag, numberFlag, parseFlags } from './args.js'

export const SETFIT_HELP = `bertkit setfit — few-shot classification with SetFit (a sentence-transformers body + a head)

  bertkit setfit --model ID|DIR --dataset NAME|PATH [options]

  --model ID|DIR              a sentence-transformers model (modules.json), e.g. all-MiniLM-L6-v2
  --dataset NAME|PATH         a Hub dataset id or local file/folder (as bertkit train); rotten_tomatoes
                              with --data-dir reads the raw rt-polarity files
  --data-dir DIR              the raw rt-polarity files, for --dataset rotten_tomatoes offline
  --text-column / --label-column NAME   default "text" / "label"
  --train-split / --eval-split NAME     default "train" / "test" (--eval-split none: no evaluation)
  --num-samples N             examples per label, as setfit's sample_dataset (default 8; 0: the whole split)
  --sample-seed N             seed of the sampling (default: --seed)
  --output-dir DIR            where the model is saved (default "setfit-model"; --output-dir none: not saved)
  --results FILE              also write the results JSON to FILE
Training arguments (setfit's TrainingArguments; A,B gives the body phase and the head phase):
  --batch-size A[,B]          default 16,2
  --num-epochs A[,B]          default 1,16
  --body-learning-rate A[,B]  default 2e-5,1e-5
  --head-learning-rate X      default 1e-2 (differentiable head)
  --sampling-strategy S       oversampling (default) | undersampling | unique
  --num-iterations N          pairs = N · texts per side (setfit < 1.0)
  --max-steps N               stop the body phase after N steps
  --warmup-proportion X       default 0.1
  --l2-weight X               weight decay, default 0.01
  --max-length N              token limit of the differentiable head's phase
  --seed N                    default 42
  --logging-steps N           default 50
  --multi-target-strategy S   one-vs-rest | multi-output (labels are 0/1 vectors)
  --differentiable-head       a SetFitHead (linear + softmax, trained with AdamW) instead of LogisticRegression
  --end-to-end                with --differentiable-head: also train the body in the head phase
  --metric NAME               accuracy (default) | f1 | precision | recall
  --device auto|cpu|cuda
  --no-progress               no progress bars`

const FLAGS = new Set(['model', 'dataset', 'data-dir', 'text-column', 'label-column', 'train-split', 'eval-split', 'num-samples',
  'sample-seed', 'output-dir', 'results', 'batch-size', 'num-epochs', 'body-learning-rate', 'head-learning-rate', 'sampling-strategy',
  'num-iterations', 'max-steps', 'warmup-proportion', 'l2-weight', 'max-length', 'seed', 'logging-steps', 'multi-target-strategy',
  'differentiable-head', 'end-to-end', 'metric', 'device', 'no-progress', 'help'])

function value(flags: Map<string, string | true>, name: string): string | undefined {
  const v = flags.get(name)
  if (v === true) throw new Error(`--${name} needs a value`)
  return v
}

function pairFlag(flags: Map<string, string | true>, name: string, parse: (v: string, flag: string) => number): number | [number, number] | undefined {
  const v = value(flags, name)
  if (v === undefined) return undefined
  const parts = v.split(',')
  if (parts.length > 2) throw new Error(`--${name}: expected A or A,B, got "${v}"`)
  const nums = parts.map((p) => parse(p, name))
  return nums.length === 1 ? nums[0] : [nums[0], nums[1]]
}

function boolFlag(flags: Map<string, string | true>, name: string): boolean {
  const v = flags.get(name)
  if (v === undefined) return false
  if (v === true || v === 'true' || v === '1') return true
  if (v === 'false' || v === '0') return false
  throw new Error(`--${name}: expected no value, true or false, got "${v}"`)
}

async function loadData(flags: Map<string, string | true>): Promise<DatasetDict> {
  const name = value(flags, 'dataset')
  if (!name) throw new Error('--dataset is required (bertkit setfit --help)')
  const rawDir = value(flags, 'data-dir')
  if (rawDir !== undefined) {
    if (!/rotten_tomatoes/.test(name)) throw new Error('--data-dir reads the raw rt-polarity files; use it with --dataset rotten_tomatoes')
    return loadRottenTomatoesRaw(rawDir)
  }
  return loadDataset(name)
}

function split(dict: DatasetDict, name: string): Dataset {
  const ds = dict[name]
  if (!ds) throw new Error(`the dataset has no "${name}" split (splits: ${Object.keys(dict).join(', ')})`)
  return ds
}

/** Renames the text / label columns to setfit's "text" / "label", keeping only those. */
function setfitColumns(ds: Dataset, textColumn: string, labelColumn: string, where: string): Dataset {
  for (const [col, flag] of [[textColumn, 'text-column'], [labelColumn, 'label-column']]) {
    if (!ds.hasColumn(col)) throw new Error(`${where}: no column "${col}" (columns: ${ds.columnNames.join(', ')}); pass --${flag}`)
  }
  const out = (ds.columnNames.filter((c) => c !== textColumn && c !== labelColumn).length ? ds.removeColumns(ds.columnNames.filter((c) => c !== textColumn && c !== labelColumn)) : ds)
  const renamed = textColumn === 'text' ? out : out.renameColumn(textColumn, 'text')
  return labelColumn === 'label' ? renamed : renamed.renameColumn(labelColumn, 'label')
}

/**
 * sha256 of the sampled [text, label] rows as compact JSON, in order: Python's
 * hashlib.sha256(json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode())
 * gives the same digest for the same sample.
 */
export function sampleDigest(ds: Dataset): string {
  const texts = ds.column('text')
  const labels = ds.column('label')
  return createHash('sha256').update(JSON.stringify(texts.map((t, i) => [t, labels[i]])), 'utf8').digest('hex')
}

function labelWidth(ds: Dataset): number {
  const first = ds.column('label')[0]
  if (!Array.isArray(first)) throw new Error('--multi-target-strategy: the labels must be 0/1 vectors (one per text)')
  return first.length
}

export async function runSetfit(argv: string[]): Promise<number> {
  const { flags, positional } = parseFlags(argv)
  if (flags.has('help')) {
    console.log(SETFIT_HELP)
    return 0
  }
  if (positional.length) throw new Error(`unexpected argument "${positional[0]}" (flags start with --)`)
  for (const k of flags.keys()) if (!FLAGS.has(k)) throw new Error(`unknown flag --${k} for setfit (bertkit setfit --help)`)
  const modelId = value(flags, 'model')
  if (!modelId) throw new Error('--model is required (bertkit setfit --help)')
  const num = (v: string, f: string) => numberFlag(v, f)
  const int = (v: string, f: string) => intFlag(v, f, 0)
  const init: TrainingArgumentsInit = {}
  const set = <K extends keyof TrainingArgumentsInit>(key: K, v: TrainingArgumentsInit[K] | undefined) => {
    if (v !== undefined) init[key] = v
  }
  set('batchSize', pairFlag(flags, 'batch-size', int))
  set('numEpochs', pairFlag(flags, 'num-epochs', int))
  set('bodyLearningRate', pairFlag(flags, 'body-learning-rate', num))
  const single = (name: string, parse: (v: string, f: string) => number) => {
    const v = value(flags, name)
    return v === undefined ? undefined : parse(v, name)
  }
  set('headLearningRate', single('head-learning-rate', num))
  set('numIterations', single('num-iterations', int))
  set('maxSteps', single('max-steps', (v, f) => intFlag(v, f, -1)))
  set('warmupProportion', single('warmup-proportion', num))
  set('l2Weight', single('l2-weight', num))
  set('maxLength', single('max-length', (v, f) => intFlag(v, f, 1)))
  set('seed', single('seed', int))
  set('loggingSteps', single('logging-steps', (v, f) => intFlag(v, f, 1)))
  const strategy = value(flags, 'sampling-strategy')
  if (strategy !== undefined) {
    if (!SAMPLING_STRATEGIES.includes(strategy as SamplingStrategy)) throw new Error(`--sampling-strategy: expected ${SAMPLING_STRATEGIES.join(' | ')}, got "${strategy}"`)
    init.samplingStrategy = strategy as SamplingStrategy
  }
  if (boolFlag(flags, 'end-to-end')) init.endToEnd = true
  if (boolFlag(flags, 'no-progress')) init.showProgressBar = false
  const device = value(flags, 'device')
  if (device !== undefined) {
    if (!['auto', 'cpu', 'cuda'].includes(device)) throw new Error(`--device: expected auto | cpu | cuda, got "${device}"`)
    init.device = device as TrainingArgumentsInit['device']
  }
  const args = new TrainingArguments(init)
  const metric = (value(flags, 'metric') ?? 'accuracy') as Metric
  if (!['accuracy', 'f1', 'precision', 'recall'].includes(metric as string)) throw new Error(`--metric: expected accuracy | f1 | precision | recall, got "${String(metric)}"`)
  const numSamples = single('num-samples', int) ?? 8
  const sampleSeed = single('sample-seed', int) ?? args.seed
  const outputDir = value(flags, 'output-dir') ?? 'setfit-model'
  if (outputDir !== 'none') ensureWritableDir(outputDir, '--output-dir')
  const multiTarget = value(flags, 'multi-target-strategy')
  if (multiTarget !== undefined && !['one-vs-rest', 'multi-output'].includes(multiTarget)) {
    throw new Error(`--multi-target-strategy: expected one-vs-rest | multi-output, got "${multiTarget}"`)
  }

  const data = await loadData(flags)
  const textColumn = value(flags, 'text-column') ?? 'text'
  const labelColumn = value(flags, 'label-column') ?? 'label'
  const trainName = value(flags, 'train-split') ?? 'train'
  const evalName = value(flags, 'eval-split') ?? 'test'
  const fullTrain = setfitColumns(split(data, trainName), textColumn, labelColumn, `${trainName} split`)
  const trainSet = numSamples > 0 ? sampleDataset(fullTrain, { numSamples, seed: sampleSeed }) : fullTrain
  if (trainSet.length === 0) throw new Error(`${trainName} split: no examples to train on`)
  const evalSet = evalName === 'none' ? null : setfitColumns(split(data, evalName), textColumn, labelColumn, `${evalName} split`)

  const model = await SetFitModel.fromPretrained(modelId, {
    device: args.device,
    multiTargetStrategy: (multiTarget as 'one-vs-rest' | 'multi-output' | undefined) ?? null,
    useDifferentiableHead: boolFlag(flags, 'differentiable-head'),
    // A differentiable head needs its width: the classes, or the length of the label vectors.
    headParams: boolFlag(flags, 'differentiable-head')
      ? { outFeatures: multiTarget === undefined ? new Set(trainSet.column('label').map((l) => JSON.stringify(l))).size : labelWidth(trainSet) }
      : undefined,
  })
  try {
    process.stderr.write(`bertkit setfit: ${trainSet.length} training examples (${numSamples > 0 ? `${numSamples} per label, seed ${sampleSeed}` : 'the whole split'}); body ${modelId}\n`)
    const trainer = new Trainer({ model, args, trainDataset: trainSet, evalDataset: evalSet ?? undefined, metric })
    const out = trainer.train()
    let evalResults: Record<string, number> = {}
    if (evalSet) {
      const t0 = performance.now()
      evalResults = trainer.evaluate()
      evalResults.eval_runtime = (performance.now() - t0) / 1000
      evalResults.eval_samples = evalSet.length
    }
    if (outputDir !== 'none') model.savePretrained(outputDir)
    const results = {
      train: { ...out, trainSamples: trainSet.length, numSamplesPerLabel: numSamples, sampleSeed, trainSampleSha256: sampleDigest(trainSet), logHistory: trainer.logHistory },
      eval: evalResults,
      outputDir: outputDir === 'none' ? null : outputDir,
    }
    const text = JSON.stringify(results, null, 2)
    const resultsFile = value(flags, 'results')
    if (resultsFile) writeFileSync(resultsFile, text + '\n')
    console.log(text)
    return 0
  } finally {
    model.dispose()
  }
}
