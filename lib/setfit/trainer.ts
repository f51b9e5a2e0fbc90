// setfit's Trainer: phase 1 fine-tunes the body contrastively on pairs of
// training texts (CosineSimilarityLoss) the way setfit drives
// sentence-transformers' Trainer — pairs from setfit's sampler, visited in
// torch.randperm order reseeded with seed + epoch, AdamW with decay on
// weights only, linear warm-up then decay, gradients clipped to norm 1;
// phase 2 fits the head on the tuned body's embeddings.
import { AdamW } from '../optim/adamw.js'
import { clipGradNorm } from '../optim/clip.js'
import { tidy } from '../tensor/scope.js'
import { manualSeed } from '../tensor/random.js'
import { Dataset } from '../data/dataset.js'
import { lrMultiplier } from '../train/scheduler.js'
import { CountProgress as Progress } from '../train/count_progress.js'
import { accuracy, f1, precision, recall } from '../train/metrics.js'
import { cosineSimilarity, mseLoss } from '../sentence_transformers/functional.js'
import { ContrastiveDataset, type Label, type SentencePair } from './sampler.js'
import { torchRandperm } from './random.js'
import { TrainingArguments } from './training_args.js'
import { SetFitModel, type SetFitLabel } from './modeling.js'

const NO_DECAY = /(^|\.)(bias|LayerNorm\.weight|layer_norm\.weight|LayerNorm\.bias|layer_norm\.bias)$/

export type Metric = 'accuracy' | 'f1' | 'precision' | 'recall' | ((yPred: SetFitLabel[], yTrue: SetFitLabel[]) => Record<string, number>)

export interface TrainerOptions {
  model: SetFitModel
  args?: TrainingArguments
  trainDataset?: Dataset
  evalDataset?: Dataset
  /** Default "accuracy" (exact match for multi-label). */
  metric?: Metric
  /** {"dataset column": "text" | "label"} */
  columnMapping?: Record<string, string>
}

export interface LogEntry {
  step: number
  epoch: number
  embedding_loss?: number
  learning_rate?: number
  grad_norm?: number
}

export interface SetFitTrainOutput {
  /** Phase 1 optimizer steps. */
  globalStep: number
  /** Mean phase 1 loss over its steps (NaN when phase 1 had none). */
  embeddingLoss: number
  /** Pairs phase 1 drew (one epoch). */
  numPairs: number
  embeddingRuntime: number
  classifierRuntime: number
  trainRuntime: number
}

const REQUIRED_COLUMNS = ['text', 'label']

export class Trainer {
  readonly model: SetFitModel
  args: TrainingArguments
  readonly trainDataset: Dataset | null
  readonly evalDataset: Dataset | null
  readonly metric: Metric
  readonly logHistory: LogEntry[] = []

  constructor(options: TrainerOptions) {
    if (!options || !(options.model instanceof SetFitModel)) throw new TypeError('Trainer: model must be a SetFitModel')
    if (options.args !== undefined && !(options.args instanceof TrainingArguments)) throw new TypeError('Trainer: args must be a setfit TrainingArguments')
    this.model = options.model
    this.args = options.args ?? new TrainingArguments()
    this.metric = options.metric ?? 'accuracy'
    this.trainDataset = options.trainDataset ? applyColumnMapping(options.trainDataset, options.columnMapping, 'training') : null
    this.evalDataset = options.evalDataset ? applyColumnMapping(options.evalDataset, options.columnMapping, 'evaluation') : null
  }

  /** Both phases: the body on pairs of the training texts, then the head. */
  train(args?: TrainingArguments): SetFitTrainOutput {
    const a = args ?? this.args
    if (!this.trainDataset) throw new Error('Trainer.train: training requires a trainDataset')
    const { texts, labels } = datasetToParameters(this.trainDataset, 'training')
    const start = performance.now()
    const phase1 = this.trainEmbeddings(texts, labels, a)
    const mid = performance.now()
    this.trainClassifier(texts, labels, a)
    const end = performance.now()
    return { ...phase1, embeddingRuntime: (mid - start) / 1000, classifierRuntime: (end - mid) / 1000, trainRuntime: (end - start) / 1000 }
  }

  /** The pairs phase 1 trains on, in one epoch's pre-shuffle order (setfit's ContrastiveDataset). */
  pairs(texts: readonly string[], labels: readonly SetFitLabel[], args: TrainingArguments = this.args): SentencePair[] {
    const maxPairs = args.maxSteps === -1 ? -1 : args.maxSteps * args.embeddingBatchSize
    return new ContrastiveDataset(texts, labels as Label[], {
      multilabel: this.model.multiTargetStrategy !== null,
      numIterations: args.numIterations,
      samplingStrategy: args.samplingStrategy,
      maxPairs,
    }).pairs()
  }

