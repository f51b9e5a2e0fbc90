// Loading and saving checkpoints in transformers' layout: config.json plus
// model.safetensors (or a sharded index), with transformers' key handling:
// legacy gamma/beta names, checkpoints of a bare BertModel (no "bert."
// prefix), pre-training heads (cls.*) reported as unexpected, and a new
// classifier initialised when the checkpoint has none. BERT is the default;
// other encoders (RoBERTa, DistilBERT) pass their own PretrainedFamily.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { resolveModelDir as resolveHubModelDir, type DownloadOptions } from '../../hub/hub.js'
import { openSafetensors, readShardedIndex, readSafetensors, readShardedSafetensors, writeSafetensors, writeSafetensorsAsync, atomicWriteFile, atomicWriteFileAsync, SHARDED_INDEX_NAME, type HostTensor } from '../../hub/safetensors.js'
import { makeDirs } from '../../hub/dirs.js'
import { withDeferredInit } from '../../nn/init.js'
import { manualSeed } from '../../tensor/random.js'
import { formatShape } from '../../tensor/tensor.js'
import type { DeviceRequest } from '../../tensor/device.js'
import { resolveDevice } from '../../tensor/device.js'
import type { Module } from '../../nn/module.js'
import { BertConfig, type BertConfigFields } from './configuration_bert.js'

export interface FromPretrainedOptions extends DownloadOptions {
  /** Hub revision (branch, tag or commit); default "main". */
  revision?: string
  numLabels?: number
  problemType?: BertConfigFields['problem_type']
  id2label?: Record<string, string>
  /** Seeds the initialisation of weights the checkpoint lacks (e.g. a new classifier). */
  seed?: number
  device?: DeviceRequest
  /** Other config fields to override (snake_case, as in config.json). */
  config?: ConfigOverrides
}

/** from_pretrained's config overrides: BERT's fields, or another encoder's (snake_case, as in config.json). */
export type ConfigOverrides = Partial<BertConfigFields> & Record<string, unknown>

/** What differs between encoder families when loading: how config.json is read, and the base model's top-level modules. */
export interface PretrainedFamily<C> {
  /** Reads config.json; `overrides` win over the file, as from_pretrained's kwargs. */
  readConfig(path: string, overrides: ConfigOverrides): C
  /**
   * Top-level modules of the bare base model, so that a checkpoint saved
   * without the base prefix (a bare BertModel) still finds its place.
   */
  baseModules: readonly string[]
  /**
   * The config fields the checkpoint's tensor shapes pin down, checked
   * against the safetensors header before the model is built: an absurd
   * size (num_hidden_layers 1e9, hidden_size 1e12) fails there, naming the
   * field, instead of allocating until memory runs out.
   */
  checkpointShapes?(config: C): CheckpointShapes
}

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

/** What BERT's and RoBERTa's checkpoints pin down (the same modules under "bert." / "roberta."). */
export function bertCheckpointShapes(prefix: string, config: BertConfig, classifier: string): CheckpointShapes {
  const h: [string, number] = ['hidden_size', config.hidden_size]
  return {
    prefix,
    tensors: [
      { name: 'embeddings.word_embeddings.weight', dims: [['vocab_size', config.vocab_size], h] },
      { name: 'embeddings.position_embeddings.weight', dims: [['max_position_embeddings', config.max_position_embeddings], h] },
      { name: 'embeddings.token_type_embeddings.weight', dims: [['type_vocab_size', config.type_vocab_size], h] },
      { name: 'encoder.layer.0.intermediate.dense.weight', dims: [['intermediate_size', config.intermediate_size], h] },
      { name: classifier, dims: [['num_labels', config.num_labels], h] },
    ],
    layers: { name: 'encoder.layer', field: 'num_hidden_layers', value: config.num_hidden_layers },
  }
}

const BERT_FAMILY: PretrainedFamily<BertConfig> = {
  readConfig: (path, overrides) => BertConfig.fromFile(path, overrides),
  baseModules: ['embeddings', 'encoder', 'pooler'],
  checkpointShapes: (config) => bertCheckpointShapes('bert.', config, 'classifier.weight'),
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
export function renameCheckpointKey(name: string, modelNames: Set<string>, basePrefix: string,
  baseModules: readonly string[] = BERT_FAMILY.baseModules): string {
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
export function loadCheckpointInto(model: Module, pending: Map<import('../../tensor/tensor.js').Tensor, () => void>, dir: string, basePrefix: string,
  baseModules: readonly string[] = BERT_FAMILY.baseModules): LoadingInfo {
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

export function configFromPretrained(dir: string, options: FromPretrainedOptions): BertConfig
export function configFromPretrained<C>(dir: string, options: FromPretrainedOptions, family: PretrainedFamily<C>): C
export function configFromPretrained<C>(dir: string, options: FromPretrainedOptions, family?: PretrainedFamily<C>): C | BertConfig {
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
  return (family ?? BERT_FAMILY).readConfig(path, overrides)
}

/** Builds a model with deferred init, loads a checkpoint, reports what was missing. */
export async function buildFromPretrained<M extends Module, C = BertConfig>(
  idOrDir: string,
  options: FromPretrainedOptions,
  build: (config: C, device: ReturnType<typeof resolveDevice>) => M,
  basePrefix: string,
  family: PretrainedFamily<C> = BERT_FAMILY as unknown as PretrainedFamily<C>,
): Promise<{ model: M; config: C; loadingInfo: LoadingInfo }> {
  const dir = await resolveModelDir(idOrDir, options)
  const config = configFromPretrained(dir, options, family)
  if (family.checkpointShapes) {
    const { shapes, source } = readCheckpointShapes(dir)
    checkConfigAgainstCheckpoint(join(dir, 'config.json'), family.checkpointShapes(config), shapes, source)
  }
  const device = resolveDevice(options.device ?? 'auto')
  if (options.seed !== undefined) manualSeed(options.seed)
  const { value: model, pending } = withDeferredInit(() => build(config, device))
  try {
    const loadingInfo = loadCheckpointInto(model, pending, dir, basePrefix, family.baseModules)
    // transformers' from_pretrained returns the model in eval mode (dropout off); training sets train() itself.
    model.eval()
    return { model, config, loadingInfo }
  } catch (err) {
    model.dispose()
    throw err
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
