#!/usr/bin/env node
// bertkit train | eval | predict | export | bench — the seed's recipe from the command
// line. Every TrainingArguments field is a flag (--learning-rate 2e-5,
// --per-device-train-batch-size 16, …); the flags of every command live in
// one table (flags.ts), which `bertkit COMMAND --help` prints.
import { readFileSync, existsSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { AutoModelForSequenceClassification } from '../models/auto.js'
import { checkFiniteLogits } from '../models/modeling_utils.js'
import { AutoTokenizer } from '../tokenization/index.js'
import type { Module } from '../nn/module.js'
import { loadDataset, loadRottenTomatoesRaw } from '../data/load_dataset.js'
import { describeRow, type Dataset, type DatasetDict } from '../data/dataset.js'
import { decodeText, checkEncoding } from '../data/readers.js'
import { resolveModelDir } from '../hub/hub.js'
import { DataCollatorWithPadding } from '../data/data_collator.js'
import { Trainer } from '../train/trainer.js'
import { accuracy, precisionRecallF1 } from '../train/metrics.js'
import { freezeAllExcept, freezeEmbeddings, freezeEncoderLayers, freezeIndexRange, parameterSummary, formatParameterSummary } from '../nn/freezing.js'
import { intFlag, parseFlags, trainingArgsFromFlags, trainingArgumentsFromFields } from './args.js'
import { checkArgv, checkFlags, closest, commandHelp, flagsOf, overviewHelp, COMMANDS, CLI_TRAINING_DEFAULTS, type Command } from './flags.js'
import { ensureWritableDir } from '../hub/dirs.js'
import { verifyCache } from '../hub/verify.js'
import { runBench } from './bench.js'
import { runSetfit } from './setfit.js'
import { runDoctor, packageVersion } from './doctor.js'
import { getPeftModel, loraConfigFromSpec, isAdapterDir, AutoPeftModelForSequenceClassification, PeftModel } from '../peft/index.js'
import type { FromPretrainedOptions } from '../models/modeling_utils.js'
import { planTrainingLabels, planModelLabels, parseLabelNames, namesOfConfig, type ClassifierHead } from './labels.js'
import { predictCommand } from './predict.js'
import { exportCommand } from './export.js'
import { adapterLabelOptions, writeAdapterLabels } from '../pipelines/text_classification.js'

/** A model directory or Hub id, or a peft adapter directory (its base is loaded from adapter_config.json). */
async function loadModel(modelId: string, options: FromPretrainedOptions) {
  return isAdapterDir(modelId)
    ? AutoPeftModelForSequenceClassification.fromPretrained(modelId, { ...adapterLabelOptions(modelId), ...options })
    : AutoModelForSequenceClassification.fromPretrained(modelId, options)
}

/** --pooling KIND as a config override, checked against what the loaded model kept. */
function poolingOverride(rest: Map<string, string | true>): FromPretrainedOptions {
  const v = rest.get('pooling')
  if (v === undefined) return {}
  if (typeof v !== 'string') throw new Error('--pooling needs a value: pooler | cls | mean | max')
  return { config: { classifier_pooling: v as 'pooler' } }
}

/** An optional integer flag, validated and named. */
function optionalInt(flags: Map<string, string | true>, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (!flags.has(name)) return undefined
  const n = intFlag(flags.get(name), name, min)
  if (n > max) throw new Error(`--${name}: ${n} is more than bertkit accepts (at most ${max})`)
  return n
}

function encodingOf(flags: Map<string, string | true>): string | undefined {
  const v = flags.get('encoding')
  if (v === undefined) return undefined
  if (typeof v !== 'string' || v === '') throw new Error('--encoding needs a value: utf-8 | latin1 | cp1252 | utf-16le | ascii')
  return checkEncoding(v, '--encoding')
}

function need(flags: Map<string, string | true>, name: string): string {
  const v = flags.get(name)
  if (typeof v !== 'string' || v === '') throw new Error(`--${name} is required (bertkit --help)`)
  return v
}

async function loadData(flags: Map<string, string | true>): Promise<DatasetDict> {
  const name = need(flags, 'dataset')
  const encoding = encodingOf(flags)
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
    return loadDataset(name, { dataFiles, encoding })
  }
  return loadDataset(name, { encoding })
}

