// Every flag of every bertkit command, in one table: its value, default,
// one-line description and the commands that take it. The help of each
// command, the check that rejects unknown flags (with a did-you-mean) and the
// old spellings kept as aliases all read this table; the training arguments
// are generated from TrainingArguments' own fields and defaults.
import { TrainingArguments } from '../train/training_args.js'
import { camelToKebab } from './args.js'

export type Command = 'train' | 'eval' | 'predict' | 'export onnx' | 'bench' | 'doctor' | 'cache verify'

export interface FlagSpec {
  name: string
  /** Placeholder of the value ('N', 'DIR'); absent for a switch. */
  value?: string
  help: string
  /** Shown as the default; absent when there is none. */
  default?: string
  commands: Command[]
  group: string
  required?: boolean
  /** Old spellings still accepted. */
  aliases?: string[]
}

const DATA = 'Data'
const FREEZE = 'Freezing (the seed\'s three strategies: nothing frozen, --train-only classifier, --freeze-up-to-index 100)'
const MODEL = 'Model'
const PREDICT = 'Input'
const BENCH = 'Benchmark'
const EXPORT = 'Export'
const OTHER = 'Other'

const COMMAND_FLAGS: FlagSpec[] = [
  { name: 'model', value: 'ID|DIR', required: true, commands: ['train'], group: DATA, help: 'the model to fine-tune: a Hub id (bert-base-cased) or a folder with config.json, weights and tokenizer files' },
  { name: 'model', value: 'DIR', required: true, commands: ['eval', 'predict'], group: DATA, help: 'a trained model folder (the --output-dir of train), or a LoRA adapter folder' },
  { name: 'model', value: 'DIR|ID', required: true, commands: ['export onnx'], group: EXPORT, help: 'the model to export (a LoRA adapter folder is merged into its base first)' },
  { name: 'out', value: 'DIR', required: true, commands: ['export onnx'], group: EXPORT, help: 'the folder to write, as transformers.js reads it: config.json, tokenizer files, onnx/model.onnx' },
  { name: 'opset', value: 'N', default: '17', commands: ['export onnx'], group: EXPORT, help: 'the ONNX opset' },
  { name: 'quantize', commands: ['export onnx'], group: EXPORT, help: 'also write onnx/model_quantized.onnx (int8 weights)' },
  { name: 'tokenizer', value: 'DIR', commands: ['export onnx'], group: EXPORT, help: 'where the tokenizer is, when the model folder has none' },
  { name: 'dataset', value: 'NAME|PATH', required: true, commands: ['train', 'eval'], group: DATA, help: 'a Hub dataset id (rotten_tomatoes), csv | json | parquet with --data-files, or a local file / folder' },
  { name: 'data-dir', value: 'DIR', commands: ['train', 'eval'], group: DATA, help: 'the raw rt-polarity files, for --dataset rotten_tomatoes offline' },
  { name: 'data-files', value: 'SPLIT=FILE,...', commands: ['train', 'eval'], group: DATA, help: 'your own files, e.g. train=a.csv,test=b.csv (with --dataset csv | json | parquet)' },
  { name: 'text-column', value: 'NAME', default: 'text', commands: ['train', 'eval', 'predict'], group: DATA, help: 'the column holding the text (predict: of a CSV / JSON --file)' },
  { name: 'label-column', value: 'NAME', default: 'label', commands: ['train', 'eval'], group: DATA, help: 'the column holding the label: a class index (0, 1, ...) or a class name' },
  { name: 'train-split', value: 'NAME', default: 'train', commands: ['train'], group: DATA, help: 'the split to train on' },
  { name: 'eval-split', value: 'NAME', default: 'test', commands: ['train', 'eval'], group: DATA, help: 'the split to evaluate on (the seed evaluates on test); without it nothing is evaluated' },
  { name: 'split', value: 'NAME', default: 'test', commands: ['eval'], group: DATA, help: 'the split to evaluate (same as --eval-split)' },
  { name: 'max-length', value: 'N', default: 'the tokenizer\'s model_max_length', commands: ['train', 'eval', 'predict'], group: DATA, help: 'truncate texts to N tokens' },
  { name: 'encoding', value: 'NAME', default: 'utf-8', commands: ['train', 'eval', 'predict'], group: DATA, help: 'text encoding of CSV / JSON / text files: utf-8 (invalid bytes name their line), latin1, windows-1252, utf-16le' },
  { name: 'num-labels', value: 'N', default: 'from the data', commands: ['train'], group: MODEL, help: 'the number of classes of a new classifier' },
  { name: 'label-names', value: 'A,B,...', default: 'the sorted distinct string labels of the train split', commands: ['train'], group: MODEL, help: 'the class names in id order (id2label / label2id in config.json); string labels in the data are matched to them' },
  { name: 'pooling', value: 'KIND', default: 'pooler', commands: ['train'], group: MODEL, help: 'the classifier\'s input (BERT): pooler (tanh head, transformers\') | cls | mean | max; saved in config.json' },
  { name: 'lora', value: 'SPEC', commands: ['train'], group: MODEL, help: 'train a LoRA adapter instead: r=8,alpha=16,dropout=0.1,targets=query,value[,save=classifier][,bias=none|all|lora_only]; the output folder holds the adapter' },
  { name: 'train-only', value: 'PREFIXES', commands: ['train'], group: FREEZE, help: 'train only the parameters whose names start with one of these (comma-separated); "classifier" trains the head alone' },
  { name: 'freeze-embeddings', commands: ['train'], group: FREEZE, help: 'freeze the embedding block (word, position, token type, LayerNorm)' },
  { name: 'freeze-layers', value: 'A-B', commands: ['train'], group: FREEZE, help: 'freeze encoder layers A to B (0-based, inclusive), e.g. 0-5 for the lower half of bert-base' },
  { name: 'freeze-up-to-index', value: 'N', commands: ['train'], group: FREEZE, help: 'freeze parameter tensors 0..N in named_parameters() order: 100 = embeddings (0-4) + layers 0-5 (5-100) of bert-base, the seed\'s "index <= 100"' },
  { name: 'freeze', value: 'SPEC', commands: ['train'], group: FREEZE, help: 'the older spelling: head | embeddings | layers:A-B | embeddings+layers:A-B | index:<=N | index:A-B | none' },
  { name: 'text', value: 'TEXT', commands: ['predict'], group: PREDICT, help: 'a text to classify (repeat the flag for more)' },
  { name: 'text-pair', value: 'TEXT', commands: ['predict'], group: PREDICT, help: 'the second text of a pair, one per --text' },
  { name: 'file', value: 'FILE', commands: ['predict'], group: PREDICT, help: 'a file with one text per line, or a CSV / JSON file with --text-column' },
  { name: 'text-pair-column', value: 'NAME', commands: ['predict'], group: PREDICT, help: 'the column of the second texts of pairs in --file' },
  { name: 'top-k', value: 'N|all', default: '1', commands: ['predict'], group: PREDICT, help: 'print the N best labels with their scores (all: every label)' },
  { name: 'function-to-apply', value: 'softmax|sigmoid|none', default: 'from the model\'s problem type', commands: ['predict'], group: PREDICT, help: 'how logits become scores' },
  { name: 'batch-size', value: 'N', default: '32', commands: ['predict'], group: PREDICT, help: 'texts per forward pass' },
  { name: 'truncation', value: 'true|false', default: 'true', commands: ['predict'], group: PREDICT, help: 'truncate long texts to --max-length' },
  { name: 'device', value: 'auto|cpu|cuda', default: 'auto', commands: ['predict'], group: PREDICT, help: 'where the model runs' },
  { name: 'tokenizer', value: 'DIR', commands: ['predict'], group: PREDICT, help: 'where the tokenizer is, when the model folder has none' },
  { name: 'json', commands: ['doctor'], group: OTHER, help: 'print the report as JSON' },
  { name: 'repo', value: 'ID', commands: ['cache verify'], group: OTHER, help: 'check only this repository' },
  { name: 'repo-type', value: 'model|dataset', commands: ['cache verify'], group: OTHER, help: 'the kind of --repo' },
  { name: 'cache-dir', value: 'DIR', default: '$HF_HUB_CACHE or ~/.cache/huggingface/hub', commands: ['cache verify'], group: OTHER, help: 'the Hub cache to check' },
  { name: 'model', value: 'DIR', required: true, commands: ['bench'], group: BENCH, help: 'the model folder to benchmark' },
  { name: 'tokenized', value: 'FILE', required: true, commands: ['bench'], group: BENCH, help: 'the tokenized dataset (bench/tokenize_rotten_tomatoes.py)' },
  { name: 'hf', commands: ['bench'], group: BENCH, help: 'also run transformers\' Trainer (python3 with torch and transformers)' },
  { name: 'strategies', value: 'LIST', default: 'full,head,index100', commands: ['bench'], group: BENCH, help: 'freezing strategies to run' },
  { name: 'precision', value: 'LIST', default: 'fp32', commands: ['bench'], group: BENCH, help: 'fp32, bf16, fp16' },
  { name: 'epochs', value: 'X', default: '1', commands: ['bench'], group: BENCH, help: 'epochs per run' },
  { name: 'max-steps', value: 'N', default: '-1 (whole epochs)', commands: ['bench'], group: BENCH, help: 'stop after N steps' },
  { name: 'seeds', value: 'LIST', default: '42', commands: ['bench'], group: BENCH, help: 'seeds, one run each' },
  { name: 'lr', value: 'X', default: '2e-5', commands: ['bench'], group: BENCH, help: 'learning rate' },
  { name: 'out', value: 'PATH', default: 'benchmarks/recipe-<host>', commands: ['bench'], group: BENCH, help: 'where results are written' },
  { name: 'threads', value: 'N', default: 'all cores', commands: ['bench'], group: BENCH, help: 'CPU threads' },
  { name: 'runs', value: 'N', default: '3', commands: ['bench'], group: BENCH, help: 'repetitions of each configuration' },
  { name: 'pad-to-multiple-of', value: 'N', commands: ['bench'], group: BENCH, help: 'pad batches to a multiple of N tokens (both libraries)' },
  { name: 'no-warmup', commands: ['bench'], group: BENCH, help: 'skip the untimed warm-up' },
  { name: 'same-init', commands: ['bench'], group: BENCH, help: 'both libraries start from the same classifier weights' },
  { name: 'help', commands: ['train', 'eval', 'predict', 'export onnx', 'bench', 'doctor', 'cache verify'], group: OTHER, help: 'this help' },
]

