// SentenceTransformer against sentence-transformers 6 (test/fixtures/setfit,
// test/fixtures/generators/make_setfit_fixtures.py): three bodies — the v6 layout (mean +
// Normalize), the v2-v5 layout (four pooling modes concatenated + Dense, do_lower_case,
// max_seq_length 12) and a DistilBERT (weightedmean + lasttoken) — give
// sentence-transformers' embeddings (1e-5), at any batch size; save() writes
// a folder that loads back to the same embeddings.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, cpSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { SentenceTransformer } from '../../lib/sentence_transformers/SentenceTransformer.js'
import { closePerTensor } from '../helpers/golden.js'
import { setUnpadding } from '../../lib/tensor/packing.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'setfit')
const expected = JSON.parse(readFileSync(join(fixtures, 'embeddings.json'), 'utf8')) as {
  sentences: string[]; bodies: Record<string, { dim: number; max_seq_length: number; embeddings: number[][] }>
}

for (const [name, body] of Object.entries(expected.bodies)) {
  t.test(`${name}: encode() equals sentence-transformers`, async (t) => {
    const model = await SentenceTransformer.fromPretrained(join(fixtures, name), { device: 'cpu' })
    t.teardown(() => model.dispose())
    t.equal(model.getSentenceEmbeddingDimension(), body.dim, 'embedding dimension')
    t.equal(model.maxSeqLength, body.max_seq_length, 'max_seq_length as sentence-transformers reads it')
    // Both layouts: the real tokens only (the CPU default) and padded.
    for (const unpad of ['on', 'off'] as const) {
      setUnpadding(unpad)
      try {
        for (const batchSize of [32, 3, 1]) {
          const e = model.encode(expected.sentences, { batchSize })
          t.same([e.rows, e.cols], [expected.sentences.length, body.dim])
          const c = closePerTensor(e.data, body.embeddings.flat(), 1e-5, 1e-6)
          t.ok(c.ok, `unpadding ${unpad}, batch ${batchSize}: ${c.msg}`)
        }
      } finally {
        setUnpadding('auto')
      }
    }
    const normalized = model.encode(expected.sentences.slice(0, 4), { normalizeEmbeddings: true })
    for (let r = 0; r < 4; r++) {
      const row = normalized.data.subarray(r * body.dim, (r + 1) * body.dim)
      t.ok(Math.abs(Math.hypot(...row) - 1) < 1e-5, `normalizeEmbeddings: row ${r} has unit length`)
    }
    t.equal(model.encode([]).rows, 0, 'no texts, no rows')
  })
}

t.test('save() writes the v2-v5 layout, which loads back to the same embeddings', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-st-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const name of ['tiny_st', 'tiny_st_classic', 'tiny_st_distilbert']) {
    const model = await SentenceTransformer.fromPretrained(join(fixtures, name), { device: 'cpu' })
    const out = join(dir, name)
    model.save(out)
    const modules = JSON.parse(readFileSync(join(out, 'modules.json'), 'utf8')) as Array<{ type: string; path: string }>
    t.ok(modules.every((m) => m.type.startsWith('sentence_transformers.models.')), `${name}: module types by their v2-v5 names`)
    t.equal(modules[0].path, '', 'the Transformer at the top of the folder')
    const st = JSON.parse(readFileSync(join(out, 'sentence_bert_config.json'), 'utf8'))
    t.equal(st.max_seq_length, model.maxSeqLength, 'max_seq_length written')
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'config_sentence_transformers.json']) t.ok(existsSync(join(out, f)), `${name}/${f}`)
    const back = await SentenceTransformer.fromPretrained(out, { device: 'cpu' })
    t.same(back.encode(expected.sentences).data, model.encode(expected.sentences).data, `${name}: the reloaded model gives the same embeddings`)
    back.dispose()
    model.dispose()
  }
})

