// The ONNX exporter without onnxruntime: every exported graph is decoded
// back with onnx-proto, its interface checked (opset, IR version, optimum's
// input names, dynamic batch_size / sequence_length axes, int64 inputs,
// logits [batch_size, num_labels]) and run by test/helpers/onnx_eval.ts, a
// float64 interpreter of the operators used; its logits must equal bertkit's
// own forward pass on padded batches (1e-4 relative, measured far below).
// The reference suite (test/reference/onnx.reference.ts) runs the same files
// in onnxruntime (Python and Node) and transformers.js.
import t from 'tap'
import { existsSync, mkdtempSync, readFileSync, rmSync, copyFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { onnx } from 'onnx-proto'
import {
  AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification, PeftModel, LoraConfig, getPeftModel,
  exportOnnx, onnxModelBytes, exportableModel, tensor, tidy, noGrad, pipeline,
} from '../../lib/index.js'
import { decodeModel } from '../../lib/onnx/graph.js'
import { debertaRelativeTables } from '../../lib/onnx/modeling.js'
import { DebertaV2Config } from '../../lib/models/deberta_v2/configuration_deberta_v2.js'
import { relativePositionIndices } from '../../lib/models/deberta_v2/modeling_deberta_v2.js'
import { evaluateModel, erf } from '../helpers/onnx_eval.js'
import { closePerTensor } from '../helpers/golden.js'

const root = join(__dirname, '..', '..', '..')
const fixtures = join(root, 'test', 'fixtures')

interface Batch {
  input_ids: number[][]
  attention_mask: number[][]
  token_type_ids?: number[][]
}

const GOLDEN = ['bert/three_labels', 'bert/odd', 'bert/multi_label', 'roberta/base', 'roberta/odd', 'distilbert/base', 'distilbert/sinusoidal',
  'deberta_v2/v3', 'deberta_v2/unshared', 'deberta_v2/seq1']

type Runnable = { forward(i: object): { logits: { toFloat32Array(): Float32Array } }; eval(): unknown }

/** bertkit's logits on a batch, with token types only where the exported graph takes them (else 0, as the graph has it). */
function bertkitLogits(model: Runnable, batch: Batch, withTypes: boolean): Float32Array {
  const b = batch.input_ids.length, s = batch.input_ids[0].length
  const ids = (x: number[][]) => tensor(Int32Array.from(x.flat()), { shape: [b, s], dtype: 'int32' })
  model.eval()
  return noGrad(() => tidy(() => model.forward({
    inputIds: ids(batch.input_ids), attentionMask: ids(batch.attention_mask),
    tokenTypeIds: withTypes && batch.token_type_ids ? ids(batch.token_type_ids) : null,
  }).logits.toFloat32Array()))
}

function onnxLogits(bytes: Uint8Array, batch: Batch): { logits: Float64Array; shape: number[] } {
  const model = decodeModel(bytes)
  const b = batch.input_ids.length, s = batch.input_ids[0].length
  const feeds: Record<string, { shape: number[]; data: number[] }> = {}
  for (const input of model.graph!.input!) {
    const rows = (batch as unknown as Record<string, number[][] | undefined>)[input.name!] ?? batch.input_ids.map((r) => r.map(() => 0))
    feeds[input.name!] = { shape: [b, s], data: rows.flat() }
  }
  const out = evaluateModel(model, feeds).get('logits')!
  return { logits: out.data, shape: out.shape }
}

/** The graph's declared interface, as a plain object. */
function signature(bytes: Uint8Array) {
  const m = decodeModel(bytes)
  const info = (v: onnx.IValueInfoProto) => ({
    name: v.name,
    elemType: v.type!.tensorType!.elemType,
    dims: v.type!.tensorType!.shape!.dim!.map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue))),
  })
  return {
    irVersion: Number(m.irVersion),
    opset: m.opsetImport!.map((o) => [o.domain, Number(o.version)]),
    producer: m.producerName,
    inputs: m.graph!.input!.map(info),
    outputs: m.graph!.output!.map(info),
    initializers: new Set(m.graph!.initializer!.map((i) => i.name!)),
    ops: new Set(m.graph!.node!.map((n) => n.opType!)),
  }
}

