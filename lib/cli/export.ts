// bertkit export onnx --model DIR --out DIR [--opset 17] [--quantize] [--tokenizer DIR]
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { intFlag, parseFlags } from './args.js'
import { ensureWritableDir } from '../hub/dirs.js'
import { exportOnnx, ONNX_OPSETS } from '../onnx/export.js'

export const EXPORT_HELP = `bertkit export onnx --model DIR|ID --out DIR [--opset N] [--quantize] [--tokenizer DIR]

  Writes DIR as transformers.js reads a model folder: config.json, the tokenizer
  files, onnx/model.onnx (inputs input_ids, attention_mask[, token_type_ids],
  dynamic batch_size / sequence_length, output logits) and, with --quantize,
  onnx/model_quantized.onnx (int8 weights). A LoRA adapter folder is merged into
  its base first.
  --opset N       ${ONNX_OPSETS.min}..${ONNX_OPSETS.max} (default ${ONNX_OPSETS.default})
  --tokenizer DIR where the tokenizer is, when the model folder has none`

const FLAGS = ['model', 'out', 'opset', 'quantize', 'tokenizer', 'help']

export async function exportCommand(argv: readonly string[]): Promise<void> {
  const [format, ...rest] = argv
  if (format === undefined || format === '--help' || format === '-h') {
    console.log(EXPORT_HELP)
    return
  }
  if (format !== 'onnx') throw new Error(`export: unknown format "${format}" (bertkit export onnx --model DIR --out DIR)`)
  const { flags, positional } = parseFlags([...rest])
  if (positional.length) throw new Error(`export onnx: unexpected argument "${positional[0]}" (flags start with --)`)
  if (flags.has('help')) {
    console.log(EXPORT_HELP)
    return
  }
  for (const k of flags.keys()) if (!FLAGS.includes(k)) throw new Error(`export onnx: unknown flag --${k} (${FLAGS.map((f) => `--${f}`).join(' ')})`)
  const value = (name: string): string | undefined => {
    const v = flags.get(name)
    if (v === true) throw new Error(`export onnx: --${name} needs a value`)
    return v
  }
  const model = value('model'), out = value('out')
  if (!model) throw new Error('export onnx: --model DIR is required')
  if (!out) throw new Error('export onnx: --out DIR is required')
  const opset = flags.has('opset') ? intFlag(flags.get('opset'), 'opset', 1) : undefined
  if (opset !== undefined && (opset < ONNX_OPSETS.min || opset > ONNX_OPSETS.max)) {
    throw new Error(`export onnx: --opset: opset ${opset} is not supported (use an integer from ${ONNX_OPSETS.min} to ${ONNX_OPSETS.max}; default ${ONNX_OPSETS.default})`)
  }
  const quantize = flags.get('quantize')
  if (quantize !== undefined && quantize !== true && quantize !== 'true' && quantize !== 'false') throw new Error(`export onnx: --quantize takes no value (or true / false), got "${quantize}"`)
  // Before the model is loaded or the graph built: an --out that cannot take the files fails now.
  // (Writing into the model folder itself is refused by exportOnnx, before anything is written.)
  if (!(existsSync(model) && resolve(model) === resolve(out))) ensureWritableDir(out, '--out')
  const result = await exportOnnx(model, out, {
    ...(opset !== undefined ? { opset } : {}),
    quantize: quantize === true || quantize === 'true',
    ...(value('tokenizer') !== undefined ? { tokenizer: value('tokenizer') } : {}),
  })
  console.log(JSON.stringify(result, null, 2))
}
