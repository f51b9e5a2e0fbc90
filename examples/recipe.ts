// The seed's Python recipe, line for line (see README). Run:
//   npx tsc -p tsconfig.json && node dist/examples/recipe.js [MODEL] [RAW_DATA_DIR]
// MODEL defaults to bert-base-cased (Hub); RAW_DATA_DIR, when given, reads the
// raw rt-polarity files instead of the Hub dataset.
import {
  AutoTokenizer, AutoModelForSequenceClassification, DataCollatorWithPadding, TrainingArguments, Trainer,
  loadDataset, loadRottenTomatoesRaw, f1, type Dataset, type EvalPrediction,
} from '../lib/index.js'

async function main(): Promise<void> {
  const [modelId = 'bert-base-cased', rawDir] = process.argv.slice(2)
  const tomatoes = rawDir ? loadRottenTomatoesRaw(rawDir) : await loadDataset('rotten_tomatoes')
  const model = await AutoModelForSequenceClassification.fromPretrained(modelId, { numLabels: 2 })
  const tokenizer = await AutoTokenizer.fromPretrained(modelId)
  const dataCollator = DataCollatorWithPadding({ tokenizer })
  const tokenize = (split: Dataset) => split.map((batch) => tokenizer(batch.text as string[], { truncation: true }), { batched: true })
  // Freeze all but the head.
  for (const [name, param] of model.namedParameters()) param.requiresGrad = name.startsWith('classifier')
  const args = new TrainingArguments('model', {
    learningRate: 2e-5, perDeviceTrainBatchSize: 16, perDeviceEvalBatchSize: 16,
    numTrainEpochs: 1, weightDecay: 0.01, saveStrategy: 'epoch',
  })
  const computeMetrics = (p: EvalPrediction) => ({ f1: f1(p.labelIds!, p.predictedLabels) })
  const trainer = new Trainer({
    model, args, trainDataset: tokenize(tomatoes.train), evalDataset: tokenize(tomatoes.test),
    dataCollator, computeMetrics,
  })
  console.log(await trainer.train())
  console.log(await trainer.evaluate())
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