  /** Phase 1: contrastive fine-tuning of the body. */
  trainEmbeddings(texts: readonly string[], labels: readonly SetFitLabel[], args: TrainingArguments = this.args): { globalStep: number; embeddingLoss: number; numPairs: number } {
    const pairs = this.pairs(texts, labels, args)
    const batchSize = args.embeddingBatchSize
    const stepsPerEpoch = Math.ceil(pairs.length / batchSize)
    const epochs = args.maxSteps > 0 ? Math.ceil(args.maxSteps / Math.max(stepsPerEpoch, 1)) : args.embeddingNumEpochs
    const totalSteps = args.maxSteps > 0 ? args.maxSteps : stepsPerEpoch * epochs
    if (totalSteps === 0 || pairs.length === 0) return { globalStep: 0, embeddingLoss: NaN, numPairs: pairs.length }
    // transformers 5 reads a warm-up below 1 as a fraction of the steps (rounded up), 1 and above as a count.
    const p = args.warmupProportion
    const warmup = p >= 1 ? Math.trunc(p) : Math.ceil(totalSteps * p)
    const body = this.model.modelBody
    manualSeed(args.seed)
    body.train()
    const decay: ReturnType<typeof body.parameters> = []
    const noDecay: ReturnType<typeof body.parameters> = []
    for (const [name, param] of body.namedParameters()) {
      if (!param.requiresGrad) continue
      ;(NO_DECAY.test(name) ? noDecay : decay).push(param)
    }
    const l2 = args.l2Weight ?? 0
    const optimizer = new AdamW([{ params: decay, weightDecay: l2 }, { params: noDecay, weightDecay: 0 }], { lr: args.bodyEmbeddingLearningRate })
    const trainable = [...decay, ...noDecay]
    const progress = new Progress(totalSteps, args.showProgressBar, 'embedding')
    let step = 0
    let lossSum = 0
    let sinceLog = 0, sinceLogSteps = 0
    try {
      for (let epoch = 0; epoch < epochs && step < totalSteps; epoch++) {
        const order = torchRandperm(args.seed + epoch, pairs.length)
        for (let start = 0; start < order.length && step < totalSteps; start += batchSize) {
          const batch = order.slice(start, start + batchSize).map((i) => pairs[i])
          const lr = args.bodyEmbeddingLearningRate * lrMultiplier('linear', step, warmup, totalSteps)
          for (const g of optimizer.paramGroups) g.lr = lr
          const loss = tidy(() => {
            const u = body.forward(body.tokenize(batch.map((b) => b.sentence1)))
            const v = body.forward(body.tokenize(batch.map((b) => b.sentence2)))
            const l = mseLoss(cosineSimilarity(u, v), batch.map((b) => b.label))
            l.backward()
            return l.item()
          })
          const clip = clipGradNorm(trainable, args.maxGradNorm)
          const logging = (step === 0 && args.loggingFirstStep) || (step + 1) % args.loggingSteps === 0
          const gradNorm = logging ? clip.totalNorm() : NaN
          optimizer.step({ gradScale: clip.coefficient })
          clip.sumOfSquares.dispose()
          clip.coefficient.dispose()
          optimizer.zeroGrad()
          step++
          lossSum += loss
          sinceLog += loss
          sinceLogSteps++
          if (logging) {
            this.logHistory.push({ step, epoch: step / stepsPerEpoch, embedding_loss: sinceLog / sinceLogSteps, learning_rate: lr, grad_norm: gradNorm })
            sinceLog = 0
            sinceLogSteps = 0
          }
          progress.update(step, { loss, lr })
        }
      }
    } finally {
      progress.stop()
      optimizer.dispose()
    }
    return { globalStep: step, embeddingLoss: lossSum / step, numPairs: pairs.length }
  }

  /** Phase 2: the head on the body's embeddings (or SetFitHead's own training loop). */
  trainClassifier(texts: readonly string[], labels: readonly SetFitLabel[], args: TrainingArguments = this.args): void {
    this.model.fit(texts, labels, {
      numEpochs: args.classifierNumEpochs,
      batchSize: args.classifierBatchSize,
      bodyLearningRate: args.bodyClassifierLearningRate,
      headLearningRate: args.headLearningRate,
      l2Weight: args.l2Weight,
      maxLength: args.maxLength,
      showProgressBar: args.showProgressBar,
      endToEnd: args.endToEnd,
      seed: args.seed,
    })
  }

