// BERT against golden fixtures written by transformers (test/fixtures/generators/make_bert_fixtures.py):
// logits and loss to 1e-5, every named gradient to 1e-4 (relative to the
// tensor's largest magnitude), names, order and shapes identical.
import t from 'tap'
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, copyFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import {
  BertForSequenceClassification, AutoModelForSequenceClassification, BertConfig, tensor, tidy, type Tensor,
  freezeIndexRange, freezeAllExcept, freezeEmbeddings, freezeEncoderLayers, parameterSummary,
} from '../../lib/index.js'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { withDeferredInit } from '../../lib/nn/init.js'
import { closePerTensor, checkReloadedLogits, goldenBatch as inputsFor, testGoldenFixtures } from '../helpers/golden.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'bert')
const goldenDirs = ['odd', 'one_layer', 'three_labels', 'regression', 'multi_label']

testGoldenFixtures('bert', fixtures, goldenDirs, (dir) => BertForSequenceClassification.fromPretrained(dir), (model, batch) => model.forward(batch))

t.test('legacy checkpoint: gamma/beta names, no "bert." prefix, cls.* heads', async (t) => {
  const dir = join(fixtures, 'legacy_gamma_beta')
  const model = await AutoModelForSequenceClassification.fromPretrained(dir)
  model.eval()
  const info = model.loadingInfo!
  t.same(info.missingKeys, [], 'nothing missing')
  t.equal(info.unexpectedKeys.length, 8, 'the 8 cls.* tensors are reported as unexpected')
  t.ok(info.unexpectedKeys.every((k) => k.startsWith('cls.')))
  t.ok(Object.keys(info.renamedKeys).some((k) => k.endsWith('.gamma')), 'gamma renamed to weight')
  const expected = readSafetensors(join(dir, 'expected.safetensors')).tensors.get('logits')!.data as Float32Array
  tidy(() => {
    const out = model.forward(inputsFor(join(fixtures, 'one_layer'), model))
    const c = closePerTensor(out.logits.toFloat32Array(), expected, 1e-5)
    t.ok(c.ok, `logits: ${c.msg}`)
  })
  model.dispose()
  t.end()
})

t.test('savePretrained then fromPretrained gives identical logits; a new head is seeded', async (t) => {
  const src = join(fixtures, 'three_labels')
  const tmp = mkdtempSync(join(os.tmpdir(), 'bertkit-save-'))
  const model = (await BertForSequenceClassification.fromPretrained(src)).eval()
  model.savePretrained(tmp)
  t.ok(existsSync(join(tmp, 'config.json')) && existsSync(join(tmp, 'model.safetensors')))
  t.same(readdirSync(tmp).filter((f) => f.includes('.tmp')), [], 'no temporary files left')
  const saved = JSON.parse(readFileSync(join(tmp, 'config.json'), 'utf8'))
  t.same(saved.architectures, ['BertForSequenceClassification'])
  t.equal(saved.num_labels, 3)
  const again = (await BertForSequenceClassification.fromPretrained(tmp)).eval()
  checkReloadedLogits(t, src, model, again)
  // A bare encoder checkpoint (no classifier): the head is new, drawn from the seed.
  const encoderOnly = join(tmp, 'encoder-only')
  model.bert.savePretrained(encoderOnly)
  const m1 = await BertForSequenceClassification.fromPretrained(encoderOnly, { numLabels: 4, seed: 7 })
  const m2 = await BertForSequenceClassification.fromPretrained(encoderOnly, { numLabels: 4, seed: 7 })
  t.same(m1.loadingInfo!.missingKeys, ['classifier.weight', 'classifier.bias'], 'only the classifier is new')
  t.same(m1.classifier.weight.toArray(), m2.classifier.weight.toArray(), 'same seed, same new classifier')
  t.same(m1.classifier.bias!.toArray(), [0, 0, 0, 0], 'new bias is zero')
  const w = m1.classifier.weight.toArray()
  const std = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / w.length)
  t.ok(std > 0.01 && std < 0.03, `new weights ~ normal(0, 0.02): std ${std.toFixed(4)}`)
  t.same(m1.bert.embeddings.word_embeddings.weight.toArray().slice(0, 8), model.bert.embeddings.word_embeddings.weight.toArray().slice(0, 8), 'encoder weights loaded')
  m1.dispose()
  m2.dispose()
  rmSync(join(tmp, 'model.safetensors'))
  await t.rejects(BertForSequenceClassification.fromPretrained(tmp), /no model\.safetensors/, 'a directory without weights is a clear error')
  model.dispose()
  again.dispose()
  rmSync(tmp, { recursive: true, force: true })
  t.end()
})

