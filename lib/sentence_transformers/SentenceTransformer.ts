// SentenceTransformer: the modules of modules.json in sequence — a
// Transformer, a Pooling, optionally Dense and Normalize — as
// sentence-transformers loads, runs and saves them. encode() batches texts
// longest first, as sentence-transformers does, and returns embeddings in
// input order.
import { existsSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Module } from '../nn/module.js'
import { tidy } from '../tensor/scope.js'
import { noGrad } from '../tensor/autograd.js'
import type { Tensor } from '../tensor/tensor.js'
import { resolveDevice, type DeviceRequest } from '../tensor/device.js'
import { snapshotDownload, type DownloadOptions } from '../hub/hub.js'
import { atomicWriteFile } from '../hub/safetensors.js'
import { makeDirs } from '../hub/dirs.js'
import { CountProgress as Progress } from '../train/count_progress.js'
import { Transformer, type TransformerFeatures } from './models/Transformer.js'
import { Pooling } from './models/Pooling.js'
import { Dense } from './models/Dense.js'
import { Normalize } from './models/Normalize.js'
import { readJson } from './models/io.js'

export type SentenceTransformerModule = Transformer | Pooling | Dense | Normalize

/** Embeddings, one row per text, row-major float32. */
export interface Embeddings {
  rows: number
  cols: number
  data: Float32Array
}

export interface EncodeOptions {
  /** Texts per forward pass. Default 32. */
  batchSize?: number
  /** Scale each embedding to unit length (on top of any Normalize module). Default false. */
  normalizeEmbeddings?: boolean
  showProgressBar?: boolean
  /** The progress bar's label. Default "encode". */
  progressLabel?: string
}

export interface SentenceTransformerOptions extends DownloadOptions {
  revision?: string
  device?: DeviceRequest
}

// modules.json names each module by its Python class; the last name is what counts.
const MODULE_CLASSES = ['Transformer', 'Pooling', 'Dense', 'Normalize'] as const

function moduleClass(type: unknown, where: string): typeof MODULE_CLASSES[number] {
  const name = typeof type === 'string' ? type.slice(type.lastIndexOf('.') + 1) : ''
  if (typeof type !== 'string' || !type.startsWith('sentence_transformers.') || !(MODULE_CLASSES as readonly string[]).includes(name)) {
    throw new Error(`${where}: module type ${JSON.stringify(type)} is not supported; bertkit reads sentence_transformers' ${MODULE_CLASSES.join(', ')}`)
  }
  return name as typeof MODULE_CLASSES[number]
}

export class SentenceTransformer extends Module {
  readonly modules: SentenceTransformerModule[]

  constructor(modules: SentenceTransformerModule[]) {
    super()
    if (!(modules[0] instanceof Transformer)) throw new Error('SentenceTransformer: the first module must be a Transformer')
    if (!modules.some((m) => m instanceof Pooling)) throw new Error('SentenceTransformer: a Pooling module is required')
    this.modules = modules
    modules.forEach((m, i) => this.registerModule(String(i), m))
  }

  get transformer(): Transformer {
    return this.modules[0] as Transformer
  }

  get tokenizer() {
    return this.transformer.tokenizer
  }

  get maxSeqLength(): number {
    return this.transformer.maxSeqLength
  }

  set maxSeqLength(value: number) {
    if (!Number.isInteger(value) || value < 2) throw new RangeError(`maxSeqLength must be an integer >= 2, got ${value}`)
    this.transformer.maxSeqLength = value
  }

  /** The width of the embeddings encode() returns. */
  getSentenceEmbeddingDimension(): number {
    let dim = this.transformer.hiddenSize
    for (const m of this.modules) {
      if (m instanceof Pooling) dim = m.outputDimension
      if (m instanceof Dense) dim = m.outFeatures
    }
    return dim
  }

  /**
   * A sentence-transformers folder (modules.json) or Hub id. A plain
   * transformers model without modules.json gets mean pooling, as
   * sentence-transformers does (with the same warning).
   */
  static async fromPretrained(idOrDir: string, options: SentenceTransformerOptions = {}): Promise<SentenceTransformer> {
    const dir = await resolveSentenceTransformerDir(idOrDir, options)
    const device = resolveDevice(options.device ?? 'auto')
    const modulesPath = join(dir, 'modules.json')
    if (!existsSync(modulesPath)) {
      process.stderr.write(`bertkit: no sentence-transformers model found at ${idOrDir} (no modules.json); creating one with mean pooling\n`)
      const t = await Transformer.load(dir, { device })
      return new SentenceTransformer([t, new Pooling(t.hiddenSize, 'mean')])
    }
    const spec = readJson(modulesPath)
    if (!Array.isArray(spec) || spec.length === 0) throw new Error(`${modulesPath}: expected a non-empty list of modules`)
    const modules: SentenceTransformerModule[] = []
    try {
      for (const [i, entry] of spec.entries()) {
        const where = `${modulesPath} entry ${i}`
        if (!entry || typeof entry !== 'object') throw new Error(`${where}: expected an object with "type" and "path"`)
        const { type, path } = entry as { type?: unknown; path?: unknown }
        if (typeof path !== 'string' || path.includes('..')) throw new Error(`${where}: "path" must be a folder inside the model, got ${JSON.stringify(path)}`)
        const moduleDir = join(dir, path)
        const kind = moduleClass(type, where)
        if (kind === 'Transformer') modules.push(await Transformer.load(moduleDir, { device }))
        else if (kind === 'Pooling') modules.push(Pooling.load(moduleDir))
        else if (kind === 'Dense') modules.push(Dense.load(moduleDir, { device }))
        else modules.push(new Normalize())
      }
      return new SentenceTransformer(modules)
    } catch (err) {
      for (const m of modules) m.dispose()
      throw err
    }
  }

