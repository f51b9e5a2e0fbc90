// Trainer: transformers' Trainer loop for sequence classification — seeded
// data order, gradient accumulation, global-norm clipping, AdamW with decay
// only on weights (never biases or LayerNorm), LR schedule, logging, periodic
// evaluation and checkpoints (atomic, rotated, resumable exactly).
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, appendFileSync, statSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join, resolve, basename } from 'node:path'
import { AdamW } from '../optim/adamw.js'
import { clipGradNorm } from '../optim/clip.js'
import { native } from '../native.js'
import { tidy, noGrad, manualSeed, getRandomState, setRandomState, crossEntropy, zeros, full, tensor, autocast, type Tensor, type HalfDType } from '../tensor/index.js'
import { resolveDevice, synchronizeAsync } from '../tensor/device.js'
import { readSafetensors, writeSafetensorsAsync, atomicWriteFile, atomicWriteFileAsync } from '../hub/safetensors.js'
import { ensureWritableDir, makeDirs } from '../hub/dirs.js'
import { describeRow, type Dataset, type Row } from '../data/dataset.js'
import { SeededGenerator } from '../data/random.js'
import { TrainingArguments } from './training_args.js'
import { lrMultiplier, warmupStepsFor } from './scheduler.js'
import { metricKey, type TrainerCallback, type TrainerControl, type TrainerState, type LogEntry } from './callbacks.js'
import { argmaxRows } from './metrics.js'
import { getDecayParameterNames } from './trainer_pt_utils.js'
import { checkFiniteLogits } from '../models/modeling_utils.js'
import { Progress } from './progress.js'
import { DataCollatorWithPadding, type PadTokenSource } from '../data/data_collator.js'
import { writeCurvesSvg } from './plot.js'

/** A batch as models take it (BertForSequenceClassification's inputs). */
export interface ModelInputs {
  inputIds: Tensor
  attentionMask?: Tensor | null
  tokenTypeIds?: Tensor | null
  labels?: Tensor | null
}

/** What the Trainer needs of a model (BertForSequenceClassification fits). */
export interface TrainableModel {
  forward(inputs: ModelInputs): { loss: Tensor | null; logits: Tensor }
  namedParameters(): Iterable<[string, Tensor]>
  train(mode?: boolean): unknown
  eval(): unknown
  /** Whether the model is in training mode (Module has it); evaluation restores it afterwards. */
  readonly training?: boolean
  savePretrained(dir: string): void
  /** When present, checkpoints use it so the event loop runs while files are written. */
  savePretrainedAsync?(dir: string): Promise<void>
  loadStateDict(values: Map<string, Float32Array | Tensor>, options?: { strict?: boolean; source?: string }): unknown
}

/** Turns rows into a batch of tensors the caller owns (the Trainer disposes them). */
export type DataCollator = (features: Row[]) => ModelInputs

export interface EvalPrediction {
  /** Logits, row-major [n, numLabels]. */
  predictions: Float32Array
  numLabels: number
  /** Gold labels (int32 for classification, float32 for regression), or null. */
  labelIds: Int32Array | Float32Array | null
  /** argmax of predictions per row. */
  predictedLabels: Int32Array
}

/** What the Trainer saves beside the model: a tokenizer (anything with savePretrained(dir)). */
export interface ProcessingClass {
  savePretrained(dir: string): unknown
}

export interface TrainerOptions {
  model: TrainableModel
  args: TrainingArguments
  trainDataset?: Dataset
  evalDataset?: Dataset
  /** Default, with a processingClass: DataCollatorWithPadding over it, as transformers does. */
  dataCollator?: DataCollator
  /**
   * The tokenizer (transformers 5's processing_class): saved into every
   * checkpoint and by saveModel, so a checkpoint folder is a usable model.
   */
  processingClass?: ProcessingClass
  /** Older name of processingClass, kept for ported code. */
  tokenizer?: ProcessingClass
  computeMetrics?: (p: EvalPrediction) => Record<string, number>
  callbacks?: TrainerCallback[]
}

export interface TrainOutput {
  globalStep: number
  trainLoss: number
  trainRuntime: number
  trainSamplesPerSecond: number
  trainStepsPerSecond: number
  epoch: number
}

export interface PredictionOutput {
  predictions: Float32Array
  numLabels: number
  labelIds: Int32Array | Float32Array | null
  metrics: Record<string, number>
}

const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r))

export class Trainer {
  readonly model: TrainableModel
  readonly args: TrainingArguments
  readonly state: TrainerState
  private readonly control: TrainerControl = { shouldTrainingStop: false, shouldEvaluate: false, shouldSave: false, shouldLog: false }
  private readonly callbacks: TrainerCallback[]
  private optimizer: AdamW | null = null
  private classWeights: Tensor | null = null
  /** Half-precision matrix products (fp16 / bf16 arguments), fp32 masters. */
  private readonly halfDtype: HalfDType | null
  /** fp16 only: dynamic loss scaling as torch.amp.GradScaler. */
  private scaler: LossScaler | null = null

  /** The tokenizer saved with the model (processingClass, or its alias tokenizer), or null. */
  readonly processingClass: ProcessingClass | null

