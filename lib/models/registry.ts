// The model-family registry: one entry per encoder family, registered by the
// family's own index.ts (listed once in ./families.ts). The Auto classes, peft,
// freezing, sentence-transformers and the ONNX exporter read families from
// here, so adding a family touches its folder and one line of families.ts.
import type { Module } from '../nn/module.js'
import type { Tensor } from '../tensor/tensor.js'
import type { PackedBatch } from '../tensor/packing.js'
import type { ConfigClass, FromPretrainedOptions, PreTrainedModel, PreTrainedModelClass, PretrainedConfig } from './modeling_utils.js'
import type { SequenceClassifierOutput } from './modeling_outputs.js'

/** The inputs every family's base model takes (a family may take more). */
export interface EncoderInputs {
  inputIds: Tensor
  attentionMask?: Tensor | null
  tokenTypeIds?: Tensor | null
  positionIds?: Tensor | null
}

/** A family's base model (transformers' AutoModel): the last hidden state of the encoder. */
export interface EncoderModel extends PreTrainedModel {
  forward(inputs: EncoderInputs, options?: { skipPooler?: boolean; unpad?: boolean }): { lastHiddenState: Tensor; packed: PackedBatch | null }
}

/** A family's *ForSequenceClassification model. */
export interface SequenceClassificationModel extends PreTrainedModel {
  readonly numLabels: number
  forward(inputs: EncoderInputs & { labels?: Tensor | null }): SequenceClassifierOutput
}

/**
 * A model class as the registry holds it. Its config type is left open (each
 * family's differs), and fromPretrained returns the family's class.
 */
export type RegisteredClass<M extends PreTrainedModel> = PreTrainedModelClass<M, any> & {
  fromPretrained(idOrDir: string, options?: FromPretrainedOptions): Promise<M>
}

export interface ModelFamily {
  /** config.json's model_type. */
  modelType: string
  /**
   * Other model_type values the family's classes load when called directly
   * (an xlm-roberta checkpoint into RobertaForSequenceClassification); peft
   * gives them the family's default targets. The Auto classes do not take them.
   */
  otherModelTypes?: readonly string[]
  configClass: ConfigClass<PretrainedConfig>
  /** The bare encoder (AutoModel, sentence-transformers' body). */
  baseModel: RegisteredClass<EncoderModel>
  /** AutoModelForSequenceClassification's class for this model_type. */
  forSequenceClassification: RegisteredClass<SequenceClassificationModel>
  /** peft's default target_modules (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
  loraTargetModules: readonly string[]
  /** Where the encoder layers sit in the base model: "encoder.layer" names layer i "encoder.layer.i". */
  layers: string
  /** The embedding block's module in the base model. */
  embeddings: string
  /** Whether the model reads token_type_ids (the tokenizer's are passed on). */
  tokenTypes: boolean
}

/**
 * The classes each family registers, by model_type; each family's index.ts
 * adds its own by declaration merging, so that the Auto classes' return
 * types name the concrete classes.
 */
export interface RegisteredFamilies {}

type Registered<K extends string> = { [T in keyof RegisteredFamilies]: RegisteredFamilies[T] extends Record<K, unknown> ? RegisteredFamilies[T][K] : never }[keyof RegisteredFamilies]

/** What AutoConfig can return. */
export type AnyConfig = Registered<'config'>
/** What AutoModelForSequenceClassification can return. */
export type AnyModelForSequenceClassification = Registered<'forSequenceClassification'>
/** What AutoModel can return. */
export type AnyModel = Registered<'model'>

const FAMILIES = new Map<string, ModelFamily>()

/** Adds a family; a second family with the same model_type is refused. */
export function registerModelFamily(family: ModelFamily): void {
  if (FAMILIES.has(family.modelType)) throw new Error(`registerModelFamily: model_type "${family.modelType}" is registered twice`)
  FAMILIES.set(family.modelType, Object.freeze({ ...family }))
}

/** Every registered family, in registration order. */
export function modelFamilies(): readonly ModelFamily[] {
  return [...FAMILIES.values()]
}

/** The family of a config.json model_type, or undefined. */
export function modelFamily(modelType: unknown): ModelFamily | undefined {
  return typeof modelType === 'string' ? FAMILIES.get(modelType) : undefined
}

/** The family whose base or classification model `model` is (by class), or undefined. */
export function familyOfModel(model: Module): ModelFamily | undefined {
  for (const family of FAMILIES.values()) {
    if (model instanceof family.baseModel || model instanceof family.forSequenceClassification) return family
  }
  return undefined
}
