// DeBERTa-v2/v3 against golden fixtures written by transformers
// (test/fixtures/generators/make_deberta_fixtures.py): logits and loss to 1e-5, every named
// gradient to 1e-4 (relative to the tensor's largest magnitude), names, order
// and shapes identical; relative-position buckets equal to transformers';
// the SentencePiece Unigram tokenizer against the Rust tokenizer; the Auto
// classes; saving, loading, freezing and bad configs.
import t from 'tap'
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import {
  DebertaV2ForSequenceClassification, DebertaV2Config, AutoModelForSequenceClassification, AutoConfig, AutoTokenizer,
  logBucketPosition, tensor, tidy, freezeEmbeddings, freezeEncoderLayers, freezeAllExcept,
} from '../../lib/index.js'
import { checkAgainstGolden, goldenBatch as inputsFor, testGoldenFixtures } from '../helpers/golden.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'deberta_v2')
const goldenDirs = ['v3', 'unshared', 'seq1']

testGoldenFixtures('deberta_v2', fixtures, goldenDirs, (dir) => DebertaV2ForSequenceClassification.fromPretrained(dir), (model, batch) => model.forward(batch))

t.test('log buckets equal transformers\' make_log_bucket_position', async (t) => {
  const { cases } = JSON.parse(readFileSync(join(fixtures, 'log_buckets.json'), 'utf8')) as {
    cases: Array<{ bucket_size: number; max_position: number; from: number; buckets: number[] }>
  }
  for (const c of cases) {
    const got = c.buckets.map((_, i) => logBucketPosition(c.from + i, c.bucket_size, c.max_position))
    t.same(got, c.buckets, `bucket_size ${c.bucket_size}, max_position ${c.max_position}: relative positions ${c.from}..${-c.from}`)
  }
})

t.test('save → load round trip keeps every weight and the logits; Auto classes pick DeBERTa', async (t) => {
  const src = join(fixtures, 'v3')
  const model = await AutoModelForSequenceClassification.fromPretrained(src)
  t.ok(model instanceof DebertaV2ForSequenceClassification, 'AutoModelForSequenceClassification reads model_type "deberta-v2"')
  const config = await AutoConfig.fromPretrained(src, { numLabels: 5 })
  t.ok(config instanceof DebertaV2Config, 'AutoConfig too')
  t.equal(config.num_labels, 5, 'with from_pretrained\'s overrides')
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-deberta-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  ;(model as DebertaV2ForSequenceClassification).savePretrained(dir)
  const saved = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>
  t.same(saved.architectures, ['DebertaV2ForSequenceClassification'])
  for (const k of ['model_type', 'relative_attention', 'position_buckets', 'norm_rel_ebd', 'share_att_key', 'pos_att_type', 'position_biased_input', 'type_vocab_size']) {
    t.ok(k in saved, `config.json keeps ${k}`)
  }
  copyFileSync(join(src, 'inputs.json'), join(dir, 'inputs.json'))
  copyFileSync(join(src, 'expected.safetensors'), join(dir, 'expected.safetensors'))
  const again = await DebertaV2ForSequenceClassification.fromPretrained(dir)
  t.same(again.loadingInfo!.missingKeys, [])
  checkAgainstGolden(t, 'deberta_v2/v3 (saved by bertkit)', dir, again, () => again.forward(inputsFor(dir, again)))
  model.dispose()
  again.dispose()
})

t.test('freezing: embeddings and layers freeze by name; frozen layers get no gradient', async (t) => {
  const model = await DebertaV2ForSequenceClassification.fromPretrained(join(fixtures, 'v3'))
  model.eval()
  freezeEmbeddings(model)
  freezeEncoderLayers(model, 0, 0)
  const frozen = [...model.namedParameters()].filter(([, p]) => !p.requiresGrad).map(([n]) => n)
  t.ok(frozen.every((n) => n.startsWith('deberta.embeddings.') || n.startsWith('deberta.encoder.layer.0.')), 'only embeddings and layer 0 frozen')
  tidy(() => model.forward(inputsFor(join(fixtures, 'v3'), model)).loss!.backward())
  for (const [n, p] of model.namedParameters()) {
    if (!p.requiresGrad && p.grad) t.fail(`${n} is frozen but got a gradient`)
  }
  t.ok(model.deberta.encoder.rel_embeddings!.weight.grad, 'the shared rel_embeddings still learn')
  freezeAllExcept(model, ['pooler.', 'classifier.'])
  t.same([...model.namedParameters()].filter(([, p]) => p.requiresGrad).map(([n]) => n),
    ['pooler.dense.weight', 'pooler.dense.bias', 'classifier.weight', 'classifier.bias'], 'head only')
  model.dispose()
})

