// Learning-rate schedules as transformers' get_scheduler builds them: a
// multiplier of the base rate as a function of the optimizer step (0-based,
// the step about to be taken), LambdaLR-style.
import type { SchedulerType } from './training_args.js'

export function lrMultiplier(type: SchedulerType, step: number, warmupSteps: number, totalSteps: number): number {
  if (type === 'constant') return 1
  if (step < warmupSteps) return step / Math.max(1, warmupSteps)
  if (type === 'constant_with_warmup') return 1
  const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps)
  if (type === 'linear') return Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps))
  // cosine with num_cycles = 0.5
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * 0.5 * progress)))
}

/** Warm-up steps as transformers computes them: warmupSteps if set, else ceil(ratio * total). */
export function warmupStepsFor(warmupSteps: number, warmupRatio: number, totalSteps: number): number {
  return warmupSteps > 0 ? warmupSteps : Math.ceil(totalSteps * warmupRatio)
}