const INT64 = onnx.TensorProto.DataType.INT64
const FLOAT = onnx.TensorProto.DataType.FLOAT

for (const name of GOLDEN) {
  t.test(`${name}: the exported graph computes bertkit's logits`, async (t) => {
    const dir = join(fixtures, ...name.split('/'))
    const model = await AutoModelForSequenceClassification.fromPretrained(dir, { device: 'cpu' })
    const { model: bytes, inputNames, family } = onnxModelBytes(model)
    const sig = signature(bytes)
    t.equal(sig.producer, 'bertkit')
    t.same(sig.opset, [['', 17]], 'default opset 17')
    t.equal(sig.irVersion, 8, 'IR version 8 carries opset 17')
    const typed = family === 'bert' || (family === 'deberta-v2' && (model.config as { type_vocab_size: number }).type_vocab_size > 0)
    t.same(inputNames, typed ? ['input_ids', 'attention_mask', 'token_type_ids'] : ['input_ids', 'attention_mask'], 'optimum\'s input names for the family')
    t.same(sig.inputs, inputNames.map((n) => ({ name: n, elemType: INT64, dims: ['batch_size', 'sequence_length'] })), 'int64 inputs with dynamic axes')
    t.same(sig.outputs, [{ name: 'logits', elemType: FLOAT, dims: ['batch_size', model.config.num_labels] }], 'one output, logits')
    const batch = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Batch
    const want = bertkitLogits(model, batch, typed)
    const got = onnxLogits(bytes, batch)
    t.same(got.shape, [batch.input_ids.length, model.config.num_labels])
    const c = closePerTensor(got.logits, want, 1e-4)
    t.ok(c.ok, `logits vs bertkit: ${c.msg}`)
    t.comment(`${name}: ONNX (float64 interpreter) vs bertkit logits, relative ${c.relative.toExponential(2)}`)
    // One row alone gives the row's logits of the batch: padding of other rows changes nothing.
    const one = { input_ids: [batch.input_ids[0]], attention_mask: [batch.attention_mask[0]], token_type_ids: batch.token_type_ids ? [batch.token_type_ids[0]] : undefined }
    const single = onnxLogits(bytes, one)
    const row = closePerTensor(single.logits, want.subarray(0, model.config.num_labels), 1e-4)
    t.ok(row.ok, `batch of one, dynamic axes: ${row.msg}`)
    model.dispose()
  })
}

t.test('BERT pooling variants (cls, mean, max) are exported with their masks', async (t) => {
  const dir = join(fixtures, 'bert', 'three_labels')
  const batch = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Batch
  for (const pooling of ['cls', 'mean', 'max'] as const) {
    const model = await AutoModelForSequenceClassification.fromPretrained(dir, { device: 'cpu', config: { classifier_pooling: pooling } })
    const { model: bytes } = onnxModelBytes(model)
    t.notOk(signature(bytes).initializers.has('bert.pooler.dense.weight_transposed'), `${pooling}: the unread pooler is left out`)
    const c = closePerTensor(onnxLogits(bytes, batch).logits, bertkitLogits(model, batch, true), 1e-4)
    t.ok(c.ok, `${pooling}: ${c.msg}`)
    model.dispose()
  }
})

t.test('opsets 14 (LayerNorm decomposed), 18 and 21 (reduce axes as inputs) compute the same logits', async (t) => {
  const dir = join(fixtures, 'bert', 'three_labels')
  const batch = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Batch
  const model = await AutoModelForSequenceClassification.fromPretrained(dir, { device: 'cpu', config: { classifier_pooling: 'max' } })
  const want = bertkitLogits(model, batch, true)
  for (const [opset, ir] of [[14, 7], [18, 8], [21, 10]]) {
    const { model: bytes } = onnxModelBytes(model, { opset })
    const sig = signature(bytes)
    t.same([sig.opset, sig.irVersion], [[['', opset]], ir], `opset ${opset}, IR ${ir}`)
    t.equal(sig.ops.has('LayerNormalization'), opset >= 17, `opset ${opset}: LayerNormalization ${opset >= 17 ? 'used' : 'decomposed'}`)
    const c = closePerTensor(onnxLogits(bytes, batch).logits, want, 1e-4)
    t.ok(c.ok, `opset ${opset}: ${c.msg}`)
  }
  model.dispose()
})

