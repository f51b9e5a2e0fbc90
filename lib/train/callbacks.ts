// Trainer callbacks, as transformers' TrainerCallback: hooks called with the
// arguments, the state and a control object the callback may set.
import type { TrainingArguments } from './training_args.js'

export interface LogEntry {
  step: number
  epoch: number
  [key: string]: number
}

export interface TrainerState {
  globalStep: number
  epoch: number
  maxSteps: number
  numTrainEpochs: number
  logHistory: LogEntry[]
  bestMetric: number | null
  /** The step of the best evaluation (transformers' best_global_step). */
  bestGlobalStep: number | null
  bestModelCheckpoint: string | null
  trainBatchSize: number
  /** Floating-point operations of the training so far, counted as transformers counts them (6 · tokens · non-embedding parameters). */
  totalFlos: number
}

export interface TrainerControl {
  shouldTrainingStop: boolean
  shouldEvaluate: boolean
  shouldSave: boolean
  shouldLog: boolean
}

export interface TrainerCallback {
  onTrainBegin?(args: TrainingArguments, state: TrainerState, control: TrainerControl): void
  onEpochBegin?(args: TrainingArguments, state: TrainerState, control: TrainerControl): void
  onStepEnd?(args: TrainingArguments, state: TrainerState, control: TrainerControl): void
  onLog?(args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Record<string, number>): void
  onEvaluate?(args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics: Record<string, number>): void
  onSave?(args: TrainingArguments, state: TrainerState, control: TrainerControl, checkpointDir: string): void
  onEpochEnd?(args: TrainingArguments, state: TrainerState, control: TrainerControl): void
  onTrainEnd?(args: TrainingArguments, state: TrainerState, control: TrainerControl): void
}

/**
 * Stops training when the metric for the best model has not improved by more
 * than `threshold` for `patience` evaluations (transformers' EarlyStoppingCallback).
 */
export class EarlyStoppingCallback implements TrainerCallback {
  private bad = 0
  private best: number | null = null

  constructor(readonly patience = 1, readonly threshold = 0) {
    if (!Number.isInteger(patience) || patience < 1) throw new RangeError(`EarlyStoppingCallback: patience must be a positive integer, got ${patience}`)
  }

  onTrainBegin(args: TrainingArguments): void {
    if (!args.metricForBestModel) throw new Error('EarlyStoppingCallback needs TrainingArguments.metricForBestModel (or loadBestModelAtEnd)')
    if (args.evalStrategy === 'no') throw new Error('EarlyStoppingCallback needs an evalStrategy other than "no"')
  }

  onEvaluate(args: TrainingArguments, _state: TrainerState, control: TrainerControl, metrics: Record<string, number>): void {
    const key = metricKey(args.metricForBestModel!)
    const value = metrics[key]
    if (value === undefined) throw new Error(`EarlyStoppingCallback: metric "${key}" is not among the evaluation metrics (${Object.keys(metrics).join(', ')})`)
    const better = this.best === null || (args.greaterIsBetter ? value > this.best + this.threshold : value < this.best - this.threshold)
    if (better) {
      this.best = value
      this.bad = 0
    } else if (++this.bad >= this.patience) {
      control.shouldTrainingStop = true
    }
  }
}

/** "f1" → "evalF1", "eval_loss" → "evalLoss", "evalAccuracy" stays. */
export function metricKey(name: string): string {
  const camel = name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())
  if (/^eval[A-Z0-9]/.test(camel)) return camel
  return 'eval' + camel.charAt(0).toUpperCase() + camel.slice(1)
}
