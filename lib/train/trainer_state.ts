// The run's records on disk, readable by Hugging Face tooling:
//   trainer_state.json  exactly transformers' TrainerState fields (snake_case,
//                       log_history as transformers logs it), so
//                       TrainerState.load_from_json and notebooks read it;
//   bertkit_state.json  what bertkit needs to resume a checkpoint exactly
//                       (data position, Philox/host RNG state, arguments).
// In memory the state stays in TypeScript's camelCase (evalLoss, gradNorm);
// the conversion happens here, both ways.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { LogEntry, TrainerState } from './callbacks.js'
import type { TrainingArguments } from './training_args.js'

/** evalF1 → eval_f1, trainSamplesPerSecond → train_samples_per_second, gradNorm → grad_norm. */
export function snakeKey(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase()
}

/** eval_f1 → evalF1 (keys without underscores stay). */
export function camelKey(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())
}

/** One log_history entry as transformers writes it. */
export function hfLogEntry(entry: LogEntry): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [k, v] of Object.entries(entry)) out[snakeKey(k)] = v
  return out
}

export function logEntryFromHf(entry: Record<string, unknown>): LogEntry {
  const out: Record<string, number> = {}
  for (const [k, v] of Object.entries(entry)) if (typeof v === 'number') out[camelKey(k)] = v
  return out as LogEntry
}

/**
 * transformers' TrainerState as JSON (keys sorted, as its save_to_json does).
 * Every key is a field of that dataclass: load_from_json passes them all to
 * its constructor, so one extra key would make it fail.
 */
export function trainerStateJson(state: TrainerState, args: TrainingArguments, bestModelCheckpoint: string | null): string {
  const maxSteps = state.maxSteps
  const fields: Record<string, unknown> = {
    best_global_step: state.bestGlobalStep,
    best_metric: state.bestMetric,
    best_model_checkpoint: bestModelCheckpoint,
    epoch: state.epoch,
    eval_steps: args.stepsFor('evalSteps', maxSteps),
    global_step: state.globalStep,
    is_hyper_param_search: false,
    is_local_process_zero: true,
    is_world_process_zero: true,
    log_history: state.logHistory.map(hfLogEntry),
    logging_steps: args.stepsFor('loggingSteps', maxSteps),
    max_steps: maxSteps,
    num_input_tokens_seen: 0,
    num_train_epochs: state.numTrainEpochs,
    save_steps: args.stepsFor('saveSteps', maxSteps),
    stateful_callbacks: {},
    total_flos: state.totalFlos,
    train_batch_size: state.trainBatchSize,
    trial_name: null,
    trial_params: null,
  }
  return JSON.stringify(fields, null, 2) + '\n'
}

/** Where a checkpoint stands in the data: the epoch and the batches of it already trained. */
export interface DataPosition {
  epoch: number
  batchesDone: number
}

export interface BertkitState {
  data_position: DataPosition
  rng: { seed: string; offset: string; host_state: number[] }
}

export function bertkitStateJson(position: DataPosition, rng: { seed: bigint; offset: bigint; hostState: number[] }, args: TrainingArguments): string {
  return JSON.stringify({
    data_position: position,
    rng: { seed: rng.seed.toString(), offset: rng.offset.toString(), host_state: rng.hostState },
    args: args.toJSON(),
  }, null, 2) + '\n'
}

export interface SavedCheckpointState {
  globalStep: number
  epoch: number
  logHistory: LogEntry[]
  bestMetric: number | null
  bestGlobalStep: number | null
  bestModelCheckpoint: string | null
  totalFlos: number
  bertkit: BertkitState
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function readJson(path: string, fail: (why: string) => never): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    return fail(`cannot read it (${(err as Error).message})`)
  }
  try {
    return JSON.parse(text)
  } catch (err) {
    return fail(`it is not valid JSON (${(err as Error).message}); the file is damaged or cut short, resume from another checkpoint`)
  }
}