t.test('bad checkpoints and inputs give clear errors', async (t) => {
  const src = join(fixtures, 'one_layer')
  const tmp = mkdtempSync(join(os.tmpdir(), 'bertkit-bad-'))
  copyFileSync(join(src, 'model.safetensors'), join(tmp, 'model.safetensors'))
  const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'))
  writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...config, intermediate_size: 65 }))
  await t.rejects(BertForSequenceClassification.fromPretrained(tmp), /config\.json: intermediate_size is 65, but the checkpoint's "bert\.encoder\.layer\.0\.intermediate\.dense\.weight" \(.*model\.safetensors\) is \[64, 32\] \(intermediate_size x hidden_size\)/)
  const { hidden_size: _h, ...noHidden } = config
  writeFileSync(join(tmp, 'config.json'), JSON.stringify(noHidden))
  await t.rejects(BertForSequenceClassification.fromPretrained(tmp), /config is missing required field\(s\) hidden_size/)
  writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...config, model_type: 'gpt2' }))
  await t.rejects(AutoModelForSequenceClassification.fromPretrained(tmp), /unknown model_type "gpt2"/)
  writeFileSync(join(tmp, 'config.json'), JSON.stringify(config))
  writeFileSync(join(tmp, 'model.safetensors'), Buffer.from([1, 2, 3]))
  await t.rejects(BertForSequenceClassification.fromPretrained(tmp), /model\.safetensors/, 'a truncated weights file names the file')
  rmSync(tmp, { recursive: true, force: true })

  const model = (await BertForSequenceClassification.fromPretrained(src)).eval()
  const vocab = model.config.vocab_size
  tidy(() => {
    const ids = tensor(new Int32Array([1, 2, vocab, 3]), { shape: [2, 2], dtype: 'int32' })
    t.throws(() => model.forward({ inputIds: ids }), new RegExp(`input_ids\\[1, 0\\] = ${vocab} is out of range \\[0, ${vocab}\\)`))
    const long = tensor(new Int32Array(model.config.max_position_embeddings + 1).fill(1), { shape: [1, model.config.max_position_embeddings + 1], dtype: 'int32' })
    t.throws(() => model.forward({ inputIds: long }), /sequence length .* exceeds max_position_embeddings/)
    const ok = tensor(new Int32Array([1, 2, 3, 4]), { shape: [2, 2], dtype: 'int32' })
    t.throws(() => model.forward({ inputIds: ok, labels: tensor(new Int32Array([0, 2])) }), /labels\[1\] = 2 is out of range \[0, 2\)/)
    t.throws(() => model.forward({ inputIds: ok, attentionMask: tensor(new Int32Array(6), { shape: [2, 3], dtype: 'int32' }) }), /attention_mask \[2, 3\] must be \[2, 2\]/)
  })
  model.dispose()
  t.end()
})

