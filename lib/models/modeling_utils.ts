// transformers' modeling_utils: PreTrainedModel (from_pretrained, save_pretrained,
// the problem type of the classification loss), the checkpoint loading it
// rests on, and the checks every family's forward shares.
//
// Loading follows transformers: config.json plus model.safetensors (or a
// sharded index); legacy gamma/beta names; a checkpoint of a bare base model
// (no "bert." prefix) loads into a task model and back; pre-training heads
// (cls.*) are reported as unexpected, and weights the checkpoint lacks (a new
// classifier) are initialised. A family says what differs through its
// PreTrainedModel subclass's statics (configClass, baseModelPrefix,
// baseModules, checkpointShapes), as transformers' BertPreTrainedModel does.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { resolveModelDir as resolveHubModelDir, type DownloadOptions } from '../hub/hub.js'
import { openSafetensors, readShardedIndex, readSafetensors, readShardedSafetensors, writeSafetensors, writeSafetensorsAsync, atomicWriteFile, atomicWriteFileAsync, SHARDED_INDEX_NAME, type HostTensor } from '../hub/safetensors.js'
import { makeDirs } from '../hub/dirs.js'
import { Module, ModuleList } from '../nn/module.js'
import { runEncoderLayers } from '../nn/checkpointing.js'
import { withDeferredInit } from '../nn/init.js'
import { manualSeed } from '../tensor/random.js'
import { add, binaryCrossEntropyWithLogits, crossEntropy, mean, mul, reshape, scale, zeroColumnPairs } from '../tensor/ops.js'
import { tensor, formatShape, Tensor } from '../tensor/tensor.js'
import { resolveDevice, type DeviceName, type DeviceRequest } from '../tensor/device.js'
import { unpadBatch, type PackedBatch } from '../tensor/packing.js'
import type { ProblemType } from './configuration_utils.js'
import type { SequenceClassifierOutput } from './modeling_outputs.js'

/** The fields of every family's config that the shared code reads. */
export interface PretrainedConfig {
  model_type: string
  num_labels: number
  problem_type: ProblemType | null
  toJSON(): Record<string, unknown>
}

/** A config class as the loader uses it (transformers' config_class). */
export interface ConfigClass<C = PretrainedConfig> {
  /** Reads config.json; `overrides` win over the file, as from_pretrained's kwargs. */
  fromFile(path: string, overrides?: ConfigOverrides): C
}

export interface FromPretrainedOptions extends DownloadOptions {
  /** Hub revision (branch, tag or commit); default "main". */
  revision?: string
  numLabels?: number
  problemType?: ProblemType | null
  id2label?: Record<string, string>
  /** Seeds the initialisation of weights the checkpoint lacks (e.g. a new classifier). */
  seed?: number
  device?: DeviceRequest
  /** Other config fields to override (snake_case, as in config.json). */
  config?: ConfigOverrides
}

/** from_pretrained's config overrides: any config field (snake_case, as in config.json). */
export type ConfigOverrides = Record<string, unknown>

/**
 * Tensor names (relative to the base model, e.g. "embeddings.word_embeddings.weight")
 * with the config field and value each dimension must equal; and where the
 * encoder's layers are numbered, so that the config asks for no more layers
 * than the checkpoint has.
 */
export interface CheckpointShapes {
  /** The base model's prefix in a task model's checkpoint ("bert."): names are looked up with and without it. */
  prefix: string
  tensors: Array<{ name: string; dims: Array<[field: string, value: number]> }>
  layers?: { name: string; field: string; value: number }
}

export interface LoadingInfo {
  /** Parameters the checkpoint lacked: newly initialised. */
  missingKeys: string[]
  /** Checkpoint tensors the model has no place for (after renaming), e.g. cls.*. */
  unexpectedKeys: string[]
  /** Checkpoint names that were renamed, old → new. */
  renamedKeys: Record<string, string>
}

/** A local model directory as is, or a Hub repo id fetched into the shared Hugging Face cache. */
export async function resolveModelDir(idOrDir: string, options: DownloadOptions & { revision?: string } = {}): Promise<string> {
  return resolveHubModelDir(idOrDir, options)
}