function splitOf(dict: DatasetDict, split: string): Dataset {
  const ds = dict[split]
  if (!ds) throw new Error(`the dataset has no "${split}" split (splits: ${Object.keys(dict).join(', ')})`)
  return ds
}

/**
 * The classifier of a checkpoint that already is a sequence classifier (its
 * config.json names a *ForSequenceClassification architecture): its class
 * count and, when they are not transformers' LABEL_i defaults, its names.
 * Null for a base model, whose new head takes any number of classes.
 */
async function classifierHead(modelId: string): Promise<ClassifierHead | null> {
  const dir = await resolveModelDir(modelId)
  const file = join(dir, 'config.json')
  let config: { architectures?: unknown; num_labels?: unknown; id2label?: unknown }
  try {
    config = JSON.parse(decodeText(readFileSync(file), file))
  } catch {
    return null // the model loader reports a bad config.json with its own message
  }
  const archs = Array.isArray(config?.architectures) ? config.architectures : []
  if (!archs.some((a) => typeof a === 'string' && a.endsWith('ForSequenceClassification'))) return null
  const n = config.id2label && typeof config.id2label === 'object' ? Object.keys(config.id2label).length
    : typeof config.num_labels === 'number' ? config.num_labels : 0
  if (!n) return null
  return {
    numLabels: n,
    names: namesOfConfig(n, config.id2label),
    name: `the classifier of ${modelId} (config.json)`,
    from: `the classifier of ${modelId} (config.json; pass --num-labels to train a new head)`,
  }
}

type Tokenizer = Awaited<ReturnType<typeof AutoTokenizer.fromPretrained>>

function tokenize(ds: Dataset, tokenizer: Tokenizer, textColumn: string, labels: number[], maxLength: number | undefined, where: string): Dataset {
  if (ds.length === 0) throw new Error(`${where}: the split is empty`)
  if (!ds.hasColumn(textColumn)) throw new Error(`${where}: no text column "${textColumn}" (columns: ${ds.columnNames.join(', ')}); pass --text-column`)
  return ds.map((batch, start) => {
    const texts = batch[textColumn] as unknown[]
    texts.forEach((t, i) => {
      if (typeof t !== 'string') throw new TypeError(`${where}: the text at ${describeRow(ds, start + i)} is ${t === null ? 'null' : typeof t}, not a string`)
    })
    const enc = tokenizer(texts as string[], { truncation: true, ...(maxLength ? { maxLength } : {}) }) as { inputIds: number[][]; tokenTypeIds: number[][] }
    return { input_ids: enc.inputIds, token_type_ids: enc.tokenTypeIds, labels: labels.slice(start, start + texts.length) }
  }, { batched: true, batchSize: 1000 })
}

/** --freeze SPEC (the older spelling): none | head | embeddings | layers:A-B | embeddings+layers:A-B | index:<=N | index:A-B */
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

/**
 * The freezing flags: --train-only PREFIXES, --freeze-embeddings,
 * --freeze-layers A-B, --freeze-up-to-index N, and the older --freeze SPEC.
 * Returns what was asked, in words (for the report), or null for nothing.
 */