t.test('bert-base-cased: 201 parameters in transformers order; freezing helpers', async (t) => {
  const ref = JSON.parse(readFileSync(join(fixtures, 'names_bert_base_cased.json'), 'utf8')) as { config: Record<string, unknown>; parameters: Array<{ index: number; name: string; shape: number[] }>; total_numel: number; numel_index_le_100: number }
  // Deferred init: buffers are allocated but never written, so this stays fast.
  const { value: model } = withDeferredInit(() => new BertForSequenceClassification(new BertConfig(ref.config as never)))
  const named = [...model.namedParameters()]
  t.equal(named.length, 201)
  t.same(named.map(([n]) => n), ref.parameters.map((p) => p.name), 'same names in the same order')
  t.same(named.map(([, p]) => [...p.shape]), ref.parameters.map((p) => p.shape), 'same shapes')
  t.equal(named[100][0], 'bert.encoder.layer.5.output.LayerNorm.bias')
  freezeIndexRange(model, 0, 100)
  let s = parameterSummary(model)
  t.equal(s.total, ref.total_numel)
  t.equal(s.frozen, ref.numel_index_le_100, 'index <= 100 freezes the embeddings and layers 0-5')
  t.equal(s.trainableTensors, 100)
  freezeAllExcept(model, 'classifier')
  s = parameterSummary(model)
  t.equal(s.trainable, 768 * 2 + 2, 'head only: the classifier')
  freezeAllExcept(model, 'bert.encoder.layer.6')
  freezeEmbeddings(model)
  freezeEncoderLayers(model, 0, 5)
  t.throws(() => freezeEncoderLayers(model, 3, 12), /layers 3\.\.12 are outside 0\.\.11/)
  model.dispose()
  t.end()
})

t.test('freezing pays: no gradient, no tape below the lowest trainable parameter', async (t) => {
  const dir = join(fixtures, 'odd')
  const model = (await BertForSequenceClassification.fromPretrained(dir)).eval()
  freezeEmbeddings(model)
  freezeEncoderLayers(model, 0, 0)
  tidy(() => {
    const inputs = inputsFor(dir, model)
    const hidden = model.bert.embeddings.forward(inputs.inputIds, inputs.tokenTypeIds!, tensor(Int32Array.from({ length: inputs.inputIds.numel }, (_, i) => i % inputs.inputIds.shape[1]), { shape: inputs.inputIds.shape, dtype: 'int32' }))
    t.equal(hidden.gradFn, null, 'frozen embeddings record nothing')
    const l0 = model.bert.encoder.layer.items[0].forward(hidden, inputs.attentionMask)
    t.equal(l0.gradFn, null, 'a frozen layer on frozen input records nothing')
    const out = model.forward(inputs)
    out.loss!.backward()
  })
  for (const [n, p] of model.namedParameters()) {
    const frozen = n.startsWith('bert.embeddings.') || n.startsWith('bert.encoder.layer.0.')
    if (frozen && p.grad) t.fail(`${n} is frozen but has a gradient`)
    if (!frozen && !p.grad) t.fail(`${n} is trainable but has no gradient`)
  }
  t.pass('gradients exactly where trainable')
  model.dispose()
  t.end()
})

t.test('autocast: bf16 and fp16 matrix products stay close to fp32', async (t) => {
  const { autocast } = await import('../../lib/tensor/autocast.js')
  const dir = join(fixtures, 'three_labels')
  const expected = readSafetensors(join(dir, 'expected.safetensors')).tensors
  const model = (await BertForSequenceClassification.fromPretrained(dir)).eval()
  for (const dtype of ['bfloat16', 'float16'] as const) {
    tidy(() => autocast(dtype, () => {
      const out = model.forward(inputsFor(dir, model))
      const c = closePerTensor(out.logits.toFloat32Array(), expected.get('logits')!.data as Float32Array, dtype === 'bfloat16' ? 3e-2 : 5e-3)
      t.ok(c.ok, `${dtype} logits: ${c.msg}`)
      out.loss!.backward()
    }))
    // Gradients point the same way as transformers' fp32 gradients.
    let dot = 0, na = 0, nb = 0
    for (const [n, p] of model.namedParameters()) {
      const a = p.grad!.toFloat32Array()
      const b = expected.get(`grad.${n}`)!.data as Float32Array
      for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i] }
      p.grad!.dispose()
      p.grad = null
    }
    const cosine = dot / Math.sqrt(na * nb)
    t.ok(cosine > 0.999, `${dtype} gradient cosine similarity to fp32: ${cosine.toFixed(6)}`)
  }
  model.dispose()
})
