// sentence-transformers' Transformer module: a Hugging Face encoder (the
// base model of a registered family, lib/models/registry.ts) and its tokenizer; gives the last hidden
// state as token embeddings. Reads both configurations sentence-transformers
// writes: sentence_bert_config.json with max_seq_length / do_lower_case
// (v2–v5), or none there and model_max_length in tokenizer_config.json (v6);
// writes the former, which every version reads.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Module } from '../../nn/module.js'
import { tensor, type Tensor } from '../../tensor/tensor.js'
import { unpackRows } from '../../tensor/packing.js'
import type { DeviceRequest } from '../../tensor/device.js'
import { familyOfModel, modelFamilies, modelFamily, type ModelFamily } from '../../models/families.js'
import type { AnyModel, EncoderModel } from '../../models/registry.js'
import { AutoTokenizer } from '../../tokenization/tokenization_auto.js'
import type { PreTrainedTokenizerFast, BatchEncoding } from '../../tokenization/tokenization_utils_fast.js'
import { atomicWriteFile } from '../../hub/safetensors.js'
import { makeDirs } from '../../hub/dirs.js'
import { readJson } from './io.js'

export type AutoModel = AnyModel

// sentence-transformers' legacy names for the module's config file, tried in this order.
const CONFIG_FILES = ['sentence_bert_config.json', 'sentence_roberta_config.json', 'sentence_distilbert_config.json',
  'sentence_camembert_config.json', 'sentence_albert_config.json', 'sentence_xlm-roberta_config.json', 'sentence_xlnet_config.json']

/** What the encoder takes: token ids, mask (int32 [batch, seq]) and, for models that use them, token types. */
export interface TransformerFeatures {
  inputIds: Tensor
  attentionMask: Tensor
  tokenTypeIds: Tensor | null
}

export class Transformer extends Module {
  readonly auto_model: AutoModel
  maxSeqLength: number
  doLowerCase: boolean

  constructor(autoModel: AutoModel, readonly tokenizer: PreTrainedTokenizerFast, options: { maxSeqLength: number; doLowerCase?: boolean }) {
    super()
    this.auto_model = this.registerModule('auto_model', autoModel)
    this.maxSeqLength = options.maxSeqLength
    this.doLowerCase = options.doLowerCase ?? false
  }

  /** The model type (config.json's model_type) this module wraps. */
  get modelType(): string {
    return modelTypeOf(this.auto_model)
  }

  get hiddenSize(): number {
    const config = this.auto_model.config as { hidden_size?: number; dim?: number }
    return config.hidden_size ?? config.dim!
  }

  static async load(dir: string, options: { device?: DeviceRequest } = {}): Promise<Transformer> {
    const configPath = join(dir, 'config.json')
    if (!existsSync(configPath)) throw new Error(`${dir}: no config.json for the Transformer module`)
    const modelType = (readJson(configPath) as { model_type?: unknown }).model_type
    const family = modelFamily(modelType)
    if (!family) {
      throw new Error(`${configPath}: model_type ${JSON.stringify(modelType)} is not supported as a sentence-transformers body; supported: ${modelFamilies().map((f) => f.modelType).join(', ')}`)
    }
    const settings = readTransformerSettings(dir)
    const autoModel = await family.baseModel.fromPretrained(dir, { device: options.device }) as AutoModel
    const tokenizer = AutoTokenizer.fromDirectory(dir)
    const maxPositions = (autoModel.config as { max_position_embeddings?: number }).max_position_embeddings
    let maxSeqLength = settings.maxSeqLength
    if (maxSeqLength === null) {
      // sentence-transformers: the tokenizer's model_max_length, capped by the model's positions.
      const fromTokenizer = Number.isFinite(tokenizer.modelMaxLength) ? tokenizer.modelMaxLength : Infinity
      maxSeqLength = Math.min(fromTokenizer, maxPositions ?? Infinity)
      if (!Number.isFinite(maxSeqLength)) {
        throw new Error(`${dir}: no max_seq_length in sentence_bert_config.json, no model_max_length in tokenizer_config.json and no max_position_embeddings in config.json; cannot tell how long an input may be`)
      }
    }
    if (!Number.isInteger(maxSeqLength) || maxSeqLength < 2) throw new Error(`${dir}: max_seq_length ${maxSeqLength} must be an integer >= 2`)
    return new Transformer(autoModel, tokenizer, { maxSeqLength, doLowerCase: settings.doLowerCase })
  }

