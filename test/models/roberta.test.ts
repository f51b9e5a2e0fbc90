// RoBERTa against golden fixtures written by transformers
// (test/fixtures/generators/make_encoder_fixtures.py): logits and loss to 1e-5, every named
// gradient to 1e-4 (relative to the tensor's largest magnitude), names, order
// and shapes identical; the byte-level BPE tokenizer against the Rust
// tokenizer; saving, loading and bad input.
import t from 'tap'
import { existsSync, mkdtempSync, readFileSync, writeFileSync, copyFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import {
  RobertaForSequenceClassification, RobertaModel, RobertaConfig, AutoModelForSequenceClassification, AutoTokenizer,
  createPositionIdsFromInputIds, tensor, tidy, freezeAllExcept, freezeEncoderLayers, parameterSummary,
} from '../../lib/index.js'
import { checkAgainstGolden, checkLoadedLikeTransformers, autoLoadAndSave, checkReloadedLogits, goldenBatch as inputsFor, readGoldenInputs as readInputs } from '../helpers/golden.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'roberta')
const goldenDirs = ['base', 'odd']

for (const name of goldenDirs) {
  t.test(`golden fixture roberta/${name} matches transformers`, async (t) => {
    const dir = join(fixtures, name)
    const meta = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { position_ids: number[][] }
    const model = await RobertaForSequenceClassification.fromPretrained(dir)
    checkLoadedLikeTransformers(t, dir, model)

    const raw = readInputs(dir)
    const batch = raw.input_ids.length, seq = raw.input_ids[0].length
    const positions = createPositionIdsFromInputIds(Int32Array.from(raw.input_ids.flat()), batch, seq, model.config.pad_token_id)
    t.same([...positions], meta.position_ids.flat(), 'position ids equal create_position_ids_from_input_ids')

    checkAgainstGolden(t, `roberta/${name}`, dir, model, () => model.forward(inputsFor(dir, model)))
    const pad = model.config.pad_token_id
    const width = model.config.hidden_size
    const posGrad = model.roberta.embeddings.position_embeddings.weight.grad!.toFloat32Array().subarray(pad * width, (pad + 1) * width)
    t.ok(posGrad.every((v) => v === 0), 'the position row of padding_idx gets no gradient')
    model.dispose()
    t.end()
  })
}

t.test('position ids come from input_ids, past the padding index', async (t) => {
  const pad = 1
  // A left-padded row, a pad id inside the text, a fully padded row.
  const ids = Int32Array.from([1, 1, 0, 5, 2, 7, 1, 8, 1, 1, 1, 1])
  t.same([...createPositionIdsFromInputIds(ids, 3, 4, pad)], [1, 1, 2, 3, 2, 3, 1, 4, 1, 1, 1, 1])
  t.end()
})

t.test('the byte-level BPE tokenizer gives the Rust tokenizer\'s tokens, ids and decodes', async (t) => {
  const exp = JSON.parse(readFileSync(join(fixtures, 'tokenization.json'), 'utf8')) as {
    vocab_size: number
    special_ids: Record<string, number>
    single: Array<{ text: string; tokens: string[]; input_ids: number[]; attention_mask: number[]; decoded: string; decoded_skip_special: string }>
    pairs: Array<{ text: string; text_pair: string; input_ids: number[]; rust_type_ids: number[]; truncated_10_input_ids: number[] }>
    batch: { texts: string[]; max_length: number; input_ids: number[][]; attention_mask: number[][] }
    batch_left_padded: { texts: string[]; input_ids: number[][]; attention_mask: number[][] }
  }
  const tok = await AutoTokenizer.fromPretrained(join(fixtures, 'tokenizer'))
  t.equal(tok.vocabSize, exp.vocab_size)
  t.same({
    bos_token: tok.bosTokenId, eos_token: tok.eosTokenId, sep_token: tok.sepTokenId, cls_token: tok.clsTokenId,
    pad_token: tok.padTokenId, unk_token: tok.unkTokenId, mask_token: tok.maskTokenId,
  }, exp.special_ids, 'special token ids')
  let mismatches = 0
  for (const c of exp.single) {
    const enc = tok(c.text)
    const problems: string[] = []
    if (JSON.stringify(tok.tokenize(c.text)) !== JSON.stringify(c.tokens)) problems.push(`tokens ${JSON.stringify(tok.tokenize(c.text))}`)
    if (JSON.stringify(enc.inputIds) !== JSON.stringify(c.input_ids)) problems.push(`ids ${JSON.stringify(enc.inputIds)} want ${JSON.stringify(c.input_ids)}`)
    if (JSON.stringify(enc.attentionMask) !== JSON.stringify(c.attention_mask)) problems.push('attention mask')
    if (enc.tokenTypeIds.some((v) => v !== 0)) problems.push('token type ids not all 0')
    if (tok.decode(c.input_ids) !== c.decoded) problems.push(`decode ${JSON.stringify(tok.decode(c.input_ids))}`)
    if (tok.decode(c.input_ids, { skipSpecialTokens: true }) !== c.decoded_skip_special) problems.push('decode skipping specials')
    if (problems.length) {
      mismatches++
      t.fail(`${JSON.stringify(c.text)}: ${problems.join('; ')}`)
    }
  }
  t.equal(mismatches, 0, `${exp.single.length} texts: tokens, ids, masks and decodes equal`)
  for (const p of exp.pairs) {
    const enc = tok(p.text, { textPair: p.text_pair })
    t.same(enc.inputIds, p.input_ids, `pair ${JSON.stringify([p.text, p.text_pair])}: <s> A </s></s> B </s>`)
    t.same(enc.tokenTypeIds, p.rust_type_ids, 'pair token types are all 0, as Rust\'s RobertaProcessing gives them')
    t.same(tok(p.text, { textPair: p.text_pair, truncation: true, maxLength: 10 }).inputIds, p.truncated_10_input_ids, 'truncated to 10')
  }
  const batch = tok(exp.batch.texts, { padding: true, truncation: true, maxLength: exp.batch.max_length })
  t.same(batch.inputIds, exp.batch.input_ids, 'padded and truncated batch: ids (pad id 1)')
  t.same(batch.attentionMask, exp.batch.attention_mask, 'padded and truncated batch: mask')
  tok.paddingSide = 'left'
  const left = tok(exp.batch_left_padded.texts, { padding: true })
  t.same(left.inputIds, exp.batch_left_padded.input_ids, 'left padding: ids')
  t.same(left.attentionMask, exp.batch_left_padded.attention_mask, 'left padding: mask')
  t.end()
})

t.test('tokenizer to model: the fixture sentences give the fixture ids', async (t) => {
  const meta = JSON.parse(readFileSync(join(fixtures, 'base', 'expected.json'), 'utf8')) as { texts: string[] }
  const raw = readInputs(join(fixtures, 'base'))
  const tok = await AutoTokenizer.fromPretrained(join(fixtures, 'tokenizer'))
  const enc = tok(meta.texts, { padding: true, truncation: true, maxLength: raw.input_ids[0].length })
  t.same(enc.inputIds, raw.input_ids.slice(0, meta.texts.length))
  t.same(enc.attentionMask, raw.attention_mask.slice(0, meta.texts.length))
  t.end()
})

t.test('AutoModelForSequenceClassification picks RoBERTa; save and load round trip', async (t) => {
  const src = join(fixtures, 'base')
  const { model: roberta, dir: tmp, saved } = await autoLoadAndSave(t, src, RobertaForSequenceClassification)
  t.same(saved.architectures, ['RobertaForSequenceClassification'])
  t.equal(saved.model_type, 'roberta')
  t.equal(saved.type_vocab_size, 1)
  t.equal(saved.layer_norm_eps, 1e-5)
  t.equal(saved.pad_token_id, 1)
  t.equal(saved.bos_token_id, 0)
  t.equal(saved.eos_token_id, 2)
  t.notOk('classifier_pooling' in saved, 'no bertkit-only field is written')
  const again = (await RobertaForSequenceClassification.fromPretrained(tmp)).eval()
  checkReloadedLogits(t, src, roberta, again)
  again.dispose()

  // A bare RobertaModel checkpoint with its pooler: the head is new, the pooler unexpected.
  const base = join(tmp, 'base-model')
  const { value: bare } = await import('../../lib/nn/init.js').then(({ withDeferredInit }) =>
    withDeferredInit(() => new RobertaModel(roberta.config)))
  const values = new Map<string, Float32Array>()
  for (const [n, p] of bare.namedParameters()) {
    const own = roberta.stateDict().get(`roberta.${n}`)
    values.set(n, own ? own.toFloat32Array() : new Float32Array(p.numel).fill(0.5))
  }
  bare.loadStateDict(values, { strict: true })
  bare.savePretrained(base)
  bare.dispose()
  const fresh = await RobertaForSequenceClassification.fromPretrained(base, { numLabels: 5, seed: 3 })
  t.same(fresh.loadingInfo!.missingKeys, ['classifier.dense.weight', 'classifier.dense.bias', 'classifier.out_proj.weight', 'classifier.out_proj.bias'], 'only the head is new')
  t.same(fresh.loadingInfo!.unexpectedKeys, ['roberta.pooler.dense.weight', 'roberta.pooler.dense.bias'], 'the pooler is reported, not loaded')
  t.same(fresh.roberta.embeddings.position_embeddings.weight.toArray().slice(0, 8), roberta.roberta.embeddings.position_embeddings.weight.toArray().slice(0, 8), 'encoder weights loaded from the prefixless names')
  t.equal(fresh.classifier.out_proj.weight.shape[0], 5)
  fresh.dispose()

  // Freezing helpers work on RoBERTa's names.
  freezeAllExcept(roberta, 'classifier')
  t.equal(parameterSummary(roberta).trainableTensors, 4, 'head only: classifier.dense and classifier.out_proj')
  freezeEncoderLayers(roberta, 0, 1)
  t.throws(() => freezeEncoderLayers(roberta, 0, 2), /outside 0\.\.1/)
  roberta.dispose()
  t.end()
})

t.test('bad configs and inputs give clear errors', async (t) => {
  const src = join(fixtures, 'odd')
  const tmp = mkdtempSync(join(os.tmpdir(), 'bertkit-roberta-bad-'))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  copyFileSync(join(src, 'model.safetensors'), join(tmp, 'model.safetensors'))
  const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'))
  writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...config, model_type: 'xlnet' }))
  await t.rejects(AutoModelForSequenceClassification.fromPretrained(tmp), /unknown model_type "xlnet"; supported: bert, roberta, distilbert, deberta-v2/)
  // RoBERTa weights under another model_type: refused, rather than trained from random weights.
  writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...config, model_type: 'deberta-v2' }))
  await t.rejects(AutoModelForSequenceClassification.fromPretrained(tmp), /none of its \d+ tensors belongs to this model .*Is model_type in .*config\.json right for these weights\?/)
  writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: 12 }))
  await t.rejects(RobertaForSequenceClassification.fromPretrained(tmp), /config\.json: max_position_embeddings is 12, but the checkpoint's "roberta\.embeddings\.position_embeddings\.weight" \(.*\) is \[11, 24\]/)
  writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...config, classifier_pooling: 'mean' }))
  await t.rejects(RobertaForSequenceClassification.fromPretrained(tmp), /classifier_pooling "mean" is not supported for RoBERTa/)
  t.throws(() => new RobertaConfig({ max_position_embeddings: 1, pad_token_id: 1 }), /pad_token_id 1 must be in \[0, max_position_embeddings 1\)/)
  t.same(new RobertaConfig().toJSON().vocab_size, 50265, 'transformers\' RobertaConfig defaults')
  t.equal(new RobertaConfig().type_vocab_size, 2, 'type_vocab_size defaults to 2 as in transformers (roberta-base sets 1)')

  const model = (await RobertaForSequenceClassification.fromPretrained(src)).eval()
  tidy(() => {
    // max_position_embeddings 11 with pad 1: nine tokens fit, ten do not.
    const nine = tensor(new Int32Array(9).fill(5), { shape: [1, 9], dtype: 'int32' })
    t.doesNotThrow(() => model.forward({ inputIds: nine }))
    const ten = tensor(new Int32Array(10).fill(5), { shape: [1, 10], dtype: 'int32' })
    t.throws(() => model.forward({ inputIds: ten }), /needs position id 11 .* max_position_embeddings is 11; truncate the input/)
    const ids = tensor(new Int32Array([0, 5, 2, 0, 6, 2]), { shape: [2, 3], dtype: 'int32' })
    const types = tensor(new Int32Array([0, 0, 0, 0, 2, 0]), { shape: [2, 3], dtype: 'int32' })
    t.throws(() => model.forward({ inputIds: ids, tokenTypeIds: types }), /token_type_ids\[1, 1\] = 2 is out of range \[0, 2\)/)
    t.throws(() => model.forward({ inputIds: ids, attentionMask: tensor(new Int32Array(4), { shape: [2, 2], dtype: 'int32' }) }), /attention_mask \[2, 2\] must be \[2, 3\]/)
    t.throws(() => model.forward({ inputIds: ids, labels: tensor(new Int32Array([1, 0])) }), /regression labels must be float32/)
  })
  model.dispose()
  t.ok(existsSync(join(src, 'config.json')))
  t.end()
})