t.test('DeBERTa: relative positions past the lookup table saturate as bertkit computes them', async (t) => {
  // DeBERTa-v3's own settings: 256 buckets, 512 positions.
  const v3 = new DebertaV2Config({ hidden_size: 48, num_hidden_layers: 1, num_attention_heads: 3, intermediate_size: 48, vocab_size: 40,
    relative_attention: true, position_buckets: 256, max_relative_positions: -1, max_position_embeddings: 512, pos_att_type: ['p2c', 'c2p'], position_biased_input: false })
  for (const config of [v3, new DebertaV2Config({ hidden_size: 48, num_hidden_layers: 1, num_attention_heads: 3, intermediate_size: 48, vocab_size: 40, relative_attention: true, max_relative_positions: 6, max_position_embeddings: 64, pos_att_type: ['c2p'] })]) {
    const { c2p, p2c, reach } = debertaRelativeTables(config)
    const seq = reach + 40
    const want = relativePositionIndices(config, seq)
    let bad = 0
    for (let i = 0; i < seq; i++) {
      for (let j = 0; j < seq; j++) {
        const d = Math.max(-reach, Math.min(reach, i - j)) + reach
        if (Number(c2p[d]) !== want.c2p[i * seq + j] || Number(p2c[d]) !== want.p2c[i * seq + j]) bad++
      }
    }
    t.equal(bad, 0, `span ${config.attentionSpan}, buckets ${config.position_buckets}: table of reach ${reach} gives bertkit's indices for ${seq} tokens`)
  }
  // And the whole graph on a sequence longer than the fixture's table reach (65).
  const dir = join(fixtures, 'deberta_v2', 'v3')
  const model = await AutoModelForSequenceClassification.fromPretrained(dir, { device: 'cpu' })
  const seq = 80
  const batch: Batch = {
    input_ids: [Array.from({ length: seq }, (_, i) => (i * 7 + 3) % 40), Array.from({ length: seq }, (_, i) => (i < 50 ? (i * 11 + 1) % 40 : 0))],
    attention_mask: [Array(seq).fill(1), Array.from({ length: seq }, (_, i) => (i < 50 ? 1 : 0))],
  }
  const { model: bytes } = onnxModelBytes(model)
  const c = closePerTensor(onnxLogits(bytes, batch).logits, bertkitLogits(model, batch, false), 1e-4)
  t.ok(c.ok, `80 tokens: ${c.msg}`)
  model.dispose()
})

t.test('LoRA: a PeftModel is exported merged and left untouched', async (t) => {
  const baseDir = join(fixtures, 'bert', 'one_layer')
  const batch = JSON.parse(readFileSync(join(baseDir, 'inputs.json'), 'utf8')) as Batch
  // An adapter with a non-zero update (B starts random with initLoraWeights false) and a trained classifier copy.
  const peft = getPeftModel(await BertForSequenceClassification.fromPretrained(baseDir, { device: 'cpu' }),
    new LoraConfig({ r: 4, loraAlpha: 16, targetModules: ['query', 'value', 'dense'], initLoraWeights: false, taskType: 'SEQ_CLS' }), { seed: 3 })
  const before = bertkitLogits(peft as unknown as Runnable, batch, true)
  const plainBase = await BertForSequenceClassification.fromPretrained(baseDir, { device: 'cpu' })
  const baseLogits = bertkitLogits(plainBase, batch, true)
  plainBase.dispose()
  t.notOk(closePerTensor(before, baseLogits, 1e-3).ok, 'the adapter changes the logits (so the check below means something)')
  const { model: bytes } = onnxModelBytes(peft)
  const sig = signature(bytes)
  t.ok([...sig.initializers].every((n) => !/lora_|base_layer|modules_to_save|original_module/.test(n)), 'initializers have the plain model\'s names')
  const c = closePerTensor(onnxLogits(bytes, batch).logits, before, 1e-4)
  t.ok(c.ok, `merged graph vs the PeftModel's forward: ${c.msg}`)
  t.notOk(peft.merged, 'the PeftModel is not merged by the export')
  const after = bertkitLogits(peft as unknown as Runnable, batch, true)
  t.same(Array.from(after), Array.from(before), 'and computes exactly what it did before')
  // peft's own fixture adapter, loaded from disk, exported from its folder.
  const fromDisk = PeftModel.fromPretrained(await BertForSequenceClassification.fromPretrained(baseDir, { device: 'cpu' }), join(fixtures, 'lora', 'qv_classifier'))
  const c2 = closePerTensor(onnxLogits(onnxModelBytes(fromDisk).model, batch).logits, bertkitLogits(fromDisk as unknown as Runnable, batch, true), 1e-4)
  t.ok(c2.ok, `peft's qv_classifier adapter: ${c2.msg}`)
  const names = [...exportableModel(fromDisk).weights.keys()]
  t.same(names, [...(await BertForSequenceClassification.fromPretrained(baseDir, { device: 'cpu' })).namedParameters()].map(([n]) => n), 'the weights carry the plain model\'s names in its order')
  peft.dispose()
  fromDisk.dispose()
})