  constructor(private options: TrainerOptions) {
    if (!options || !options.model) throw new Error('Trainer: a model is required')
    if (!(options.args instanceof TrainingArguments)) throw new Error('Trainer: args must be a TrainingArguments')
    if (options.processingClass && options.tokenizer && options.processingClass !== options.tokenizer) {
      throw new Error('Trainer: processingClass and tokenizer name the same thing; pass one of them')
    }
    this.processingClass = options.processingClass ?? options.tokenizer ?? null
    if (this.processingClass !== null && typeof this.processingClass.savePretrained !== 'function') {
      throw new Error('Trainer: processingClass must be a tokenizer (something with savePretrained(dir))')
    }
    if (options.dataCollator === undefined && this.processingClass !== null) {
      this.options = { ...options, dataCollator: DataCollatorWithPadding({ tokenizer: this.processingClass as unknown as PadTokenSource }) }
    } else if (typeof options.dataCollator !== 'function') {
      throw new Error('Trainer: dataCollator must be a function (e.g. DataCollatorWithPadding({ tokenizer })), or pass processingClass to get that one')
    }
    this.model = options.model
    this.args = options.args
    this.callbacks = [...(options.callbacks ?? [])]
    this.state = {
      globalStep: 0, epoch: 0, maxSteps: 0, numTrainEpochs: 0, logHistory: [], bestMetric: null, bestModelCheckpoint: null,
      trainBatchSize: this.args.perDeviceTrainBatchSize,
    }
    if ((this.args.fp16 || this.args.bf16) && resolveDevice(this.args.device) === 'cpu') {
      throw new Error(`TrainingArguments: ${this.args.fp16 ? 'fp16' : 'bf16'} mixed precision needs the CUDA backend; this run uses the CPU (set fp16/bf16 to false)`)
    }
    this.halfDtype = this.args.bf16 ? 'bfloat16' : this.args.fp16 ? 'float16' : null
    if (this.args.fp16) this.scaler = new LossScaler()
  }

  addCallback(cb: TrainerCallback): void {
    this.callbacks.push(cb)
  }

  private fire<K extends keyof TrainerCallback>(event: K, ...extra: unknown[]): void {
    for (const cb of this.callbacks) {
      const fn = cb[event] as ((...a: unknown[]) => void) | undefined
      fn?.call(cb, this.args, this.state, this.control, ...extra)
    }
  }

  // ---- data ------------------------------------------------------------------

  private checkDataset(ds: Dataset | undefined, which: string): Dataset {
    if (!ds) throw new Error(`Trainer: no ${which} dataset was given`)
    if (ds.length === 0) throw new Error(`Trainer: the ${which} dataset is empty`)
    const names = ds.columnNames
    if (!names.includes('input_ids') && !names.includes('inputIds')) {
      throw new Error(`Trainer: the ${which} dataset has no input_ids column (columns: ${names.join(', ')}); tokenize it with dataset.map first`)
    }
    this.checkLabels(ds, which)
    return ds
  }

  /**
   * Class labels are checked against the model before any step runs, so a bad
   * one is reported with its file and line rather than as an index inside
   * some batch (or as a native error in the loss).
   */
  private checkLabels(ds: Dataset, which: string): void {
    const column = ds.hasColumn('labels') ? 'labels' : ds.hasColumn('label') ? 'label' : null
    const numLabels = (this.model as { numLabels?: unknown }).numLabels
    const problemType = (this.model as { config?: { problem_type?: unknown } }).config?.problem_type
    if (column === null || typeof numLabels !== 'number' || numLabels < 2 || problemType === 'regression') return
    const values = ds.column<unknown>(column)
    for (let i = 0; i < values.length; i++) {
      const v = values[i]
      const bad = (why: string): never => {
        throw new Error(`Trainer: the ${which} dataset's label at ${describeRow(ds, i)} ${why}`)
      }
      if (typeof v === 'number') {
        // -100 is cross-entropy's ignore_index, as in torch.
        if (Number.isInteger(v) && v !== -100 && (v < 0 || v >= numLabels)) bad(`is ${v}, outside [0, ${numLabels - 1}] for a model with num_labels = ${numLabels}`)
        if (!Number.isFinite(v)) bad(`is ${v}`)
      } else if (Array.isArray(v)) {
        if (v.length !== numLabels) bad(`has ${v.length} values; a model with num_labels = ${numLabels} needs ${numLabels} per row`)
        const j = v.findIndex((x) => typeof x !== 'number' || !Number.isFinite(x))
        if (j >= 0) bad(`holds ${JSON.stringify(v[j])} at position ${j}, not a finite number`)
      } else if (v === null || v === undefined) {
        bad('is missing')
      } else {
        bad(`is ${JSON.stringify(v)}, not a class index`)
      }
    }
  }