  /** Tokenizes a batch: padded to its longest row, truncated to maxSeqLength (as sentence-transformers). */
  tokenize(texts: readonly string[]): BatchEncoding {
    const input = this.doLowerCase ? texts.map((t) => t.toLowerCase()) : [...texts]
    return this.tokenizer(input, { padding: true, truncation: 'longest_first', maxLength: this.maxSeqLength }) as BatchEncoding
  }

  /** The tokenized batch as device tensors (the caller disposes them). */
  features(texts: readonly string[]): TransformerFeatures {
    const enc = this.tokenize(texts)
    const batch = enc.inputIds.length
    const seq = enc.inputIds[0]?.length ?? 0
    const device = this.auto_model.parameters()[0].device
    const make = (rows: number[][]) => tensor(Int32Array.from(rows.flat()), { shape: [batch, seq], dtype: 'int32', device })
    const usesTypes = familyOf(this.auto_model).tokenTypes
    return { inputIds: make(enc.inputIds), attentionMask: make(enc.attentionMask), tokenTypeIds: usesTypes ? make(enc.tokenTypeIds) : null }
  }

  /**
   * Token embeddings [batch, seq, hidden]: the encoder's last hidden state.
   * Where unpadding is on (the CPU by default), the encoder runs on the real
   * tokens only and its output is laid back out padded (zeros at the
   * padding, which every pooling mode leaves out through the mask).
   */
  forward(features: TransformerFeatures): Tensor {
    // A model without token types is given none (features.tokenTypeIds is null then); a pooler's output is not needed.
    const { lastHiddenState, packed } = (this.auto_model as EncoderModel).forward(features, { skipPooler: true, unpad: this.unpadsThisStep() })
    if (!packed) return lastHiddenState
    try {
      return unpackRows(lastHiddenState, packed)
    } finally {
      packed.dispose()
    }
  }

  /** config.json + model.safetensors of the encoder, its tokenizer, and sentence_bert_config.json. */
  save(dir: string): void {
    makeDirs(dir, 'Transformer module directory')
    this.auto_model.savePretrained(dir)
    this.tokenizer.savePretrained(dir)
    atomicWriteFile(join(dir, 'sentence_bert_config.json'), JSON.stringify({ max_seq_length: this.maxSeqLength, do_lower_case: this.doLowerCase }, null, 2) + '\n')
  }
}

function familyOf(m: AutoModel): ModelFamily {
  const family = familyOfModel(m)
  if (!family) throw new Error(`sentence-transformers: ${m.constructor.name} is not the base model of a registered family`)
  return family
}

function modelTypeOf(m: AutoModel): string {
  return familyOf(m).modelType
}

/** max_seq_length (null when the file sets none) and do_lower_case from the module's config file. */
export function readTransformerSettings(dir: string): { maxSeqLength: number | null; doLowerCase: boolean } {
  for (const name of CONFIG_FILES) {
    const path = join(dir, name)
    if (!existsSync(path)) continue
    const config = readJson(path) as Record<string, unknown>
    const max = config.max_seq_length
    if (max !== undefined && max !== null && (typeof max !== 'number' || !Number.isInteger(max) || max < 2)) {
      throw new Error(`${path}: max_seq_length must be an integer >= 2, got ${JSON.stringify(max)}`)
    }
    const lower = config.do_lower_case
    if (lower !== undefined && typeof lower !== 'boolean') throw new Error(`${path}: do_lower_case must be true or false, got ${JSON.stringify(lower)}`)
    return { maxSeqLength: (max as number | undefined) ?? null, doLowerCase: lower ?? false }
  }
  return { maxSeqLength: null, doLowerCase: false }
}
