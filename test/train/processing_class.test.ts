// The Trainer's processingClass (transformers 5's name; tokenizer is the
// alias): saved into every checkpoint and by saveModel, so that a
// checkpoint folder is a model the pipeline (and `bertkit predict`) loads;
// with no dataCollator, DataCollatorWithPadding over it, as transformers.
import t from 'tap'
import { mkdtempSync, readdirSync, existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { AutoModelForSequenceClassification, AutoTokenizer, Dataset, Trainer, TrainingArguments, pipeline } from '../../lib/index.js'

const fixture = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'pipeline', 'bert_labels')
const TEXTS = ['a great film .', 'the worst movie , dull and too long', 'charming and funny', 'not good , not bad', 'a mess', 'fresh and clever']

t.test('checkpoints and the final model hold the tokenizer; a checkpoint folder classifies', async (t) => {
  const out = mkdtempSync(join(os.tmpdir(), 'bertkit-pc-'))
  try {
    const tokenizer = await AutoTokenizer.fromPretrained(fixture)
    const model = await AutoModelForSequenceClassification.fromPretrained(fixture, { device: 'cpu' })
    const train = Dataset.fromColumns({ text: [...TEXTS, ...TEXTS], label: [2, 0, 2, 1, 0, 2, 2, 0, 2, 1, 0, 2] })
      .map((b) => tokenizer(b.text as string[], { truncation: true }), { batched: true })
    const args = new TrainingArguments(out, { learningRate: 1e-3, perDeviceTrainBatchSize: 2, numTrainEpochs: 1, saveStrategy: 'steps', saveSteps: 2, disableTqdm: true, plotCurves: false, device: 'cpu' })
    const trainer = new Trainer({ model, args, trainDataset: train, processingClass: tokenizer })
    t.equal(trainer.processingClass, tokenizer)
    await trainer.train()
    const checkpoints = readdirSync(out).filter((d) => d.startsWith('checkpoint-')).sort()
    t.same(checkpoints, ['checkpoint-2', 'checkpoint-4', 'checkpoint-6'], 'a checkpoint every 2 steps')
    for (const c of checkpoints) {
      for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'vocab.txt']) t.ok(existsSync(join(out, c, f)), `${c}/${f}`)
    }
    const final = join(out, 'final')
    trainer.saveModel(final)
    t.ok(existsSync(join(final, 'tokenizer.json')), 'saveModel writes the tokenizer too')
    const fromCheckpoint = await pipeline('text-classification', join(out, 'checkpoint-6'), { device: 'cpu', topK: null })
    const fromFinal = await pipeline('text-classification', final, { device: 'cpu', topK: null })
    const trained = await pipeline('text-classification', model, { tokenizer, topK: null })
    const a = await fromCheckpoint(TEXTS), b = await fromFinal(TEXTS), c = await trained(TEXTS)
    t.same(a, c, 'the last checkpoint classifies as the trained model does')
    t.same(b, c, 'so does the saved final model')
    t.same((a as Array<Array<{ label: string }>>)[0].map((r) => r.label).sort(), ['negative', 'neutral', 'positive'], 'with the label names')
    for (const p of [fromCheckpoint, fromFinal, trained]) p.dispose()
    trainer.dispose()
    model.dispose()
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

t.test('tokenizer is an alias; conflicting or bad values are refused', async (t) => {
  const tokenizer = await AutoTokenizer.fromPretrained(fixture)
  const other = await AutoTokenizer.fromPretrained(fixture)
  const model = await AutoModelForSequenceClassification.fromPretrained(fixture, { device: 'cpu' })
  const args = new TrainingArguments(join(os.tmpdir(), 'bertkit-never'), { device: 'cpu' })
  t.equal(new Trainer({ model, args, tokenizer }).processingClass, tokenizer, 'tokenizer: the alias')
  t.throws(() => new Trainer({ model, args, tokenizer, processingClass: other }), /processingClass and tokenizer name the same thing/)
  t.throws(() => new Trainer({ model, args, processingClass: {} as never }), /processingClass must be a tokenizer/)
  t.throws(() => new Trainer({ model, args }), /dataCollator must be a function.*or pass processingClass/)
  model.dispose()
})