t.test('quantize: int8 weights at a quarter of their float bytes, logits within the rounding', async (t) => {
  const dir = join(fixtures, 'pipeline', 'bert_labels')
  const model = await AutoModelForSequenceClassification.fromPretrained(dir, { device: 'cpu' })
  const { model: full, quantized } = onnxModelBytes(model, { quantize: true })
  const q = decodeModel(quantized!)
  const int8 = q.graph!.initializer!.filter((i) => i.dataType === onnx.TensorProto.DataType.INT8 && (i.dims ?? []).length === 2)
  t.ok(int8.length >= 1 + 2 * 6 + 1, `${int8.length} int8 weight matrices (word embeddings, every Linear)`)
  t.notOk(q.graph!.initializer!.some((i) => i.name!.endsWith('.weight_transposed')), 'no float copy of a quantized weight is left')
  t.ok(q.graph!.node!.some((n) => n.opType === 'DequantizeLinear'), 'DequantizeLinear in front of the MatMuls')
  const tokenizer = await AutoTokenizer.fromPretrained(dir)
  const enc = tokenizer(['a great film .', 'the worst movie i have ever seen , dull and too long .'], { padding: true }) as unknown as { inputIds: number[][]; attentionMask: number[][]; tokenTypeIds: number[][] }
  const batch = { input_ids: enc.inputIds, attention_mask: enc.attentionMask, token_type_ids: enc.tokenTypeIds }
  const a = onnxLogits(full, batch).logits, b = onnxLogits(quantized!, batch).logits
  // A 16-wide random model is the worst case for int8 rounding; the reference suite measures a trained MiniLM.
  const c = closePerTensor(b, a, 0.1)
  t.ok(c.ok, `quantized vs float logits: ${c.msg}`)
  const bytesOf = (m: onnx.ModelProto, pick: (n: string) => boolean) => m.graph!.initializer!.filter((i) => pick(i.name!)).reduce((s, i) => s + i.rawData!.byteLength, 0)
  const f = decodeModel(full)
  const quantizedNames = new Set(int8.map((i) => i.name!.replace(/_quantized$/, '')))
  const floatBytes = bytesOf(f, (n) => quantizedNames.has(n)), int8Bytes = bytesOf(q, (n) => n.endsWith('_quantized'))
  t.equal(int8Bytes * 4, floatBytes, 'each quantized matrix takes a quarter of its float32 bytes')
  t.comment(`quantized: file ${quantized!.length} bytes vs ${full.length} (tiny model: scales and graph dominate), logits relative ${c.relative.toExponential(2)}`)
  model.dispose()
})

