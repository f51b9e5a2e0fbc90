// DistilBERT against golden fixtures written by transformers
// (test/fixtures/generators/make_encoder_fixtures.py): logits and loss to 1e-5, every named
// gradient to 1e-4 (relative to the tensor's largest magnitude), names, order
// and shapes identical; the sinusoidal position table; saving, loading and
// bad input.
import t from 'tap'
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import {
  DistilBertForSequenceClassification, DistilBertModel, DistilBertConfig, AutoModelForSequenceClassification,
  sinusoidalPositionEmbeddings, tensor, tidy, freezeAllExcept, freezeEmbeddings, freezeEncoderLayers, parameterSummary,
} from '../../lib/index.js'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { closePerTensor, autoLoadAndSave, checkReloadedLogits, goldenBatch as inputsFor, testGoldenFixtures } from '../helpers/golden.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'distilbert')
const goldenDirs = ['base', 'sinusoidal']

testGoldenFixtures('distilbert', fixtures, goldenDirs, (dir) => DistilBertForSequenceClassification.fromPretrained(dir), (model, batch) => model.forward(batch))

t.test('sinusoidal_pos_embds: a fresh model starts from transformers\' sinusoidal table', async (t) => {
  const dir = join(fixtures, 'sinusoidal')
  const table = readSafetensors(join(dir, 'expected.safetensors')).tensors.get('fresh_position_embeddings')!
  const config = DistilBertConfig.fromFile(join(dir, 'config.json'))
  t.equal(config.sinusoidal_pos_embds, true)
  const model = new DistilBertForSequenceClassification(config)
  const c = closePerTensor(model.distilbert.embeddings.position_embeddings.weight.toFloat32Array(), table.data as Float32Array, 0, 1e-7)
  t.ok(c.ok, `fresh table: ${c.msg}`)
  t.same([...table.shape], [config.max_position_embeddings, config.dim])
  t.ok(model.distilbert.embeddings.position_embeddings.weight.requiresGrad, 'trainable, as in transformers 5')
  t.same([...sinusoidalPositionEmbeddings(2, 4)].map((v) => Math.round(v * 1e6) / 1e6), [0, 1, 0, 1, Math.round(Math.sin(1) * 1e6) / 1e6, Math.round(Math.cos(1) * 1e6) / 1e6, 0.01, Math.round(Math.cos(0.01) * 1e6) / 1e6])
  model.dispose()
  // A checkpoint's table wins over the sinusoids (the golden fixture's is noise, and matches).
  const loaded = await DistilBertForSequenceClassification.fromPretrained(dir)
  t.not(loaded.distilbert.embeddings.position_embeddings.weight.toArray()[1], (table.data as Float32Array)[1], 'loaded values, not sinusoids')
  loaded.dispose()
  t.end()
})

t.test('token type ids are accepted and ignored', async (t) => {
  const dir = join(fixtures, 'base')
  const model = (await DistilBertForSequenceClassification.fromPretrained(dir)).eval()
  tidy(() => {
    const inputs = inputsFor(dir, model)
    const types = tensor(Int32Array.from({ length: inputs.inputIds.numel }, (_, i) => i % 2), { shape: inputs.inputIds.shape, dtype: 'int32' })
    const a = model.forward(inputs).logits.toArray()
    const b = model.forward({ ...inputs, tokenTypeIds: types }).logits.toArray()
    t.same(a, b)
  })
  model.dispose()
  t.end()
})

t.test('AutoModelForSequenceClassification picks DistilBERT; save and load round trip', async (t) => {
  const src = join(fixtures, 'sinusoidal')
  const { model: distil, dir: tmp, saved } = await autoLoadAndSave(t, src, DistilBertForSequenceClassification)
  const original = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'))
  t.same(saved.architectures, ['DistilBertForSequenceClassification'])
  for (const k of ['model_type', 'dim', 'n_layers', 'n_heads', 'hidden_dim', 'activation', 'sinusoidal_pos_embds', 'seq_classif_dropout',
    'attention_dropout', 'problem_type', 'id2label', 'label2id', 'pad_token_id', 'max_position_embeddings', 'tie_word_embeddings']) {
    t.same(saved[k], original[k], `config field ${k} round-trips`)
  }
  t.notOk('hidden_size' in saved, 'written with DistilBERT\'s own field names')
  const again = (await DistilBertForSequenceClassification.fromPretrained(tmp)).eval()
  checkReloadedLogits(t, src, distil, again)
  again.dispose()

  // A bare DistilBertModel checkpoint: pre_classifier and classifier are new.
  const base = join(tmp, 'base-model')
  distil.distilbert.savePretrained(base)
  const fresh = await DistilBertForSequenceClassification.fromPretrained(base, { numLabels: 4, seed: 9, problemType: 'single_label_classification' })
  t.same(fresh.loadingInfo!.missingKeys, ['pre_classifier.weight', 'pre_classifier.bias', 'classifier.weight', 'classifier.bias'], 'only the head is new')
  t.same(fresh.loadingInfo!.unexpectedKeys, [])
  t.equal(fresh.classifier.weight.shape[0], 4)
  t.same(fresh.distilbert.embeddings.position_embeddings.weight.toArray().slice(0, 6), distil.distilbert.embeddings.position_embeddings.weight.toArray().slice(0, 6), 'encoder loaded from prefixless names')
  fresh.dispose()
  const bareBack = await DistilBertModel.fromPretrained(base)
  t.same(bareBack.loadingInfo!.missingKeys, [])
  bareBack.dispose()

  // Freezing helpers on DistilBERT's names.
  freezeAllExcept(distil, ['pre_classifier', 'classifier'])
  t.equal(parameterSummary(distil).trainableTensors, 4)
  freezeEmbeddings(distil)
  const frozen = freezeEncoderLayers(distil, 0, 1)
  t.equal(frozen.length, 2 * 16, 'transformer.layer.0-1: 16 tensors each')
  t.throws(() => freezeEncoderLayers(distil, 0, 3), /outside 0\.\.2/)
  distil.dispose()
  t.end()
})

