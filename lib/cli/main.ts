#!/usr/bin/env node
// bertkit train | eval | predict | bench — the seed's recipe from the command
// line. Every TrainingArguments field is a flag (--learning-rate 2e-5,
// --per-device-train-batch-size 16, …); see `bertkit --help`.
import { readFileSync, existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { AutoModelForSequenceClassification } from '../models/auto.js'
import { checkFiniteLogits } from '../models/modeling_utils.js'
import { AutoTokenizer } from '../tokenization/index.js'
import type { Module } from '../nn/module.js'
import { loadDataset, loadRottenTomatoesRaw } from '../data/load_dataset.js'
import type { Dataset, DatasetDict } from '../data/dataset.js'
import { DataCollatorWithPadding } from '../data/data_collator.js'
import { Trainer } from '../train/trainer.js'
import { TrainingArguments } from '../train/training_args.js'
import { accuracy, precisionRecallF1 } from '../train/metrics.js'
import { freezeAllExcept, freezeEmbeddings, freezeEncoderLayers, freezeIndexRange, parameterSummary, formatParameterSummary } from '../nn/freezing.js'
import { tidy, tensor, noGrad } from '../tensor/index.js'
import { parseFlags, trainingArgsFromFlags, trainingArgumentFlags } from './args.js'
import { runBench } from './bench.js'
import { getPeftModel, loraConfigFromSpec, isAdapterDir, AutoPeftModelForSequenceClassification, PeftModel } from '../peft/index.js'
import type { FromPretrainedOptions } from '../models/bert/pretrained.js'

const HELP = `bertkit — fine-tune BERT-family encoders for text classification

  bertkit train   --model ID|DIR --dataset NAME|PATH [options] [training arguments]
  bertkit eval    --model DIR --dataset NAME|PATH [--split test] [options]
  bertkit predict --model DIR (--text "..." [--text ...] | --file lines.txt)
  bertkit bench   --model DIR --tokenized rt.json [--hf] [--strategies full,head,index100] [--precision fp32,bf16]

Data options:
  --dataset NAME|PATH     a Hub dataset id (rotten_tomatoes, org/name) or a local file/directory
  --data-dir DIR          the raw rt-polarity files, for --dataset rotten_tomatoes offline
  --data-files SPEC       train=a.csv,test=b.csv (with --dataset csv | json | parquet, as load_dataset)
  --text-column NAME      default "text"
  --label-column NAME     default "label"
  --train-split NAME      default "train"
  --eval-split NAME       default "test" (the seed evaluates on test)
  --max-length N          truncation length (default: the tokenizer's model_max_length)
Model options:
  --num-labels N          default: from the data
  --freeze SPEC           none | head | embeddings | embeddings+layers:A-B | layers:A-B | index:<=N | index:A-B
  --pooling KIND          the classifier's input (BERT): pooler (transformers' tanh head, default) | cls (h[:,0])
                          | mean | max (over the unpadded tokens); saved in config.json
  --lora SPEC             train a LoRA adapter (peft's format) instead of the model:
                          r=8,alpha=16,dropout=0.1,targets=query,value[,save=classifier][,bias=none|all|lora_only]
                          (targets=all-linear adapts every Linear; as peft's SEQ_CLS task, the classifier is
                          always trained and saved). --output-dir then holds adapter_config.json +
                          adapter_model.safetensors, which eval and predict take as --model
Training arguments (as transformers' TrainingArguments, in kebab case):
  ${trainingArgumentFlags().map((f) => `--${f}`).join(' ')}`

const COMMAND_FLAGS = new Set(['model', 'dataset', 'data-dir', 'data-files', 'text-column', 'label-column', 'train-split',
  'eval-split', 'split', 'max-length', 'num-labels', 'freeze', 'text', 'file', 'help', 'seed-model', 'lora', 'pooling'])

/** A model directory or Hub id, or a peft adapter directory (its base is loaded from adapter_config.json). */
async function loadModel(modelId: string, options: FromPretrainedOptions) {
  return isAdapterDir(modelId)
    ? AutoPeftModelForSequenceClassification.fromPretrained(modelId, options)
    : AutoModelForSequenceClassification.fromPretrained(modelId, options)
}

/** --pooling KIND as a config override, checked against what the loaded model kept. */
function poolingOverride(rest: Map<string, string | true>): FromPretrainedOptions {
  const v = rest.get('pooling')
  if (v === undefined) return {}
  if (typeof v !== 'string') throw new Error('--pooling needs a value: pooler | cls | mean | max')
  return { config: { classifier_pooling: v as 'pooler' } }
}

function need(flags: Map<string, string | true>, name: string): string {
  const v = flags.get(name)
  if (typeof v !== 'string' || v === '') throw new Error(`--${name} is required (bertkit --help)`)
  return v
}

async function loadData(flags: Map<string, string | true>): Promise<DatasetDict> {
  const name = need(flags, 'dataset')
  const rawDir = flags.get('data-dir')
  if (typeof rawDir === 'string') {
    if (!/rotten_tomatoes/.test(name)) throw new Error('--data-dir reads the raw rt-polarity files; use it with --dataset rotten_tomatoes')
    return loadRottenTomatoesRaw(rawDir)
  }
  const spec = flags.get('data-files')
  if (typeof spec === 'string') {
    const dataFiles: Record<string, string[]> = {}
    for (const part of spec.split(',')) {
      const [split, file] = part.includes('=') ? part.split('=') : ['train', part]
      ;(dataFiles[split] ??= []).push(file)
    }
    return loadDataset(name, { dataFiles })
  }
  return loadDataset(name)
}

function splitOf(dict: DatasetDict, split: string): Dataset {
  const ds = dict[split]
  if (!ds) throw new Error(`the dataset has no "${split}" split (splits: ${Object.keys(dict).join(', ')})`)
  return ds
}

function labelsOf(ds: Dataset, column: string, where: string): number[] {
  if (!ds.hasColumn(column)) throw new Error(`${where}: no label column "${column}" (columns: ${ds.columnNames.join(', ')}); pass --label-column`)
  return ds.column<unknown>(column).map((v, i) => {
    const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new Error(`${where}: label at row ${i} is ${JSON.stringify(v)}, not a class index`)
    return n
  })
}

type Tokenizer = Awaited<ReturnType<typeof AutoTokenizer.fromPretrained>>

function tokenize(ds: Dataset, tokenizer: Tokenizer, textColumn: string, labelColumn: string, maxLength: number | undefined, where: string): Dataset {
  if (ds.length === 0) throw new Error(`${where}: the split is empty`)
  if (!ds.hasColumn(textColumn)) throw new Error(`${where}: no text column "${textColumn}" (columns: ${ds.columnNames.join(', ')}); pass --text-column`)
  const labels = labelsOf(ds, labelColumn, where)
  return ds.map((batch, start) => {
    const texts = batch[textColumn] as unknown[]
    texts.forEach((t, i) => {
      if (typeof t !== 'string') throw new TypeError(`${where}: text at row ${start + i} is ${t === null ? 'null' : typeof t}, not a string`)
    })
    const enc = tokenizer(texts as string[], { truncation: true, ...(maxLength ? { maxLength } : {}) }) as { inputIds: number[][]; tokenTypeIds: number[][] }
    return { input_ids: enc.inputIds, token_type_ids: enc.tokenTypeIds, labels: labels.slice(start, start + texts.length) }
  }, { batched: true, batchSize: 1000 })
}

/** --freeze SPEC: none | head | embeddings | layers:A-B | embeddings+layers:A-B | index:<=N | index:A-B */
export function applyFreeze(model: Module, spec: string): void {
  if (spec === 'none') return
  if (spec === 'head') {
    freezeAllExcept(model, 'classifier')
    return
  }
  for (const part of spec.split('+')) {
    let m: RegExpExecArray | null
    if (part === 'embeddings') freezeEmbeddings(model)
    else if ((m = /^layers:(\d+)-(\d+)$/.exec(part))) freezeEncoderLayers(model, Number(m[1]), Number(m[2]))
    else if ((m = /^index:<=(\d+)$/.exec(part))) freezeIndexRange(model, 0, Number(m[1]))
    else if ((m = /^index:(\d+)-(\d+)$/.exec(part))) freezeIndexRange(model, Number(m[1]), Number(m[2]))
    else throw new Error(`--freeze: cannot read "${part}" (none | head | embeddings | layers:A-B | embeddings+layers:A-B | index:<=N | index:A-B)`)
  }
}

function computeMetrics(p: { labelIds: Int32Array | Float32Array | null; predictedLabels: Int32Array; numLabels: number }) {
  const y = p.labelIds as Int32Array
  const average = p.numLabels > 2 ? 'macro' : 'binary'
  const prf = precisionRecallF1(y, p.predictedLabels, { average })
  return { accuracy: accuracy(y, p.predictedLabels), f1: prf.f1, precision: prf.precision, recall: prf.recall }
}

async function train(flags: Map<string, string | true>): Promise<void> {
  const { fields, rest } = trainingArgsFromFlags(flags, COMMAND_FLAGS)
  const modelId = need(rest, 'model')
  const textColumn = (rest.get('text-column') as string) ?? 'text'
  const labelColumn = (rest.get('label-column') as string) ?? 'label'
  const maxLength = rest.has('max-length') ? Number(rest.get('max-length')) : undefined
  const data = await loadData(rest)
  const trainRaw = splitOf(data, (rest.get('train-split') as string) ?? 'train')
  const evalName = (rest.get('eval-split') as string) ?? 'test'
  const evalRaw = data[evalName] ?? null
  const numLabels = rest.has('num-labels') ? Number(rest.get('num-labels')) : Math.max(...labelsOf(trainRaw, labelColumn, 'train split')) + 1
  const args = new TrainingArguments({ outputDir: 'model', ...fields })
  const tokenizer = await AutoTokenizer.fromPretrained(modelId)
  const trainSet = tokenize(trainRaw, tokenizer, textColumn, labelColumn, maxLength, 'train split')
  const evalSet = evalRaw ? tokenize(evalRaw, tokenizer, textColumn, labelColumn, maxLength, `${evalName} split`) : undefined
  const pooling = poolingOverride(rest)
  const base = await AutoModelForSequenceClassification.fromPretrained(modelId, { numLabels, seed: args.seed, device: args.device, ...pooling })
  if (pooling.config && (base.config as { classifier_pooling?: unknown }).classifier_pooling !== pooling.config.classifier_pooling) {
    base.dispose()
    throw new Error(`--pooling: ${base.constructor.name} has no classifier_pooling option (BERT models have it)`)
  }
  applyFreeze(base, (rest.get('freeze') as string) ?? 'none')
  const lora = rest.get('lora')
  if (lora === true) throw new Error('--lora needs a spec, e.g. r=8,alpha=16,targets=query,value')
  if (lora !== undefined && pooling.config && pooling.config.classifier_pooling !== 'pooler') {
    // The adapter directory records no base config: eval / predict would rebuild the base with the pooler head.
    base.dispose()
    throw new Error('--lora with --pooling other than "pooler" is not supported: the adapter files cannot record the pooling; set classifier_pooling in the base model\'s config.json instead')
  }
  const model = lora === undefined ? base
    : getPeftModel(base, loraConfigFromSpec(lora, { taskType: 'SEQ_CLS', baseModelNameOrPath: existsSync(modelId) ? resolve(modelId) : modelId }))
  process.stderr.write(`bertkit: ${formatParameterSummary(parameterSummary(model))}\n`)
  if (model instanceof PeftModel) process.stderr.write(`bertkit: ${model.trainableParametersLine()}\n`)
  const trainer = new Trainer({
    model, args, trainDataset: trainSet, evalDataset: evalSet, computeMetrics,
    dataCollator: DataCollatorWithPadding({ tokenizer }),
  })
  const out = await trainer.train()
  const metrics = evalSet ? await trainer.evaluate() : {}
  trainer.saveModel(args.outputDir)
  tokenizer.savePretrained(args.outputDir)
  console.log(JSON.stringify({ train: out, eval: metrics, outputDir: args.outputDir }, null, 2))
  trainer.dispose()
  model.dispose()
}

async function evaluate(flags: Map<string, string | true>): Promise<void> {
  const { fields, rest } = trainingArgsFromFlags(flags, COMMAND_FLAGS)
  const modelId = need(rest, 'model')
  const data = await loadData(rest)
  const split = (rest.get('split') as string) ?? (rest.get('eval-split') as string) ?? 'test'
  const tokenizer = await AutoTokenizer.fromPretrained(modelId)
  const ds = tokenize(splitOf(data, split), tokenizer, (rest.get('text-column') as string) ?? 'text', (rest.get('label-column') as string) ?? 'label',
    rest.has('max-length') ? Number(rest.get('max-length')) : undefined, `${split} split`)
  const args = new TrainingArguments({ outputDir: 'model', disableTqdm: true, plotCurves: false, ...fields })
  const model = await loadModel(modelId, { device: args.device })
  const trainer = new Trainer({ model, args, dataCollator: DataCollatorWithPadding({ tokenizer }), computeMetrics })
  console.log(JSON.stringify(await trainer.evaluate(ds), null, 2))
  trainer.dispose()
  model.dispose()
}

async function predict(flags: Map<string, string | true>): Promise<void> {
  const modelId = need(flags, 'model')
  const texts: string[] = []
  const t = flags.get('text')
  if (typeof t === 'string') texts.push(t)
  const file = flags.get('file')
  if (typeof file === 'string') texts.push(...readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== ''))
  if (texts.length === 0) throw new Error('predict needs --text "..." or --file lines.txt')
  const tokenizer = await AutoTokenizer.fromPretrained(modelId)
  const model = await loadModel(modelId, {})
  model.eval()
  const id2label = model.config.id2label
  for (let i = 0; i < texts.length; i += 32) {
    const chunk = texts.slice(i, i + 32)
    const enc = tokenizer(chunk, { truncation: true, padding: true }) as { inputIds: number[][]; attentionMask: number[][]; tokenTypeIds: number[][] }
    const probs = noGrad(() => tidy(() => {
      const shape = [chunk.length, enc.inputIds[0].length]
      const ids = (x: number[][]) => tensor(Int32Array.from(x.flat()), { shape, dtype: 'int32' })
      return model.forward({ inputIds: ids(enc.inputIds), attentionMask: ids(enc.attentionMask), tokenTypeIds: ids(enc.tokenTypeIds) }).logits.toFloat32Array()
    }))
    const k = model.numLabels
    checkFiniteLogits(`predict (${modelId})`, probs, k, i)
    chunk.forEach((text, r) => {
      const row = Array.from(probs.subarray(r * k, (r + 1) * k))
      const max = Math.max(...row)
      const exp = row.map((v) => Math.exp(v - max))
      const sum = exp.reduce((a, b) => a + b, 0)
      const p = exp.map((v) => v / sum)
      const best = p.indexOf(Math.max(...p))
      console.log(JSON.stringify({ text, label: id2label[String(best)] ?? best, labelId: best, scores: p }))
    })
  }
  model.dispose()
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(HELP)
    return command ? 0 : 2
  }
  if (command === 'bench') {
    await runBench(rest)
    return 0
  }
  const { flags, positional } = parseFlags(rest)
  if (positional.length) throw new Error(`unexpected argument "${positional[0]}" (flags start with --)`)
  if (flags.has('help')) {
    console.log(HELP)
    return 0
  }
  switch (command) {
    case 'train': await train(flags); return 0
    case 'eval': await evaluate(flags); return 0
    case 'predict': await predict(flags); return 0
    default: throw new Error(`unknown command "${command}" (train, eval, predict, bench)`)
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
    console.error(`bertkit: ${err instanceof Error ? err.message : String(err)}`)
    process.exit(1)
  })
}