export function applyFreezeFlags(model: Module, flags: Map<string, string | true>): string | null {
  const said: string[] = []
  const value = (name: string, what: string): string => {
    const v = flags.get(name)
    if (typeof v !== 'string' || v === '') throw new Error(`--${name} needs ${what}`)
    return v
  }
  if (flags.has('train-only')) {
    const prefixes = value('train-only', 'parameter name prefixes, e.g. classifier').split(',').map((p) => p.trim()).filter(Boolean)
    const names = [...model.namedParameters()].map(([n]) => n)
    for (const p of prefixes) if (!names.some((n) => n.startsWith(p))) throw new Error(`--train-only: no parameter name starts with "${p}" (names start with: ${[...new Set(names.map((n) => n.split('.')[0]))].join(', ')})`)
    freezeAllExcept(model, prefixes)
    said.push(`train only ${prefixes.join(', ')}`)
  }
  if (flags.has('freeze-embeddings')) {
    freezeEmbeddings(model)
    said.push('embeddings frozen')
  }
  if (flags.has('freeze-layers')) {
    const m = /^(\d+)-(\d+)$/.exec(value('freeze-layers', 'a range A-B, e.g. 0-5'))
    if (!m) throw new Error(`--freeze-layers: expected a range A-B such as 0-5, got "${flags.get('freeze-layers')}"`)
    freezeEncoderLayers(model, Number(m[1]), Number(m[2]))
    said.push(`layers ${m[1]}-${m[2]} frozen`)
  }
  if (flags.has('freeze-up-to-index')) {
    const n = intFlag(flags.get('freeze-up-to-index'), 'freeze-up-to-index', 0)
    freezeIndexRange(model, 0, n)
    said.push(`parameter tensors 0-${n} frozen`)
  }
  if (flags.has('freeze')) {
    const spec = value('freeze', 'a spec, e.g. head or index:<=100')
    applyFreeze(model, spec)
    if (spec !== 'none') said.push(`--freeze ${spec}`)
  }
  return said.length ? said.join('; ') : null
}

function computeMetrics(p: { labelIds: Int32Array | Float32Array | null; predictedLabels: Int32Array; numLabels: number }) {
  const y = p.labelIds as Int32Array
  const average = p.numLabels > 2 ? 'macro' : 'binary'
  const prf = precisionRecallF1(y, p.predictedLabels, { average })
  return { accuracy: accuracy(y, p.predictedLabels), f1: prf.f1, precision: prf.precision, recall: prf.recall }
}

/** The command's own flags (not training arguments), from the table. */
const commandFlags = (command: Command) => new Set(flagsOf(command).filter((f) => !f.group.startsWith('Training arguments')).map((f) => f.name))