t.test('config: aliases, defaults, and bad configs and inputs give clear errors', async (t) => {
  const c = new DistilBertConfig({ hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 3, hidden_dim: 96, vocab_size: 20 })
  t.same([c.dim, c.n_heads, c.n_layers, c.hidden_size], [64, 4, 3, 64], 'transformers\' attribute_map names are read')
  t.throws(() => new DistilBertConfig({ dim: 32, hidden_size: 64 }), /dim 32 and its alias hidden_size 64 disagree/)
  const d = new DistilBertConfig()
  t.same([d.dim, d.n_layers, d.hidden_dim, d.seq_classif_dropout, d.pad_token_id, d.num_labels], [768, 6, 3072, 0.2, 0, 2], 'transformers\' defaults')
  t.throws(() => new DistilBertConfig({ dim: 30, n_heads: 4 }), /dim 30 is not a multiple of n_heads 4/)
  t.throws(() => new DistilBertConfig({ activation: 'swishy' as never }), /activation must be one of transformers' activation names \(gelu, .*\), got "swishy"/)
  t.equal(new DistilBertConfig({ activation: 'swish' }).activation, 'swish', 'every ACT2FN name bertkit computes is accepted')
  const named = new DistilBertConfig({ id2label: { 0: 'neg', 1: 'pos', 2: 'neutral' } })
  t.same([named.num_labels, named.label2id], [3, { neg: 0, pos: 1, neutral: 2 }], 'label names give the label count')
  t.same(new DistilBertConfig({ num_labels: 3 }).id2label, { 0: 'LABEL_0', 1: 'LABEL_1', 2: 'LABEL_2' })

  const src = join(fixtures, 'base')
  const tmp = mkdtempSync(join(os.tmpdir(), 'bertkit-distilbert-bad-'))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  copyFileSync(join(src, 'model.safetensors'), join(tmp, 'model.safetensors'))
  const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'))
  writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...config, hidden_dim: 50 }))
  await t.rejects(DistilBertForSequenceClassification.fromPretrained(tmp), /config\.json: hidden_dim is 50, but the checkpoint's "distilbert\.transformer\.layer\.0\.ffn\.lin1\.weight" \(.*\) is \[\d+, 32\] \(hidden_dim x dim\)/)
  const { dim: _dim, ...noDim } = config
  writeFileSync(join(tmp, 'config.json'), JSON.stringify(noDim))
  await t.rejects(DistilBertForSequenceClassification.fromPretrained(tmp), /config is missing required field\(s\) dim/)
  writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...config, model_type: 'electra' }))
  await t.rejects(AutoModelForSequenceClassification.fromPretrained(tmp), /unknown model_type "electra"; supported: bert, roberta, distilbert/)

  const model = (await DistilBertForSequenceClassification.fromPretrained(src)).eval()
  const max = model.config.max_position_embeddings
  tidy(() => {
    const long = tensor(new Int32Array(max + 1).fill(3), { shape: [1, max + 1], dtype: 'int32' })
    t.throws(() => model.forward({ inputIds: long }), new RegExp(`sequence length ${max + 1} exceeds max_position_embeddings ${max}`))
    const vocab = model.config.vocab_size
    const bad = tensor(new Int32Array([1, 2, 3, vocab]), { shape: [2, 2], dtype: 'int32' })
    t.throws(() => model.forward({ inputIds: bad }), new RegExp(`input_ids\\[1, 1\\] = ${vocab} is out of range \\[0, ${vocab}\\)`))
    const ok = tensor(new Int32Array([1, 2, 3, 4]), { shape: [2, 2], dtype: 'int32' })
    t.throws(() => model.forward({ inputIds: ok, labels: tensor(new Int32Array([0, 2])) }), /labels\[1\] = 2 is out of range \[0, 2\)/)
    t.throws(() => model.forward({ inputIds: tensor(new Float32Array(4), { shape: [2, 2] }) as never }), /input_ids must be an int32 tensor \[batch, seq\], got float32 \[2, 2\]/)
  })
  model.dispose()
  t.end()
})