t.test('a folder without modules.json gets mean pooling', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-st-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) cpSync(join(fixtures, 'tiny_st', f), join(dir, f))
  const model = await SentenceTransformer.fromPretrained(dir, { device: 'cpu' })
  t.same(model.modules.map((m) => m.constructor.name), ['Transformer', 'Pooling'])
  // tiny_st is mean pooling + Normalize: the unnormalised vector has the same direction.
  const raw = model.encode(['a good movie']).data
  const n = Math.hypot(...raw)
  const c = closePerTensor(raw.map((v) => v / n), expected.bodies.tiny_st.embeddings[0], 1e-5, 1e-6)
  t.ok(c.ok, c.msg)
  model.dispose()
})

t.test('bad folders are named', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-st-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const copy = (name: string) => {
    const d = join(dir, name)
    cpSync(join(fixtures, 'tiny_st_classic'), d, { recursive: true })
    return d
  }
  let d = copy('unknown-type')
  writeFileSync(join(d, 'modules.json'), JSON.stringify([{ idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' }, { idx: 1, name: '1', path: '1_X', type: 'sentence_transformers.models.LSTM' }]))
  await t.rejects(SentenceTransformer.fromPretrained(d), /modules.json entry 1: module type "sentence_transformers.models.LSTM" is not supported/)
  d = copy('escape')
  writeFileSync(join(d, 'modules.json'), JSON.stringify([{ idx: 0, name: '0', path: '../x', type: 'sentence_transformers.models.Transformer' }]))
  await t.rejects(SentenceTransformer.fromPretrained(d), /"path" must be a folder inside the model, got "..\/x"/)
  d = copy('bad-json')
  writeFileSync(join(d, 'modules.json'), '[{')
  await t.rejects(SentenceTransformer.fromPretrained(d), /modules.json: not valid JSON/)
  d = copy('bad-pooling')
  writeFileSync(join(d, '1_Pooling', 'config.json'), JSON.stringify({ embedding_dimension: 32, pooling_mode: 'median' }))
  await t.rejects(SentenceTransformer.fromPretrained(d), /pooling_mode "median" is not a pooling mode/)
  d = copy('prompt')
  writeFileSync(join(d, '1_Pooling', 'config.json'), JSON.stringify({ embedding_dimension: 32, pooling_mode: 'mean', include_prompt: false }))
  await t.rejects(SentenceTransformer.fromPretrained(d), /include_prompt false .* is not supported/)
  d = copy('no-dense-weights')
  rmSync(join(d, '2_Dense', 'model.safetensors'))
  writeFileSync(join(d, '2_Dense', 'pytorch_model.bin'), '')
  await t.rejects(SentenceTransformer.fromPretrained(d), /no model.safetensors for the Dense module \(found pytorch_model.bin/)
  d = copy('activation')
  writeFileSync(join(d, '2_Dense', 'config.json'), JSON.stringify({ in_features: 128, out_features: 16, activation_function: 'my.Custom' }))
  await t.rejects(SentenceTransformer.fromPretrained(d), /activation_function "my.Custom" is not supported/)
  d = copy('max-len')
  writeFileSync(join(d, 'sentence_bert_config.json'), JSON.stringify({ max_seq_length: 'long' }))
  await t.rejects(SentenceTransformer.fromPretrained(d), /max_seq_length must be an integer >= 2, got "long"/)
  d = copy('model-type')
  writeFileSync(join(d, 'config.json'), JSON.stringify({ model_type: 'mpnet' }))
  await t.rejects(SentenceTransformer.fromPretrained(d), /model_type "mpnet" is not supported as a sentence-transformers body; supported: bert, roberta, distilbert, deberta-v2/)
  await t.rejects(SentenceTransformer.fromPretrained(join(dir, 'missing')), /no such folder/)
  const model = await SentenceTransformer.fromPretrained(join(fixtures, 'tiny_st'))
  t.throws(() => model.encode(['ok', 3 as unknown as string]), /sentences\[1\] is number, not a string/)
  t.throws(() => model.encode(['ok'], { batchSize: 0 }), /batchSize must be a positive integer/)
  model.dispose()
})
