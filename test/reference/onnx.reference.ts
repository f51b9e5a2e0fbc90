// Reference suite for the ONNX export (not part of `npm test`): it needs
// Python with onnx, onnxruntime, torch and transformers, and the JavaScript
// runtimes of test/reference/node (`npm run setup:reference`). For every
// family (the golden fixtures' odd configurations and the pipeline fixtures'
// models with tokenizers), BERT's pooling variants and a LoRA model:
//   - onnx.checker (full check) passes;
//   - onnxruntime (Python) and onnxruntime-node give bertkit's logits on
//     padded batches (1e-4 relative to the largest logit), and so does
//     transformers itself where the model is a transformers model;
//   - transformers.js loads each exported folder and its
//     pipeline('text-classification') returns bertkit's labels and scores.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  AutoModelForSequenceClassification, AutoTokenizer, LoraConfig, getPeftModel, exportOnnx, onnxModelBytes, pipeline, tensor, tidy, noGrad,
} from '../../lib/index.js'
import { closePerTensor } from '../helpers/golden.js'

const ROOT = resolve(__dirname, '..', '..', '..')
const FIXTURES = join(ROOT, 'test', 'fixtures')
const NODE_DIR = join(ROOT, 'test', 'reference', 'node')
const SCRIPT = join(ROOT, 'test', 'oracles', 'onnx_reference.py')

interface Batch { input_ids: number[][]; attention_mask: number[][]; token_type_ids?: number[][] }
interface Case { name: string; onnx: string; quantized?: string; model_dir?: string; inputs: Batch; bertkit: Float32Array; numLabels: number }

const PIPELINE_MODELS = ['bert_labels', 'bert_multi_label', 'bert_regression', 'bert_one_label', 'distilbert', 'roberta', 'deberta_v3']
const GOLDEN = ['bert/three_labels', 'bert/odd', 'bert/multi_label', 'bert/regression', 'roberta/base', 'roberta/odd', 'distilbert/base', 'distilbert/sinusoidal',
  'deberta_v2/v3', 'deberta_v2/unshared', 'deberta_v2/seq1']
const TEXTS = ['a great film .', 'the worst movie i have ever seen , dull and too long .', 'charming , funny and smart', 'not good , not bad', 'fine']
// transformers.js always truncates, and (4.3.2) cuts a too-long RoBERTa / DeBERTa row by dropping its final </s> / [SEP],
// where transformers keeps it; its comparisons use texts that fit the fixtures' model_max_length of 24.
const TJS_TEXTS = ['a great film .', 'the worst movie , dull and too long .', 'charming , funny and smart', 'not good , not bad', 'fine']

type Runnable = { forward(i: object): { logits: { toFloat32Array(): Float32Array } }; eval(): unknown; config: { num_labels: number } }

function logitsOf(model: Runnable, batch: Batch, inputNames: string[]): Float32Array {
  const b = batch.input_ids.length, s = batch.input_ids[0].length
  const ids = (x: number[][]) => tensor(Int32Array.from(x.flat()), { shape: [b, s], dtype: 'int32' })
  model.eval()
  return noGrad(() => tidy(() => model.forward({
    inputIds: ids(batch.input_ids), attentionMask: ids(batch.attention_mask),
    // The graph has token types only where optimum's does; elsewhere every token is type 0, as bertkit's default.
    tokenTypeIds: inputNames.includes('token_type_ids') && batch.token_type_ids ? ids(batch.token_type_ids) : null,
  }).logits.toFloat32Array()))
}

function nodeRequire(): NodeRequire {
  if (!existsSync(join(NODE_DIR, 'node_modules', 'onnxruntime-node')) || !existsSync(join(NODE_DIR, 'node_modules', '@huggingface', 'transformers'))) {
    throw new Error(`onnxruntime-node / @huggingface/transformers are not installed in ${NODE_DIR}: run \`npm run setup:reference\` first`)
  }
  return createRequire(join(NODE_DIR, 'package.json'))
}