/** One line per TrainingArguments field (the help of transformers' field, shortened). */
export const TRAINING_ARGUMENT_HELP: Record<string, string> = {
  outputDir: 'where the model, checkpoints, trainer_state.json, trainer_log.jsonl and the report are written',
  learningRate: 'the initial learning rate of AdamW',
  perDeviceTrainBatchSize: 'rows per training batch',
  perDeviceEvalBatchSize: 'rows per evaluation batch',
  numTrainEpochs: 'passes over the training split (a fraction stops part-way)',
  maxSteps: 'stop after this many optimizer steps (-1: use --num-train-epochs)',
  weightDecay: 'AdamW weight decay, applied to weights only (never to biases or LayerNorm)',
  adamBeta1: 'AdamW beta1',
  adamBeta2: 'AdamW beta2',
  adamEpsilon: 'AdamW epsilon',
  maxGradNorm: 'clip the global gradient norm to this (0: no clipping)',
  lrSchedulerType: 'linear | cosine | constant | constant_with_warmup',
  warmupSteps: 'steps of linear warm-up',
  warmupRatio: 'warm-up as a fraction of the run\'s steps',
  gradientAccumulationSteps: 'micro-batches per optimizer step',
  evalStrategy: 'evaluate: no | steps (every --eval-steps) | epoch',
  evalSteps: 'steps between evaluations, or a fraction of the run (default: --logging-steps)',
  saveStrategy: 'save a checkpoint: no | steps (every --save-steps) | epoch',
  saveSteps: 'steps between checkpoints, or a fraction of the run',
  saveTotalLimit: 'keep at most this many checkpoints (the best one is always kept)',
  loadBestModelAtEnd: 'load the best checkpoint (by --metric-for-best-model) when training ends',
  metricForBestModel: 'the metric that picks the best checkpoint: loss, accuracy, f1, ...',
  greaterIsBetter: 'whether a larger --metric-for-best-model is better (default: true unless it ends in loss)',
  loggingStrategy: 'log the training loss: no | steps',
  loggingSteps: 'steps between log entries, or a fraction of the run',
  loggingFirstStep: 'also log the first step',
  seed: 'seed of initialisation, dropout and data order',
  dataSeed: 'a separate seed for the data order',
  fp16: 'fp16 mixed precision (CUDA)',
  bf16: 'bf16 mixed precision (CUDA)',
  resumeFromCheckpoint: 'resume from a checkpoint folder, or true for the latest in --output-dir',
  dataloaderDropLast: 'drop the last incomplete batch of each epoch',
  groupByLength: 'batch texts of similar length together (less padding)',
  trainSamplingStrategy: 'random | sequential | group_by_length',
  classWeights: 'per-class loss weights, comma-separated (bertkit)',
  device: 'auto | cpu | cuda',
  disableTqdm: 'no progress bars or progress lines',
  plotCurves: 'write training_curves.svg and report.html (bertkit)',
  gradientCheckpointing: 'recompute each encoder layer in backward instead of storing its activations: less memory, ~1 more forward per step',
  activationCheckpointing: 'transformers\' newer name of --gradient-checkpointing',
  reportTo: 'integrations to report to: none (bertkit writes trainer_state.json instead; no TensorBoard writer)',
  ddpBackend: 'under bertkit launch: auto (gloo on the CPU, nccl on GPUs) | gloo | nccl',
  ddpBucketCapMb: 'under bertkit launch: gradients are all-reduced in buckets of this many MiB, during backward',
  ddpTimeout: 'under bertkit launch: seconds the rendezvous and each collective may take',
}

