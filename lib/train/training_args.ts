// TrainingArguments: Hugging Face's fields in camelCase, with the same
// defaults, validated up front with messages that name the field.

export type SchedulerType = 'linear' | 'cosine' | 'constant' | 'constant_with_warmup'
export type IntervalStrategy = 'no' | 'steps' | 'epoch'
export type TrainSamplingStrategy = 'random' | 'sequential' | 'group_by_length'
/** Integrations transformers reports to; bertkit has none installed ('all' then reports to none, as transformers does with none installed). */
export type ReportTo = 'none' | 'all' | string[]

export interface TrainingArgumentsInit {
  outputDir?: string
  learningRate?: number
  perDeviceTrainBatchSize?: number
  perDeviceEvalBatchSize?: number
  numTrainEpochs?: number
  maxSteps?: number
  weightDecay?: number
  adamBeta1?: number
  adamBeta2?: number
  adamEpsilon?: number
  maxGradNorm?: number
  lrSchedulerType?: SchedulerType
  warmupSteps?: number
  warmupRatio?: number
  gradientAccumulationSteps?: number
  evalStrategy?: IntervalStrategy
  evalSteps?: number | null
  saveStrategy?: IntervalStrategy
  saveSteps?: number
  saveTotalLimit?: number | null
  loadBestModelAtEnd?: boolean
  metricForBestModel?: string | null
  greaterIsBetter?: boolean | null
  loggingStrategy?: IntervalStrategy
  loggingSteps?: number
  loggingFirstStep?: boolean
  seed?: number
  dataSeed?: number | null
  fp16?: boolean
  bf16?: boolean
  resumeFromCheckpoint?: string | boolean | null
  dataloaderDropLast?: boolean
  /** Length-aware batching: batches of similar lengths (less padding). Same as trainSamplingStrategy 'group_by_length'. */
  groupByLength?: boolean
  /** transformers' train_sampling_strategy: 'random' (seeded shuffle per epoch), 'sequential' (dataset order), 'group_by_length'. */
  trainSamplingStrategy?: TrainSamplingStrategy
  /** Per-class loss weights (cross-entropy's `weight`); bertkit extension. */
  classWeights?: number[] | null
  device?: 'auto' | 'cpu' | 'cuda'
  disableTqdm?: boolean
  /** Write training_curves.svg and report.html (curves, metrics, confusion matrix) into outputDir. bertkit extension. */
  plotCurves?: boolean
  /** Recompute each encoder layer's forward during backward instead of keeping its activations (less memory, ~1 more forward per step). */
  gradientCheckpointing?: boolean
  /** transformers' newer name of gradientCheckpointing (activation_checkpointing). */
  activationCheckpointing?: boolean
  reportTo?: ReportTo
  /** Data parallel (bertkit launch): transformers' ddp_backend ('auto': gloo on the CPU, nccl on GPUs), ddp_bucket_cap_mb, ddp_timeout (seconds). */
  ddpBackend?: 'auto' | 'gloo' | 'nccl'
  ddpBucketCapMb?: number
  ddpTimeout?: number
}

const INTERVALS: IntervalStrategy[] = ['no', 'steps', 'epoch']
const SAMPLING: TrainSamplingStrategy[] = ['random', 'sequential', 'group_by_length']
const SCHEDULERS: SchedulerType[] = ['linear', 'cosine', 'constant', 'constant_with_warmup']

export class TrainingArguments {
  outputDir = 'trainer_output'
  learningRate = 5e-5
  perDeviceTrainBatchSize = 8
  perDeviceEvalBatchSize = 8
  numTrainEpochs = 3
  maxSteps = -1
  weightDecay = 0
  adamBeta1 = 0.9
  adamBeta2 = 0.999
  adamEpsilon = 1e-8
  maxGradNorm = 1.0
  lrSchedulerType: SchedulerType = 'linear'
  warmupSteps = 0
  warmupRatio = 0
  gradientAccumulationSteps = 1
  evalStrategy: IntervalStrategy = 'no'
  evalSteps: number | null = null
  saveStrategy: IntervalStrategy = 'steps'
  saveSteps = 500
  saveTotalLimit: number | null = null
  loadBestModelAtEnd = false
  metricForBestModel: string | null = null
  greaterIsBetter: boolean | null = null
  loggingStrategy: IntervalStrategy = 'steps'
  loggingSteps = 500
  loggingFirstStep = false
  seed = 42
  dataSeed: number | null = null
  fp16 = false
  bf16 = false
  resumeFromCheckpoint: string | boolean | null = null
  dataloaderDropLast = false
  groupByLength = false
  trainSamplingStrategy: TrainSamplingStrategy = 'random'
  classWeights: number[] | null = null
  device: 'auto' | 'cpu' | 'cuda' = 'auto'
  disableTqdm = false
  plotCurves = true
  gradientCheckpointing = false
  activationCheckpointing = false
  reportTo: ReportTo = 'none'
  ddpBackend: 'auto' | 'gloo' | 'nccl' = 'auto'
  ddpBucketCapMb = 25
  ddpTimeout = 1800

