// Unpadded execution (lib/tensor/packing.ts) against the padded path, per
// model family: the same weights, batch and seed, in training mode with every
// dropout on, give the same logits and loss (1e-6) and the same gradient of
// every parameter (1e-5 of the tensor's largest magnitude), for BERT with each
// classifier_pooling, RoBERTa, DistilBERT, DeBERTa-v3 (relative attention),
// LoRA with lora_dropout, and frozen lower layers. Dropout draws the padded
// layout's mask, so the two runs drop the same elements; only sums over rows
// (weight gradients) may round differently. Also: which batches unpad, the
// packed layout, and that id errors still name [row, column].
import t from 'tap'
import {
  BertForSequenceClassification, BertConfig, RobertaForSequenceClassification, RobertaConfig,
  DistilBertForSequenceClassification, DistilBertConfig, DebertaV2ForSequenceClassification, DebertaV2Config,
  BertModel, LoraConfig, getPeftModel, tensor, tidy, manualSeed, setUnpadding, unpaddingEnabled, PackedBatch, unpadBatch,
  freezeEncoderLayers, freezeEmbeddings, Module, type Tensor,
} from '../../lib/index.js'
import { rng } from '../helpers/reference.js'

interface Batch {
  inputIds: Tensor
  attentionMask: Tensor
  tokenTypeIds: Tensor
  labels: Tensor
}

const LENGTHS = [11, 3, 7, 1, 9, 2]
const SEQ = 11

function makeBatch(vocab: number, typeVocab: number, numLabels: number, seed: number, lengths = LENGTHS, seq = SEQ, firstId = 2): Batch {
  const r = rng(seed)
  const batch = lengths.length
  const ids = new Int32Array(batch * seq), mask = new Int32Array(batch * seq), types = new Int32Array(batch * seq)
  lengths.forEach((len, b) => {
    for (let s = 0; s < len; s++) {
      ids[b * seq + s] = firstId + Math.floor(r() * (vocab - firstId))
      mask[b * seq + s] = 1
      types[b * seq + s] = typeVocab > 1 && s > len / 2 ? 1 : 0
    }
  })
  const labels = Int32Array.from({ length: batch }, () => Math.floor(r() * numLabels))
  const shape = [batch, seq]
  return {
    inputIds: tensor(ids, { shape, dtype: 'int32' }), attentionMask: tensor(mask, { shape, dtype: 'int32' }),
    tokenTypeIds: tensor(types, { shape, dtype: 'int32' }), labels: tensor(labels, { dtype: 'int32' }),
  }
}

interface Model extends Module {
  forward(inputs: Batch): { loss: Tensor | null; logits: Tensor }
}

/** One training step's forward and backward: logits, loss, and every gradient by name (null: none). */
function step(model: Model, batch: Batch, unpad: 'on' | 'off', seed: number) {
  setUnpadding(unpad)
  try {
    for (const p of model.parameters()) { p.grad?.dispose(); p.grad = null }
    manualSeed(seed)
    model.train()
    const result = tidy(() => {
      const { loss, logits } = model.forward(batch)
      loss!.backward()
      return { logits: logits.toFloat32Array(), loss: loss!.item() }
    })
    const grads = new Map<string, Float32Array | null>()
    for (const [name, p] of model.namedParameters()) grads.set(name, p.grad ? p.grad.toFloat32Array() : null)
    return { ...result, grads }
  } finally {
    setUnpadding('auto')
  }
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]))
  return m
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return a.length === b.length ? m : Infinity
}

/** The unpadded step equals the padded one: logits and loss to 1e-6, each gradient to 1e-5 of its largest magnitude (floored at 1e-6 of the model's largest gradient). */
function checkEqual(t: tap.Test, model: Model, batch: Batch, seed = 7) {
  const padded = step(model, batch, 'off', seed)
  const unpadded = step(model, batch, 'on', seed)
  const dl = maxDiff(unpadded.logits, padded.logits)
  t.ok(dl <= 1e-6 * Math.max(1, maxAbs(padded.logits)), `logits: max |diff| ${dl.toExponential(2)} (max |logit| ${maxAbs(padded.logits).toExponential(2)})`)
  t.ok(Math.abs(unpadded.loss - padded.loss) <= 1e-6 * Math.max(1, Math.abs(padded.loss)), `loss ${unpadded.loss} vs ${padded.loss}`)
  let worst = 0, worstName = '', withGrad = 0
  // A gradient that is zero in exact arithmetic (the key bias: softmax ignores
  // a shift shared by a row) holds only rounding noise, ~1e-14 here, which no
  // two summation orders share; it is measured against a floor of 1e-6 of the
  // model's largest gradient instead of against its own noise.
  let largest = 0
  for (const want of padded.grads.values()) if (want) largest = Math.max(largest, maxAbs(want))
  for (const [name, want] of padded.grads) {
    const got = unpadded.grads.get(name)!
    if (want === null || got === null) {
      t.equal(got === null, want === null, `${name}: a gradient in both runs or in neither`)
      continue
    }
    withGrad++
    const rel = maxDiff(got, want) / Math.max(maxAbs(want), 1e-6 * largest, 1e-30)
    if (!(rel <= worst)) { worst = rel; worstName = name }
  }
  t.ok(withGrad > 0, `${withGrad} parameters have gradients`)
  // Dropout is really on: another seed draws other masks, and the same seed the same ones again.
  const other = step(model, batch, 'on', seed + 1)
  t.ok(maxDiff(other.logits, unpadded.logits) > 0, 'another seed: other dropout masks, other logits')
  const again = step(model, batch, 'on', seed)
  t.equal(maxDiff(again.logits, unpadded.logits), 0, 'the same seed: the same logits (masks reproducible)')
  t.ok(worst <= 1e-5, `every gradient within 1e-5 of its largest magnitude (worst ${worst.toExponential(2)} at ${worstName || '-'})`)
  return { padded, unpadded }
}