async function train(flags: Map<string, string | true>): Promise<void> {
  const { fields, rest } = trainingArgsFromFlags(flags, commandFlags('train'))
  const modelId = need(rest, 'model')
  const textColumn = (rest.get('text-column') as string) ?? 'text'
  const labelColumn = (rest.get('label-column') as string) ?? 'label'
  const maxLength = optionalInt(rest, 'max-length', 1)
  const flagNumLabels = optionalInt(rest, 'num-labels', 1, 1_000_000)
  const labelNames = parseLabelNames(rest.get('label-names'))
  const args = trainingArgumentsFromFields(fields, CLI_TRAINING_DEFAULTS)
  // Before any download, tokenization or training: a path that cannot take the results fails now.
  ensureWritableDir(args.outputDir, '--output-dir')
  const data = await loadData(rest)
  const trainRaw = splitOf(data, (rest.get('train-split') as string) ?? 'train')
  const evalName = (rest.get('eval-split') as string) ?? 'test'
  const evalRaw = data[evalName] ?? null
  if (!evalRaw) {
    process.stderr.write(`bertkit: warning: the dataset has no "${evalName}" split (splits: ${Object.keys(data).join(', ')}), so nothing will be evaluated; name one with --eval-split, or give one with --data-files train=a.csv,test=b.csv\n`)
  }
  // Every split's labels are checked (and names encoded) before anything is loaded or trained. A checkpoint that
  // is already a classifier fixes the classes (and their names, when it has real ones); a base model takes them
  // from the data or the flags.
  const head = flagNumLabels === undefined ? await classifierHead(modelId) : null
  const labels = planTrainingLabels(trainRaw, labelColumn, { labelNames, numLabels: flagNumLabels, head })
  const trainLabels = labels.encode(trainRaw, 'train')
  const evalLabels = evalRaw ? labels.encode(evalRaw, evalName) : null
  const numLabels = labels.numLabels
  const tokenizer = await AutoTokenizer.fromPretrained(modelId)
  const trainSet = tokenize(trainRaw, tokenizer, textColumn, trainLabels, maxLength, 'train split')
  const evalSet = evalRaw ? tokenize(evalRaw, tokenizer, textColumn, evalLabels!, maxLength, `${evalName} split`) : undefined
  const pooling = poolingOverride(rest)
  const base = await AutoModelForSequenceClassification.fromPretrained(modelId, {
    ...(labels.id2label ? { id2label: labels.id2label } : { numLabels }), seed: args.seed, device: args.device, ...pooling,
  })
  if (pooling.config && (base.config as { classifier_pooling?: unknown }).classifier_pooling !== pooling.config.classifier_pooling) {
    base.dispose()
    throw new Error(`--pooling: ${base.constructor.name} has no classifier_pooling option (BERT models have it)`)
  }
  const freezing = applyFreezeFlags(base, rest)
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
    // Saved into every checkpoint and the final folder: each is a model predict and export take.
    processingClass: tokenizer,
  })
  trainer.runInfo = [['model', modelId], ['dataset', `${need(rest, 'dataset')}${evalSet ? ` (train: ${trainSet.length} rows, ${evalName}: ${evalSet.length} rows)` : ` (train: ${trainSet.length} rows)`}`],
    ['freezing', freezing ?? 'none (full fine-tuning)'], ...(lora !== undefined ? [['LoRA', String(lora)] as [string, string]] : [])]
  const out = await trainer.train()
  const metrics = evalSet ? await trainer.evaluate() : {}
  // Under bertkit launch, rank 0 alone writes and reports (the replicas hold the same weights).
  if (trainer.isWorldProcessZero()) {
    trainer.saveModel(args.outputDir)
    if (model instanceof PeftModel && labels.id2label) writeAdapterLabels(args.outputDir, base.config)
    console.log(JSON.stringify({ train: out, eval: metrics, outputDir: args.outputDir }, null, 2))
  }
  trainer.dispose()
  model.dispose()
}

async function evaluate(flags: Map<string, string | true>): Promise<void> {
  const { fields, rest } = trainingArgsFromFlags(flags, commandFlags('eval'))
  const modelId = need(rest, 'model')
  const maxLength = optionalInt(rest, 'max-length', 1)
  // The evaluation bar and metrics line go to stderr; stdout keeps the JSON.
  const args = trainingArgumentsFromFields(fields, { outputDir: 'model', plotCurves: false })
  const data = await loadData(rest)
  const split = (rest.get('split') as string) ?? (rest.get('eval-split') as string) ?? 'test'
  const raw = splitOf(data, split)
  const tokenizer = await AutoTokenizer.fromPretrained(modelId)
  const model = await loadModel(modelId, { device: args.device })
  // Names in the data are matched to the model's label2id; indices are checked against num_labels.
  let ds: Dataset
  try {
    const labelIds = planModelLabels(model.config, (rest.get('label-column') as string) ?? 'label', modelId).encode(raw, split)
    ds = tokenize(raw, tokenizer, (rest.get('text-column') as string) ?? 'text', labelIds, maxLength, `${split} split`)
  } catch (err) {
    model.dispose()
    throw err
  }
  const trainer = new Trainer({ model, args, dataCollator: DataCollatorWithPadding({ tokenizer }), computeMetrics })
  const metrics = await trainer.evaluate(ds)
  if (trainer.isWorldProcessZero()) console.log(JSON.stringify(metrics, null, 2))
  trainer.dispose()
  model.dispose()
}

