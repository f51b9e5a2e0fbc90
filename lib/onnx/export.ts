// exportOnnx: a trained bertkit classifier as an ONNX model in the folder
// layout transformers.js reads (config.json, tokenizer files,
// onnx/model.onnx, optionally onnx/model_quantized.onnx), with optimum's
// input names (input_ids, attention_mask, token_type_ids where the family has
// them), dynamic batch_size / sequence_length axes and one output, logits.
// A LoRA model is exported merged (W + scaling·B·A), without touching the
// caller's model.
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { GraphBuilder, encodeModel } from './graph.js'
import { buildGraph, isOnnxFamily, onnxInputNames, OnnxExportError, type OnnxFamily, type WeightMap } from './modeling.js'
import { quantizeGraphWeights } from './quantize.js'
import { atomicWriteFile } from '../hub/safetensors.js'
import { makeDirs } from '../hub/dirs.js'
import { Module } from '../nn/module.js'
import { modelFamilies } from '../models/families.js'
import { AutoModelForSequenceClassification, type AnyModelForSequenceClassification } from '../models/auto.js'
import { AutoPeftModelForSequenceClassification, PeftModel, isAdapterDir } from '../peft/index.js'
import { AutoTokenizer, type PreTrainedTokenizerFast } from '../tokenization/index.js'
import { noGrad } from '../tensor/autograd.js'
import { adapterLabelOptions } from '../pipelines/text_classification.js'

export { OnnxExportError } from './modeling.js'

/** The opsets the exporter writes (14 is the floor the issue sets; 17 adds LayerNormalization). */
export const ONNX_OPSETS = { min: 14, max: 21, default: 17 } as const

export interface OnnxExportOptions {
  /** ONNX opset, 14 to 21 (default 17: LayerNormalization as one op). */
  opset?: number
  /** Also write onnx/model_quantized.onnx: int8 weights (per output channel / per embedding row) dequantized in the graph. */
  quantize?: boolean
  /** The tokenizer to save beside the model (default: the one in the model's folder). */
  tokenizer?: PreTrainedTokenizerFast | string
}

export interface OnnxExportResult {
  /** The folder written. */
  dir: string
  /** Every file written, full paths. */
  files: string[]
  family: OnnxFamily
  opset: number
  inputNames: string[]
  outputNames: string[]
}

/** What the graph builders take: the plain model's family, config and float32 weights by transformers name. */
export interface ExportableModel {
  family: OnnxFamily
  config: AnyModelForSequenceClassification['config']
  architecture: string
  weights: WeightMap
}

/** The model_type and class name of a registered family's sequence classifier that has an ONNX graph. */
function familyOf(model: Module): { family: OnnxFamily; architecture: string } {
  for (const { modelType, forSequenceClassification } of modelFamilies()) {
    if (model instanceof forSequenceClassification && isOnnxFamily(modelType)) return { family: modelType, architecture: forSequenceClassification.name }
  }
  const known = modelFamilies().filter((f) => isOnnxFamily(f.modelType)).map((f) => f.forSequenceClassification.name)
  throw new OnnxExportError(`ONNX export: ${model?.constructor?.name ?? typeof model} is not a model the exporter knows (${known.join(', ')}, or a PeftModel of one)`)
}

/**
 * The weights of the plain model a (possibly LoRA) classifier computes: for a
 * PeftModel, base_layer weights plus scaling·B·A where the adapter is not
 * merged, and the trained copies of modules_to_save, under the plain names.
 */
export function exportableModel(model: Module): ExportableModel {
  let plain: Module = model
  const deltas = new Map<string, Float32Array>()
  if (model instanceof PeftModel) {
    plain = model.base_model.model as unknown as Module
    for (const [path, layer] of model.loraModules) {
      if (layer.merged) continue
      const delta = noGrad(() => layer.deltaWeight())
      try {
        deltas.set(`${path}.weight`, delta.toFloat32Array())
      } finally {
        delta.dispose()
      }
    }
  }
  const { family, architecture } = familyOf(plain)
  const weights: WeightMap = new Map()
  for (const [name, p] of plain.namedParameters()) {
    if (/\.lora_[AB]\.default\.weight$/.test(name) || name.includes('.original_module.')) continue
    const plainName = name.replace('.modules_to_save.default.', '.').replace('.base_layer.', '.')
    const data = p.toFloat32Array()
    const delta = deltas.get(plainName)
    if (delta) for (let i = 0; i < data.length; i++) data[i] += delta[i]
    weights.set(plainName, { data, shape: [...p.shape] })
  }
  return { family, config: (plain as unknown as AnyModelForSequenceClassification).config, architecture, weights }
}

function checkOpset(opset: unknown): number {
  if (typeof opset !== 'number' || !Number.isInteger(opset) || opset < ONNX_OPSETS.min || opset > ONNX_OPSETS.max) {
    throw new OnnxExportError(`ONNX export: opset ${JSON.stringify(opset)} is not supported (use an integer from ${ONNX_OPSETS.min} to ${ONNX_OPSETS.max}; default ${ONNX_OPSETS.default})`)
  }
  return opset
}

function producerVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string }).version
  } catch {
    return 'unknown'
  }
}

