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
import { lengthGroupedIndices } from './length_grouped.js'
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
import { DataParallel, DISTRIBUTED_STATE_FILE } from '../distributed/data_parallel.js'
import { writeReport, type LastEvaluation, type ReportInput } from './report.js'
import { hfLogEntry, trainerStateJson, bertkitStateJson, readCheckpointState, type DataPosition } from './trainer_state.js'
import { formatPercent } from '../nn/freezing.js'
import type { DeviceName } from '../tensor/device.js'
import type { Module } from '../nn/module.js'
import { Embedding } from '../nn/layers.js'
import { DataCollatorWithPadding, type PadTokenSource } from '../data/data_collator.js'

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
  /** Needed for TrainingArguments.gradientCheckpointing (bertkit's models have it). */
  gradientCheckpointingEnable?(): void
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
  /** As transformers' total_flos: 6 · tokens · non-embedding parameters, summed over the micro-batches. */
  totalFlos: number
}

export interface PredictionOutput {
  predictions: Float32Array
  numLabels: number
  labelIds: Int32Array | Float32Array | null
  metrics: Record<string, number>
}

const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r))

/** What one call of train() works with, from prepareTraining to finishTraining. */
interface TrainingRun {
  ds: Dataset
  batchesPerEpoch: number
  maxSteps: number
  numEpochs: number
  warmup: number
  optimizer: AdamW
  trainable: Tensor[]
  device: DeviceName
  startEpoch: number
  skipBatches: number
  /** Sum on the device of the step losses since the last log (read only when logging). */
  lossSinceLog: Tensor
  stepsSinceLog: number
  totalLoss: number
  start: bigint
  /** Where a stop inside an epoch left the data, for that epoch's end-of-epoch checkpoint. */
  stoppedAt: { epoch: number; batchesDone: number; batchesInEpoch: number } | null
  /** The micro-batch losses read during the current optimizer step (shown by the progress bar). */
  stepLoss: { sum: number; count: number }
  lastLossReadAt: number
  nonEmbeddingParameters: number
}

/** transformers' num_parameters(exclude_embeddings=True): every parameter but the weights of Embedding modules. */
function nonEmbeddingParameters(model: TrainableModel): number {
  const embeddings = new Set<string>()
  const modules = (model as unknown as Partial<Module>).namedModules
  if (typeof modules === 'function') for (const [name, m] of modules.call(model)) if (m instanceof Embedding) embeddings.add(name ? `${name}.weight` : 'weight')
  let n = 0
  for (const [name, p] of model.namedParameters()) if (!embeddings.has(name)) n += p.numel
  return n
}