t.test('unsupported options and unknown model types fail clearly, loading nothing', async (t) => {
  const base = JSON.parse(readFileSync(join(fixtures, 'v3', 'config.json'), 'utf8')) as Record<string, unknown>
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ conv_kernel_size: 3 }, /conv_kernel_size 3 .* is not supported/],
    [{ attention_head_size: 8 }, /attention_head_size 8 .* is not supported/],
    [{ pooler_hidden_size: 32 }, /pooler_hidden_size 32 .* is not supported/],
    [{ norm_rel_ebd: 'batch_norm' }, /norm_rel_ebd "batch_norm" is not supported/],
    [{ hidden_act: 'prelu' }, /hidden_act "prelu" is not supported: PReLU has a learned slope parameter/],
    [{ pooler_hidden_act: 'gelu_fastest' }, /pooler_hidden_act must be one of transformers' activation names \(gelu, .*silu.*\), got "gelu_fastest"/],
    [{ hidden_size: 50 }, /hidden_size 50 is not a multiple of num_attention_heads 3/],
  ]
  for (const [change, error] of cases) {
    const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-deberta-bad-'))
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...base, ...change }))
    copyFileSync(join(fixtures, 'v3', 'model.safetensors'), join(dir, 'model.safetensors'))
    await t.rejects(AutoModelForSequenceClassification.fromPretrained(dir), error, JSON.stringify(change))
    rmSync(dir, { recursive: true, force: true })
  }
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-deberta-bad-'))
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...base, model_type: 'deberta' }))
  await t.rejects(AutoModelForSequenceClassification.fromPretrained(dir), /unknown model_type "deberta"; supported: bert, roberta, distilbert, deberta-v2/)
  await t.rejects(AutoConfig.fromPretrained(dir), /unknown model_type "deberta"/)
  // A checkpoint whose shapes disagree with its config: rejected before anything is loaded.
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...base, position_buckets: 16 }))
  copyFileSync(join(fixtures, 'v3', 'model.safetensors'), join(dir, 'model.safetensors'))
  await t.rejects(DebertaV2ForSequenceClassification.fromPretrained(dir), /config\.json: 2 x position_buckets is 32, but the checkpoint's "deberta\.encoder\.rel_embeddings\.weight" \(.*\) is \[16, 48\]/)
  rmSync(dir, { recursive: true, force: true })
})

t.test('labels: negative labels are left out of the loss, as transformers does; soft labels must fit the logits', async (t) => {
  const model = await DebertaV2ForSequenceClassification.fromPretrained(join(fixtures, 'v3'))
  model.eval()
  tidy(() => {
    const ids = tensor(new Int32Array([1, 5, 7, 1, 6, 2]), { shape: [2, 3], dtype: 'int32' })
    const none = model.forward({ inputIds: ids, labels: tensor(new Int32Array([-1, -5]), { dtype: 'int32' }) })
    t.equal(none.loss!.toFloat32Array()[0], 0, 'no labelled row: loss 0')
    // Soft labels (checked against transformers in test/models/soft_targets.test.ts): all-zero targets weigh nothing.
    t.equal(model.forward({ inputIds: ids, labels: tensor(new Float32Array(6), { shape: [2, 3] }) }).loss!.toFloat32Array()[0], 0, 'zero soft labels: loss 0')
    t.throws(() => model.forward({ inputIds: ids, labels: tensor(new Float32Array(4), { shape: [2, 2] }) }), /soft labels \[2, 2\] must be \[2, 3\] like the logits/)
    t.throws(() => model.forward({ inputIds: ids, labels: tensor(Float32Array.of(0, NaN, 1, 0, 0, 1), { shape: [2, 3] }) }), /soft label \[0, 1\] is NaN/)
  })
  model.dispose()
})

t.test('the SentencePiece Unigram tokenizer (DeBERTa-v3 layout) gives the Rust tokenizer\'s ids', async (t) => {
  const exp = (JSON.parse(readFileSync(join(fixtures, 'tokenization.json'), 'utf8')) as { tokenizer: {
    vocab_size: number
    special_ids: Record<string, number>
    single: Array<{ text: string; tokens: string[]; input_ids: number[] }>
    pairs: Array<{ text: string; text_pair: string; input_ids: number[]; token_type_ids: number[] }>
    batch: { texts: string[]; max_length: number; input_ids: number[][]; attention_mask: number[][] }
  } }).tokenizer
  const tok = await AutoTokenizer.fromPretrained(join(fixtures, 'tokenizer'))
  t.same({ cls_token: tok.clsTokenId, sep_token: tok.sepTokenId, pad_token: tok.padTokenId, unk_token: tok.unkTokenId, mask_token: tok.maskTokenId },
    exp.special_ids, 'special token ids')
  let mismatches = 0
  for (const c of exp.single) {
    const ids = tok(c.text).inputIds
    if (JSON.stringify(ids) !== JSON.stringify(c.input_ids)) {
      mismatches++
      t.fail(`${JSON.stringify(c.text)}: ids ${JSON.stringify(ids)}, want ${JSON.stringify(c.input_ids)}`)
    }
  }
  t.equal(mismatches, 0, `${exp.single.length} texts: ids equal`)
  for (const p of exp.pairs) {
    const enc = tok(p.text, { textPair: p.text_pair })
    t.same(enc.inputIds, p.input_ids, `pair ${JSON.stringify([p.text, p.text_pair])}: [CLS] A [SEP] B [SEP]`)
    t.same(enc.tokenTypeIds, p.token_type_ids, 'token types 0 then 1')
  }
  const batch = tok(exp.batch.texts, { padding: true, truncation: true, maxLength: exp.batch.max_length })
  t.same(batch.inputIds, exp.batch.input_ids, 'padded and truncated batch: ids (pad id 0)')
  t.same(batch.attentionMask, exp.batch.attention_mask, 'padded and truncated batch: mask')
})
