// sentence-transformers' Pooling module: token embeddings → one vector per
// text, by one or more modes concatenated in sentence-transformers' order.
// Reads 1_Pooling/config.json in both spellings (pooling_mode_*_tokens
// booleans of v2–v5, or pooling_mode of v6) and writes the booleans, which
// every version reads.
import { join } from 'node:path'
import { Module } from '../../nn/module.js'
import type { Tensor } from '../../tensor/tensor.js'
import { atomicWriteFile } from '../../hub/safetensors.js'
import { makeDirs } from '../../hub/dirs.js'
import { pool, POOLING_MODES, type PoolingMode } from '../functional.js'
import { readJsonObject } from './io.js'

// The legacy boolean keys, in the order the modes are concatenated.
const LEGACY_KEYS: ReadonlyArray<[string, PoolingMode]> = [
  ['pooling_mode_cls_token', 'cls'],
  ['pooling_mode_max_tokens', 'max'],
  ['pooling_mode_mean_tokens', 'mean'],
  ['pooling_mode_mean_sqrt_len_tokens', 'mean_sqrt_len_tokens'],
  ['pooling_mode_weightedmean_tokens', 'weightedmean'],
  ['pooling_mode_lasttoken', 'lasttoken'],
]

export class Pooling extends Module {
  readonly modes: readonly PoolingMode[]

  constructor(readonly embeddingDimension: number, modes: PoolingMode | readonly PoolingMode[] = 'mean') {
    super()
    this.modes = typeof modes === 'string' ? [modes] : [...modes]
    if (this.modes.length === 0) throw new Error('Pooling: no pooling mode given')
    for (const m of this.modes) {
      if (!POOLING_MODES.includes(m)) throw new Error(`Pooling: invalid pooling mode ${JSON.stringify(m)}; valid: ${POOLING_MODES.join(', ')}`)
    }
    if (!Number.isInteger(embeddingDimension) || embeddingDimension < 1) throw new RangeError(`Pooling: embedding dimension must be a positive integer, got ${embeddingDimension}`)
  }

  get outputDimension(): number {
    return this.modes.length * this.embeddingDimension
  }

  static load(dir: string): Pooling {
    const path = join(dir, 'config.json')
    const config = readJsonObject(path)
    const dim = config.embedding_dimension ?? config.word_embedding_dimension
    if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < 1) {
      throw new Error(`${path}: embedding_dimension (or word_embedding_dimension) must be a positive integer, got ${JSON.stringify(dim)}`)
    }
    let modes: PoolingMode[]
    const given = config.pooling_mode
    if (given !== undefined) {
      const list = typeof given === 'string' ? [given] : given
      if (!Array.isArray(list) || list.length === 0 || !list.every((m) => POOLING_MODES.includes(m as PoolingMode))) {
        throw new Error(`${path}: pooling_mode ${JSON.stringify(given)} is not a pooling mode or a list of them (valid: ${POOLING_MODES.join(', ')})`)
      }
      modes = list as PoolingMode[]
    } else {
      modes = LEGACY_KEYS.filter(([key]) => config[key] === true).map(([, mode]) => mode)
      if (modes.length === 0) modes = ['mean']
    }
    if (config.include_prompt === false) {
      throw new Error(`${path}: include_prompt false (pooling without the prompt's tokens) is not supported; bertkit encodes without prompts`)
    }
    return new Pooling(dim, modes)
  }

  forward(tokenEmbeddings: Tensor, attentionMask: Tensor): Tensor {
    const dim = tokenEmbeddings.shape[tokenEmbeddings.ndim - 1]
    if (dim !== this.embeddingDimension) {
      throw new Error(`Pooling: token embeddings have ${dim} features, the module was configured for ${this.embeddingDimension}`)
    }
    return pool(tokenEmbeddings, attentionMask, this.modes)
  }

  save(dir: string): void {
    makeDirs(dir, 'Pooling module directory')
    const config: Record<string, unknown> = { word_embedding_dimension: this.embeddingDimension }
    for (const [key, mode] of LEGACY_KEYS) config[key] = this.modes.includes(mode)
    // The booleans cannot say an order other than sentence-transformers' own: keep a list then.
    const ordered = LEGACY_KEYS.map(([, m]) => m).filter((m) => this.modes.includes(m))
    if (ordered.join() !== this.modes.join()) {
      for (const [key] of LEGACY_KEYS) delete config[key]
      config.embedding_dimension = this.embeddingDimension
      delete config.word_embedding_dimension
      config.pooling_mode = [...this.modes]
    }
    atomicWriteFile(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n')
  }
}