  /** The metric on a dataset (default: the evalDataset), computed from the model's predictions. */
  evaluate(dataset?: Dataset, options: { metricKeyPrefix?: string } = {}): Record<string, number> {
    const ds = dataset ? applyColumnMapping(dataset, undefined, 'evaluation') : this.evalDataset
    if (!ds) throw new Error('Trainer.evaluate: no evaluation dataset provided to evaluate() nor to the Trainer')
    const { texts, labels } = datasetToParameters(ds, 'evaluation')
    const preds = this.model.predict(texts, { useLabels: false, showProgressBar: this.args.showProgressBar })
    const results = computeMetric(this.metric, preds, labels)
    void options
    return results
  }
}

/** setfit's SetFitTrainer: the older name of Trainer. */
export class SetFitTrainer extends Trainer {}

function applyColumnMapping(ds: Dataset, mapping: Record<string, string> | undefined, which: string): Dataset {
  if (!(ds instanceof Dataset)) throw new TypeError(`Trainer: the ${which} dataset must be a Dataset`)
  let out = ds
  if (mapping) {
    for (const from of Object.keys(mapping)) {
      if (!ds.hasColumn(from)) throw new Error(`The column mapping expected the columns ${JSON.stringify(Object.keys(mapping).sort())} in the dataset, but the dataset had the columns ${JSON.stringify(ds.columnNames.sort())}.`)
    }
    for (const [from, to] of Object.entries(mapping)) if (from !== to) out = out.renameColumn(from, to)
  }
  const missing = REQUIRED_COLUMNS.filter((c) => !out.hasColumn(c))
  if (missing.length) {
    throw new Error(`SetFit expected the ${which} dataset to have the columns ["label", "text"], but only the columns ${JSON.stringify(out.columnNames.sort())} were found. Either make sure these columns are present, or specify which columns to use with columnMapping in Trainer.`)
  }
  return out
}

function datasetToParameters(ds: Dataset, which: string): { texts: string[]; labels: SetFitLabel[] } {
  const texts = ds.column<unknown>('text')
  texts.forEach((t, i) => {
    if (typeof t !== 'string') throw new TypeError(`Trainer: ${which} dataset row ${i}: "text" is ${JSON.stringify(t)}, not a string`)
  })
  const labels = ds.column<unknown>('label')
  labels.forEach((l, i) => {
    const ok = typeof l === 'string' || (typeof l === 'number' && Number.isFinite(l)) || (Array.isArray(l) && l.every((v) => v === 0 || v === 1))
    if (!ok) throw new TypeError(`Trainer: ${which} dataset row ${i}: "label" is ${JSON.stringify(l)}; expected a class (number or string) or a 0/1 vector`)
  })
  return { texts: texts as string[], labels: labels as SetFitLabel[] }
}

function computeMetric(metric: Metric, preds: SetFitLabel[], labels: SetFitLabel[]): Record<string, number> {
  if (typeof metric === 'function') {
    const r = metric(preds, labels)
    return typeof r === 'number' ? { metric: r } : r
  }
  if (preds.some((p) => Array.isArray(p)) || labels.some((l) => Array.isArray(l))) {
    if (metric !== 'accuracy') throw new Error(`Trainer.evaluate: metric "${metric}" is not implemented for multi-label outputs; pass a function`)
    // evaluate's multilabel accuracy: the share of rows predicted exactly.
    let exact = 0
    preds.forEach((p, i) => {
      const l = labels[i] as number[]
      if (Array.isArray(p) && p.length === l.length && p.every((v, j) => v === l[j])) exact++
    })
    return { accuracy: preds.length ? exact / preds.length : 0 }
  }
  // String labels are encoded as sklearn's LabelEncoder does: the sorted union.
  const keys = [...new Set([...preds, ...labels].map((v) => `${typeof v}:${v}`))].sort()
  const code = new Map(keys.map((k, i) => [k, i]))
  const encode = (v: SetFitLabel) => code.get(`${typeof v}:${v}`)!
  const numeric = [...preds, ...labels].every((v) => typeof v === 'number' && Number.isInteger(v))
  const yPred = numeric ? (preds as number[]) : preds.map(encode)
  const yTrue = numeric ? (labels as number[]) : labels.map(encode)
  switch (metric) {
    case 'accuracy': return { accuracy: accuracy(yTrue, yPred) }
    case 'f1': return { f1: f1(yTrue, yPred) }
    case 'precision': return { precision: precision(yTrue, yPred) }
    case 'recall': return { recall: recall(yTrue, yPred) }
    default: throw new Error(`Trainer: unknown metric ${JSON.stringify(metric)}; use accuracy, f1, precision, recall or a function`)
  }
}