/** Defaults the CLI uses where they differ from TrainingArguments'. */
export const CLI_TRAINING_DEFAULTS: Record<string, unknown> = {
  outputDir: 'model',
  // About a hundred points on the curves and the piped log, whatever the run's length (transformers' default is 500 steps).
  loggingSteps: 0.01,
}

const PLACEHOLDERS: Record<string, string> = {
  outputDir: 'DIR', loggingSteps: 'N|FRACTION', evalSteps: 'N|FRACTION', saveSteps: 'N|FRACTION', saveTotalLimit: 'N', dataSeed: 'N',
  metricForBestModel: 'NAME', greaterIsBetter: 'true|false', resumeFromCheckpoint: 'DIR|true', classWeights: 'W,W,...',
  evalStrategy: 'no|steps|epoch', saveStrategy: 'no|steps|epoch', loggingStrategy: 'no|steps', lrSchedulerType: 'NAME',
  trainSamplingStrategy: 'NAME', device: 'auto|cpu|cuda', reportTo: 'none', numTrainEpochs: 'X', ddpBackend: 'auto|gloo|nccl', ddpBucketCapMb: 'MIB', ddpTimeout: 'SECONDS',
}

function placeholder(field: string, value: unknown): string {
  if (PLACEHOLDERS[field]) return PLACEHOLDERS[field]
  return typeof value === 'number' && Number.isInteger(value) && !/rate|decay|norm|ratio|beta|epsilon/i.test(field) ? 'N' : 'X'
}