const bertConfig = (extra: Record<string, unknown> = {}) => new BertConfig({
  vocab_size: 50, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 48,
  max_position_embeddings: 16, type_vocab_size: 2, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, num_labels: 3, ...extra,
} as never)

t.test('which batches unpad, and the packed layout', async (t) => {
  t.equal(unpaddingEnabled('cpu'), process.env.BERTKIT_UNPAD ? unpaddingEnabled('cpu') : true, 'on by default on the CPU')
  t.equal(unpaddingEnabled('cuda'), process.env.BERTKIT_UNPAD ? unpaddingEnabled('cuda') : false, 'off by default on CUDA')
  setUnpadding('off')
  t.equal(unpaddingEnabled('cpu'), false)
  setUnpadding('auto')
  t.throws(() => setUnpadding('sometimes' as never), /setUnpadding must be on, off or auto, got "sometimes"/)
  const p = PackedBatch.fromMask(Int32Array.from([1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0]), 3, 4, 'cpu')!
  t.ok(p, 'a right-padded mask packs')
  t.same([p.batch, p.seq, p.tokens], [3, 4, 6])
  t.same(Array.from(p.rowIndex.toInt32Array()), [0, 1, 2, 4, 8, 9], 'padded rows of the real tokens')
  t.same(Array.from(p.cuSeqlens.toInt32Array()), [0, 3, 4, 6], 'cumulative lengths')
  t.same(Array.from(p.firstRows.toInt32Array()), [0, 3, 4], 'first token of each sequence')
  const ids = tensor(Int32Array.from([5, 6, 7, 0, 8, 0, 0, 0, 9, 10, 0, 0]), { shape: [3, 4], dtype: 'int32' })
  t.same(Array.from(p.packIds(ids).toInt32Array()), [5, 6, 7, 8, 9, 10], 'ids of the real tokens')
  p.dispose()
  ids.dispose()
  t.equal(PackedBatch.fromMask(Int32Array.from([0, 1, 1, 1, 1, 1]), 2, 3, 'cpu'), null, 'left padding runs padded')
  t.equal(PackedBatch.fromMask(Int32Array.from([1, 0, 0, 0, 0, 0]), 2, 3, 'cpu'), null, 'an empty row runs padded')
  t.equal(PackedBatch.fromMask(Int32Array.from([1, 1, 1, 1, 1, 1]), 2, 3, 'cpu'), null, 'no padding: nothing to remove')
  t.equal(PackedBatch.fromMask(Int32Array.from([1, 2, 0, 1, 1, 1]), 2, 3, 'cpu'), null, 'a mask value other than 0/1 runs padded')
  t.equal(unpadBatch(null, 'cpu'), null, 'no mask: no padding')

  // BertModel.forward keeps its shapes unless asked; with unpad it returns the real tokens.
  manualSeed(1)
  const model = new BertModel(bertConfig())
  const batch = makeBatch(50, 2, 3, 11)
  const tokens = LENGTHS.reduce((a, b) => a + b, 0)
  tidy(() => {
    const plain = model.forward(batch)
    t.same(plain.lastHiddenState.shape, [LENGTHS.length, SEQ, 32], 'default: padded [batch, seq, hidden]')
    t.equal(plain.packed, null)
    const unpadded = model.forward(batch, { unpad: true })
    t.same(unpadded.lastHiddenState.shape, [tokens, 32], 'unpad: the real tokens [tokens, hidden]')
    t.ok(unpadded.packed instanceof PackedBatch)
    unpadded.packed!.dispose()
    setUnpadding('off')
    t.equal(model.forward(batch, { unpad: true }).packed, null, 'switched off: padded')
    setUnpadding('auto')
  })
  // An out-of-range id still names [row, column] of the padded batch.
  const bad = makeBatch(50, 2, 3, 12)
  const values = bad.inputIds.toInt32Array()
  values[4 * SEQ + 5] = 999
  const badIds = tensor(values, { shape: [LENGTHS.length, SEQ], dtype: 'int32' })
  t.throws(() => tidy(() => model.forward({ ...bad, inputIds: badIds }, { unpad: true })), /input_ids\[4, 5\] = 999 is out of range \[0, 50\)/)
  model.dispose()
})