/** bertkit cache verify [--repo ID] [--repo-type model|dataset] [--cache-dir DIR] */
async function cacheCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub !== 'verify') throw new Error(`unknown cache command "${sub ?? ''}" (bertkit cache verify [--repo ID] [--repo-type model|dataset] [--cache-dir DIR])`)
  const parsed = parseFlags(rest)
  if (parsed.positional.length) throw new Error(`unexpected argument "${parsed.positional[0]}" (flags start with --)`)
  const flags = checkFlags('cache verify', parsed.flags)
  if (flags.has('help')) {
    console.log(commandHelp('cache verify'))
    return 0
  }
  const value = (k: string) => {
    const v = flags.get(k)
    if (v === true) throw new Error(`--${k} needs a value`)
    return v
  }
  const cacheDir = value('cache-dir')
  if (cacheDir !== undefined && !statSync(cacheDir, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`--cache-dir ${cacheDir} is not a folder`)
  const report = await verifyCache({ cacheDir, repoId: value('repo'), repoType: value('repo-type') as 'model' | 'dataset' | undefined })
  for (const p of report.problems) console.log(`${p.path}: ${p.message}`)
  const gb = (report.bytesChecked / 2 ** 30).toFixed(2)
  console.log(`bertkit cache verify: ${report.cacheDir}: ${report.repos} repo(s), ${report.blobsChecked} blob(s) (${gb} GiB) hashed${report.blobsUnchecked ? `, ${report.blobsUnchecked} with names that are no hash` : ''}; ${report.problems.length === 0 ? 'no problems' : `${report.problems.length} problem(s)`}`)
  return report.problems.length === 0 ? 0 : 1
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (!command || command === '--help' || command === '-h') {
    console.log(overviewHelp())
    return command ? 0 : 2
  }
  if (command === 'help') {
    const topic = rest[0] === 'cache' ? 'cache verify' : rest[0]
    if (topic === undefined) console.log(overviewHelp())
    else if ((COMMANDS as string[]).includes(topic)) console.log(commandHelp(topic as Command))
    else throw new Error(`no help on "${topic}": the commands are ${COMMANDS.join(', ')}`)
    return 0
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    console.log(packageVersion())
    return 0
  }
  if (command === 'launch') return (await import('./launch.js')).runLaunch(rest)
  if (command === 'doctor' || command === 'bench') {
    checkArgv(command, rest)
    if (rest.includes('--help')) {
      console.log(commandHelp(command))
      return 0
    }
    if (command === 'doctor') return runDoctor(rest)
    await runBench(rest)
    return 0
  }
  if (command === 'cache') return cacheCommand(rest)
  if (command === 'setfit') return runSetfit(rest)
  if (command === 'export') {
    if (rest[0] === 'onnx') {
      checkArgv('export onnx', rest.slice(1))
      if (rest.includes('--help')) {
        console.log(commandHelp('export onnx'))
        return 0
      }
    }
    await exportCommand(rest)
    return 0
  }
  if (command !== 'train' && command !== 'eval' && command !== 'predict') {
    const hint = closest(command, [...COMMANDS.filter((c) => c !== 'cache verify' && c !== 'export onnx'), 'cache', 'export'])
    throw new Error(`unknown command "${command}"${hint ? ` (did you mean ${hint}?)` : ''}; the commands are train, eval, predict, export onnx, bench, doctor, cache verify (bertkit --help)`)
  }
  const { flags: given, positional } = parseFlags(rest)
  if (positional.length) throw new Error(`unexpected argument "${positional[0]}" (flags start with --; bertkit ${command} --help)`)
  const flags = checkFlags(command, given)
  if (flags.has('help')) {
    console.log(commandHelp(command))
    return 0
  }
  switch (command) {
    case 'train': await train(flags); return 0
    case 'eval': await evaluate(flags); return 0
    case 'predict': await predictCommand(flags, rest); return 0
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
    console.error(`bertkit: ${err instanceof Error ? err.message : String(err)}`)
    process.exit(1)
  })
}
