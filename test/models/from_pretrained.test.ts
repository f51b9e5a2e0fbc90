// What fromPretrained guarantees for every family, beyond the numbers:
// the model comes back in eval mode (as transformers returns it); config.json
// is validated field by field (types, ranges, sane sizes) and against the
// checkpoint's shapes before anything is allocated, the message naming the
// file and the field; weights with NaN/Inf are refused naming the tensor; and
// non-finite logits are an error at prediction, never "label -1".
import t from 'tap'
import { mkdtempSync, writeFileSync, copyFileSync, readFileSync, rmSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import {
  AutoModelForSequenceClassification, BertForSequenceClassification, RobertaForSequenceClassification,
  DistilBertForSequenceClassification, DebertaV2ForSequenceClassification, tensor, noGrad, tidy, type Tensor,
} from '../../lib/index.js'
import { native } from '../../lib/native.js'
import { readSafetensors, writeSafetensors } from '../../lib/hub/safetensors.js'
import { checkFinite } from '../../lib/models/modeling_utils.js'
import { Dataset } from '../../lib/data/dataset.js'
import { Trainer, type DataCollator } from '../../lib/train/trainer.js'
import { TrainingArguments } from '../../lib/train/training_args.js'
import { getPeftModel, LoraConfig, PeftModel } from '../../lib/peft/index.js'
import { main } from '../../lib/cli/main.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures')

interface Family {
  name: string
  dir: string
  load: (dir: string) => Promise<{ training: boolean; namedModules(): Iterable<[string, { training: boolean }]>; forward(i: never): { logits: Tensor }; dispose(): void }>
}

const FAMILIES: Family[] = [
  { name: 'bert', dir: join(fixtures, 'bert', 'one_layer'), load: (d) => BertForSequenceClassification.fromPretrained(d) },
  { name: 'roberta', dir: join(fixtures, 'roberta', 'base'), load: (d) => RobertaForSequenceClassification.fromPretrained(d) },
  { name: 'distilbert', dir: join(fixtures, 'distilbert', 'base'), load: (d) => DistilBertForSequenceClassification.fromPretrained(d) },
  { name: 'deberta-v2', dir: join(fixtures, 'deberta_v2', 'v3'), load: (d) => DebertaV2ForSequenceClassification.fromPretrained(d) },
]

function inputsOf(dir: string) {
  const raw = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Record<string, number[][]>
  const shape = [raw.input_ids.length, raw.input_ids[0].length]
  const ids = (rows: number[][]) => tensor(Int32Array.from(rows.flat()), { shape, dtype: 'int32' })
  return { inputIds: ids(raw.input_ids), attentionMask: ids(raw.attention_mask), tokenTypeIds: raw.token_type_ids ? ids(raw.token_type_ids) : null }
}

function logits(model: Family['load'] extends (d: string) => Promise<infer M> ? M : never, dir: string): Float32Array {
  return noGrad(() => tidy(() => model.forward(inputsOf(dir) as never).logits.toFloat32Array()))
}

/** A copy of a fixture directory (config.json + model.safetensors) with config changes applied. */
function variant(src: string, change: Record<string, unknown> | unknown, t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-load-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  copyFileSync(join(src, 'model.safetensors'), join(dir, 'model.safetensors'))
  const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')) as Record<string, unknown>
  const text = change !== null && typeof change === 'object' && !Array.isArray(change) ? { ...config, ...change } : change
  writeFileSync(join(dir, 'config.json'), JSON.stringify(text))
  return dir
}

for (const f of FAMILIES) {
  t.test(`${f.name}: fromPretrained returns eval mode; dropout is off until train()`, async (t) => {
    const model = await f.load(f.dir)
    t.equal(model.training, false, 'model.training is false')
    t.ok([...model.namedModules()].every(([, m]) => !m.training), 'every submodule is in eval mode')
    const a = logits(model, f.dir), b = logits(model, f.dir)
    t.same(Array.from(a), Array.from(b), 'two forward passes give the same logits (no dropout)')
    const expected = readSafetensors(join(f.dir, 'expected.safetensors')).tensors.get('logits')!.data as Float32Array
    t.ok(a.every((v, i) => Math.abs(v - expected[i]) <= 1e-4), 'and they are transformers\' eval-mode logits')
    model.dispose()
  })
}