function trainingArgumentSpecs(): FlagSpec[] {
  const defaults = new TrainingArguments() as unknown as Record<string, unknown>
  return Object.keys(defaults).map((field) => {
    const v = field in CLI_TRAINING_DEFAULTS ? CLI_TRAINING_DEFAULTS[field] : defaults[field]
    const isSwitch = typeof defaults[field] === 'boolean'
    const shown = v === null ? undefined : Array.isArray(v) ? v.join(',') : String(v)
    const note = field in CLI_TRAINING_DEFAULTS ? ` (TrainingArguments' default: ${String(defaults[field])})` : ''
    return {
      name: camelToKebab(field), value: isSwitch ? undefined : placeholder(field, defaults[field]),
      default: field === 'evalSteps' ? 'as --logging-steps' : shown === undefined ? undefined : shown + note,
      help: TRAINING_ARGUMENT_HELP[field] ?? '', commands: ['train', 'eval'] as Command[], group: 'Training arguments (transformers\' TrainingArguments, in kebab case)',
    }
  })
}

let table: FlagSpec[] | null = null

/** The whole table (command flags, then the training arguments). */
export function allFlags(): FlagSpec[] {
  table ??= [...COMMAND_FLAGS, ...trainingArgumentSpecs()]
  return table
}

export function flagsOf(command: Command): FlagSpec[] {
  return allFlags().filter((f) => f.commands.includes(command))
}

/** Edit distance, for did-you-mean. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]
    d[0] = i
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = cur
    }
  }
  return d[b.length]
}

/** The closest of `candidates` to `name`, when it is close enough to be a typo. */
export function closest(name: string, candidates: string[]): string | null {
  let best: string | null = null
  let bestDistance = Infinity
  for (const c of candidates) {
    const dist = editDistance(name, c)
    if (dist < bestDistance) {
      best = c
      bestDistance = dist
    }
  }
  const prefix = candidates.find((c) => c.startsWith(name) && name.length >= 3)
  if (bestDistance <= Math.max(2, Math.floor(name.length / 4))) return best
  return prefix ?? null
}

/**
 * Flags as given → flags by their names in the table (aliases resolved);
 * an unknown flag is an error naming it, with the nearest flag of this
 * command or the command it belongs to.
 */