t.test('end to end: tokenizer, DataCollatorWithPadding and Trainer fine-tune RoBERTa, and the saved model reloads', async (t) => {
  const { Dataset, DataCollatorWithPadding, Trainer, TrainingArguments } = await import('../../lib/index.js')
  const tok = await AutoTokenizer.fromPretrained(join(fixtures, 'tokenizer'))
  const exp = JSON.parse(readFileSync(join(fixtures, 'tokenization.json'), 'utf8')) as { single: Array<{ text: string }> }
  const texts = exp.single.map((c) => c.text).filter((x) => x.trim() !== '').slice(0, 24)
  // Label: does the text contain an "e" — learnable, and both classes occur.
  const ds = Dataset.fromColumns({ text: texts, label: texts.map((x) => (x.includes('e') ? 1 : 0)) })
    .map((batch) => tok(batch.text as string[], { truncation: true, maxLength: 16 }), { batched: true })
  const out = mkdtempSync(join(os.tmpdir(), 'bertkit-roberta-trainer-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  const model = await RobertaForSequenceClassification.fromPretrained(join(fixtures, 'base'))
  const collator = DataCollatorWithPadding({ tokenizer: tok })
  const short = texts.indexOf('x')
  t.ok(short > 0, 'a one-character text is among the rows')
  const probe = collator([...ds.select([0, short])])
  t.same(probe.inputIds.toArray().slice(probe.inputIds.shape[1] + 3), new Array(probe.inputIds.shape[1] - 3).fill(1), 'the collator pads with RoBERTa\'s pad id 1')
  probe.inputIds.dispose()
  probe.attentionMask?.dispose()
  probe.tokenTypeIds?.dispose()
  probe.labels?.dispose()
  const trainer = new Trainer({
    model, args: new TrainingArguments(out, { learningRate: 1e-3, perDeviceTrainBatchSize: 8, numTrainEpochs: 2, disableTqdm: true, saveStrategy: 'no', seed: 4, plotCurves: false }),
    trainDataset: ds, evalDataset: ds, dataCollator: collator,
  })
  const result = await trainer.train()
  t.ok(Number.isFinite(result.trainLoss) && result.globalStep === 6, `6 steps, finite train loss ${result.trainLoss.toFixed(4)}`)
  const before = await trainer.evaluate()
  trainer.saveModel(join(out, 'final'))
  const reloaded = await AutoModelForSequenceClassification.fromPretrained(join(out, 'final'))
  t.ok(reloaded instanceof RobertaForSequenceClassification)
  const again = new Trainer({ model: reloaded, args: new TrainingArguments(out, { disableTqdm: true, plotCurves: false }), dataCollator: collator })
  const after = await again.evaluate(ds)
  t.ok(Number.isFinite(before.evalLoss))
  t.equal(after.evalLoss, before.evalLoss, 'the saved model evaluates to the same loss')
  trainer.dispose()
  again.dispose()
  model.dispose()
  reloaded.dispose()
  t.end()
})