interface OptimizerStep {
  lr: number
  gradNorm: number | null
  /** The clipping's sum of squares, read when the step is logged. */
  pendingNorm: ReturnType<typeof clipGradNorm> | null
}

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
  /** Logging, evaluation and save intervals of the current run, in steps (fractions of the run resolved). */
  private every = { logging: 500, eval: 500, save: 500 }
  private epochsPerStep = 1
  private progress: Progress
  /** Data parallel across processes (bertkit launch), else null: lib/distributed/data_parallel.ts. */
  private dp: DataParallel | null = null
  /** Set once train() has finished: evaluations after it refresh trainer_state.json and the report. */
  private trained = false
  /** The labels and predictions of the last evaluation (classification), for the report. */
  private lastEval: Omit<LastEvaluation, 'labelNames'> | null = null
  /** Extra rows for the report's configuration table (the CLI puts the model id, dataset and freezing here). */
  runInfo: Array<[string, string]> = []

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
      trainBatchSize: this.args.perDeviceTrainBatchSize, bestGlobalStep: null, totalFlos: 0,
    }
    this.progress = new Progress(!this.args.disableTqdm)
    // bf16 runs on the CPU too (native AMX / AVX512-BF16 products where the CPU has them, as torch's CPU autocast).
    if (this.args.fp16 && resolveDevice(this.args.device) === 'cpu') {
      throw new Error('TrainingArguments: fp16 mixed precision needs the CUDA backend; this run uses the CPU (use bf16, which the CPU runs, or set fp16 to false)')
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
    if (this.dp) n = this.dp.samplesPerRank(n, false)
    return this.args.dataloaderDropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize)
  }

  /** Batch index lists for one epoch: a permutation seeded by (seed, epoch), optionally grouped by length, or dataset order. */
  private epochBatches(ds: Dataset, epoch: number): number[][] {
    const bs = this.args.perDeviceTrainBatchSize
    const seed = (this.args.dataSeed ?? this.args.seed) + epoch * 1_000_003
    const strategy = this.args.groupByLength ? 'group_by_length' : this.args.trainSamplingStrategy
    if (this.dp) {
      if (strategy === 'group_by_length') throw new Error('Trainer: groupByLength is not supported with data parallel (bertkit launch); turn it off')
      return this.dp.epochBatches(ds.length, epoch, { batchSize: bs, seed: this.args.dataSeed ?? this.args.seed, shuffle: strategy !== 'sequential', dropLast: this.args.dataloaderDropLast })
    }
    let order = strategy === 'sequential' ? Array.from({ length: ds.length }, (_, i) => i) : new SeededGenerator(seed).permutation(ds.length)
    if (strategy === 'group_by_length') {
      // transformers: a "length" column when there is one, else len(input_ids); batch x accumulation steps.
      const lengths = ds.hasColumn('length') ? ds.column<number>('length')
        : (ds.hasColumn('input_ids') ? ds.column<unknown[]>('input_ids') : ds.column<unknown[]>('inputIds')).map((ids) => ids.length)
      order = lengthGroupedIndices(lengths, bs * this.args.gradientAccumulationSteps, order)
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
  //
  // train() runs in named phases: prepareTraining (data, schedule, optimizer,
  // resume), then per epoch trainEpoch (micro-batches → optimizerStep →
  // afterStep: log, evaluate, save) and endEpoch, then finishTraining
  // (totals, best model, records and report).

  async train(options: { resumeFromCheckpoint?: string | boolean | null } = {}): Promise<TrainOutput> {
    await this.setupDataParallel()
    const run = this.prepareTraining(options.resumeFromCheckpoint ?? this.args.resumeFromCheckpoint)
    try {
      // Every rank starts from rank 0's weights; gradients are averaged over the ranks.
      await this.dp?.setup([...this.model.namedParameters()], {
        perDeviceTrainBatchSize: this.args.perDeviceTrainBatchSize, gradientAccumulationSteps: this.args.gradientAccumulationSteps,
        maxSteps: run.maxSteps, trainRows: run.ds.length, seed: this.args.seed, globalStep: this.state.globalStep,
      }, { bucketCapMb: this.args.ddpBucketCapMb })
      this.beginTraining(run)
      for (let epoch = run.startEpoch; epoch < run.numEpochs; epoch++) {
        await this.trainEpoch(run, epoch)
        await this.endEpoch(run, epoch)
        if (this.control.shouldTrainingStop) break
      }
      return await this.finishTraining(run)
    } catch (err) {
      // The other ranks stop at once, told why (rather than that this process exited).
      this.dp?.abort(err)
      throw err
    } finally {
      this.progress.stop()
      run.lossSinceLog.dispose()
    }
  }

  /** Checks the data, sizes the schedule, builds the optimizer and, when resuming, loads the checkpoint. */
  private prepareTraining(resume: string | boolean | null | undefined): TrainingRun {
    const args = this.args
    const ds = this.checkDataset(this.options.trainDataset, 'train')
    manualSeed(args.seed)
    const batchesPerEpoch = this.batchesPerEpoch(ds.length, args.perDeviceTrainBatchSize)
    if (batchesPerEpoch === 0) throw new Error(`Trainer: ${ds.length} rows make no full batch of ${args.perDeviceTrainBatchSize} with dataloaderDropLast`)
    const stepsPerEpoch = Math.max(Math.floor(batchesPerEpoch / args.gradientAccumulationSteps), 1)
    const maxSteps = args.maxSteps > 0 ? args.maxSteps : Math.ceil(args.numTrainEpochs * stepsPerEpoch)
    const numEpochs = Math.ceil(maxSteps / stepsPerEpoch)
    this.state.maxSteps = maxSteps
    this.state.numTrainEpochs = numEpochs
    this.epochsPerStep = args.gradientAccumulationSteps / batchesPerEpoch
    this.every = { logging: args.stepsFor('loggingSteps', maxSteps), eval: args.stepsFor('evalSteps', maxSteps), save: args.stepsFor('saveSteps', maxSteps) }
    if (args.gradientCheckpointing) {
      if (typeof this.model.gradientCheckpointingEnable !== 'function') throw new Error('TrainingArguments: gradientCheckpointing needs a model with gradientCheckpointingEnable() (bertkit\'s encoders have it)')
      this.model.gradientCheckpointingEnable()
    }
    this.optimizer?.dispose()
    this.optimizer = this.createOptimizer()
    const trainable = this.optimizer.paramGroups.flatMap((g) => g.params)
    ensureWritableDir(args.outputDir, 'Trainer: outputDir')
    if (this.isWorldProcessZero()) this.removeStaleTempCheckpoints()
    let position: DataPosition = { epoch: 0, batchesDone: 0 }
    if (resume) {
      const dir = resume === true ? this.latestCheckpoint() : resolve(String(resume))
      if (!dir) throw new Error(`Trainer: resumeFromCheckpoint is true but ${args.outputDir} has no checkpoint-* directory`)
      const rankRandomState = DataParallel.checkResume(dir, this.dp)
      position = this.loadCheckpoint(dir)
      if (rankRandomState) setRandomState(rankRandomState)
    }
    const device = trainable[0].device
    const lossSinceLog = zeros([], { device })
    lossSinceLog.kept = true
    return {
      ds, batchesPerEpoch, maxSteps, numEpochs, optimizer: this.optimizer, trainable, device, lossSinceLog,
      warmup: warmupStepsFor(args.warmupSteps, args.warmupRatio, maxSteps),
      startEpoch: position.epoch, skipBatches: position.batchesDone,
      stepsSinceLog: 0, totalLoss: 0, start: process.hrtime.bigint(), stoppedAt: null,
      stepLoss: { sum: 0, count: 0 }, lastLossReadAt: 0, nonEmbeddingParameters: nonEmbeddingParameters(this.model),
    }
  }

  private beginTraining(run: TrainingRun): void {
    this.progress.startTraining(run.maxSteps, this.state.globalStep, this.state.epoch)
    this.model.train()
    this.control.shouldTrainingStop = false
    this.fire('onTrainBegin')
  }

  /** One epoch's batches (from where a resumed checkpoint stopped): micro-batches, and an optimizer step every gradientAccumulationSteps. */
  private async trainEpoch(run: TrainingRun, epoch: number): Promise<void> {
    const batches = this.epochBatches(run.ds, epoch)
    this.fire('onEpochBegin')
    let micro = 0
    for (let b = epoch === run.startEpoch ? run.skipBatches : 0; b < batches.length; b++) {
      // Only an optimizer step's last micro-batch reduces gradients across ranks (DDP's no_sync for the others).
      const reduces = micro + 1 >= this.args.gradientAccumulationSteps || b === batches.length - 1
      const loss = await this.trainMicroBatch(run, batches[b], epoch, b, reduces)
      if (loss !== null) {
        run.stepLoss.sum += loss
        run.stepLoss.count++
      }
      micro++
      if (micro < this.args.gradientAccumulationSteps && b !== batches.length - 1) continue
      micro = 0
      const step = await this.optimizerStep(run)
      this.state.epoch = epoch + (b + 1) / run.batchesPerEpoch
      await this.afterStep(run, step)
      if (this.args.evalStrategy === 'steps' && this.state.globalStep % this.every.eval === 0) await this.evaluateAndTrack()
      if (this.args.saveStrategy === 'steps' && this.state.globalStep % this.every.save === 0) await this.saveCheckpoint({ epoch, batchesDone: b + 1 }, batches.length)
      if (this.state.globalStep >= run.maxSteps) this.control.shouldTrainingStop = true
      if (this.control.shouldTrainingStop) {
        // As transformers: a run that stops inside an epoch still gets that epoch's
        // end-of-epoch evaluation and checkpoint.
        run.stoppedAt = { epoch, batchesDone: b + 1, batchesInEpoch: batches.length }
        return
      }
      this.progress.resumeTiming()
      await yieldToEventLoop()
    }
  }

  /**
   * Forward and backward of one micro-batch, its loss added on the device to
   * the loss since the last log. Returns the loss when it was read: every
   * micro-batch on the CPU (where reading costs nothing), about once a second
   * on CUDA (for the progress bar; each read waits for the GPU).
   */
  private async trainMicroBatch(run: TrainingRun, indices: number[], epoch: number, b: number, reduces = true): Promise<number | null> {
    const args = this.args
    const device = run.device
    const now = performance.now()
    const read = device === 'cpu' || now - run.lastLossReadAt >= 1000
    const stepLoss = tidy(() => autocast(this.halfDtype, () => {
      const batch = this.collate(run.ds, indices)
      this.state.totalFlos += 6 * batch.inputIds.numel * run.nonEmbeddingParameters
      try {
        const { loss } = this.computeLoss(batch)
        // With accumulation each micro-batch's mean loss counts 1/k of the step;
        // with fp16 the loss is multiplied by the dynamic loss scale.
        const seed = (this.scaler?.scale ?? 1) / args.gradientAccumulationSteps
        this.dp?.beforeBackward(reduces)
        if (seed !== 1) loss.backward(full([], seed, { device }))
        else loss.backward()
        this.dp?.afterBackward(reduces)
        native().axpby(1, 1 / args.gradientAccumulationSteps, loss.buffer, 1, run.lossSinceLog.buffer)
        return read ? loss.detach() : null
      } finally {
        for (const t of Object.values(batch)) t?.dispose()
      }
    }))
    if (!stepLoss) return null
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
    run.lastLossReadAt = performance.now()
    if (!Number.isFinite(value)) {
      throw new Error(`Trainer: the loss became ${value} at step ${this.state.globalStep + 1} (epoch ${epoch}, batch ${b}); lower the learning rate or check the data`)
    }
    return value
  }

  /** Clipping, the optimizer update at this step's learning rate, zeroing the gradients. */
  private async optimizerStep(run: TrainingRun): Promise<OptimizerStep> {
    const args = this.args
    const { optimizer, trainable, device } = run
    const lr = args.learningRate * lrMultiplier(args.lrSchedulerType, this.state.globalStep, run.warmup, run.maxSteps)
    for (const g of optimizer.paramGroups) g.lr = lr
    const logging = this.shouldLog(this.state.globalStep + 1, run)
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
      if (logging) pendingNorm = clip
      else clip.sumOfSquares.dispose()
    } else {
      optimizer.step()
    }
    optimizer.zeroGrad()
    this.state.globalStep++
    run.stepsSinceLog++
    return { lr, gradNorm, pendingNorm }
  }

  /** After an optimizer step: the log entry on logging steps, the progress display, onStepEnd. */
  private async afterStep(run: TrainingRun, step: OptimizerStep): Promise<void> {
    if (this.shouldLog(this.state.globalStep, run)) {
      await synchronizeAsync(run.device)
      let gradNorm = step.gradNorm
      if (step.pendingNorm) {
        gradNorm = step.pendingNorm.totalNorm()
        step.pendingNorm.sumOfSquares.dispose()
      }
      const loss = (this.dp ? await this.dp.meanOverRanks(run.lossSinceLog) : run.lossSinceLog.item()) / run.stepsSinceLog
      if (!Number.isFinite(loss)) throw new Error(`Trainer: the loss became ${loss} by step ${this.state.globalStep}; lower the learning rate or check the data`)
      run.totalLoss += loss * run.stepsSinceLog
      native().fill(run.lossSinceLog.buffer, 1, 0)
      run.stepsSinceLog = 0
      // The rate this step used, as transformers logs it since v4.51 (PR #36973), not the next one.
      this.log({ loss, ...(gradNorm !== null ? { gradNorm } : {}), learningRate: step.lr })
    }
    const shown = run.stepLoss.count ? run.stepLoss.sum / run.stepLoss.count : null
    run.stepLoss = { sum: 0, count: 0 }
    this.progress.step(this.state.globalStep, this.state.epoch, { loss: shown, lr: step.lr })
    this.fire('onStepEnd')
  }

  /** onEpochEnd, then the epoch's evaluation and checkpoint when the strategies ask for them. */
  private async endEpoch(run: TrainingRun, epoch: number): Promise<void> {
    const args = this.args
    this.fire('onEpochEnd')
    if (args.evalStrategy === 'epoch') await this.evaluateAndTrack()
    if (args.saveStrategy === 'epoch') {
      const p = run.stoppedAt
      await this.saveCheckpoint(p ? { epoch: p.epoch, batchesDone: p.batchesDone } : { epoch: epoch + 1, batchesDone: 0 }, p ? p.batchesInEpoch : 0)
    }
    this.progress.resumeTiming()
  }

  /** The run's totals and final log entry; the best model loaded back if asked; trainer_state.json and the report. */
  private async finishTraining(run: TrainingRun): Promise<TrainOutput> {
    const args = this.args
    if (run.stepsSinceLog > 0) run.totalLoss += this.dp ? await this.dp.meanOverRanks(run.lossSinceLog) : run.lossSinceLog.item()
    // Rows whose AdamW updates were deferred are brought up to date inside the timed run.
    run.optimizer.flush()
    await synchronizeAsync(run.device)
    const runtime = Number(process.hrtime.bigint() - run.start) / 1e9
    if (args.loadBestModelAtEnd && this.state.bestModelCheckpoint) this.loadModelWeights(this.state.bestModelCheckpoint)
    const numSamples = args.maxSteps > 0 ? run.maxSteps * args.perDeviceTrainBatchSize * args.gradientAccumulationSteps : run.ds.length * args.numTrainEpochs
    const output: TrainOutput = {
      globalStep: this.state.globalStep,
      trainLoss: run.totalLoss / Math.max(1, this.state.globalStep),
      trainRuntime: round4(runtime),
      trainSamplesPerSecond: round4(numSamples / runtime),
      trainStepsPerSecond: round4(run.maxSteps / runtime),
      epoch: this.state.epoch,
      totalFlos: this.state.totalFlos,
    }
    this.log({ trainRuntime: output.trainRuntime, trainSamplesPerSecond: output.trainSamplesPerSecond, trainStepsPerSecond: output.trainStepsPerSecond, totalFlos: output.totalFlos, trainLoss: output.trainLoss })
    this.fire('onTrainEnd')
    this.progress.endTraining(this.state.logHistory, { trainLoss: output.trainLoss, runtime, steps: this.state.globalStep })
    this.trained = true
    await this.writeRunRecords()
    return output
  }

  /** transformers' is_world_process_zero: rank 0 of a data-parallel run, or the only process; it alone writes files and shows progress. */
  isWorldProcessZero(): boolean {
    return this.dp?.isMain ?? true
  }

  /** Joins the data-parallel run this process was launched into, once (lib/distributed/data_parallel.ts). */
  private async setupDataParallel(): Promise<void> {
    if (this.dp) return
    const [first] = this.model.namedParameters()
    if (first) this.dp = await DataParallel.fromEnvironment(first[1].device, { backend: this.args.ddpBackend, timeoutSeconds: this.args.ddpTimeout })
    if (this.dp && !this.dp.isMain) this.progress = new Progress(false)
  }

  private shouldLog(step: number, run: TrainingRun): boolean {
    if (this.args.loggingStrategy !== 'steps') return false
    return step % this.every.logging === 0 || (this.args.loggingFirstStep && step === 1)
  }

  private log(values: Record<string, number>): void {
    const entry: LogEntry = { ...values, epoch: round4(this.state.epoch), step: this.state.globalStep }
    this.state.logHistory.push(entry)
    if (!this.isWorldProcessZero()) return this.fire('onLog', values)
    makeDirs(this.args.outputDir, 'Trainer: outputDir')
    appendFileSync(join(this.args.outputDir, 'trainer_log.jsonl'), JSON.stringify(hfLogEntry(entry)) + '\n')
    this.progress.logged(entry)
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
        this.state.bestGlobalStep = this.state.globalStep
        this.pendingBest = true
      }
    }
  }

  private pendingBest = false

  // ---- run records --------------------------------------------------------------------

  /**
   * trainer_state.json (transformers' format) and, with plotCurves,
   * training_curves.svg and report.html in outputDir. A report that cannot be
   * drawn is reported on stderr; it does not fail a finished run.
   */
  private async writeRunRecords(): Promise<void> {
    if (!this.isWorldProcessZero()) return
    const dir = this.args.outputDir
    makeDirs(dir, 'Trainer: outputDir')
    atomicWriteFile(join(dir, 'trainer_state.json'), trainerStateJson(this.state, this.args, this.state.bestModelCheckpoint))
    if (!this.args.plotCurves) return
    try {
      const { warnings } = await writeReport(dir, this.reportInput())
      for (const w of warnings) process.stderr.write(`bertkit: report: ${w}\n`)
    } catch (err) {
      process.stderr.write(`bertkit: could not write the report into ${dir}: ${(err as Error).message}\n`)
    }
  }

  private reportInput(): ReportInput {
    const args = this.args
    const model = this.model as { constructor: { name: string }; config?: { model_type?: unknown; id2label?: Record<string, string> } }
    let total = 0, trainable = 0
    for (const [, p] of this.model.namedParameters()) {
      total += p.numel
      if (p.requiresGrad) trainable += p.numel
    }
    const config: Array<[string, string]> = [
      ...this.runInfo,
      ['model class', model.constructor.name],
      ['parameters', `${trainable.toLocaleString('en-US')} trainable of ${total.toLocaleString('en-US')} (${formatPercent(trainable, total)})`],
      ['learning rate', String(args.learningRate)],
      ['batch size (train / eval)', `${args.perDeviceTrainBatchSize} / ${args.perDeviceEvalBatchSize}${args.gradientAccumulationSteps > 1 ? ` × ${args.gradientAccumulationSteps} accumulated` : ''}`],
      ['epochs / steps', `${args.maxSteps > 0 ? '-' : args.numTrainEpochs} / ${this.state.maxSteps}`],
      ['weight decay', String(args.weightDecay)],
      ['schedule', `${args.lrSchedulerType}, warm-up ${args.warmupSteps || args.warmupRatio ? `${args.warmupSteps} steps / ratio ${args.warmupRatio}` : 'none'}`],
      ['precision', args.bf16 ? 'bf16 autocast' : args.fp16 ? 'fp16 autocast' : 'fp32'],
      ['gradient checkpointing', String(args.gradientCheckpointing)],
      ['seed', String(args.seed)],
      ['output dir', args.outputDir],
    ]
    const evals = this.state.logHistory.filter((e) => e.evalLoss !== undefined || Object.keys(e).some((k) => k.startsWith('eval')))
    const last = evals[evals.length - 1]
    const finalMetrics: Record<string, number> = {}
    const trainEnd = [...this.state.logHistory].reverse().find((e) => e.trainLoss !== undefined)
    if (trainEnd) finalMetrics.trainLoss = trainEnd.trainLoss
    if (last) for (const [k, v] of Object.entries(last)) if (k !== 'step' && k !== 'epoch') finalMetrics[k] = v
    const id2label = model.config?.id2label
    const lastEval = this.lastEval ? {
      ...this.lastEval,
      labelNames: id2label ? Array.from({ length: this.lastEval.numLabels }, (_, i) => id2label[String(i)] ?? String(i)) : null,
    } : null
    return {
      title: `bertkit run: ${args.outputDir}`,
      history: this.state.logHistory,
      maxSteps: this.state.maxSteps,
      epochsPerStep: this.epochsPerStep,
      best: this.state.bestGlobalStep !== null && this.state.bestMetric !== null && args.metricForBestModel
        ? { step: this.state.bestGlobalStep, metric: metricKey(args.metricForBestModel), value: this.state.bestMetric } : null,
      config, finalMetrics, lastEval,
    }
  }

  // ---- evaluation -------------------------------------------------------------------

  async evaluate(dataset?: Dataset): Promise<Record<string, number>> {
    const out = await this.withEvalProgress(() => this.predictionLoop(dataset ?? this.options.evalDataset, 'eval'), true)
    if (out.labelIds instanceof Int32Array && out.numLabels >= 2) {
      this.lastEval = { labels: out.labelIds, predicted: argmaxRows(out.predictions, out.numLabels), numLabels: out.numLabels }
    }
    this.log(out.metrics)
    this.fire('onEvaluate', out.metrics)
    // After training (as the recipe's trainer.evaluate()): the records and the report include it.
    if (this.trained) await this.writeRunRecords()
    return out.metrics
  }

  async predict(dataset: Dataset): Promise<PredictionOutput> {
    return this.withEvalProgress(() => this.predictionLoop(dataset, 'test'), false)
  }

  /** Closes the evaluation bar however the loop ends; an evaluation's metrics are printed as they arrive. */
  private async withEvalProgress(loop: () => Promise<PredictionOutput>, showMetrics: boolean): Promise<PredictionOutput> {
    let out: PredictionOutput
    try {
      out = await loop()
    } catch (err) {
      this.progress.endEval(null, null)
      throw err
    }
    this.progress.endEval(showMetrics ? out.metrics : null, { step: this.state.globalStep, epoch: this.state.epoch })
    return out
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
    await this.setupDataParallel()
    // Data parallel: each rank predicts its contiguous share; the rows are gathered back below.
    const shard = this.dp?.evalShard(ds.length) ?? null
    const rows = shard ? shard.length : ds.length
    const rowLosses: number[] = []
    const bs = this.args.perDeviceEvalBatchSize
    this.progress.startEval(Math.ceil(rows / bs), rows, prefix === 'eval' ? 'eval' : 'predict')
    const start = process.hrtime.bigint()
    const logits: Float32Array[] = []
    const labels: Array<Int32Array | Float32Array> = []
    let lossSum = 0, lossCount = 0, numLabels = 0
    for (let i = 0; i < rows; i += bs) {
      const idx = Array.from({ length: Math.min(bs, rows - i) }, (_, k) => (shard ? shard[i + k] : i + k))
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
        checkFiniteLogits(`Trainer.${prefix === 'eval' ? 'evaluate' : 'predict'}`, values, numLabels, shard ? shard[i] : i)
        logits.push(values)
        if (out.loss) {
          const value = out.loss.item()
          lossSum += value * idx.length
          lossCount += idx.length
          if (shard) for (let k = 0; k < idx.length; k++) rowLosses.push(value)
        }
        if (out.labels) labels.push(out.labels)
      } finally {
        out.logits.dispose()
        out.loss?.dispose()
      }
      this.progress.evalBatch(Math.ceil((i + idx.length) / bs))
      await yieldToEventLoop()
    }
    const runtime = Number(process.hrtime.bigint() - start) / 1e9
    let predictions = concat(logits, Float32Array)
    let labelIds = labels.length ? (labels[0] instanceof Int32Array ? concat(labels as Int32Array[], Int32Array) : concat(labels as Float32Array[], Float32Array)) : null
    if (this.dp) ({ predictions, labelIds, lossSum, lossCount, numLabels } = await this.dp.gatherEval({ predictions, labelIds, rowLosses, numLabels, rows: ds.length }))
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
  private async saveCheckpoint(position: DataPosition, batchesInEpoch: number): Promise<void> {
    const final = join(this.args.outputDir, `checkpoint-${this.state.globalStep}`)
    const tmp = join(this.args.outputDir, `.tmp-checkpoint-${this.state.globalStep}-${process.pid}`)
    // Data parallel: rank 0 writes the checkpoint, with every rank's random state; the others wait for it.
    const shared = this.dp ? await this.dp.checkpointState(getRandomState()) : null
    if (!this.isWorldProcessZero()) {
      if (this.pendingBest) {
        this.state.bestModelCheckpoint = final
        this.pendingBest = false
      }
      await this.dp!.group.barrier()
      return this.fire('onSave', final)
    }
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
      await atomicWriteFileAsync(join(tmp, 'trainer_state.json'), trainerStateJson(this.state, this.args, this.pendingBest ? final : this.state.bestModelCheckpoint))
      await atomicWriteFileAsync(join(tmp, 'bertkit_state.json'), bertkitStateJson(position, getRandomState(), this.args))
      if (shared) await atomicWriteFileAsync(join(tmp, DISTRIBUTED_STATE_FILE), JSON.stringify(shared, null, 2) + '\n')
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
    await this.dp?.group.barrier()
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

  private loadCheckpoint(dir: string): DataPosition {
    if (!existsSync(join(dir, 'trainer_state.json'))) throw new Error(`Trainer: ${dir} is not a checkpoint (no trainer_state.json)`)
    const saved = readCheckpointState(dir)
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
    this.state.globalStep = saved.globalStep
    this.state.epoch = saved.epoch
    this.state.logHistory = saved.logHistory
    this.state.bestMetric = saved.bestMetric
    this.state.bestGlobalStep = saved.bestGlobalStep
    this.state.bestModelCheckpoint = saved.bestModelCheckpoint
    this.state.totalFlos = saved.totalFlos
    const rng = saved.bertkit.rng
    setRandomState({ seed: BigInt(rng.seed), offset: BigInt(rng.offset), hostState: rng.host_state })
    this.truncateLogTo(saved.globalStep)
    process.stderr.write(`bertkit: resuming from ${basename(dir)} at step ${saved.globalStep}\n`)
    return saved.bertkit.data_position
  }

  /** Saves the model, and the processingClass when there is one, into a directory, as trainer.save_model. */
  saveModel(dir = this.args.outputDir): void {
    this.model.savePretrained(dir)
    this.processingClass?.savePretrained(dir)
  }

  dispose(): void {
    this.dp?.dispose()
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