/** The encoded .onnx bytes of a model (and, with quantize, of its int8-weight variant). */
export function onnxModelBytes(model: Module | ExportableModel, options: { opset?: number; quantize?: boolean } = {}): {
  model: Uint8Array; quantized: Uint8Array | null; family: OnnxFamily; inputNames: string[]
} {
  const opset = checkOpset(options.opset ?? ONNX_OPSETS.default)
  const exportable = model instanceof Module ? exportableModel(model) : model
  if (!exportable || !isOnnxFamily(exportable.family) || !(exportable.weights instanceof Map)) {
    throw new OnnxExportError(`ONNX export: ${(model as object)?.constructor?.name ?? typeof model} is not a model the exporter knows (a bertkit sequence classifier, a PeftModel of one, or exportableModel()'s result)`)
  }
  const build = (quantize: boolean) => {
    const g = new GraphBuilder(opset)
    const layers = buildGraph(exportable.family, g, exportable.weights, exportable.config)
    // BERT's pooler stays registered (and unread) when classifier_pooling is not "pooler".
    const unused = layers.unusedWeights(/^bert\.pooler\./)
    if (unused.length) throw new OnnxExportError(`ONNX export: the graph leaves parameters unread (${unused.slice(0, 5).join(', ')}${unused.length > 5 ? ', …' : ''}); the exporter does not know this model's layout`)
    const proto = g.build({
      graphName: exportable.architecture,
      producerVersion: producerVersion(),
      docString: `${exportable.architecture} exported by bertkit`,
    })
    if (quantize) quantizeGraphWeights(proto, opset)
    return encodeModel(proto, g.initializerBytes)
  }
  return {
    model: build(false),
    quantized: options.quantize ? build(true) : null,
    family: exportable.family,
    inputNames: onnxInputNames(exportable.family, exportable.config as { type_vocab_size?: number }),
  }
}

/** A model directory (or Hub id, or LoRA adapter directory), loaded for export. */
async function loadForExport(dir: string): Promise<Module> {
  return isAdapterDir(dir)
    ? AutoPeftModelForSequenceClassification.fromPretrained(dir, { ...adapterLabelOptions(dir), device: 'cpu' })
    : AutoModelForSequenceClassification.fromPretrained(dir, { device: 'cpu' })
}

/** The tokenizer to ship: the option's, else the model folder's (an adapter folder falls back to its base's). */
async function tokenizerFor(option: OnnxExportOptions['tokenizer'], modelDir: string | null): Promise<PreTrainedTokenizerFast> {
  if (option !== undefined && typeof option !== 'string') return option
  const dir = option ?? modelDir
  if (dir === null) {
    throw new OnnxExportError('ONNX export: no tokenizer: transformers.js needs tokenizer.json beside the model; pass { tokenizer } (a tokenizer or its folder) when exporting a model object')
  }
  try {
    return await AutoTokenizer.fromPretrained(dir)
  } catch (err) {
    if (option === undefined && modelDir !== null && isAdapterDir(modelDir)) {
      const base = JSON.parse(readFileSync(join(modelDir, 'adapter_config.json'), 'utf8')).base_model_name_or_path
      if (typeof base === 'string') return AutoTokenizer.fromPretrained(base)
    }
    throw new OnnxExportError(`ONNX export: ${dir} has no usable tokenizer (${(err as Error).message}); pass --tokenizer DIR / { tokenizer }`)
  }
}

/**
 * Writes `outDir` as transformers.js expects a model folder: config.json,
 * the tokenizer files, onnx/model.onnx (and onnx/model_quantized.onnx with
 * quantize). `model` is a loaded classifier (or PeftModel) or a folder / Hub id.
 */
export async function exportOnnx(model: Module | string, outDir: string, options: OnnxExportOptions = {}): Promise<OnnxExportResult> {
  if (typeof outDir !== 'string' || outDir === '') throw new TypeError(`exportOnnx: outDir must be a folder path, got ${JSON.stringify(outDir)}`)
  for (const key of Object.keys(options)) {
    if (!['opset', 'quantize', 'tokenizer'].includes(key)) throw new OnnxExportError(`exportOnnx: unknown option "${key}" (opset, quantize, tokenizer)`)
  }
  const opset = checkOpset(options.opset ?? ONNX_OPSETS.default)
  const modelDir = typeof model === 'string' ? model : null
  if (modelDir !== null && existsSync(modelDir) && resolve(modelDir) === resolve(outDir)) {
    throw new OnnxExportError(`exportOnnx: the output folder ${outDir} is the model folder; choose another`)
  }
  const tokenizer = await tokenizerFor(options.tokenizer, modelDir)
  const loaded = typeof model === 'string' ? await loadForExport(model) : model
  let exportable: ExportableModel
  try {
    exportable = exportableModel(loaded)
  } finally {
    if (typeof model === 'string') loaded.dispose()
  }
  const { model: bytes, quantized, family, inputNames } = onnxModelBytes(exportable, { opset, quantize: options.quantize })
  makeDirs(join(outDir, 'onnx'), 'ONNX output folder')
  const files: string[] = []
  const write = (path: string, data: string | Uint8Array) => {
    atomicWriteFile(path, data)
    files.push(path)
  }
  write(join(outDir, 'config.json'), JSON.stringify({ ...exportable.config.toJSON(), architectures: [exportable.architecture] }, null, 2) + '\n')
  files.push(...tokenizer.savePretrained(outDir))
  write(join(outDir, 'onnx', 'model.onnx'), bytes)
  if (quantized) write(join(outDir, 'onnx', 'model_quantized.onnx'), quantized)
  return { dir: outDir, files, family, opset, inputNames, outputNames: ['logits'] }
}