t.test('PEFT loaders: from_pretrained for inference gives eval mode, as peft', async (t) => {
  const base = join(fixtures, 'bert', 'one_layer')
  const adapter = join(fixtures, 'lora', 'qv_classifier')
  const inference = PeftModel.fromPretrained(await BertForSequenceClassification.fromPretrained(base), adapter)
  t.ok([...inference.namedModules()].every(([, m]) => !m.training), 'isTrainable false: every module in eval mode')
  inference.dispose()
  const trainable = PeftModel.fromPretrained(await BertForSequenceClassification.fromPretrained(base), adapter, { isTrainable: true })
  t.equal(trainable.base_model.model.bert.training, false, 'isTrainable true: the base keeps the mode it had (eval from fromPretrained)')
  trainable.dispose()
})

t.test('the Trainer sets train() / eval() itself and hands the model back in the mode it found', async (t) => {
  const model = await BertForSequenceClassification.fromPretrained(join(fixtures, 'bert', 'one_layer'))
  const rows = Array.from({ length: 8 }, (_, i) => ({ input_ids: [1, 5 + i, 2], label: i % 2 }))
  const collate: DataCollator = (batch) => ({
    inputIds: tensor(Int32Array.from(batch.flatMap((r) => r.input_ids as number[])), { shape: [batch.length, 3], dtype: 'int32' }),
    labels: tensor(Int32Array.from(batch.map((r) => r.label as number)), { dtype: 'int32' }),
  })
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-modes-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const seen: boolean[] = []
  const watched = new Proxy(model, {
    get(target, prop, receiver) {
      if (prop === 'forward') return (inputs: never) => { seen.push(target.training); return target.forward(inputs) }
      return Reflect.get(target, prop, receiver)
    },
  })
  const trainer = new Trainer({
    model: watched, args: new TrainingArguments(dir, { maxSteps: 2, perDeviceTrainBatchSize: 4, disableTqdm: true, plotCurves: false, evalStrategy: 'steps', evalSteps: 1, saveStrategy: 'no' }),
    trainDataset: Dataset.fromRows(rows), evalDataset: Dataset.fromRows(rows), dataCollator: collate,
  })
  await trainer.evaluate()
  t.equal(model.training, false, 'evaluate() on a fresh model leaves it in eval mode')
  const evaluated = seen.splice(0)
  t.ok(evaluated.length > 0 && evaluated.every((m) => m === false), 'and ran in eval mode')
  await trainer.train()
  t.ok(seen.includes(true) && seen.includes(false), 'training steps ran in train mode, the evaluations between them in eval mode')
  t.equal(model.training, true, 'after train() the model is in train mode, as transformers leaves it')
  trainer.dispose()
  model.dispose()
})

// ---- config.json validation ---------------------------------------------------------