for (const pooling of ['pooler', 'cls', 'mean', 'max'] as const) {
  t.test(`BERT (classifier_pooling ${pooling}): unpadded equals padded`, async (t) => {
    manualSeed(3)
    const model = new BertForSequenceClassification(bertConfig({ classifier_pooling: pooling }))
    checkEqual(t, model as unknown as Model, makeBatch(50, 2, 3, 21))
    model.dispose()
  })
}

t.test('training with gradient checkpointing runs padded (its recomputation needs the layout), evaluation still unpads', async (t) => {
  manualSeed(6)
  const model = new BertForSequenceClassification(bertConfig())
  model.gradientCheckpointingEnable()
  const batch = makeBatch(50, 2, 3, 24)
  const on = step(model as unknown as Model, batch, 'on', 9)
  const off = step(model as unknown as Model, batch, 'off', 9)
  t.equal(maxDiff(on.logits, off.logits), 0, 'same logits bit for bit: the unpadding request was not taken')
  for (const [name, want] of off.grads) {
    const got = on.grads.get(name)!
    if (want && got && maxDiff(got, want) !== 0) t.fail(`${name}: gradients differ`)
  }
  model.eval()
  setUnpadding('on')
  t.not(model.bert.forward(batch, { unpad: true }).packed, null, 'the base model still unpads when asked')
  setUnpadding('auto')
  model.dispose()
})

t.test('BERT with frozen embeddings and layer 0: unpadded equals padded', async (t) => {
  manualSeed(4)
  const model = new BertForSequenceClassification(bertConfig())
  freezeEmbeddings(model)
  freezeEncoderLayers(model, 0, 0)
  const { padded } = checkEqual(t, model as unknown as Model, makeBatch(50, 2, 3, 22))
  t.equal(padded.grads.get('bert.encoder.layer.0.attention.self.query.weight'), null, 'frozen: no gradient')
  model.dispose()
})

t.test('RoBERTa: unpadded equals padded', async (t) => {
  manualSeed(5)
  const model = new RobertaForSequenceClassification(new RobertaConfig({
    vocab_size: 50, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 48,
    max_position_embeddings: 20, type_vocab_size: 1, pad_token_id: 1, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, num_labels: 2,
  } as never))
  const batch = makeBatch(50, 1, 2, 23)
  // RoBERTa's collator pads with pad_token_id: position ids count from it.
  const ids = batch.inputIds.toInt32Array(), mask = batch.attentionMask.toInt32Array()
  const padded = tensor(ids.map((v, i) => (mask[i] ? v : 1)), { shape: batch.inputIds.shape, dtype: 'int32' })
  checkEqual(t, model as unknown as Model, { ...batch, inputIds: padded })
  model.dispose()
})

t.test('DistilBERT: unpadded equals padded', async (t) => {
  manualSeed(6)
  const model = new DistilBertForSequenceClassification(new DistilBertConfig({
    vocab_size: 50, dim: 32, n_layers: 2, n_heads: 4, hidden_dim: 48, max_position_embeddings: 16,
    dropout: 0.1, attention_dropout: 0.1, seq_classif_dropout: 0.2, num_labels: 3,
  } as never))
  checkEqual(t, model as unknown as Model, makeBatch(50, 1, 3, 24))
  model.dispose()
})

t.test('DeBERTa-v3 (relative attention, c2p + p2c): unpadded equals padded', async (t) => {
  manualSeed(7)
  const model = new DebertaV2ForSequenceClassification(new DebertaV2Config({
    vocab_size: 50, hidden_size: 48, num_hidden_layers: 2, num_attention_heads: 3, intermediate_size: 48,
    max_position_embeddings: 64, type_vocab_size: 0, relative_attention: true, position_buckets: 8, pos_att_type: ['p2c', 'c2p'],
    share_att_key: true, position_biased_input: false, norm_rel_ebd: 'layer_norm', max_relative_positions: -1,
    hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, pooler_dropout: 0.1, pooler_hidden_size: 48, layer_norm_eps: 1e-7, num_labels: 3,
  } as never))
  checkEqual(t, model as unknown as Model, makeBatch(50, 1, 3, 25))
  model.dispose()
})

t.test('LoRA (lora_dropout 0.1, query/value): unpadded equals padded', async (t) => {
  manualSeed(8)
  const base = new BertForSequenceClassification(bertConfig())
  const model = getPeftModel(base, new LoraConfig({ r: 4, loraAlpha: 8, loraDropout: 0.1, targetModules: ['query', 'value'], taskType: 'SEQ_CLS' }))
  // B starts at zero (no gradient reaches A): move it so both adapters learn.
  for (const [name, p] of model.namedParameters()) {
    if (name.includes('lora_B')) p.buffer.write(Float32Array.from({ length: p.numel }, (_, i) => Math.sin(i + 1) * 0.1))
  }
  const { padded } = checkEqual(t, model as unknown as Model, makeBatch(50, 2, 3, 26))
  t.ok([...padded.grads].some(([name, g]) => name.includes('lora_A') && g !== null && maxAbs(g) > 0), 'LoRA A gets a gradient')
  model.dispose()
})