  private batchesPerEpoch(n: number, batchSize: number): number {
    return this.args.dataloaderDropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize)
  }

  /** Batch index lists for one epoch: a permutation seeded by (seed, epoch), optionally grouped by length, or dataset order. */
  private epochBatches(ds: Dataset, epoch: number): number[][] {
    const bs = this.args.perDeviceTrainBatchSize
    const seed = (this.args.dataSeed ?? this.args.seed) + epoch * 1_000_003
    const strategy = this.args.groupByLength ? 'group_by_length' : this.args.trainSamplingStrategy
    let order = strategy === 'sequential' ? Array.from({ length: ds.length }, (_, i) => i) : new SeededGenerator(seed).permutation(ds.length)
    if (strategy === 'group_by_length') {
      const ids = ds.hasColumn('input_ids') ? ds.column<unknown[]>('input_ids') : ds.column<unknown[]>('inputIds')
      const mega = bs * 50
      const grouped: number[] = []
      for (let i = 0; i < order.length; i += mega) {
        grouped.push(...order.slice(i, i + mega).sort((a, b) => ids[b].length - ids[a].length))
      }
      order = grouped
    }
    const batches: number[][] = []
    const count = this.batchesPerEpoch(ds.length, bs)
    for (let b = 0; b < count; b++) batches.push(order.slice(b * bs, (b + 1) * bs))
    return batches
  }

  private collate(ds: Dataset, indices: number[]): ModelInputs {
    const rows = indices.map((i) => ds.get(i))
    return this.options.dataCollator!(rows)
  }

  // ---- loss -------------------------------------------------------------------

  private computeLoss(batch: ModelInputs): { loss: Tensor; logits: Tensor } {
    if (this.args.classWeights) {
      const { labels, ...inputs } = batch
      const out = this.model.forward(inputs)
      if (!labels) throw new Error('Trainer: the batch has no labels')
      if (!this.classWeights) {
        const numLabels = out.logits.shape[1]
        if (this.args.classWeights.length !== numLabels) {
          throw new Error(`TrainingArguments: classWeights has ${this.args.classWeights.length} entries for ${numLabels} labels`)
        }
        this.classWeights = tensor(Float32Array.from(this.args.classWeights), { device: out.logits.device })
        this.classWeights.kept = true
      }
      return { loss: crossEntropy(out.logits, labels, { weight: this.classWeights }), logits: out.logits }
    }
    const out = this.model.forward(batch)
    if (!out.loss) throw new Error('Trainer: the model returned no loss (does the dataset have a label column?)')
    return { loss: out.loss, logits: out.logits }
  }

  // ---- optimizer --------------------------------------------------------------

  private createOptimizer(): AdamW {
    const decay: Tensor[] = [], noDecay: Tensor[] = []
    const decayNames = new Set(getDecayParameterNames(this.model))
    for (const [name, p] of this.model.namedParameters()) {
      if (!p.requiresGrad) continue
      ;(decayNames.has(name) ? decay : noDecay).push(p)
    }
    const groups = [{ params: decay, weightDecay: this.args.weightDecay }, { params: noDecay, weightDecay: 0 }].filter((g) => g.params.length > 0)
    return new AdamW(groups, {
      lr: this.args.learningRate, betas: [this.args.adamBeta1, this.args.adamBeta2], eps: this.args.adamEpsilon,
    })
  }

  private trainableNames(): Map<Tensor, string> {
    const names = new Map<Tensor, string>()
    for (const [n, p] of this.model.namedParameters()) if (p.requiresGrad) names.set(p, n)
    return names
  }

  // ---- training -----------------------------------------------------------------

  async train(options: { resumeFromCheckpoint?: string | boolean | null } = {}): Promise<TrainOutput> {
    const args = this.args
    const ds = this.checkDataset(this.options.trainDataset, 'train')
    manualSeed(args.seed)
    const batchesPerEpoch = this.batchesPerEpoch(ds.length, args.perDeviceTrainBatchSize)
    if (batchesPerEpoch === 0) throw new Error(`Trainer: ${ds.length} rows make no full batch of ${args.perDeviceTrainBatchSize} with dataloaderDropLast`)
    const stepsPerEpoch = Math.max(Math.floor(batchesPerEpoch / args.gradientAccumulationSteps), 1)
    const maxSteps = args.maxSteps > 0 ? args.maxSteps : Math.ceil(args.numTrainEpochs * stepsPerEpoch)
    const numEpochs = Math.ceil(maxSteps / stepsPerEpoch)
    const warmup = warmupStepsFor(args.warmupSteps, args.warmupRatio, maxSteps)
    this.state.maxSteps = maxSteps
    this.state.numTrainEpochs = numEpochs
    this.optimizer?.dispose()
    this.optimizer = this.createOptimizer()
    const optimizer = this.optimizer
    const trainable = optimizer.paramGroups.flatMap((g) => g.params)
    ensureWritableDir(args.outputDir, 'Trainer: outputDir')
    this.removeStaleTempCheckpoints()

    let startEpoch = 0, skipBatches = 0
    const resume = options.resumeFromCheckpoint ?? args.resumeFromCheckpoint
    if (resume) {
      const dir = resume === true ? this.latestCheckpoint() : resolve(String(resume))
      if (!dir) throw new Error(`Trainer: resumeFromCheckpoint is true but ${args.outputDir} has no checkpoint-* directory`)
      const position = this.loadCheckpoint(dir)
      startEpoch = position.epoch
      skipBatches = position.batchesDone
    }

    const device = trainable[0].device
    const lossSinceLog = zeros([], { device })
    lossSinceLog.kept = true
    let stepsSinceLog = 0
    let totalLoss = 0
    let lastLoggedStep = this.state.globalStep
    const start = process.hrtime.bigint()
    const progress = new Progress(maxSteps, !args.disableTqdm)
    progress.update(this.state.globalStep, {})
    this.model.train()
    this.control.shouldTrainingStop = false
    this.fire('onTrainBegin')

    const sample = (batchIndex: number, epoch: number) => epoch + (batchIndex + 1) / batchesPerEpoch
    let endOfEpochPosition: { epoch: number; batchesDone: number; batchesInEpoch: number } | null = null
    try {
      outer: for (let epoch = startEpoch; epoch < numEpochs; epoch++) {
        const batches = this.epochBatches(ds, epoch)
        this.fire('onEpochBegin')
        let micro = 0
        for (let b = epoch === startEpoch ? skipBatches : 0; b < batches.length; b++) {
          const stepLoss = tidy(() => autocast(this.halfDtype, () => {
            const batch = this.collate(ds, batches[b])
            try {
              const { loss } = this.computeLoss(batch)
              // With accumulation each micro-batch's mean loss counts 1/k of the step;
              // with fp16 the loss is multiplied by the dynamic loss scale.
              const seed = (this.scaler?.scale ?? 1) / args.gradientAccumulationSteps
              if (seed !== 1) loss.backward(full([], seed, { device }))
              else loss.backward()
              native().axpby(1, 1 / args.gradientAccumulationSteps, loss.buffer, 1, lossSinceLog.buffer)
              return device === 'cpu' ? loss.detach() : null
            } finally {
              for (const t of Object.values(batch)) t?.dispose()
            }
          }))
          if (stepLoss) {
            // The step was only queued: the CPU stream computes it while the event loop
            // stays free. Then reading the loss costs nothing, and a NaN stops the run
            // at its step, before the optimizer touches a weight.
            let value: number
            try {
              await synchronizeAsync(device)
              value = stepLoss.item()
            } finally {
              stepLoss.dispose()
            }
            if (!Number.isFinite(value)) {
              throw new Error(`Trainer: the loss became ${value} at step ${this.state.globalStep + 1} (epoch ${epoch}, batch ${b}); lower the learning rate or check the data`)
            }
          }
          micro++
          const lastOfEpoch = b === batches.length - 1
          if (micro < args.gradientAccumulationSteps && !lastOfEpoch) continue
          micro = 0
          // One optimizer step.
          const lr = args.learningRate * lrMultiplier(args.lrSchedulerType, this.state.globalStep, warmup, maxSteps)
          for (const g of optimizer.paramGroups) g.lr = lr
          let gradNorm: number | null = null
          let pendingNorm: ReturnType<typeof clipGradNorm> | null = null
          if (this.scaler) {
            // fp16: unscale, check for inf/NaN (one read of the device, as torch's GradScaler),
            // skip the step and halve the scale on overflow, else clip and step.
            const clip = clipGradNorm(trainable, args.maxGradNorm > 0 ? args.maxGradNorm : 1)
            await synchronizeAsync(device)
            const norm = Math.sqrt(clip.sumOfSquares.item()) / this.scaler.scale
            clip.coefficient.dispose()
            clip.sumOfSquares.dispose()
            if (Number.isFinite(norm)) {
              const coef = (args.maxGradNorm > 0 ? Math.min(1, args.maxGradNorm / (norm + 1e-6)) : 1) / this.scaler.scale
              const scaleTensor = full([], coef, { device })
              optimizer.step({ gradScale: scaleTensor })
              scaleTensor.dispose()
              gradNorm = norm
              this.scaler.update(false)
            } else {
              this.scaler.update(true)
            }
          } else if (args.maxGradNorm > 0) {
            const clip = clipGradNorm(trainable, args.maxGradNorm)
            optimizer.step({ gradScale: clip.coefficient })
            clip.coefficient.dispose()
            // Read when logging, after waiting for the queued step off the event loop.
            if (this.shouldLog()) pendingNorm = clip
            else clip.sumOfSquares.dispose()
          } else {
            optimizer.step()
          }
          optimizer.zeroGrad()
          this.state.globalStep++
          stepsSinceLog++
          this.state.epoch = sample(b, epoch)
          if (this.shouldLog()) {
            await synchronizeAsync(device)
            if (pendingNorm) {
              gradNorm = pendingNorm.totalNorm()
              pendingNorm.sumOfSquares.dispose()
            }
            const loss = lossSinceLog.item() / stepsSinceLog
            if (!Number.isFinite(loss)) throw new Error(`Trainer: the loss became ${loss} by step ${this.state.globalStep}; lower the learning rate or check the data`)
            totalLoss += loss * stepsSinceLog
            native().fill(lossSinceLog.buffer, 1, 0)
            stepsSinceLog = 0
            lastLoggedStep = this.state.globalStep
            // The rate this step used, as transformers logs it since v4.51 (PR #36973), not the next one.
            this.log({ loss, ...(gradNorm !== null ? { gradNorm } : {}), learningRate: lr })
            progress.update(this.state.globalStep, { loss, lr })
          } else {
            progress.update(this.state.globalStep, {})
          }
          this.fire('onStepEnd')
          const atSteps = (every: number | null) => every !== null && this.state.globalStep % every === 0
          if (args.evalStrategy === 'steps' && atSteps(args.evalSteps)) await this.evaluateAndTrack()
          if (args.saveStrategy === 'steps' && atSteps(args.saveSteps)) await this.saveCheckpoint({ epoch, batchesDone: b + 1 }, batches.length)
          if (this.state.globalStep >= maxSteps) this.control.shouldTrainingStop = true
          if (this.control.shouldTrainingStop) {
            // As transformers: a run that stops inside an epoch still gets that epoch's
            // end-of-epoch evaluation and checkpoint.
            endOfEpochPosition = { epoch, batchesDone: b + 1, batchesInEpoch: batches.length }
            break
          }
          await yieldToEventLoop()
        }
        this.fire('onEpochEnd')
        if (args.evalStrategy === 'epoch') await this.evaluateAndTrack()
        if (args.saveStrategy === 'epoch') {
          const p = endOfEpochPosition
          await this.saveCheckpoint(p ? { epoch: p.epoch, batchesDone: p.batchesDone } : { epoch: epoch + 1, batchesDone: 0 }, p ? p.batchesInEpoch : 0)
        }
        if (this.control.shouldTrainingStop) break outer
      }
    } finally {
      progress.stop()
    }
    if (stepsSinceLog > 0) {
      totalLoss += lossSinceLog.item() / Math.max(1, stepsSinceLog) * stepsSinceLog
    }
    void lastLoggedStep
    lossSinceLog.dispose()
    const runtime = Number(process.hrtime.bigint() - start) / 1e9
    if (args.loadBestModelAtEnd && this.state.bestModelCheckpoint) this.loadModelWeights(this.state.bestModelCheckpoint)
    const numSamples = args.maxSteps > 0 ? maxSteps * args.perDeviceTrainBatchSize * args.gradientAccumulationSteps : ds.length * args.numTrainEpochs
    const output: TrainOutput = {
      globalStep: this.state.globalStep,
      trainLoss: totalLoss / Math.max(1, this.state.globalStep),
      trainRuntime: round4(runtime),
      trainSamplesPerSecond: round4(numSamples / runtime),
      trainStepsPerSecond: round4(maxSteps / runtime),
      epoch: this.state.epoch,
    }
    this.log({ trainRuntime: output.trainRuntime, trainSamplesPerSecond: output.trainSamplesPerSecond, trainStepsPerSecond: output.trainStepsPerSecond, trainLoss: output.trainLoss })
    this.fire('onTrainEnd')
    if (args.plotCurves) writeCurvesSvg(join(args.outputDir, 'training_curves.svg'), this.state.logHistory)
    return output
  }

  private shouldLog(): boolean {
    const args = this.args
    if (args.loggingStrategy !== 'steps') return false
    return this.state.globalStep % args.loggingSteps === 0 || (args.loggingFirstStep && this.state.globalStep === 1)
  }

  private log(values: Record<string, number>): void {
    const entry: LogEntry = { ...values, epoch: round4(this.state.epoch), step: this.state.globalStep }
    this.state.logHistory.push(entry)
    makeDirs(this.args.outputDir, 'Trainer: outputDir')
    appendFileSync(join(this.args.outputDir, 'trainer_log.jsonl'), JSON.stringify(entry) + '\n')
    this.fire('onLog', values)
  }

  private async evaluateAndTrack(): Promise<void> {
    const metrics = await this.evaluate()
    const name = this.args.metricForBestModel
    if (name) {
      const key = metricKey(name)
      const value = metrics[key]
      if (value === undefined) throw new Error(`Trainer: metricForBestModel "${name}" (${key}) is not among the evaluation metrics: ${Object.keys(metrics).join(', ')}`)
      const better = this.state.bestMetric === null || (this.args.greaterIsBetter ? value > this.state.bestMetric : value < this.state.bestMetric)
      if (better) {
        this.state.bestMetric = value
        this.pendingBest = true
      }
    }
  }

  private pendingBest = false

  // ---- evaluation -------------------------------------------------------------------

  async evaluate(dataset?: Dataset): Promise<Record<string, number>> {
    const out = await this.predictionLoop(dataset ?? this.options.evalDataset, 'eval')
    this.log(out.metrics)
    this.fire('onEvaluate', out.metrics)
    return out.metrics
  }

  async predict(dataset: Dataset): Promise<PredictionOutput> {
    return this.predictionLoop(dataset, 'test')
  }

  private async predictionLoop(dsIn: Dataset | undefined, prefix: 'eval' | 'test'): Promise<PredictionOutput> {
    // Evaluating in the middle of training must hand the model back in training mode (even when
    // evaluation fails); a model evaluated on its own (fromPretrained gives eval mode) stays in eval mode.
    const wasTraining = this.model.training !== false
    this.model.eval()
    try {
      return await this.evaluationLoop(dsIn, prefix)
    } finally {
      if (wasTraining) this.model.train()
    }
  }

  private async evaluationLoop(dsIn: Dataset | undefined, prefix: 'eval' | 'test'): Promise<PredictionOutput> {
    const ds = this.checkDataset(dsIn, prefix === 'eval' ? 'evaluation' : 'prediction')
    const bs = this.args.perDeviceEvalBatchSize
    const start = process.hrtime.bigint()
    const logits: Float32Array[] = []
    const labels: Array<Int32Array | Float32Array> = []
    let lossSum = 0, lossCount = 0, numLabels = 0
    for (let i = 0; i < ds.length; i += bs) {
      const idx = Array.from({ length: Math.min(bs, ds.length - i) }, (_, k) => i + k)
      const out = noGrad(() => tidy(() => autocast(this.halfDtype, () => {
        const batch = this.collate(ds, idx)
        try {
          const hasLabels = !!batch.labels
          const { loss, logits } = hasLabels ? this.computeLoss(batch) : { loss: null, logits: this.model.forward(batch).logits }
          const labels = batch.labels ? (batch.labels.dtype === 'int32' ? batch.labels.toInt32Array() : batch.labels.toFloat32Array()) : null
          return { loss, logits, labels }
        } finally {
          for (const t of Object.values(batch)) t?.dispose()
        }
      })))
      try {
        // The forward is queued; wait for it without holding the event loop, then read.
        await synchronizeAsync(out.logits.device)
        numLabels = out.logits.shape[1]
        const values = out.logits.toFloat32Array()
        checkFiniteLogits(`Trainer.${prefix === 'eval' ? 'evaluate' : 'predict'}`, values, numLabels, i)
        logits.push(values)
        if (out.loss) {
          lossSum += out.loss.item() * idx.length
          lossCount += idx.length
        }
        if (out.labels) labels.push(out.labels)
      } finally {
        out.logits.dispose()
        out.loss?.dispose()
      }
      await yieldToEventLoop()
    }
    const runtime = Number(process.hrtime.bigint() - start) / 1e9
    const predictions = concat(logits, Float32Array)
    const labelIds = labels.length ? (labels[0] instanceof Int32Array ? concat(labels as Int32Array[], Int32Array) : concat(labels as Float32Array[], Float32Array)) : null
    const metrics: Record<string, number> = {}
    if (lossCount > 0) metrics[`${prefix}Loss`] = lossSum / lossCount
    if (this.options.computeMetrics && labelIds) {
      const user = this.options.computeMetrics({ predictions, numLabels, labelIds, predictedLabels: argmaxRows(predictions, numLabels) })
      for (const [k, v] of Object.entries(user)) metrics[prefix === 'eval' ? metricKey(k) : `test${k.charAt(0).toUpperCase()}${k.slice(1)}`] = v
    }
    metrics[`${prefix}Runtime`] = round4(runtime)
    metrics[`${prefix}SamplesPerSecond`] = round4(ds.length / runtime)
    metrics[`${prefix}StepsPerSecond`] = round4(Math.ceil(ds.length / bs) / runtime)
    if (prefix === 'eval') metrics.epoch = round4(this.state.epoch)
    return { predictions, numLabels, labelIds, metrics }
  }

  // ---- checkpoints ------------------------------------------------------------------

  private checkpoints(): string[] {
    const dir = this.args.outputDir
    if (!existsSync(dir)) return []
    return readdirSync(dir).filter((d) => /^checkpoint-\d+$/.test(d))
      .sort((a, b) => Number(a.split('-')[1]) - Number(b.split('-')[1])).map((d) => join(dir, d))
  }

  private latestCheckpoint(): string | null {
    const all = this.checkpoints()
    return all.length ? all[all.length - 1] : null
  }

  /**
   * Writes model, optimizer state, schedule position, RNG and data position
   * into a temporary directory renamed to checkpoint-<step>: a crash mid-save
   * never leaves a half-written checkpoint. The files are written off the
   * event loop (a bert-base checkpoint with its optimizer state is ~1.3 GB).
   */
  private async saveCheckpoint(position: { epoch: number; batchesDone: number }, batchesInEpoch: number): Promise<void> {
    const final = join(this.args.outputDir, `checkpoint-${this.state.globalStep}`)
    const tmp = join(this.args.outputDir, `.tmp-checkpoint-${this.state.globalStep}-${process.pid}`)
    rmSync(tmp, { recursive: true, force: true })
    savesInProgress.add(resolve(tmp))
    // Every queued update lands first, so each tensor read below is a plain copy.
    const [first] = this.model.namedParameters()
    if (first) await synchronizeAsync(first[1].device)
    try {
      // Who is writing it: a later run removes the folder only if this process is gone (removeStaleTempCheckpoints).
      makeDirs(tmp, 'Trainer: checkpoint folder')
      writeFileSync(join(tmp, TMP_OWNER_FILE), JSON.stringify({ pid: process.pid, host: hostname() }) + '\n')
      if (this.model.savePretrainedAsync) await this.model.savePretrainedAsync(tmp)
      else this.model.savePretrained(tmp)
      this.processingClass?.savePretrained(tmp)
      const names = this.trainableNames()
      const entries: Array<[string, { dtype: 'F32'; shape: readonly number[]; data: () => Float32Array }]> = []
      const steps: Record<string, number> = {}
      for (const [p, name] of names) {
        const st = this.optimizer!.stateOf(p)
        if (!st) continue
        steps[name] = st.step
        entries.push([`exp_avg.${name}`, { dtype: 'F32', shape: p.shape, data: () => st.expAvg.toFloat32Array() }])
        entries.push([`exp_avg_sq.${name}`, { dtype: 'F32', shape: p.shape, data: () => st.expAvgSq.toFloat32Array() }])
      }
      await writeSafetensorsAsync(join(tmp, 'optimizer.safetensors'), entries, { steps: JSON.stringify(steps) })
      if (position.batchesDone >= batchesInEpoch && batchesInEpoch > 0) position = { epoch: position.epoch + 1, batchesDone: 0 }
      const rng = getRandomState()
      const trainerState = {
        global_step: this.state.globalStep,
        epoch: this.state.epoch,
        max_steps: this.state.maxSteps,
        num_train_epochs: this.state.numTrainEpochs,
        train_batch_size: this.state.trainBatchSize,
        best_metric: this.state.bestMetric,
        best_model_checkpoint: this.pendingBest ? final : this.state.bestModelCheckpoint,
        log_history: this.state.logHistory,
        bertkit: {
          data_position: position,
          rng: { seed: rng.seed.toString(), offset: rng.offset.toString(), host_state: rng.hostState },
          args: this.args.toJSON(),
        },
      }
      await atomicWriteFileAsync(join(tmp, 'trainer_state.json'), JSON.stringify(trainerState, null, 2) + '\n')
      rmSync(join(tmp, TMP_OWNER_FILE), { force: true })
      rmSync(final, { recursive: true, force: true })
      renameSync(tmp, final)
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true })
      throw new Error(`Trainer: saving checkpoint ${final} failed: ${(err as Error).message}`)
    } finally {
      savesInProgress.delete(resolve(tmp))
    }
    if (this.pendingBest) {
      this.state.bestModelCheckpoint = final
      this.pendingBest = false
    }
    this.fire('onSave', final)
    this.rotateCheckpoints()
  }

  private rotateCheckpoints(): void {
    const limit = this.args.saveTotalLimit
    if (limit === null) return
    const all = this.checkpoints()
    const best = this.state.bestModelCheckpoint ? resolve(this.state.bestModelCheckpoint) : null
    // Keep the newest `limit`, and never the best one.
    let excess = all.length - limit
    for (const dir of all) {
      if (excess <= 0) break
      if (best && resolve(dir) === best) continue
      rmSync(dir, { recursive: true, force: true })
      excess--
    }
  }

  /**
   * A run killed while saving leaves .tmp-checkpoint-<step>-<pid> behind.
   * Removed here are only folders of that name whose writer is certainly gone:
   * made on this host (the owner file says so, or there is none) by a process
   * that no longer exists, or by this process outside any save in flight.
   */
  private removeStaleTempCheckpoints(): void {
    const dir = this.args.outputDir
    let names: string[]
    try {
      names = readdirSync(dir)
    } catch {
      return
    }
    for (const name of names) {
      // Files of an atomic write (safetensors.ts: .<name>.tmp-<pid>-<12 hex>) cut short by a kill, e.g. the final
      // model.safetensors: no owner file records the host, so they must also be untouched for 10 minutes.
      const w = /^\..+\.tmp-(\d+)-[0-9a-f]{12}$/.exec(name)
      if (w) {
        const path = join(dir, name)
        const pid = Number(w[1])
        try {
          if (pid !== process.pid && !processAlive(pid) && Date.now() - statSync(path).mtimeMs > 600_000 && statSync(path).isFile()) {
            rmSync(path, { force: true })
            process.stderr.write(`bertkit: removed ${path}, a file left half-written by process ${pid}, which is no longer running\n`)
          }
        } catch {
          // raced with its owner: leave it
        }
        continue
      }
      const m = /^\.tmp-checkpoint-\d+-(\d+)$/.exec(name)
      if (!m) continue
      const path = resolve(dir, name)
      const pid = Number(m[1])
      let owner: { pid?: unknown; host?: unknown } = {}
      try {
        owner = JSON.parse(readFileSync(join(path, TMP_OWNER_FILE), 'utf8'))
      } catch {
        // killed before the owner file was written, or an older bertkit: the name's pid decides
      }
      if (typeof owner.host === 'string' && owner.host !== hostname()) continue
      const gone = pid === process.pid ? !savesInProgress.has(path) : !processAlive(pid)
      if (!gone) continue
      rmSync(path, { recursive: true, force: true })
      process.stderr.write(`bertkit: removed ${join(dir, name)}, a checkpoint left half-written by process ${pid}, which is no longer running\n`)
    }
  }

  /** trainer_log.jsonl as of the checkpoint resumed from: entries logged after it (before a crash) would repeat. */
  private truncateLogTo(step: number): void {
    const path = join(this.args.outputDir, 'trainer_log.jsonl')
    let text: string
    try {
      text = readFileSync(path, 'utf8')
    } catch {
      return
    }
    const kept: string[] = []
    let dropped = 0
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue
      let entry: { step?: unknown } | null = null
      try {
        entry = JSON.parse(line)
      } catch {
        // a line cut short by the kill
      }
      if (entry && typeof entry.step === 'number' && entry.step <= step) kept.push(line)
      else dropped++
    }
    if (dropped > 0) atomicWriteFile(path, kept.map((l) => l + '\n').join(''))
  }

  private loadModelWeights(dir: string): void {
    // A PEFT model saves only its adapter; its loadStateDict takes those keys.
    const adapter = join(dir, 'adapter_model.safetensors')
    const file = existsSync(adapter) ? adapter : join(dir, 'model.safetensors')
    const { tensors } = readSafetensors(file)
    const values = new Map<string, Float32Array>()
    for (const [n, t] of tensors) values.set(n, t.data as Float32Array)
    this.model.loadStateDict(values, { strict: true, source: file })
  }

  private loadCheckpoint(dir: string): { epoch: number; batchesDone: number } {
    const statePath = join(dir, 'trainer_state.json')
    if (!existsSync(statePath)) throw new Error(`Trainer: ${dir} is not a checkpoint (no trainer_state.json)`)
    const saved = readTrainerState(statePath)
    this.loadModelWeights(dir)
    const optPath = join(dir, 'optimizer.safetensors')
    if (!existsSync(optPath)) throw new Error(`Trainer: cannot resume from ${dir}: it has no optimizer.safetensors (the optimizer state bertkit saves with each checkpoint)`)
    const opt = readSafetensors(optPath)
    let steps: Record<string, number>
    try {
      steps = JSON.parse(opt.metadata.steps ?? '{}') as Record<string, number>
    } catch (err) {
      throw new Error(`Trainer: cannot resume from ${dir}: the "steps" metadata of ${optPath} is not valid JSON (${(err as Error).message})`)
    }
    for (const [p, name] of this.trainableNames()) {
      const m = opt.tensors.get(`exp_avg.${name}`), v = opt.tensors.get(`exp_avg_sq.${name}`)
      if (!m || !v) continue
      this.optimizer!.setState(p, steps[name] ?? 0, m.data as Float32Array, v.data as Float32Array)
    }
    this.state.globalStep = saved.global_step
    this.state.epoch = saved.epoch
    this.state.logHistory = saved.log_history
    this.state.bestMetric = saved.best_metric
    this.state.bestModelCheckpoint = saved.best_model_checkpoint
    const rng = saved.bertkit.rng
    setRandomState({ seed: BigInt(rng.seed), offset: BigInt(rng.offset), hostState: rng.host_state })
    this.truncateLogTo(saved.global_step)
    process.stderr.write(`bertkit: resuming from ${basename(dir)} at step ${saved.global_step}\n`)
    return saved.bertkit.data_position
  }

  /** Saves the model, and the processingClass when there is one, into a directory, as trainer.save_model. */
  saveModel(dir = this.args.outputDir): void {
    this.model.savePretrained(dir)
    this.processingClass?.savePretrained(dir)
  }

  dispose(): void {
    this.optimizer?.dispose()
    this.optimizer = null
    this.classWeights?.dispose()
    this.classWeights = null
  }
}

