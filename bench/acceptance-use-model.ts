// Acceptance check for "use the model" (issue 14) on a trained classifier
// and the rotten tomatoes test split (1,066 sentences):
//   1. pipeline('text-classification') vs the Trainer's predict: same argmax
//      on every sentence, logits to 1e-4 (relative to the largest |logit|);
//   2. the ONNX export (onnx/model.onnx) in onnxruntime-node vs both;
//   3. transformers.js's pipeline on the exported folder vs bertkit's
//      pipeline (labels and scores), and the int8 variant's agreement.
// Needs `npm run setup:reference` (onnxruntime-node, @huggingface/transformers).
//
//   node dist/bench/acceptance-use-model.js MODEL_DIR DATA_DIR [OUT_DIR]
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments,
  exportOnnx, loadRottenTomatoesRaw, pipeline, argmaxRows,
} from '../lib/index.js'

function compare(a: ArrayLike<number>, b: ArrayLike<number>, k: number) {
  let maxRef = 0, maxErr = 0, argmaxDiff = 0
  for (let i = 0; i < b.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(b[i]))
    maxErr = Math.max(maxErr, Math.abs(a[i] - b[i]))
  }
  const ia = argmaxRows(Float32Array.from(a), k), ib = argmaxRows(Float32Array.from(b), k)
  for (let i = 0; i < ia.length; i++) if (ia[i] !== ib[i]) argmaxDiff++
  return { rows: ia.length, argmaxDisagreements: argmaxDiff, maxAbsError: maxErr, relativeError: maxErr / maxRef }
}

async function main(): Promise<void> {
  const [modelDir, dataDir, outArg] = process.argv.slice(2)
  if (!modelDir || !dataDir) throw new Error('usage: node dist/bench/acceptance-use-model.js MODEL_DIR DATA_DIR [OUT_DIR]')
  const test = loadRottenTomatoesRaw(dataDir).test
  const texts = test.column<string>('text')
  const tokenizer = await AutoTokenizer.fromPretrained(modelDir)
  const model = await AutoModelForSequenceClassification.fromPretrained(modelDir, { device: 'cpu' })
  const k = model.config.num_labels
  const tokenized = test.map((b) => tokenizer(b.text as string[], { truncation: true }), { batched: true })
  const trainer = new Trainer({ model, args: new TrainingArguments(join(tmpdir(), 'bertkit-acceptance'), { perDeviceEvalBatchSize: 16, disableTqdm: true, device: 'cpu' }), dataCollator: DataCollatorWithPadding({ tokenizer }) })
  let t0 = Date.now()
  const predicted = (await trainer.predict(tokenized)).predictions
  const trainerSeconds = (Date.now() - t0) / 1000
  trainer.dispose()

  const classifier = await pipeline('text-classification', modelDir, { device: 'cpu', truncation: true, batchSize: 16 })
  t0 = Date.now()
  const pipeLogits = Float32Array.from(classifier.logits(texts).flatMap((r) => Array.from(r)))
  const pipelineSeconds = (Date.now() - t0) / 1000

  const out = outArg ? resolve(outArg) : mkdtempSync(join(tmpdir(), 'bertkit-acceptance-onnx-'))
  await exportOnnx(modelDir, out, { quantize: true })
  const req = createRequire(join(__dirname, '..', '..', 'test', 'reference', 'node', 'package.json'))
  const ort = req('onnxruntime-node') as { InferenceSession: { create(p: string): Promise<{ inputNames: string[]; run(f: object): Promise<Record<string, { data: Float32Array }>> }> }; Tensor: new (t: string, d: BigInt64Array, dims: number[]) => unknown }
  const runOnnx = async (path: string) => {
    const session = await ort.InferenceSession.create(path)
    const logits: number[] = []
    for (let i = 0; i < texts.length; i += 16) {
      const enc = tokenizer(texts.slice(i, i + 16), { truncation: true, padding: true }) as unknown as Record<string, number[][]>
      const names: Record<string, string> = { input_ids: 'inputIds', attention_mask: 'attentionMask', token_type_ids: 'tokenTypeIds' }
      const feeds: Record<string, unknown> = {}
      for (const n of session.inputNames) {
        const rows = enc[names[n]]
        feeds[n] = new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0].length])
      }
      logits.push(...(await session.run(feeds)).logits.data)
    }
    return Float32Array.from(logits)
  }
  t0 = Date.now()
  const onnxLogits = await runOnnx(join(out, 'onnx', 'model.onnx'))
  const onnxSeconds = (Date.now() - t0) / 1000
  const quantizedLogits = await runOnnx(join(out, 'onnx', 'model_quantized.onnx'))

  const tjs = await import(pathToFileURL(req.resolve('@huggingface/transformers')).href) as {
    env: { allowRemoteModels: boolean; localModelPath: string }
    pipeline(task: string, model: string, o: object): Promise<(t: string[], o?: object) => Promise<Array<{ label: string; score: number }>>>
  }
  tjs.env.allowRemoteModels = false
  tjs.env.localModelPath = resolve(out, '..') + '/'
  const name = resolve(out).split('/').pop()!
  const tjsPipe = await tjs.pipeline('text-classification', name, { dtype: 'fp32' })
  const theirs = await tjsPipe(texts)
  const ours = await classifier(texts) as Array<{ label: string; score: number }>
  let labelDiff = 0, scoreDiff = 0
  for (let i = 0; i < ours.length; i++) {
    if (ours[i].label !== theirs[i].label) labelDiff++
    scoreDiff = Math.max(scoreDiff, Math.abs(ours[i].score - theirs[i].score))
  }
  classifier.dispose()
  model.dispose()

  const report = {
    model: resolve(modelDir), sentences: texts.length, numLabels: k, id2label: model.config.id2label,
    pipelineVsTrainerPredict: compare(pipeLogits, predicted, k),
    onnxVsTrainerPredict: compare(onnxLogits, predicted, k),
    onnxVsPipeline: compare(onnxLogits, pipeLogits, k),
    int8VsPipeline: compare(quantizedLogits, pipeLogits, k),
    transformersJsPipeline: { labelDisagreements: labelDiff, maxScoreDifference: scoreDiff },
    seconds: { trainerPredict: trainerSeconds, pipeline: pipelineSeconds, onnxruntimeNode: onnxSeconds },
    exported: out,
  }
  console.log(JSON.stringify(report, null, 2))
  if (outArg) writeFileSync(join(out, '..', 'acceptance-use-model.json'), JSON.stringify(report, null, 2) + '\n')
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