  /** Positional outputDir as in Python: new TrainingArguments('model', {...}). */
  constructor(outputDirOrInit?: string | TrainingArgumentsInit, init: TrainingArgumentsInit = {}) {
    const fields: TrainingArgumentsInit = typeof outputDirOrInit === 'string' ? { ...init, outputDir: outputDirOrInit } : { ...(outputDirOrInit ?? {}) }
    const known = new Set(Object.keys(this))
    for (const [k, v] of Object.entries(fields)) {
      if (!known.has(k)) {
        const hint = [...known].find((n) => n.toLowerCase() === k.replace(/_/g, '').toLowerCase())
        throw new Error(`TrainingArguments: unknown field "${k}"${hint ? ` (did you mean "${hint}"?)` : ''}`)
      }
      if (v !== undefined) (this as Record<string, unknown>)[k] = v
    }
    // As transformers: metric_for_best_model defaults to loss when loading the best model.
    if (this.loadBestModelAtEnd && this.metricForBestModel === null) this.metricForBestModel = 'loss'
    if (this.metricForBestModel !== null && this.greaterIsBetter === null) {
      this.greaterIsBetter = !/loss$/.test(this.metricForBestModel)
    }
    if (this.evalSteps === null) this.evalSteps = this.loggingSteps
    if (this.activationCheckpointing) this.gradientCheckpointing = true
    this.validate()
  }