/** Marks a .tmp-checkpoint folder with the process and host writing it. */
const TMP_OWNER_FILE = '.bertkit-owner.json'

/** The .tmp-checkpoint folders this process is writing now (absolute paths). */
const savesInProgress = new Set<string>()

function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

interface SavedTrainerState {
  global_step: number
  epoch: number
  log_history: LogEntry[]
  best_metric: number | null
  best_model_checkpoint: string | null
  bertkit: {
    data_position: { epoch: number; batchesDone: number }
    rng: { seed: string; offset: string; host_state: number[] }
  }
}

/** trainer_state.json of a bertkit checkpoint, checked field by field; every error names the file. */
function readTrainerState(path: string): SavedTrainerState {
  const fail = (why: string): never => {
    throw new Error(`Trainer: cannot resume from ${path}: ${why}`)
  }
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    return fail(`cannot read it (${(err as Error).message})`)
  }
  let saved: unknown
  try {
    saved = JSON.parse(text)
  } catch (err) {
    return fail(`it is not valid JSON (${(err as Error).message}); the file is damaged or cut short, resume from another checkpoint`)
  }
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
  if (!isObject(saved)) return fail('it does not hold a JSON object')
  const s = saved
  if (!isObject(s.bertkit)) {
    return fail('it has no "bertkit" section (data position and RNG state), so it was not written by bertkit\'s Trainer (a transformers checkpoint?); bertkit resumes only its own checkpoints. To start from these weights instead, load the checkpoint folder as the model')
  }
  const b = s.bertkit
  const nonNegInt = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
  if (!nonNegInt(s.global_step)) fail(`"global_step" is ${JSON.stringify(s.global_step)}, not a step count`)
  if (typeof s.epoch !== 'number' || !Number.isFinite(s.epoch) || s.epoch < 0) fail(`"epoch" is ${JSON.stringify(s.epoch)}, not a number`)
  if (!Array.isArray(s.log_history)) fail('"log_history" is missing or not a list')
  if (s.best_metric !== null && s.best_metric !== undefined && typeof s.best_metric !== 'number') fail(`"best_metric" is ${JSON.stringify(s.best_metric)}`)
  if (s.best_model_checkpoint !== null && s.best_model_checkpoint !== undefined && typeof s.best_model_checkpoint !== 'string') fail(`"best_model_checkpoint" is ${JSON.stringify(s.best_model_checkpoint)}`)
  const pos = b.data_position
  if (!isObject(pos) || !nonNegInt(pos.epoch) || !nonNegInt(pos.batchesDone)) fail(`"bertkit.data_position" is ${JSON.stringify(pos)}, not {epoch, batchesDone}`)
  const rng = b.rng
  const digits = (v: unknown) => typeof v === 'string' && /^\d+$/.test(v)
  if (!isObject(rng) || !digits(rng.seed) || !digits(rng.offset) || !Array.isArray(rng.host_state) || !rng.host_state.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < 2 ** 32)) {
    fail(`"bertkit.rng" is missing or incomplete (needs seed, offset, host_state)`)
  }
  return { ...(s as unknown as SavedTrainerState), best_metric: (s.best_metric as number | null | undefined) ?? null, best_model_checkpoint: (s.best_model_checkpoint as string | null | undefined) ?? null }
}

/** torch.amp.GradScaler's schedule: start 2^16, x2 after 2000 clean steps, x0.5 (and skip) on inf/NaN. */
export class LossScaler {
  scale = 65536
  private cleanSteps = 0
  skippedSteps = 0

  update(overflow: boolean): void {
    if (overflow) {
      this.scale *= 0.5
      this.cleanSteps = 0
      this.skippedSteps++
    } else if (++this.cleanSteps >= 2000) {
      this.scale *= 2
      this.cleanSteps = 0
    }
  }
}

function round4(x: number): number {
  return Math.round(x * 1e4) / 1e4
}

function concat<T extends Float32Array | Int32Array>(parts: T[], Ctor: { new (n: number): T }): T {
  const n = parts.reduce((s, p) => s + p.length, 0)
  const out = new Ctor(n)
  let o = 0
  for (const p of parts) {
    out.set(p as never, o)
    o += p.length
  }
  return out
}