const bertDir = join(fixtures, 'bert', 'one_layer')
const CONFIG_CASES: Array<{ family: Family['name']; change: unknown; error: RegExp }> = [
  { family: 'bert', change: [1, 2, 3], error: /config\.json: config must be a JSON object .*but the file holds a JSON list/ },
  { family: 'bert', change: 'bert', error: /config\.json: config must be a JSON object .*but the file holds a JSON string/ },
  { family: 'bert', change: { num_hidden_layers: 1e9 }, error: /config\.json: num_hidden_layers must be at most 1024 .*got 1000000000/ },
  { family: 'bert', change: { num_hidden_layers: 40 }, error: /config\.json: num_hidden_layers is 40, but the checkpoint \(.*model\.safetensors\) holds layers 0\.\.0 only/ },
  { family: 'bert', change: { hidden_size: 1e12 }, error: /config\.json: hidden_size must be at most 65536/ },
  { family: 'bert', change: { vocab_size: 1e12 }, error: /config\.json: vocab_size must be at most 16777216/ },
  { family: 'bert', change: { vocab_size: 4000 }, error: /config\.json: vocab_size is 4000, but the checkpoint's "bert\.embeddings\.word_embeddings\.weight" .* is \[\d+, 32\] \(vocab_size x hidden_size\)/ },
  { family: 'bert', change: { hidden_size: 64, num_attention_heads: 4 }, error: /config\.json: hidden_size is 64, but the checkpoint's "bert\.embeddings\.word_embeddings\.weight"/ },
  { family: 'bert', change: { num_labels: 5, id2label: undefined }, error: /config\.json: num_labels is 5, but the checkpoint's "classifier\.weight" .* is \[2, 32\]/ },
  { family: 'bert', change: { id2label: 'x' }, error: /config\.json: id2label must be an object mapping label ids \("0", "1", \.\.\.\) to names, got "x" \(a string\)/ },
  { family: 'bert', change: { id2label: ['a', 'b'] }, error: /config\.json: id2label must be an object .*got \["a","b"\] \(a list\)/ },
  { family: 'bert', change: { id2label: { 0: 'a', 2: 'b' } }, error: /config\.json: id2label's keys must be 0\.\.1 .*but 1 is missing/ },
  { family: 'bert', change: { id2label: { 0: 'a', x: 'b' } }, error: /config\.json: id2label key "x" is not a label id/ },
  { family: 'bert', change: { id2label: { 0: 'a', 1: 7 } }, error: /config\.json: id2label\["1"\] must be a label name \(a string\), got 7/ },
  { family: 'bert', change: { label2id: { a: '0', b: 1 } }, error: /config\.json: label2id\["a"\] must be a label id \(an integer >= 0\), got "0" \(a string\)/ },
  { family: 'bert', change: { hidden_dropout_prob: '0.1' }, error: /config\.json: hidden_dropout_prob must be a probability in \[0, 1\), got "0\.1" \(a string\)/ },
  { family: 'bert', change: { attention_probs_dropout_prob: 1.5 }, error: /config\.json: attention_probs_dropout_prob must be a probability in \[0, 1\), got 1\.5/ },
  { family: 'bert', change: { classifier_dropout: 'none' }, error: /config\.json: classifier_dropout must be null or a probability/ },
  { family: 'bert', change: { layer_norm_eps: '1e-12' }, error: /config\.json: layer_norm_eps must be a number > 0, got "1e-12" \(a string\)/ },
  { family: 'bert', change: { layer_norm_eps: 0 }, error: /config\.json: layer_norm_eps must be a number > 0, got 0/ },
  { family: 'bert', change: { hidden_act: 7 }, error: /config\.json: hidden_act must be one of transformers' activation names/ },
  { family: 'bert', change: { hidden_act: 'prelu' }, error: /config\.json: hidden_act "prelu" is not supported: PReLU has a learned slope/ },
  { family: 'bert', change: { num_attention_heads: 0 }, error: /config\.json: num_attention_heads must be a positive integer, got 0/ },
  { family: 'bert', change: { num_attention_heads: 2.5 }, error: /config\.json: num_attention_heads must be a positive integer, got 2\.5/ },
  { family: 'bert', change: { type_vocab_size: true }, error: /config\.json: type_vocab_size must be a positive integer, got true/ },
  { family: 'bert', change: { max_position_embeddings: -1 }, error: /config\.json: max_position_embeddings must be a positive integer, got -1/ },
  { family: 'bert', change: { pad_token_id: 1000 }, error: /config\.json: pad_token_id must be null or an integer in \[0, vocab_size \d+\), got 1000/ },
  { family: 'bert', change: { problem_type: 'ranking' }, error: /config\.json: problem_type must be null or one of regression, single_label_classification, multi_label_classification, got "ranking"/ },
  { family: 'bert', change: { problem_type: 'single_label_classification', num_labels: 1, id2label: undefined }, error: /config\.json: problem_type "single_label_classification" needs num_labels > 1/ },
  { family: 'bert', change: { model_type: 7 }, error: /config\.json: (unknown model_type 7|model_type must be a string, got 7)/ },
  { family: 'roberta', change: { pad_token_id: '1' }, error: /config\.json: pad_token_id must be null or an integer in \[0, vocab_size/ },
  { family: 'roberta', change: { num_hidden_layers: 2000 }, error: /config\.json: num_hidden_layers must be at most 1024/ },
  { family: 'roberta', change: { intermediate_size: 1 << 20 }, error: /config\.json: intermediate_size must be at most 262144/ },
  { family: 'distilbert', change: { n_layers: 1e9 }, error: /config\.json: n_layers must be at most 1024/ },
  { family: 'distilbert', change: { n_layers: 9 }, error: /config\.json: n_layers is 9, but the checkpoint \(.*\) holds layers 0\.\.1 only/ },
  { family: 'distilbert', change: { dim: '32' }, error: /config\.json: dim must be a positive integer, got "32" \(a string\)/ },
  { family: 'distilbert', change: { dropout: '0.1' }, error: /config\.json: dropout must be a probability in \[0, 1\), got "0\.1" \(a string\)/ },
  { family: 'distilbert', change: { sinusoidal_pos_embds: 'yes' }, error: /config\.json: sinusoidal_pos_embds must be true or false, got "yes"/ },
  { family: 'distilbert', change: { activation: 'xielu' }, error: /config\.json: activation "xielu" is not supported/ },
  { family: 'distilbert', change: { max_position_embeddings: 1e12 }, error: /config\.json: max_position_embeddings must be at most 1048576/ },
  { family: 'deberta-v2', change: { max_relative_positions: 1e12 }, error: /config\.json: max_relative_positions must be an integer in/ },
  { family: 'deberta-v2', change: { relative_attention: 'true' }, error: /config\.json: relative_attention must be true or false, got "true" \(a string\)/ },
  { family: 'deberta-v2', change: { share_att_key: 1 }, error: /config\.json: share_att_key must be true or false, got 1/ },
  { family: 'deberta-v2', change: { embedding_size: 1e9 }, error: /config\.json: embedding_size must be at most 65536/ },
  { family: 'deberta-v2', change: { pooler_dropout: -0.5 }, error: /config\.json: pooler_dropout must be a probability in \[0, 1\), got -0\.5/ },
  { family: 'deberta-v2', change: { norm_rel_ebd: 3 }, error: /config\.json: norm_rel_ebd must be a string/ },
  { family: 'deberta-v2', change: { num_hidden_layers: 3 }, error: /config\.json: num_hidden_layers is 3, but the checkpoint \(.*\) holds layers 0\.\.1 only/ },
]

t.test('absurd and mistyped config.json fields fail on load, naming the file and the field, allocating nothing', async (t) => {
  for (const c of CONFIG_CASES) {
    const fam = FAMILIES.find((f) => f.name === c.family)!
    const dir = variant(fam.dir, c.change, t)
    const live = native().memoryStats().liveBuffers
    const start = Date.now()
    for (const load of [(d: string) => AutoModelForSequenceClassification.fromPretrained(d), fam.load]) {
      await t.rejects(load(dir), c.error, `${c.family} ${JSON.stringify(c.change)}`)
    }
    t.equal(native().memoryStats().liveBuffers, live, `${JSON.stringify(c.change)}: no tensor was left allocated`)
    t.ok(Date.now() - start < 5000, `${JSON.stringify(c.change)}: refused at once`)
  }
})

t.test('configs transformers accepts still load: every ACT2FN name bertkit computes, label maps, a truncated model', async (t) => {
  for (const act of ['silu', 'swish', 'gelu_pytorch_tanh', 'quick_gelu', 'gelu_fast', 'mish', 'gelu_accurate', 'relu6']) {
    const model = await BertForSequenceClassification.fromPretrained(variant(bertDir, { hidden_act: act }, t))
    t.equal(model.config.hidden_act, act, `hidden_act ${act}`)
    model.dispose()
  }
  const named = await BertForSequenceClassification.fromPretrained(variant(bertDir, { id2label: { 1: 'pos', 0: 'neg' }, label2id: { neg: 0, pos: 1 } }, t))
  t.same(named.config.id2label, { 0: 'neg', 1: 'pos' }, 'id2label keys in any order')
  named.dispose()
  const fewer = await DistilBertForSequenceClassification.fromPretrained(variant(join(fixtures, 'distilbert', 'base'), { n_layers: 1 }, t))
  t.equal(fewer.distilbert.transformer.layer.length, 1, 'fewer layers than the checkpoint: the first ones are used (as transformers)')
  t.ok(fewer.loadingInfo!.unexpectedKeys.some((k) => k.includes('transformer.layer.1.')), 'and the rest reported as unexpected')
  fewer.dispose()
})

// ---- non-finite weights and logits ---------------------------------------------------------

t.test('NaN / Inf weights are refused at load, naming the tensor and the element', async (t) => {
  for (const [bad, label] of [[NaN, 'NaN'], [Infinity, 'Infinity'], [-Infinity, '-Infinity']] as const) {
    const dir = variant(bertDir, {}, t)
    const file = join(dir, 'model.safetensors')
    const { tensors } = readSafetensors(file)
    const target = 'bert.encoder.layer.0.attention.self.key.weight'
    const entries = [...tensors].map(([name, v]) => {
      const data = Float32Array.from(v.data as Float32Array)
      if (name === target) data[3 * v.shape[1] + 5] = bad
      return [name, { dtype: 'F32' as const, shape: v.shape, data }] as const
    })
    writeSafetensors(file, entries)
    await t.rejects(BertForSequenceClassification.fromPretrained(dir),
      new RegExp(`model\\.safetensors: tensor "${target.replace(/\./g, '\\.')}" \\[32, 32\\] holds 1 non-finite value\\(s\\), the first ${label} at \\[3, 5\\]`))
  }
})

t.test('checkFinite finds a bad value anywhere (also past the last multiple of 4) and passes finite extremes', async (t) => {
  const values = Float32Array.of(1, -2, 3.4e38, -3.4e38, 1e-45, 0, -0)
  t.doesNotThrow(() => checkFinite('f', 'w', values, [7]), 'finite, however large or small')
  for (let i = 0; i < 7; i++) {
    for (const bad of [NaN, Infinity]) {
      const v = Float32Array.from(values)
      v[i] = bad
      t.throws(() => checkFinite('f', 'w', v, [7]), new RegExp(`f: tensor "w" \\[7\\] holds 1 non-finite value\\(s\\), the first ${bad} at \\[${i}\\]`))
    }
  }
})

t.test('non-finite logits are an error in Trainer.predict / evaluate and in `bertkit predict`, not label -1', async (t) => {
  // Finite but huge weights: the last LayerNorm overflows to Inf, the pooler turns that into NaN;
  // the load-time check cannot see it.
  const dir = variant(join(fixtures, 'hub', 'model'), {}, t)
  for (const f of ['tokenizer_config.json', 'vocab.txt']) copyFileSync(join(fixtures, 'hub', 'model', f), join(dir, f))
  const file = join(dir, 'model.safetensors')
  const { tensors } = readSafetensors(file)
  writeSafetensors(file, [...tensors].map(([name, v]) => [name, {
    dtype: 'F32' as const, shape: v.shape, data: name === 'bert.encoder.layer.0.output.LayerNorm.weight' ? new Float32Array(v.data.length).fill(3e38) : Float32Array.from(v.data as Float32Array),
  }] as const))
  const model = await BertForSequenceClassification.fromPretrained(dir)
  const rows = [{ input_ids: [2, 5, 3] }, { input_ids: [2, 6, 3] }]
  const collate: DataCollator = (batch) => ({ inputIds: tensor(Int32Array.from(batch.flatMap((r) => r.input_ids as number[])), { shape: [batch.length, 3], dtype: 'int32' }) })
  const out = mkdtempSync(join(os.tmpdir(), 'bertkit-nan-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  const trainer = new Trainer({ model, args: new TrainingArguments(out, { disableTqdm: true }), dataCollator: collate })
  await t.rejects(trainer.predict(Dataset.fromRows(rows)), /Trainer\.predict: the model produced non-finite logits \((-?Infinity|NaN)\) for 2 row\(s\), the first at row 0/)
  t.equal(model.training, false, 'the failed prediction leaves the model in the mode it had')
  trainer.dispose()
  model.dispose()
  // The CLI prints predictions with console.log; stdout itself carries the test's TAP stream.
  const logged: string[] = []
  const log = console.log
  console.log = (...items: unknown[]) => { logged.push(items.join(' ')) }
  try {
    await t.rejects(main(['predict', '--model', dir, '--text', 'a good movie']), /(predict \(.*\)|TextClassificationPipeline): the model produced non-finite logits/)
  } finally {
    console.log = log
  }
  t.notOk(logged.join('').includes('labelId'), 'no prediction line was printed')
  t.same(readdirSync(out).filter((n) => n.startsWith('checkpoint')), [], 'nothing written')
})

t.test('getPeftModel keeps the base model\'s mode; new LoRA modules start in train mode, as torch modules do', async (t) => {
  const peft = getPeftModel(await BertForSequenceClassification.fromPretrained(bertDir), new LoraConfig({ targetModules: ['query'], loraDropout: 0.1 }))
  t.equal(peft.base_model.model.bert.embeddings.training, false, 'base modules keep eval mode')
  t.equal([...peft.loraModules.values()][0].training, true, 'a fresh LoRA layer is in train mode (peft: a new nn.Module)')
  peft.dispose()
})
