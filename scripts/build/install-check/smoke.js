// A user's first program, run against an installed bertkit (require('bertkit'),
// not this repository's sources): a tiny random BERT with its own vocabulary,
// a CSV dataset, a few Trainer steps, save, reload, same logits. Used by
// scripts/build/install-check/run.sh in each install scenario; prints one summary
// line and exits non-zero on any failure.
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const bk = require('bertkit')

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bertkit-smoke-'))
  const words = ['good', 'great', 'fun', 'moving', 'bad', 'awful', 'dull', 'boring', 'the', 'a', 'movie', 'film', 'was', 'is', 'plot']
  const vocab = path.join(dir, 'vocab.txt')
  fs.writeFileSync(vocab, ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', ...words].join('\n') + '\n')
  const tokenizer = bk.BertTokenizerFast.fromVocabFile(vocab)

  const rows = []
  for (let i = 0; i < 48; i++) {
    const positive = i % 2 === 0
    const adj = positive ? words[i % 4] : words[4 + (i % 4)]
    rows.push(`"the ${words[10 + (i % 2)]} ${words[12 + (i % 2)]} ${adj}",${positive ? 1 : 0}`)
  }
  const csv = path.join(dir, 'train.csv')
  fs.writeFileSync(csv, 'text,label\n' + rows.join('\n') + '\n')
  const data = await bk.loadDataset('csv', { dataFiles: { train: csv } })
  const tokenized = data.train.map((batch) => tokenizer(batch.text, { truncation: true, maxLength: 32 }), { batched: true })

  const config = new bk.BertConfig({ vocab_size: 5 + words.length, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2,
    intermediate_size: 64, max_position_embeddings: 32, num_labels: 2 })
  const model = new bk.BertForSequenceClassification(config)
  const args = new bk.TrainingArguments(path.join(dir, 'out'), { learningRate: 1e-3, perDeviceTrainBatchSize: 8,
    numTrainEpochs: 1, maxSteps: 4, loggingSteps: 1, saveStrategy: 'no', disableTqdm: true, seed: 7 })
  const trainer = new bk.Trainer({ model, args, trainDataset: tokenized, dataCollator: bk.DataCollatorWithPadding({ tokenizer }) })
  const result = await trainer.train()
  if (!(result.globalStep === 4 && Number.isFinite(result.trainLoss))) throw new Error(`training did not run 4 finite steps: ${JSON.stringify(result)}`)

  const saved = path.join(dir, 'model')
  model.savePretrained(saved)
  const reloaded = await bk.AutoModelForSequenceClassification.fromPretrained(saved)
  model.eval()
  reloaded.eval()
  const enc = tokenizer(['the movie was great', 'the plot is dull'], { padding: true })
  const logits = (m) => bk.tidy(() => bk.noGrad(() => {
    const ids = bk.tensor(Int32Array.from(enc.inputIds.flat()), { shape: [2, enc.inputIds[0].length], dtype: 'int32' })
    const mask = bk.tensor(Int32Array.from(enc.attentionMask.flat()), { shape: [2, enc.inputIds[0].length], dtype: 'int32' })
    return Array.from(m.forward({ inputIds: ids, attentionMask: mask }).logits.toFloat32Array())
  }))
  const a = logits(model)
  const b = logits(reloaded)
  const diff = Math.max(...a.map((v, i) => Math.abs(v - b[i])))
  if (!(diff < 1e-6)) throw new Error(`reloaded model differs: ${a} vs ${b}`)
  const { variant, origin, path: addonPath } = bk.loadNative()
  console.log(`smoke ok: 4 steps, loss ${result.trainLoss.toFixed(4)}, reload max |diff| ${diff.toExponential(1)}; addon ${variant} (${origin}) ${addonPath}`)
  fs.rmSync(dir, { recursive: true, force: true })
}

main().catch((err) => {
  console.error(`smoke FAILED: ${err && err.stack ? err.stack : err}`)
  process.exit(1)
})