/**
 * A bertkit checkpoint's state, checked field by field; every error names the
 * file. Checkpoints of older bertkit versions kept the bertkit section inside
 * trainer_state.json (and camelCase log keys): they still resume.
 */
export function readCheckpointState(dir: string): SavedCheckpointState {
  const statePath = join(dir, 'trainer_state.json')
  const failState = (why: string): never => {
    throw new Error(`Trainer: cannot resume from ${statePath}: ${why}`)
  }
  const s = readJson(statePath, failState)
  if (!isObject(s)) return failState('it does not hold a JSON object')
  const nonNegInt = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
  if (!nonNegInt(s.global_step)) failState(`"global_step" is ${JSON.stringify(s.global_step)}, not a step count`)
  if (typeof s.epoch !== 'number' || !Number.isFinite(s.epoch) || s.epoch < 0) failState(`"epoch" is ${JSON.stringify(s.epoch)}, not a number`)
  if (!Array.isArray(s.log_history) || !s.log_history.every(isObject)) failState('"log_history" is missing or not a list of objects')
  if (s.best_metric !== null && s.best_metric !== undefined && typeof s.best_metric !== 'number') failState(`"best_metric" is ${JSON.stringify(s.best_metric)}`)
  if (s.best_global_step !== null && s.best_global_step !== undefined && !nonNegInt(s.best_global_step)) failState(`"best_global_step" is ${JSON.stringify(s.best_global_step)}`)
  if (s.best_model_checkpoint !== null && s.best_model_checkpoint !== undefined && typeof s.best_model_checkpoint !== 'string') failState(`"best_model_checkpoint" is ${JSON.stringify(s.best_model_checkpoint)}`)

  const bertkitPath = join(dir, 'bertkit_state.json')
  let b: unknown
  let where: string
  if (existsSync(bertkitPath)) {
    where = bertkitPath
    b = readJson(bertkitPath, (why) => {
      throw new Error(`Trainer: cannot resume from ${bertkitPath}: ${why}`)
    })
  } else if (isObject(s.bertkit)) {
    where = statePath
    b = s.bertkit
  } else {
    throw new Error(`Trainer: cannot resume from ${dir}: it has no bertkit_state.json (data position and RNG state), so it was not written by bertkit's Trainer (a transformers checkpoint?); bertkit resumes only its own checkpoints. To start from these weights instead, load the checkpoint folder as the model`)
  }
  const fail = (why: string): never => {
    throw new Error(`Trainer: cannot resume from ${where}: ${why}`)
  }
  if (!isObject(b)) return fail('it does not hold a JSON object')
  const prefix = where === statePath ? 'bertkit.' : ''
  const pos = b.data_position
  if (!isObject(pos) || !nonNegInt(pos.epoch) || !nonNegInt(pos.batchesDone)) fail(`"${prefix}data_position" is ${JSON.stringify(pos)}, not {epoch, batchesDone}`)
  const rng = b.rng
  const digits = (v: unknown) => typeof v === 'string' && /^\d+$/.test(v)
  if (!isObject(rng) || !digits(rng.seed) || !digits(rng.offset) || !Array.isArray(rng.host_state) || !rng.host_state.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < 2 ** 32)) {
    fail(`"${prefix}rng" is missing or incomplete (needs seed, offset, host_state)`)
  }
  return {
    globalStep: s.global_step as number,
    epoch: s.epoch as number,
    logHistory: (s.log_history as Array<Record<string, unknown>>).map(logEntryFromHf),
    bestMetric: (s.best_metric as number | null | undefined) ?? null,
    bestGlobalStep: (s.best_global_step as number | null | undefined) ?? null,
    bestModelCheckpoint: (s.best_model_checkpoint as string | null | undefined) ?? null,
    totalFlos: typeof s.total_flos === 'number' && Number.isFinite(s.total_flos) ? s.total_flos : 0,
    bertkit: b as unknown as BertkitState,
  }
}