/** Reads every weight of a checkpoint directory: model.safetensors, or the sharded index. */
export function readCheckpointTensors(dir: string): { tensors: Map<string, HostTensor>; source: string } {
  const single = join(dir, 'model.safetensors')
  if (existsSync(single)) return { tensors: readSafetensors(single).tensors, source: single }
  const index = join(dir, SHARDED_INDEX_NAME)
  if (existsSync(index)) return { tensors: readShardedSafetensors(index).tensors, source: index }
  const legacy = ['pytorch_model.bin', 'tf_model.h5', 'model.ckpt.index'].filter((f) => existsSync(join(dir, f)))
  throw new Error(`${dir}: no model.safetensors or ${SHARDED_INDEX_NAME}${legacy.length ? ` (found ${legacy.join(', ')}: convert it to safetensors with transformers' save_pretrained)` : ''}`)
}

/** Every tensor's shape from the checkpoint's header(s), reading no weights. */
export function readCheckpointShapes(dir: string): { shapes: Map<string, number[]>; source: string } {
  const single = join(dir, 'model.safetensors')
  if (existsSync(single)) {
    const file = openSafetensors(single)
    try {
      return { shapes: new Map([...file.tensors].map(([name, info]) => [name, info.shape])), source: single }
    } finally {
      file.close()
    }
  }
  const index = join(dir, SHARDED_INDEX_NAME)
  if (existsSync(index)) return { shapes: new Map([...readShardedIndex(index).tensors].map(([name, info]) => [name, info.shape])), source: index }
  return { shapes: new Map(), source: readCheckpointTensors(dir).source }  // throws the "no weights" error
}

/**
 * Checks the config against the checkpoint's shapes (CheckpointShapes);
 * tensors the checkpoint lacks are not checked. Fewer layers than the
 * checkpoint holds is allowed (the rest are reported as unexpected, as in
 * transformers); more is refused.
 */
export function checkConfigAgainstCheckpoint(configPath: string, expected: CheckpointShapes, shapes: Map<string, number[]>, source: string): void {
  const find = (name: string) => {
    for (const n of [expected.prefix + name, name]) if (shapes.has(n)) return { name: n, shape: shapes.get(n)! }
    return null
  }
  for (const { name, dims } of expected.tensors) {
    const found = find(name)
    if (!found) continue
    const { shape } = found
    dims.forEach(([field, value], i) => {
      if (shape.length !== dims.length || shape[i] !== value) {
        const meaning = dims.map(([f]) => f).join(' x ')
        throw new Error(`${configPath}: ${field} is ${value}, but the checkpoint's "${found.name}" (${source}) is ${formatShape(shape)} (${meaning}); ` +
          'the config does not describe these weights')
      }
    })
  }
  if (expected.layers) {
    const { name, field, value } = expected.layers
    const pattern = new RegExp(`^(?:${expected.prefix.replace(/\./g, '\\.')})?${name.replace(/\./g, '\\.')}\\.(\\d+)\\.`)
    let held = 0
    for (const key of shapes.keys()) {
      const m = pattern.exec(key)
      if (m) held = Math.max(held, Number(m[1]) + 1)
    }
    if (held > 0 && value > held) {
      throw new Error(`${configPath}: ${field} is ${value}, but the checkpoint (${source}) holds layers 0..${held - 1} only; ` +
        `set ${field} to ${held} (or fewer, to keep the first layers)`)
    }
  }
}

/** Maps checkpoint names onto the model's, the way transformers does for BERT checkpoints. */
export function renameCheckpointKey(name: string, modelNames: Set<string>, basePrefix: string, baseModules: readonly string[]): string {
  let renamed = name.replace(/\.gamma$/, '.weight').replace(/\.beta$/, '.bias')
  if (basePrefix && !modelNames.has(renamed) && modelNames.has(basePrefix + renamed)) renamed = basePrefix + renamed
  const head = renamed.slice(0, renamed.indexOf('.'))
  if (basePrefix && !renamed.startsWith(basePrefix) && !modelNames.has(renamed) && renamed.includes('.') && baseModules.includes(head)) {
    renamed = basePrefix + renamed
  }
  return renamed
}

/**
 * A weight with NaN or Inf would only show up later as NaN logits, far from
 * its cause: refuse it at load, naming the tensor and the first bad element.
 */
export function checkFinite(source: string, name: string, data: Float32Array, shape: readonly number[]): void {
  // x * 0 is 0 for every finite x and NaN for NaN / Inf: a branch-free pass (four sums, so
  // the additions do not wait on each other) settles the usual all-finite case.
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0
  const n4 = data.length & ~3
  for (let i = 0; i < n4; i += 4) {
    s0 += data[i] * 0
    s1 += data[i + 1] * 0
    s2 += data[i + 2] * 0
    s3 += data[i + 3] * 0
  }
  for (let i = n4; i < data.length; i++) s0 += data[i] * 0
  if (s0 + s1 + s2 + s3 === 0) return
  for (let i = 0; i < data.length; i++) {
    const v = data[i]
    if (v - v === 0) continue  // finite (NaN - NaN and Inf - Inf are NaN)
    const index: number[] = []
    let rest = i
    for (let d = shape.length - 1; d >= 0; d--) {
      index.unshift(rest % shape[d])
      rest = Math.floor(rest / shape[d])
    }
    let count = 0
    for (let j = i; j < data.length; j++) if (!Number.isFinite(data[j])) count++
    throw new Error(`${source}: tensor "${name}" ${formatShape(shape)} holds ${count} non-finite value(s), the first ${v} at [${index.join(', ')}]; the checkpoint is corrupt (or training diverged before it was saved)`)
  }
}

// Buffers some checkpoints carry that are not parameters; transformers ignores them silently.
const IGNORED_BUFFERS = /(^|\.)embeddings\.position_ids$/

/**
 * Loads a checkpoint's weights into a model built with deferred
 * initialisation, then initialises whatever the checkpoint lacked.
 * Validates every shape first: a bad checkpoint leaves nothing half-loaded.
 */
function loadCheckpointInto(model: Module, pending: Map<Tensor, () => void>, dir: string, basePrefix: string, baseModules: readonly string[]): LoadingInfo {
  const { tensors, source } = readCheckpointTensors(dir)
  const params = model.stateDict()
  const modelNames = new Set(params.keys())
  const renamedKeys: Record<string, string> = {}
  const values = new Map<string, Float32Array>()
  const unexpectedKeys: string[] = []
  for (const [name, t] of tensors) {
    if (IGNORED_BUFFERS.test(name)) continue
    const target = renameCheckpointKey(name, modelNames, basePrefix, baseModules)
    if (target !== name) renamedKeys[name] = target
    const p = params.get(target)
    if (!p) {
      unexpectedKeys.push(target)
      continue
    }
    if (!(t.data instanceof Float32Array)) {
      throw new Error(`${source}: tensor "${name}" has dtype ${t.dtype}; weights must be floating point (F32, F16, BF16)`)
    }
    if (formatShape(t.shape) !== formatShape(p.shape)) {
      throw new Error(`${source}: tensor "${name}" has shape ${formatShape(t.shape)} but the config (${join(dir, 'config.json')}) implies ${formatShape(p.shape)}`)
    }
    if (values.has(target)) throw new Error(`${source}: two tensors map to "${target}" (one of them is "${name}")`)
    checkFinite(source, name, t.data, t.shape)
    values.set(target, t.data)
  }
  if (values.size === 0 && unexpectedKeys.length > 0) {
    // transformers would only warn and train from random weights; that is never what was meant.
    const expected = [...modelNames].slice(0, 3).join(', ')
    const found = unexpectedKeys.slice(0, 3).join(', ')
    throw new Error(`${source}: none of its ${unexpectedKeys.length} tensors belongs to this model (it expects names like ${expected}; the file has ${found}). ` +
      `Is model_type in ${join(dir, 'config.json')} right for these weights?`)
  }
  const { missingKeys } = model.loadStateDict(values, { source })
  for (const name of missingKeys) pending.get(params.get(name)!)?.()
  return { missingKeys, unexpectedKeys, renamedKeys }
}

/** config.json of a model directory, with from_pretrained's overrides (numLabels, problemType, id2label, config) applied. */
export function configFromPretrained<C>(dir: string, options: FromPretrainedOptions, configClass: ConfigClass<C>): C {
  const overrides: ConfigOverrides = { ...(options.config ?? {}) }
  if (options.numLabels !== undefined) overrides.num_labels = options.numLabels
  if (options.problemType !== undefined) overrides.problem_type = options.problemType
  if (options.id2label !== undefined) {
    overrides.id2label = options.id2label
    overrides.label2id = Object.fromEntries(Object.entries(options.id2label).map(([k, v]) => [v, Number(k)]))
    overrides.num_labels = Object.keys(options.id2label).length
  }
  const path = join(dir, 'config.json')
  if (!existsSync(path)) throw new Error(`${dir}: no config.json`)
  return configClass.fromFile(path, overrides)
}

/** The class side of a PreTrainedModel: its constructor and what fromPretrained reads. */
export interface PreTrainedModelClass<M extends PreTrainedModel = PreTrainedModel, C = PretrainedConfig> {
  new (config: C, options?: { device?: DeviceName }): M
  readonly name: string
  readonly configClass: ConfigClass<C>
  readonly baseModelPrefix: string
  readonly baseModules: readonly string[]
  checkpointShapes(config: C): CheckpointShapes | null
}

/** "bert." when the model holds its base model under base_model_prefix (a task model), else "" (transformers' hasattr test). */
function basePrefixOf(model: Module, cls: { readonly baseModelPrefix: string }): string {
  const prefix = cls.baseModelPrefix
  return prefix && (model as unknown as Record<string, unknown>)[prefix] instanceof Module ? `${prefix}.` : ''
}

/** Builds a model with deferred init, loads a checkpoint, reports what was missing. */
async function buildFromPretrained<M extends PreTrainedModel, C>(idOrDir: string, options: FromPretrainedOptions,
  cls: PreTrainedModelClass<M, C>): Promise<{ model: M; loadingInfo: LoadingInfo }> {
  if (!cls.configClass) throw new Error(`${cls.name}.fromPretrained: the class names no configClass (set it on the family's PreTrainedModel subclass)`)
  const dir = await resolveModelDir(idOrDir, options)
  const config = configFromPretrained(dir, options, cls.configClass)
  const expected = cls.checkpointShapes(config)
  if (expected) {
    const { shapes, source } = readCheckpointShapes(dir)
    checkConfigAgainstCheckpoint(join(dir, 'config.json'), expected, shapes, source)
  }
  const device = resolveDevice(options.device ?? 'auto')
  if (options.seed !== undefined) manualSeed(options.seed)
  const { value: model, pending } = withDeferredInit(() => new cls(config, { device }))
  try {
    const loadingInfo = loadCheckpointInto(model, pending, dir, basePrefixOf(model, cls), cls.baseModules)
    // transformers' from_pretrained returns the model in eval mode (dropout off); training sets train() itself.
    model.eval()
    return { model, loadingInfo }
  } catch (err) {
    model.dispose()
    throw err
  }
}

/**
 * transformers' PreTrainedModel. Each family has one subclass (e.g.
 * BertPreTrainedModel) whose statics say how its checkpoints load; its base
 * and task models extend that. fromPretrained and savePretrained write
 * `architectures` as the class name, as transformers does.
 */
export abstract class PreTrainedModel<C extends PretrainedConfig = PretrainedConfig> extends Module {
  /** transformers' config_class. Set by each family's subclass. */
  declare static readonly configClass: ConfigClass<unknown>
  /** transformers' base_model_prefix: where a task model holds its base model ("bert"). */
  static readonly baseModelPrefix: string = ''
  /** The base model's top-level modules, so that a checkpoint saved without the prefix (a bare base model) finds its place. */
  static readonly baseModules: readonly string[] = []

  /**
   * The config fields the checkpoint's tensor shapes pin down, checked
   * against the safetensors header before the model is built: an absurd
   * size (num_hidden_layers 1e9, hidden_size 1e12) fails there, naming the
   * field, instead of allocating until memory runs out. Null: no check.
   */
  static checkpointShapes(_config: unknown): CheckpointShapes | null {
    return null
  }

  /** What fromPretrained found missing / unexpected in the checkpoint. */
  loadingInfo: LoadingInfo | null = null
  abstract readonly config: C

  /**
   * Loads config.json + weights from a directory or Hub id. Weights the
   * checkpoint lacks (a task model's new head) are initialised
   * normal(0, initializer_range) from `seed`; like transformers, a task
   * model lists them on stderr. Checkpoint tensors the model has no place
   * for (pre-training heads) are reported in loadingInfo.unexpectedKeys.
   */
  static async fromPretrained<M extends PreTrainedModel, C>(this: PreTrainedModelClass<M, C>, idOrDir: string, options: FromPretrainedOptions = {}): Promise<M> {
    const { model, loadingInfo } = await buildFromPretrained(idOrDir, options, this)
    model.loadingInfo = loadingInfo
    if (basePrefixOf(model, this) && loadingInfo.missingKeys.length) {
      process.stderr.write(`bertkit: some weights of ${this.name} were not in the checkpoint at ${idOrDir} and are newly initialized: [${loadingInfo.missingKeys.join(', ')}]\n`)
    }
    return model
  }

  savePretrained(dir: string): void {
    savePretrainedTo(this, this.config, dir, this.constructor.name)
  }

  /** savePretrained without holding the event loop while the files are written. */
  savePretrainedAsync(dir: string): Promise<void> {
    return savePretrainedToAsync(this, this.config, dir, this.constructor.name)
  }

  /** The problem type of a classification head's loss: from the config, else from num_labels and the labels' dtype (transformers'). */
  problemType(labels: Tensor): ProblemType {
    return problemTypeFor(this.config.problem_type, this.config.num_labels, labels)
  }

  /** The loss of a *ForSequenceClassification head, by problemType(labels). */
  protected sequenceClassificationLoss(logits: Tensor, labels: Tensor): Tensor {
    return sequenceClassificationLoss(this.constructor.name, this.problemType(labels), logits, labels, this.config.num_labels)
  }

  /**
   * head(lastHiddenState, packed) on a base model's output; the packed layout
   * (when the batch ran unpadded) is freed once the head has read it.
   */
  protected onLastHiddenState<T>(output: { lastHiddenState: Tensor; packed: PackedBatch | null }, head: (hidden: Tensor, packed: PackedBatch | null) => T): T {
    try {
      return head(output.lastHiddenState, output.packed)
    } finally {
      output.packed?.dispose()
    }
  }

  /** { loss, logits } with the loss computed when labels are given. */
  protected classifierOutput(logits: Tensor, labels: Tensor | null | undefined): SequenceClassifierOutput {
    return { loss: labels ? this.sequenceClassificationLoss(logits, labels) : null, logits }
  }
}

/**
 * Writes config.json and model.safetensors into dir. Each file is written to
 * a temporary name and renamed into place, weights first: an interrupted save
 * leaves the previous checkpoint's files intact.
 */
export function savePretrainedTo(model: Module, config: { toJSON(): Record<string, unknown> }, dir: string, architecture: string): void {
  makeDirs(dir, 'model directory')
  writeSafetensors(join(dir, 'model.safetensors'), weightEntries(model), { format: 'pt' })
  atomicWriteFile(join(dir, 'config.json'), configText(config, architecture))
}

/** savePretrainedTo with the disk writes off the event loop (the Trainer's checkpoints). */
export async function savePretrainedToAsync(model: Module, config: { toJSON(): Record<string, unknown> }, dir: string, architecture: string): Promise<void> {
  makeDirs(dir, 'model directory')
  await writeSafetensorsAsync(join(dir, 'model.safetensors'), weightEntries(model), { format: 'pt' })
  await atomicWriteFileAsync(join(dir, 'config.json'), configText(config, architecture))
}

function weightEntries(model: Module) {
  return [...model.namedParameters()].map(([name, p]) => [name, {
    dtype: 'F32' as const,
    shape: p.shape,
    data: () => p.toFloat32Array(),
  }] as const)
}

function configText(config: { toJSON(): Record<string, unknown> }, architecture: string): string {
  return JSON.stringify({ ...config.toJSON(), architectures: [architecture] }, null, 2) + '\n'
}

/** The problem type transformers would pick: from the config, else from num_labels and the labels' dtype. */
export function problemTypeFor(configured: ProblemType | null, numLabels: number, labels: Tensor): ProblemType {
  if (configured) return configured
  if (numLabels === 1) return 'regression'
  return labels.dtype === 'int32' ? 'single_label_classification' : 'multi_label_classification'
}

/**
 * CrossEntropyLoss, MSELoss(logits.squeeze(), labels.squeeze()) or
 * BCEWithLogitsLoss, as the *ForSequenceClassification heads of transformers
 * compute them. `owner` names the model in error messages.
 */
export function sequenceClassificationLoss(owner: string, kind: ProblemType, logits: Tensor, labels: Tensor, numLabels: number): Tensor {
  const batch = logits.shape[0]
  if (kind === 'single_label_classification') {
    if (labels.dtype !== 'int32') throw new TypeError(`${owner}: single-label labels must be int32, got ${labels.dtype}`)
    if (labels.numel !== batch) throw new RangeError(`${owner}: labels ${formatShape(labels.shape)} must have ${batch} elements`)
    return crossEntropy(logits, labels)
  }
  if (kind === 'regression') {
    if (labels.dtype !== 'float32') throw new TypeError(`${owner}: regression labels must be float32, got ${labels.dtype}`)
    if (labels.numel !== logits.numel) throw new RangeError(`${owner}: labels ${formatShape(labels.shape)} must match logits ${formatShape(logits.shape)}`)
    const diff = add(reshape(logits, [logits.numel]), scale(reshape(labels, [labels.numel]), -1))
    return mean(mul(diff, diff))
  }
  // BCEWithLogitsLoss. Targets are probabilities in [0, 1], as transformers takes them (0/1 labels,
  // or soft ones from label smoothing or a teacher).
  if (labels.numel !== logits.numel) throw new RangeError(`${owner}: multi-label labels ${formatShape(labels.shape)} must match logits ${formatShape(logits.shape)}`)
  const targets = labels.toFloat32Array()
  let soft = false
  for (let i = 0; i < targets.length; i++) {
    const v = targets[i]
    if (!(v >= 0 && v <= 1)) {
      throw new RangeError(`${owner}: multi-label targets must be probabilities in [0, 1], got ${v} at [${Math.floor(i / numLabels)}, ${i % numLabels}]`)
    }
    if (v !== 0 && v !== 1) soft = true
  }
  if (soft) return binaryCrossEntropyWithLogits(reshape(logits, [logits.shape[0], logits.numel / logits.shape[0]]), targets)
  // 0/1 targets: the mean over every (row, label) of a two-class cross-entropy, on the device.
  const hard = Int32Array.from(targets)
  const targetTensor = tensor(hard, { dtype: 'int32', device: logits.device })
  try {
    return crossEntropy(zeroColumnPairs(reshape(logits, [logits.numel])), targetTensor)
  } finally {
    targetTensor.dispose()
  }
}

/** input_ids must be int32 [batch, seq], neither dimension empty. Returns [batch, seq]. */
export function checkInputIds(owner: string, inputIds: unknown): [number, number] {
  if (!(inputIds instanceof Tensor) || inputIds.dtype !== 'int32' || inputIds.ndim !== 2) {
    throw new TypeError(`${owner}: input_ids must be an int32 tensor [batch, seq]${inputIds instanceof Tensor ? `, got ${inputIds.dtype} ${formatShape(inputIds.shape)}` : ''}`)
  }
  const [batch, seq] = inputIds.shape
  if (batch === 0 || seq === 0) throw new RangeError(`${owner}: input_ids ${formatShape(inputIds.shape)} is empty`)
  return [batch, seq]
}

/** Another id tensor of the batch (attention_mask, token_type_ids, position_ids): int32 and shaped like input_ids. */
export function checkIdsLike(owner: string, name: string, t: unknown, batch: number, seq: number): Tensor {
  if (!(t instanceof Tensor)) throw new TypeError(`${owner}: ${name} must be a Tensor`)
  if (t.dtype !== 'int32') throw new TypeError(`${owner}: ${name} must be int32, got ${t.dtype}`)
  if (t.ndim !== 2 || t.shape[0] !== batch || t.shape[1] !== seq) {
    throw new RangeError(`${owner}: ${name} ${formatShape(t.shape)} must be [${batch}, ${seq}] like input_ids`)
  }
  return t
}

/** Runs an embedding lookup; a native out-of-range error names [row, column] of `what` instead of a flat index. */
export function lookup<T>(what: string, seq: number, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    const m = /ids\[(\d+)\] = (-?\d+) is out of range \[0, (\d+)\)/.exec((err as Error).message)
    if (m) {
      const flat = Number(m[1])
      throw new RangeError(`${what}[${Math.floor(flat / seq)}, ${flat % seq}] = ${m[2]} is out of range [0, ${m[3]})`)
    }
    throw err
  }
}

/** An embedding lookup of ids [batch, seq], of the real tokens only with `packed`; a bad id's error names [row, column] of `what`. */
export function embedIds(what: string, table: { forward(ids: Tensor): Tensor }, ids: Tensor, packed: PackedBatch | null): Tensor {
  return lookup(what, ids.shape[1], () => (packed ? packed.padIndexErrors(() => table.forward(packed.packIds(ids))) : table.forward(ids)))
}

/**
 * Id tensors a forward pass makes for inputs it was not given; freed when
 * the pass ends (ops copy the ids they keep for backward).
 */
export class OwnedIds {
  private readonly made: Tensor[] = []

  constructor(private readonly owner: string, readonly batch: number, readonly seq: number, private readonly device: Tensor['device']) {}

  /** The caller's tensor (checked), or one built from `make()` when it gave none. */
  orDefault(t: Tensor | null | undefined, name: string, make: () => Int32Array): Tensor {
    if (t) return checkIdsLike(this.owner, name, t, this.batch, this.seq)
    const made = tensor(make(), { shape: [this.batch, this.seq], dtype: 'int32', device: this.device })
    this.made.push(made)
    return made
  }

  dispose(): void {
    for (const t of this.made) t.dispose()
  }
}

/** The id inputs every family's base model takes (each family's *Inputs type says what it makes of them). */
export interface EncoderIdInputs {
  /** int32 [batch, seq] */
  inputIds: Tensor
  /** int32 [batch, seq], 1 = token, 0 = padding. Defaults to all ones. */
  attentionMask?: Tensor | null
  /** int32 [batch, seq]. Defaults to zeros, where the family has token types. */
  tokenTypeIds?: Tensor | null
  /** int32 [batch, seq]. Defaults to 0..seq-1 in every row, unless the family counts otherwise. */
  positionIds?: Tensor | null
}

/** A *ForSequenceClassification forward's inputs: the ids and, for a loss, the labels. */
export interface SequenceClassificationInputs extends EncoderIdInputs {
  /**
   * int32 [batch] class indices (single-label), float32 [batch] targets
   * (regression) or [batch, num_labels] 0/1 targets (multi-label).
   */
  labels?: Tensor | null
}

/**
 * An encoder's stack of layers, registered as "layer" as transformers names
 * it, each layer run by runEncoderLayer (its own scope, or a checkpoint).
 */
export class EncoderLayerStack<L extends Module & { forward(hidden: Tensor, mask: Tensor | PackedBatch): Tensor }> extends Module {
  readonly layer: ModuleList<L>

  constructor(count: number, makeLayer: () => L) {
    super()
    this.layer = this.registerModule('layer', new ModuleList(Array.from({ length: count }, makeLayer)))
  }

  override get supportsGradientCheckpointing(): boolean {
    return true
  }

  /** mask: the attention mask, or the packed layout when hidden holds the real tokens [tokens, hidden]. */
  forward(hidden: Tensor, mask: Tensor | PackedBatch): Tensor {
    return runEncoderLayers(this, this.layer.items, hidden, mask)
  }
}

/**
 * One base-model forward's batch: its size, the ids it made for inputs it was
 * not given (OwnedIds), and its packed layout once unpad() has made it.
 */
export class EncoderBatch extends OwnedIds {
  packed: PackedBatch | null = null

  constructor(owner: string, readonly inputs: EncoderIdInputs, batch: number, seq: number, private readonly unpadAsked: boolean) {
    super(owner, batch, seq, inputs.inputIds.device)
  }

  /** attention_mask, or all ones. */
  attentionMask(): Tensor {
    return this.orDefault(this.inputs.attentionMask, 'attention_mask', () => new Int32Array(this.batch * this.seq).fill(1))
  }

  /** token_type_ids, or zeros. */
  tokenTypeIds(): Tensor {
    return this.orDefault(this.inputs.tokenTypeIds, 'token_type_ids', () => new Int32Array(this.batch * this.seq))
  }

  /** position_ids, or `make()` (default: 0..seq-1 in every row). */
  positionIds(make: () => Int32Array = () => Int32Array.from({ length: this.batch * this.seq }, (_, i) => i % this.seq)): Tensor {
    return this.orDefault(this.inputs.positionIds, 'position_ids', make)
  }

  /** The packed layout of the caller's attention mask when the forward was asked to unpad (and unpadding applies), else null. */
  unpad(): PackedBatch | null {
    this.packed = this.unpadAsked ? unpadBatch(this.inputs.attentionMask, this.inputs.inputIds.device) : null
    return this.packed
  }
}

/**
 * The frame of every family's base-model forward: input_ids checked (and the
 * sequence length against max_position_embeddings when `maxPositions` is
 * given), `run` given the batch, the ids made for it freed when it returns.
 * Returns run's result with the packed layout (the caller's to dispose; freed
 * here when run throws).
 */
export function encoderForward<T extends object>(owner: string, inputs: EncoderIdInputs, options: { unpad?: boolean; maxPositions?: number | null },
  run: (batch: EncoderBatch) => T): T & { packed: PackedBatch | null } {
  const [batch, seq] = checkInputIds(owner, inputs.inputIds)
  const max = options.maxPositions
  if (max !== undefined && max !== null && seq > max) {
    throw new RangeError(`${owner}: sequence length ${seq} exceeds max_position_embeddings ${max}; truncate the input`)
  }
  const ids = new EncoderBatch(owner, inputs, batch, seq, options.unpad ?? false)
  try {
    return { ...run(ids), packed: ids.packed }
  } catch (err) {
    ids.packed?.dispose()
    throw err
  } finally {
    ids.dispose()
  }
}

/**
 * Logits [rows, numLabels] read back from a forward pass must be finite: a
 * NaN row has no argmax, and reporting one anyway (label -1, null scores) is
 * a silent wrong answer. `where` names the rows' origin (e.g. "prediction
 * batch 3"); `firstRow` numbers rows across batches.
 */
export function checkFiniteLogits(where: string, logits: Float32Array, numLabels: number, firstRow = 0): void {
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]
    if (v - v === 0) continue
    let rows = 0
    for (let r = 0; r < logits.length / numLabels; r++) {
      if (logits.subarray(r * numLabels, (r + 1) * numLabels).some((x) => !Number.isFinite(x))) rows++
    }
    throw new Error(`${where}: the model produced non-finite logits (${v}) for ${rows} row(s), the first at row ${firstRow + Math.floor(i / numLabels)}; ` +
      'its weights hold NaN/Inf or overflow in this precision (try fp32)')
  }
}