t.test('exportOnnx writes the transformers.js folder, and the graph agrees with the pipeline', async (t) => {
  const out = mkdtempSync(join(os.tmpdir(), 'bertkit-onnx-'))
  try {
    for (const name of ['bert_labels', 'roberta', 'distilbert', 'deberta_v3']) {
      const dir = join(fixtures, 'pipeline', name)
      const target = join(out, name)
      const result = await exportOnnx(dir, target, { quantize: name === 'bert_labels' })
      for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', join('onnx', 'model.onnx')]) t.ok(existsSync(join(target, f)), `${name}: ${f}`)
      t.equal(existsSync(join(target, 'onnx', 'model_quantized.onnx')), name === 'bert_labels', `${name}: model_quantized.onnx only when asked`)
      const config = JSON.parse(readFileSync(join(target, 'config.json'), 'utf8'))
      const source = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))
      t.same([config.model_type, config.id2label, config.label2id], [source.model_type, source.id2label, source.label2id], `${name}: config.json keeps model_type and the label names`)
      t.same(result.outputNames, ['logits'])
      const texts = ['a great film .', 'the acting is fine but the script is a mess', 'dull']
      const tokenizer = await AutoTokenizer.fromPretrained(target)
      const enc = tokenizer(texts, { padding: true }) as unknown as { inputIds: number[][]; attentionMask: number[][]; tokenTypeIds: number[][] }
      const onnxOut = onnxLogits(readFileSync(join(target, 'onnx', 'model.onnx')), { input_ids: enc.inputIds, attention_mask: enc.attentionMask, token_type_ids: enc.tokenTypeIds })
      const classifier = await pipeline('text-classification', dir, { device: 'cpu' })
      const want = classifier.logits(texts)
      const c = closePerTensor(onnxOut.logits, Float32Array.from(want.flatMap((r) => Array.from(r))), 1e-4)
      t.ok(c.ok, `${name}: ONNX on the exported tokenizer's ids vs the pipeline's logits: ${c.msg}`)
      classifier.dispose()
    }
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

t.test('bad export requests are refused by name', async (t) => {
  const dir = join(fixtures, 'pipeline', 'bert_labels')
  const model = await AutoModelForSequenceClassification.fromPretrained(dir, { device: 'cpu' })
  t.throws(() => onnxModelBytes(model, { opset: 13 }), /opset 13 is not supported \(use an integer from 14 to 21/)
  t.throws(() => onnxModelBytes(model, { opset: 22 }), /opset 22 is not supported/)
  await t.rejects(exportOnnx(model, join(os.tmpdir(), 'never'), { opset: 17, fp16: true } as never), /unknown option "fp16"/)
  await t.rejects(exportOnnx(model, join(os.tmpdir(), 'never')), /no tokenizer.*pass \{ tokenizer \}/, 'a model object without a tokenizer')
  t.throws(() => onnxModelBytes({ namedParameters: () => [] } as never), /is not a model the exporter knows/)
  const bare = mkdtempSync(join(os.tmpdir(), 'bertkit-bare-'))
  try {
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(dir, f), join(bare, f))
    await t.rejects(exportOnnx(bare, join(bare, 'out')), /has no usable tokenizer.*--tokenizer/, 'a model folder without a tokenizer')
    const result = await exportOnnx(bare, join(bare, 'out'), { tokenizer: dir })
    t.ok(existsSync(join(result.dir, 'tokenizer.json')), '--tokenizer supplies it')
    await t.rejects(exportOnnx(dir, dir), /is the model folder/, 'writing over the model folder')
    writeFileSync(join(bare, 'config.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), model_type: 'gpt2' }))
    await t.rejects(exportOnnx(bare, join(bare, 'out2'), { tokenizer: dir }), /unknown model_type "gpt2"/)
  } finally {
    rmSync(bare, { recursive: true, force: true })
  }
  model.dispose()
})

t.test('the test interpreter\'s erf is accurate to 1e-11', async (t) => {
  // Reference values of erf (Abramowitz & Stegun, table 7.1, and Wolfram).
  const table: Array<[number, number]> = [[0, 0], [0.1, 0.1124629160182849], [0.5, 0.5204998778130465], [1, 0.8427007929497149],
    [2, 0.9953222650189527], [3, 0.9999779095030014], [-1.5, -0.9661051464753108]]
  for (const [x, want] of table) t.ok(Math.abs(erf(x) - want) < 1e-11, `erf(${x}): ${erf(x)} vs ${want}`)
})

