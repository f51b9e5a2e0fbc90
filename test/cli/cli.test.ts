// The bertkit command: flag parsing onto TrainingArguments, --freeze specs,
// and train → predict end to end on a tiny model and a tiny CSV dataset.
import t from 'tap'
import { mkdtempSync, writeFileSync, existsSync, rmSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { parseFlags, trainingArgsFromFlags } from '../../lib/cli/args.js'
import { main, applyFreeze } from '../../lib/cli/main.js'
import { BertConfig, BertForSequenceClassification, parameterSummary } from '../../lib/index.js'
import { saveTinyCliModel, sentimentCsv } from '../helpers/tiny_training.js'

t.test('flags map onto TrainingArguments by type', async (t) => {
  const { flags, positional } = parseFlags(['--learning-rate', '2e-5', '--fp16', '--output-dir=out', '--freeze', 'head', 'extra'])
  t.same(positional, ['extra'])
  const { fields, rest } = trainingArgsFromFlags(flags, new Set(['freeze']))
  t.same(fields, { learningRate: 2e-5, fp16: true, outputDir: 'out' })
  t.same([...rest], [['freeze', 'head']])
  t.throws(() => trainingArgsFromFlags(parseFlags(['--learning-rate', 'fast']).flags, new Set()), /--learning-rate: expected a number, got "fast"/)
  t.throws(() => trainingArgsFromFlags(parseFlags(['--lerning-rate', '1']).flags, new Set()), /unknown flag --lerning-rate/)
})

t.test('--freeze specs', async (t) => {
  const { withDeferredInit } = await import('../../lib/nn/init.js')
  const { value: model } = withDeferredInit(() => new BertForSequenceClassification(new BertConfig({ vocab_size: 50, hidden_size: 8, num_hidden_layers: 12, num_attention_heads: 2, intermediate_size: 16 })))
  applyFreeze(model, 'embeddings+layers:0-5')
  const frozen = [...model.namedParameters()].filter(([, p]) => !p.requiresGrad).map(([n]) => n)
  t.equal(frozen.length, 5 + 6 * 16, 'embeddings (5) and layers 0-5 (6 x 16)')
  t.ok(frozen.every((n) => n.startsWith('bert.embeddings.') || /encoder\.layer\.[0-5]\./.test(n)))
  applyFreeze(model, 'none')
  applyFreeze(model, 'index:<=100')
  t.equal(parameterSummary(model).trainableTensors, 100, 'index <= 100 frozen: 100 of 201 left')
  t.throws(() => applyFreeze(model, 'layers:3'), /--freeze: cannot read "layers:3"/)
  model.dispose()
})

t.test('bertkit train, then predict, on a tiny model and CSV data', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-cli-'))
  const modelDir = join(dir, 'tiny')
  saveTinyCliModel(modelDir)
  writeFileSync(join(dir, 'train.csv'), sentimentCsv(32))
  writeFileSync(join(dir, 'test.csv'), sentimentCsv(8))
  const out = join(dir, 'out')
  const logs: string[] = []
  const log = console.log
  console.log = (...a: unknown[]) => { logs.push(a.join(' ')) }
  try {
    const code = await main(['train', '--model', modelDir, '--dataset', 'csv', '--data-files', `train=${join(dir, 'train.csv')},test=${join(dir, 'test.csv')}`,
      '--output-dir', out, '--max-steps', '4', '--per-device-train-batch-size', '8', '--learning-rate', '1e-3', '--disable-tqdm', '--logging-steps', '2', '--freeze', 'embeddings'])
    t.equal(code, 0)
  } finally {
    console.log = log
  }
  const result = JSON.parse(logs.join('\n'))
  t.equal(result.train.globalStep, 4)
  t.ok(Number.isFinite(result.eval.evalF1) && Number.isFinite(result.eval.evalAccuracy), `evaluated with accuracy and F1: ${JSON.stringify(result.eval)}`)
  t.ok(existsSync(join(out, 'model.safetensors')) && existsSync(join(out, 'tokenizer.json')), 'model and tokenizer saved')
  const lines: string[] = []
  console.log = (...a: unknown[]) => { lines.push(a.join(' ')) }
  try {
    await main(['predict', '--model', out, '--text', 'a wonderful film', '--text', 'a second text', '--top-k', 'all'])
  } finally {
    console.log = log
  }
  const preds = lines.map((l) => JSON.parse(l))
  t.same(preds.map((p) => p.text), ['a wonderful film', 'a second text'], 'one JSON line per --text')
  t.equal(preds[0].labels.length, 2)
  t.ok(Math.abs(preds[0].labels[0].score + preds[0].labels[1].score - 1) < 1e-6, 'scores are probabilities')
  await t.rejects(main(['train', '--model', modelDir]), /--dataset is required/)
  await t.rejects(main(['frobnicate']), /unknown command "frobnicate"/)
  void readFileSync
  rmSync(dir, { recursive: true, force: true })
})