  /** The tokenized batch as tensors (the caller disposes them). */
  tokenize(texts: readonly string[]): TransformerFeatures {
    return this.transformer.features(texts)
  }

  /** Sentence embeddings [batch, dim] of a tokenized batch, with autograd (training uses this). */
  forward(features: TransformerFeatures): Tensor {
    let x: Tensor = this.transformer.forward(features)
    for (const m of this.modules.slice(1)) {
      if (m instanceof Pooling) x = m.forward(x, features.attentionMask)
      else if (m instanceof Dense || m instanceof Normalize) x = m.forward(x)
      else throw new Error('SentenceTransformer: a Transformer may only come first')
    }
    return x
  }

  /** Embeddings of texts, in input order; no gradients, eval mode (restored afterwards). */
  encode(sentences: readonly string[], options: EncodeOptions = {}): Embeddings {
    if (!Array.isArray(sentences)) throw new TypeError('encode: sentences must be an array of strings')
    sentences.forEach((s, i) => {
      if (typeof s !== 'string') throw new TypeError(`encode: sentences[${i}] is ${s === null ? 'null' : typeof s}, not a string`)
    })
    const batchSize = options.batchSize ?? 32
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`encode: batchSize must be a positive integer, got ${batchSize}`)
    const dim = this.getSentenceEmbeddingDimension()
    const out: Embeddings = { rows: sentences.length, cols: dim, data: new Float32Array(sentences.length * dim) }
    // Longest first (by characters, as sentence-transformers estimates length), so batches pad little.
    const order = sentences.map((_, i) => i).sort((a, b) => sentences[b].length - sentences[a].length)
    const wasTraining = this.training
    this.eval()
    const progress = options.showProgressBar ? new Progress(Math.ceil(sentences.length / batchSize), true, options.progressLabel ?? 'encode') : null
    try {
      for (let start = 0; start < order.length; start += batchSize) {
        const idx = order.slice(start, start + batchSize)
        const values = noGrad(() => tidy(() => {
          const features = this.tokenize(idx.map((i) => sentences[i]))
          let emb = this.forward(features)
          if (options.normalizeEmbeddings) emb = this.normalizeRows(emb)
          return emb.toFloat32Array()
        }))
        idx.forEach((i, r) => out.data.set(values.subarray(r * dim, (r + 1) * dim), i * dim))
        progress?.update(start / batchSize + 1, {})
      }
    } finally {
      progress?.stop()
      this.train(wasTraining)
    }
    return out
  }

  private normalizeRows(x: Tensor): Tensor {
    return new Normalize().forward(x)
  }

  /** Writes the folder sentence-transformers reads: modules.json, each module's files, config_sentence_transformers.json. */
  save(dir: string): void {
    makeDirs(dir, 'model directory')
    const entries = this.modules.map((m, i) => {
      const kind = m instanceof Transformer ? 'Transformer' : m instanceof Pooling ? 'Pooling' : m instanceof Dense ? 'Dense' : 'Normalize'
      const path = i === 0 ? '' : `${i}_${kind}`
      m.save(path ? join(dir, path) : dir)
      return { idx: i, name: String(i), path, type: `sentence_transformers.models.${kind}` }
    })
    atomicWriteFile(join(dir, 'modules.json'), JSON.stringify(entries, null, 2) + '\n')
    const config = { __version__: { bertkit: bertkitVersion() }, prompts: {}, default_prompt_name: null, similarity_fn_name: 'cosine' }
    atomicWriteFile(join(dir, 'config_sentence_transformers.json'), JSON.stringify(config, null, 2) + '\n')
  }

  savePretrained(dir: string): void {
    this.save(dir)
  }
}

function bertkitVersion(): string {
  try {
    return (readJson(join(__dirname, '..', '..', '..', 'package.json')) as { version?: string }).version ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

/** A local folder as is, or a Hub snapshot of the files a sentence-transformers model needs. */
export async function resolveSentenceTransformerDir(idOrDir: string, options: SentenceTransformerOptions = {}): Promise<string> {
  if (typeof idOrDir !== 'string' || idOrDir === '') throw new TypeError(`SentenceTransformer: expected a model folder or Hub id, got ${JSON.stringify(idOrDir)}`)
  if (existsSync(idOrDir)) {
    if (!statSync(idOrDir).isDirectory()) throw new Error(`${idOrDir}: not a folder`)
    return resolve(idOrDir)
  }
  if (idOrDir.startsWith('.') || idOrDir.startsWith('/') || idOrDir.split('/').length > 2) throw new Error(`${idOrDir}: no such folder`)
  return snapshotDownload({ ...options, repoId: idOrDir, allowPatterns: ['*.json', '*.safetensors', '*.txt', '*.model'] })
}