export function checkFlags(command: Command, flags: Map<string, string | true>): Map<string, string | true> {
  const specs = flagsOf(command)
  const names = new Map<string, string>()
  for (const f of specs) {
    names.set(f.name, f.name)
    for (const a of f.aliases ?? []) names.set(a, f.name)
  }
  const out = new Map<string, string | true>()
  for (const [given, value] of flags) {
    const name = names.get(given)
    if (name) {
      out.set(name, value)
      continue
    }
    const hint = closest(given, [...names.keys()])
    const elsewhere = allFlags().filter((f) => f.name === given).flatMap((f) => f.commands)
    const where = hint ? ` (did you mean --${hint}?)` : elsewhere.length ? ` (it is a flag of bertkit ${[...new Set(elsewhere)].join(', ')})` : ''
    throw new Error(`unknown flag --${given} for bertkit ${command}${where}; see bertkit ${command} --help`)
  }
  for (const f of specs) {
    if (!f.value && out.has(f.name) && out.get(f.name) !== true && !['true', 'false', '1', '0'].includes(out.get(f.name) as string)) {
      throw new Error(`--${f.name} is a switch and takes no value, got "${out.get(f.name)}"`)
    }
  }
  return out
}

/** Flags in an argv that parses itself (bench, doctor), checked against the table. */
export function checkArgv(command: Command, argv: string[]): void {
  const flags = new Map<string, string | true>()
  for (const a of argv) if (a.startsWith('--')) flags.set(a.slice(2).split('=')[0], true)
  const specs = flagsOf(command)
  for (const name of flags.keys()) {
    if (specs.some((f) => f.name === name)) continue
    const hint = closest(name, specs.map((f) => f.name))
    throw new Error(`unknown flag --${name} for bertkit ${command}${hint ? ` (did you mean --${hint}?)` : ''}; see bertkit ${command} --help`)
  }
}

const SUMMARY: Record<Command, { usage: string; about: string }> = {
  train: { usage: 'bertkit train --model ID|DIR --dataset NAME|PATH [flags]', about: 'Fine-tune a model for text classification; writes the model, checkpoints, trainer_state.json, trainer_log.jsonl, training_curves.svg and report.html into --output-dir.' },
  eval: { usage: 'bertkit eval --model DIR --dataset NAME|PATH [--split test] [flags]', about: 'Evaluate a trained model on a split; prints the metrics as JSON.' },
  predict: { usage: 'bertkit predict --model DIR (--text "..." [--text ...] | --file lines.txt | --file data.csv --text-column C) [flags]', about: 'Classify texts; prints one JSON line per text: {"text", "label", "score"} (with --top-k: {"text", "labels": [{"label", "score"}, ...]}).' },
  'export onnx': { usage: 'bertkit export onnx --model DIR|ID --out DIR [--opset N] [--quantize] [--tokenizer DIR]', about: 'Write the model as ONNX in a folder transformers.js reads (inputs input_ids, attention_mask[, token_type_ids]; output logits).' },
  bench: { usage: 'bertkit bench --model DIR --tokenized rt.json [flags]', about: 'Time the seed\'s recipe (and transformers\' with --hf) on this machine.' },
  doctor: { usage: 'bertkit doctor [--json]', about: 'Which addon loaded, the CPU kernels chosen, CUDA driver / GPUs / cuBLAS.' },
  'cache verify': { usage: 'bertkit cache verify [--repo ID] [--repo-type model|dataset] [--cache-dir DIR]', about: 'Check every blob of the Hub cache against its hash, refs and snapshot links; exit status 1 on a problem.' },
}

export const COMMANDS = Object.keys(SUMMARY) as Command[]

/** The help of one command, generated from the table. */
export function commandHelp(command: Command): string {
  const { usage, about } = SUMMARY[command]
  const lines = [`Usage: ${usage}`, '', about]
  const groups = new Map<string, FlagSpec[]>()
  for (const f of flagsOf(command)) {
    if (!groups.has(f.group)) groups.set(f.group, [])
    groups.get(f.group)!.push(f)
  }
  for (const [group, specs] of groups) {
    lines.push('', `${group}:`)
    for (const f of specs) {
      const left = `  --${f.name}${f.value ? ` ${f.value}` : ''}`
      const right = `${f.help}${f.required ? ' (required)' : ''}${f.default !== undefined ? ` [default: ${f.default}]` : ''}`
      lines.push(left.length < 34 ? left.padEnd(34) + right : `${left}\n${' '.repeat(34)}${right}`)
    }
  }
  return lines.join('\n')
}

/** bertkit --help: the commands, one line each. */
export function overviewHelp(): string {
  return [
    'bertkit — fine-tune BERT-family encoders for text classification',
    '',
    ...COMMANDS.map((c) => `  ${SUMMARY[c].usage}`),
    '  bertkit setfit --model ST-MODEL --dataset NAME|PATH [flags]   (few-shot SetFit; bertkit setfit --help)',
    '  bertkit launch --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P] SCRIPT.js|train [flags]',
    '  bertkit --version',
    '',
    'bertkit COMMAND --help lists every flag of a command with its default.',
  ].join('\n')
}
