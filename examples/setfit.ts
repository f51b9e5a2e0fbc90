// setfit's quick start, line for line. Run:
//   npx tsc -p tsconfig.json && node dist/examples/setfit.js [MODEL] [RAW_DATA_DIR]
// MODEL: a sentence-transformers folder or Hub id (default
// sentence-transformers/all-MiniLM-L6-v2); RAW_DATA_DIR, when given, reads the
// raw rt-polarity files instead of the Hub dataset.
//
//   dataset = load_dataset("rotten_tomatoes")
//   train_dataset = sample_dataset(dataset["train"], label_column="label", num_samples=8)
//   model = SetFitModel.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
//   args = TrainingArguments(batch_size=16, num_epochs=1)
//   trainer = Trainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=dataset["test"])
//   trainer.train(); trainer.evaluate()
//   model.save_pretrained("setfit-model"); model.predict(["a gripping film", "dull"])
import { setfit, loadDataset, loadRottenTomatoesRaw } from '../lib/index.js'

async function main(): Promise<void> {
  const [modelId = 'sentence-transformers/all-MiniLM-L6-v2', rawDir] = process.argv.slice(2)
  const dataset = rawDir ? loadRottenTomatoesRaw(rawDir) : await loadDataset('rotten_tomatoes')
  const trainDataset = setfit.sampleDataset(dataset.train, { labelColumn: 'label', numSamples: 8 })
  const model = await setfit.SetFitModel.fromPretrained(modelId)
  const args = new setfit.TrainingArguments({ batchSize: 16, numEpochs: 1 })
  const trainer = new setfit.Trainer({ model, args, trainDataset, evalDataset: dataset.test })
  console.log(trainer.train())
  console.log(trainer.evaluate())
  model.savePretrained('setfit-model')
  console.log(model.predict(['a gripping film', 'dull']))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