  private validate(): void {
    const fail = (field: string, why: string): never => {
      throw new Error(`TrainingArguments: ${field} ${why}`)
    }
    const positiveInt = (field: keyof this) => {
      const v = this[field] as unknown as number
      if (!Number.isInteger(v) || v < 1) fail(String(field), `must be a positive integer, got ${v}`)
    }
    const nonNegative = (field: keyof this) => {
      const v = this[field] as unknown as number
      if (!(typeof v === 'number' && v >= 0 && Number.isFinite(v))) fail(String(field), `must be a non-negative number, got ${v}`)
    }
    positiveInt('perDeviceTrainBatchSize')
    positiveInt('perDeviceEvalBatchSize')
    positiveInt('gradientAccumulationSteps')
    // As transformers: a whole number of steps, or a fraction in (0, 1) of the run's steps.
    const stepsOrRatio = (field: 'loggingSteps' | 'saveSteps' | 'evalSteps') => {
      const v = this[field] as unknown as number
      if (!(typeof v === 'number' && v > 0 && (Number.isInteger(v) || v < 1))) fail(field, `must be a positive integer or a fraction in (0, 1) of the run's steps, got ${v}`)
    }
    stepsOrRatio('loggingSteps')
    stepsOrRatio('saveSteps')
    stepsOrRatio('evalSteps')
    nonNegative('learningRate')
    nonNegative('weightDecay')
    nonNegative('numTrainEpochs')
    nonNegative('adamEpsilon')
    nonNegative('maxGradNorm')
    nonNegative('warmupSteps')
    if (!Number.isInteger(this.warmupSteps)) fail('warmupSteps', `must be an integer, got ${this.warmupSteps}`)
    if (!(this.warmupRatio >= 0 && this.warmupRatio <= 1)) fail('warmupRatio', `must be in [0, 1], got ${this.warmupRatio}`)
    if (!Number.isInteger(this.maxSteps) || (this.maxSteps < 1 && this.maxSteps !== -1)) fail('maxSteps', `must be -1 or a positive integer, got ${this.maxSteps}`)
    if (this.maxSteps === -1 && this.numTrainEpochs <= 0) fail('numTrainEpochs', 'must be positive when maxSteps is -1')
    for (const [field, v] of [['adamBeta1', this.adamBeta1], ['adamBeta2', this.adamBeta2]] as const) {
      if (!(v >= 0 && v < 1)) fail(field, `must be in [0, 1), got ${v}`)
    }
    for (const field of ['evalStrategy', 'saveStrategy', 'loggingStrategy'] as const) {
      if (!INTERVALS.includes(this[field])) fail(field, `must be one of ${INTERVALS.join(', ')}, got "${this[field]}"`)
    }
    if (!SAMPLING.includes(this.trainSamplingStrategy)) fail('trainSamplingStrategy', `must be one of ${SAMPLING.join(', ')}, got "${this.trainSamplingStrategy}"`)
    if (this.groupByLength && this.trainSamplingStrategy === 'sequential') fail('groupByLength', 'and trainSamplingStrategy "sequential" cannot both be set')
    if (!SCHEDULERS.includes(this.lrSchedulerType)) fail('lrSchedulerType', `must be one of ${SCHEDULERS.join(', ')}, got "${this.lrSchedulerType}"`)
    if (this.saveTotalLimit !== null && (!Number.isInteger(this.saveTotalLimit) || this.saveTotalLimit < 1)) {
      fail('saveTotalLimit', `must be null or a positive integer, got ${this.saveTotalLimit}`)
    }
    if (this.fp16 && this.bf16) fail('fp16', 'and bf16 cannot both be true')
    if (this.loadBestModelAtEnd) {
      if (this.evalStrategy === 'no') fail('loadBestModelAtEnd', 'needs evalStrategy "steps" or "epoch"')
      if (this.saveStrategy !== this.evalStrategy) {
        fail('loadBestModelAtEnd', `needs saveStrategy to match evalStrategy ("${this.saveStrategy}" vs "${this.evalStrategy}")`)
      }
      if (this.saveStrategy === 'steps' && Number.isInteger(this.saveSteps) && Number.isInteger(this.evalSteps) && this.saveSteps % this.evalSteps! !== 0) {
        fail('loadBestModelAtEnd', `needs saveSteps (${this.saveSteps}) to be a multiple of evalSteps (${this.evalSteps})`)
      }
    }
    if (this.classWeights !== null && (!Array.isArray(this.classWeights) || this.classWeights.some((w) => !(w >= 0)))) {
      fail('classWeights', 'must be an array of non-negative numbers')
    }
    const reports = typeof this.reportTo === 'string' ? [this.reportTo] : this.reportTo
    if (!Array.isArray(reports) || reports.some((r) => typeof r !== 'string')) fail('reportTo', `must be "none", "all" or a list of integrations, got ${JSON.stringify(this.reportTo)}`)
    for (const r of reports) {
      if (r === 'none' || r === 'all') continue
      if (r === 'tensorboard') fail('reportTo', '"tensorboard": bertkit writes no TensorBoard event files (no maintained TensorBoard writer exists on npm); trainer_state.json in outputDir holds the same scalars in transformers\' log_history format')
      fail('reportTo', `"${r}" is not an integration bertkit has; use "none"`)
    }
    if (!['auto', 'gloo', 'nccl'].includes(this.ddpBackend)) fail('ddpBackend', `must be auto, gloo or nccl, got "${this.ddpBackend}"`)
    if (!(this.ddpBucketCapMb > 0 && Number.isFinite(this.ddpBucketCapMb))) fail('ddpBucketCapMb', `must be a positive number, got ${this.ddpBucketCapMb}`)
    if (!(this.ddpTimeout > 0 && Number.isFinite(this.ddpTimeout))) fail('ddpTimeout', `must be a positive number of seconds, got ${this.ddpTimeout}`)
    if (!['auto', 'cpu', 'cuda'].includes(this.device)) fail('device', `must be auto, cpu or cuda, got "${this.device}"`)
    if (!Number.isInteger(this.seed) || this.seed < 0) fail('seed', `must be a non-negative integer, got ${this.seed}`)
    if (this.dataSeed !== null && (!Number.isInteger(this.dataSeed) || this.dataSeed < 0)) fail('dataSeed', `must be null or a non-negative integer, got ${this.dataSeed}`)
    if (typeof this.outputDir !== 'string' || this.outputDir === '') fail('outputDir', `must be a non-empty path, got ${JSON.stringify(this.outputDir)}`)
  }

  /** loggingSteps, evalSteps or saveSteps in steps for a run of maxSteps (a fraction counts as ceil(fraction · maxSteps), as transformers). */
  stepsFor(field: 'loggingSteps' | 'evalSteps' | 'saveSteps', maxSteps: number): number {
    const v = this[field] as number
    return v < 1 ? Math.max(1, Math.ceil(maxSteps * v)) : v
  }

  toJSON(): Record<string, unknown> {
    return { ...(this as unknown as Record<string, unknown>) }
  }
}
