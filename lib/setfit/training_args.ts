// setfit's TrainingArguments: the two phases' settings, with setfit's names
// (camelCase) and defaults. Pairs (batchSize, numEpochs, bodyLearningRate)
// give (embedding phase, classifier phase); a single number sets both.
import { SAMPLING_STRATEGIES, type SamplingStrategy } from './sampler.js'
import type { DeviceRequest } from '../tensor/device.js'

type Pair = [number, number]

export interface TrainingArgumentsInit {
  outputDir?: string
  batchSize?: number | Pair
  numEpochs?: number | Pair
  /** > 0: stop phase 1 after this many steps (and draw only the pairs they need). Default -1. */
  maxSteps?: number
  samplingStrategy?: SamplingStrategy
  numIterations?: number | null
  bodyLearningRate?: number | Pair
  headLearningRate?: number
  /** Only "CosineSimilarityLoss" (setfit's default) is implemented. */
  loss?: 'CosineSimilarityLoss'
  endToEnd?: boolean
  useAmp?: boolean
  warmupProportion?: number
  l2Weight?: number | null
  maxLength?: number | null
  showProgressBar?: boolean
  seed?: number
  loggingSteps?: number
  loggingFirstStep?: boolean
  /** Gradient clipping of phase 1 (sentence-transformers' Trainer default). Default 1. */
  maxGradNorm?: number
  device?: DeviceRequest
}

function pair(name: string, value: number | Pair): Pair {
  const p: Pair = typeof value === 'number' ? [value, value] : value
  if (!Array.isArray(p) || p.length !== 2 || !p.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new TypeError(`TrainingArguments: ${name} must be a number or a pair of numbers, got ${JSON.stringify(value)}`)
  }
  return [p[0], p[1]]
}

export class TrainingArguments {
  outputDir = 'checkpoints'
  batchSize: Pair = [16, 2]
  numEpochs: Pair = [1, 16]
  maxSteps = -1
  samplingStrategy: SamplingStrategy = 'oversampling'
  numIterations: number | null = null
  bodyLearningRate: Pair = [2e-5, 1e-5]
  headLearningRate = 1e-2
  loss: 'CosineSimilarityLoss' = 'CosineSimilarityLoss'
  endToEnd = false
  useAmp = false
  warmupProportion = 0.1
  l2Weight: number | null = 0.01
  maxLength: number | null = null
  showProgressBar = true
  seed = 42
  loggingSteps = 50
  loggingFirstStep = true
  maxGradNorm = 1
  device: DeviceRequest = 'auto'

  constructor(init: TrainingArgumentsInit = {}) {
    const known = new Set(Object.keys(this))
    for (const key of Object.keys(init)) {
      if (!known.has(key)) throw new TypeError(`TrainingArguments: unknown argument "${key}"`)
    }
    const { batchSize, numEpochs, bodyLearningRate, ...rest } = init
    Object.assign(this, Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)))
    if (batchSize !== undefined) this.batchSize = pair('batchSize', batchSize)
    if (numEpochs !== undefined) this.numEpochs = pair('numEpochs', numEpochs)
    if (bodyLearningRate !== undefined) this.bodyLearningRate = pair('bodyLearningRate', bodyLearningRate)
    this.validate()
  }

  private validate(): void {
    const positiveInt = (name: string, v: number) => {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`TrainingArguments: ${name} must be a positive integer, got ${v}`)
    }
    positiveInt('batchSize[0]', this.batchSize[0])
    positiveInt('batchSize[1]', this.batchSize[1])
    for (const [i, v] of this.numEpochs.entries()) {
      if (!Number.isInteger(v) || v < 0) throw new RangeError(`TrainingArguments: numEpochs[${i}] must be a non-negative integer, got ${v}`)
    }
    if (!Number.isInteger(this.maxSteps) || this.maxSteps === 0 || this.maxSteps < -1) throw new RangeError(`TrainingArguments: maxSteps must be -1 or a positive integer, got ${this.maxSteps}`)
    if (!SAMPLING_STRATEGIES.includes(this.samplingStrategy)) {
      throw new RangeError(`TrainingArguments: samplingStrategy must be one of ${SAMPLING_STRATEGIES.join(', ')}, got ${JSON.stringify(this.samplingStrategy)}`)
    }
    if (this.numIterations !== null && (!Number.isInteger(this.numIterations) || this.numIterations < 0)) {
      throw new RangeError(`TrainingArguments: numIterations must be a non-negative integer or null, got ${this.numIterations}`)
    }
    for (const [name, v] of [['bodyLearningRate[0]', this.bodyLearningRate[0]], ['bodyLearningRate[1]', this.bodyLearningRate[1]], ['headLearningRate', this.headLearningRate]] as const) {
      if (!(v >= 0)) throw new RangeError(`TrainingArguments: ${name} must be >= 0, got ${v}`)
    }
    if (this.warmupProportion < 0 || this.warmupProportion > 1 || !Number.isFinite(this.warmupProportion)) {
      throw new RangeError(`warmup_proportion must be greater than or equal to 0.0 and less than or equal to 1.0! But it was: ${this.warmupProportion}`)
    }
    if (this.loss !== 'CosineSimilarityLoss') throw new RangeError(`TrainingArguments: loss ${JSON.stringify(this.loss)} is not implemented; bertkit trains the body with CosineSimilarityLoss`)
    if (this.useAmp) throw new RangeError('TrainingArguments: useAmp is not implemented for SetFit in bertkit')
    if (this.l2Weight !== null && !(this.l2Weight >= 0)) throw new RangeError(`TrainingArguments: l2Weight must be >= 0, got ${this.l2Weight}`)
    if (this.maxLength !== null) positiveInt('maxLength', this.maxLength)
    if (!Number.isInteger(this.seed) || this.seed < 0) throw new RangeError(`TrainingArguments: seed must be a non-negative integer, got ${this.seed}`)
    positiveInt('loggingSteps', this.loggingSteps)
    if (!(this.maxGradNorm > 0)) throw new RangeError(`TrainingArguments: maxGradNorm must be positive, got ${this.maxGradNorm}`)
  }

  get embeddingBatchSize(): number { return this.batchSize[0] }
  get classifierBatchSize(): number { return this.batchSize[1] }
  get embeddingNumEpochs(): number { return this.numEpochs[0] }
  get classifierNumEpochs(): number { return this.numEpochs[1] }
  get bodyEmbeddingLearningRate(): number { return this.bodyLearningRate[0] }
  get bodyClassifierLearningRate(): number { return this.bodyLearningRate[1] }

  /** A copy with some arguments changed. */
  update(changes: TrainingArgumentsInit): TrainingArguments {
    return new TrainingArguments({ ...this.toInit(), ...changes })
  }

  toInit(): TrainingArgumentsInit {
    return Object.fromEntries(Object.entries(this)) as TrainingArgumentsInit
  }

  toJSON(): Record<string, unknown> {
    return { ...this } as Record<string, unknown>
  }
}