t.test('ONNX exports against onnxruntime (Python and Node), transformers and transformers.js', async (t) => {
  const req = nodeRequire()
  const work = mkdtempSync(join(tmpdir(), 'bertkit-onnx-ref-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  const cases: Case[] = []

  // Pipeline fixtures: exported folders (tokenizer included), batches from the tokenizer with a pair and padding.
  for (const name of PIPELINE_MODELS) {
    const dir = join(FIXTURES, 'pipeline', name)
    const out = join(work, 'folders', name)
    const result = await exportOnnx(dir, out, { quantize: true })
    const tokenizer = await AutoTokenizer.fromPretrained(out)
    const enc = tokenizer.pad([...TEXTS.map((x) => tokenizer(x, { truncation: true })), tokenizer('a great film', { textPair: 'the worst movie' })] as never)
    const inputs = { input_ids: enc.inputIds, attention_mask: enc.attentionMask, token_type_ids: enc.tokenTypeIds }
    const model = await AutoModelForSequenceClassification.fromPretrained(dir, { device: 'cpu' })
    cases.push({ name: `pipeline/${name}`, onnx: join(out, 'onnx', 'model.onnx'), quantized: join(out, 'onnx', 'model_quantized.onnx'), model_dir: dir, inputs, bertkit: logitsOf(model, inputs, result.inputNames), numLabels: model.config.num_labels })
    model.dispose()
  }
  // Golden fixtures: the odd configurations (left padding, fully padded rows, gelu_new, embed_proj, unshared keys, …).
  const writeGraph = (name: string, bytes: Uint8Array) => {
    const path = join(work, 'graphs', `${name.replace(/\W+/g, '_')}.onnx`)
    mkdirSync(join(work, 'graphs'), { recursive: true })
    writeFileSync(path, bytes)
    return path
  }
  for (const name of GOLDEN) {
    const dir = join(FIXTURES, ...name.split('/'))
    const model = await AutoModelForSequenceClassification.fromPretrained(dir, { device: 'cpu' })
    const { model: bytes, inputNames } = onnxModelBytes(model)
    const inputs = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Batch
    cases.push({ name, onnx: writeGraph(name, bytes), model_dir: dir, inputs, bertkit: logitsOf(model, inputs, inputNames), numLabels: model.config.num_labels })
    model.dispose()
  }
  // bertkit-only heads (transformers ignores classifier_pooling) and a LoRA model exported merged.
  const threeLabels = join(FIXTURES, 'bert', 'three_labels')
  const threeInputs = JSON.parse(readFileSync(join(threeLabels, 'inputs.json'), 'utf8')) as Batch
  for (const pooling of ['cls', 'mean', 'max'] as const) {
    const model = await AutoModelForSequenceClassification.fromPretrained(threeLabels, { device: 'cpu', config: { classifier_pooling: pooling } })
    const { model: bytes, inputNames } = onnxModelBytes(model, { opset: pooling === 'max' ? 18 : 17 })
    cases.push({ name: `bert pooling ${pooling}`, onnx: writeGraph(`pooling_${pooling}`, bytes), inputs: threeInputs, bertkit: logitsOf(model, threeInputs, inputNames), numLabels: 3 })
    model.dispose()
  }
  for (const opset of [14, 21]) {
    const model = await AutoModelForSequenceClassification.fromPretrained(join(FIXTURES, 'deberta_v2', 'v3'), { device: 'cpu' })
    const inputs = JSON.parse(readFileSync(join(FIXTURES, 'deberta_v2', 'v3', 'inputs.json'), 'utf8')) as Batch
    const { model: bytes, inputNames } = onnxModelBytes(model, { opset })
    cases.push({ name: `deberta v3 opset ${opset}`, onnx: writeGraph(`deberta_opset_${opset}`, bytes), inputs, bertkit: logitsOf(model, inputs, inputNames), numLabels: model.config.num_labels })
    model.dispose()
  }
  {
    // DeBERTa-v3-base's position settings (256 buckets, 512 positions) on 600 tokens: every log bucket and the saturated ends.
    const dir = join(work, 'deberta_v3_positions')
    const made = spawnSync(process.env.PYTHON ?? 'python3', [SCRIPT, '--make-deberta-v3', dir], { encoding: 'utf8' })
    if (made.status !== 0) throw new Error(`${SCRIPT} --make-deberta-v3 failed:\n${made.stderr}`)
    const model = await AutoModelForSequenceClassification.fromPretrained(dir, { device: 'cpu' })
    const seq = 600
    const inputs: Batch = {
      input_ids: [Array.from({ length: seq }, (_, i) => (i * 37 + 5) % 300), Array.from({ length: seq }, (_, i) => (i < 530 ? (i * 13 + 2) % 300 : 0))],
      attention_mask: [Array(seq).fill(1), Array.from({ length: seq }, (_, i) => (i < 530 ? 1 : 0))],
    }
    const { model: bytes, inputNames } = onnxModelBytes(model)
    cases.push({ name: 'deberta v3 positions, 600 tokens', onnx: writeGraph('deberta_v3_positions', bytes), model_dir: dir, inputs, bertkit: logitsOf(model, inputs, inputNames), numLabels: 3 })
    model.dispose()
  }
  {
    const base = await AutoModelForSequenceClassification.fromPretrained(threeLabels, { device: 'cpu' })
    const peft = getPeftModel(base, new LoraConfig({ r: 4, loraAlpha: 8, targetModules: ['query', 'value', 'dense'], initLoraWeights: false, taskType: 'SEQ_CLS' }), { seed: 7 })
    const { model: bytes, inputNames } = onnxModelBytes(peft)
    cases.push({ name: 'bert + LoRA (merged)', onnx: writeGraph('lora', bytes), inputs: threeInputs, bertkit: logitsOf(peft as unknown as Runnable, threeInputs, inputNames), numLabels: 3 })
    peft.dispose()
  }

  // Python: onnx.checker, onnxruntime, transformers.
  const jobPath = join(work, 'job.json'), outPath = join(work, 'out.json')
  writeFileSync(jobPath, JSON.stringify(cases.map(({ bertkit, numLabels, ...c }) => { void bertkit; void numLabels; return c })))
  const py = spawnSync(process.env.PYTHON ?? 'python3', [SCRIPT, jobPath, outPath], { encoding: 'utf8', maxBuffer: 1 << 28 })
  if (py.status !== 0) throw new Error(`${SCRIPT} failed (${py.status}):\n${py.stderr}`)
  const python = JSON.parse(readFileSync(outPath, 'utf8')) as { versions: Record<string, string>; cases: Record<string, { checker: string; quantized_checker?: string; logits: number[][]; quantized_logits?: number[][]; transformers_logits?: number[][]; input_names: string[]; opset: Array<[string, number]> }> }
  t.comment(`versions: ${JSON.stringify(python.versions)}`)

  const ort = req('onnxruntime-node') as { InferenceSession: { create(path: string): Promise<{ inputNames: string[]; run(feeds: object): Promise<Record<string, { data: Float32Array }>> }> }; Tensor: new (type: string, data: BigInt64Array, dims: number[]) => unknown }
  let worst = { ort: 0, node: 0, transformers: 0 }
  for (const c of cases) {
    const r = python.cases[c.name]
    t.equal(r.checker, 'ok', `${c.name}: onnx.checker (full check)`)
    const py = closePerTensor(r.logits.flat(), c.bertkit, 1e-4)
    t.ok(py.ok, `${c.name}: onnxruntime (Python) vs bertkit: ${py.msg}`)
    worst.ort = Math.max(worst.ort, py.relative)
    const session = await ort.InferenceSession.create(c.onnx)
    const b = c.inputs.input_ids.length, s = c.inputs.input_ids[0].length
    const feeds: Record<string, unknown> = {}
    for (const n of session.inputNames) feeds[n] = new ort.Tensor('int64', BigInt64Array.from((c.inputs as unknown as Record<string, number[][]>)[n].flat(), BigInt), [b, s])
    const nodeOut = await session.run(feeds)
    const nd = closePerTensor(nodeOut.logits.data, c.bertkit, 1e-4)
    t.ok(nd.ok, `${c.name}: onnxruntime-node vs bertkit: ${nd.msg}`)
    worst.node = Math.max(worst.node, nd.relative)
    if (r.transformers_logits) {
      const tf = closePerTensor(r.transformers_logits.flat(), c.bertkit, 1e-4)
      t.ok(tf.ok, `${c.name}: transformers vs bertkit: ${tf.msg}`)
      const tfOnnx = closePerTensor(r.logits.flat(), r.transformers_logits.flat(), 1e-4)
      t.ok(tfOnnx.ok, `${c.name}: onnxruntime vs transformers: ${tfOnnx.msg}`)
      worst.transformers = Math.max(worst.transformers, tfOnnx.relative)
    }
    if (r.quantized_logits) {
      t.equal(r.quantized_checker, 'ok', `${c.name}: int8 variant passes onnx.checker`)
      const q = closePerTensor(r.quantized_logits.flat(), c.bertkit, 0.1)
      t.ok(q.ok, `${c.name}: int8 variant within 10% of the largest logit: ${q.msg}`)
    }
  }
  t.comment(`largest relative logit error: onnxruntime ${worst.ort.toExponential(2)}, onnxruntime-node ${worst.node.toExponential(2)}, onnxruntime vs transformers ${worst.transformers.toExponential(2)}`)

  // transformers.js: the exported folders, its own tokenizer and pipeline.
  const tjs = await import(pathToFileURL(req.resolve('@huggingface/transformers')).href) as {
    env: { allowRemoteModels: boolean; localModelPath: string }
    pipeline(task: string, model: string, options: object): Promise<(texts: string[], o?: object) => Promise<unknown>>
    AutoTokenizer: { from_pretrained(m: string): Promise<(t: string[], o: object) => Record<string, unknown>> }
    AutoModelForSequenceClassification: { from_pretrained(m: string, o: object): Promise<(i: unknown) => Promise<{ logits: { data: Float32Array } }>> }
  }
  tjs.env.allowRemoteModels = false
  tjs.env.localModelPath = join(work, 'folders') + '/'
  let worstScore = 0
  for (const name of PIPELINE_MODELS) {
    // transformers.js's own model and tokenizer: logits on a padded batch (every head, regression included).
    const tokenizer = await tjs.AutoTokenizer.from_pretrained(name)
    const model = await tjs.AutoModelForSequenceClassification.from_pretrained(name, { dtype: 'fp32' })
    const out = await model(tokenizer(TJS_TEXTS, { padding: true, truncation: true }))
    const classifier = await pipeline('text-classification', join(FIXTURES, 'pipeline', name), { device: 'cpu', truncation: true })
    const want = Float32Array.from(classifier.logits(TJS_TEXTS).flatMap((r) => Array.from(r)))
    const c = closePerTensor(out.logits.data, want, 1e-4)
    t.ok(c.ok, `transformers.js ${name}: its model's logits vs bertkit's pipeline: ${c.msg}`)
    // Its text-classification pipeline: softmax, or sigmoid for multi-label (it has no regression / one-label rule, so those two are left out).
    if (name !== 'bert_regression' && name !== 'bert_one_label') {
      const pipe = await tjs.pipeline('text-classification', name, { dtype: 'fp32' })
      const theirs = await pipe(TJS_TEXTS, { top_k: null }) as Array<Array<{ label: string; score: number }>>
      const ours = await classifier(TJS_TEXTS, { topK: null }) as Array<Array<{ label: string; score: number }>>
      t.same(theirs.map((r) => r.map((x) => x.label)), ours.map((r) => r.map((x) => x.label)), `transformers.js ${name}: the same labels in the same order`)
      for (let i = 0; i < ours.length; i++) for (let k = 0; k < ours[i].length; k++) worstScore = Math.max(worstScore, Math.abs(ours[i][k].score - theirs[i][k].score))
      const top = await pipe(TJS_TEXTS) as Array<{ label: string; score: number }>
      const ourTop = await classifier(TJS_TEXTS) as Array<{ label: string; score: number }>
      t.same(top.map((r) => r.label), ourTop.map((r) => r.label), `transformers.js ${name}: default top-1 labels`)
      const q8 = await tjs.pipeline('text-classification', name, { dtype: 'q8' })
      const q8Top = await q8(TJS_TEXTS) as Array<{ label: string; score: number }>
      t.comment(`transformers.js ${name} q8 (model_quantized.onnx): top-1 labels ${q8Top.filter((r, i) => r.label === ourTop[i].label).length}/${TJS_TEXTS.length} as fp32`)
    }
    classifier.dispose()
  }
  t.ok(worstScore < 1e-4, `transformers.js pipeline scores within 1e-4 of bertkit's (largest difference ${worstScore.toExponential(2)})`)
})
