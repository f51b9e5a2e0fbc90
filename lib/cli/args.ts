// Command-line flags: --kebab-case flags map onto TrainingArguments' camelCase
// fields, parsed by the type of each field's default, so every supported
// Hugging Face argument is a flag without a hand-written list.
import { TrainingArguments } from '../train/training_args.js'

export interface ParsedFlags {
  positional: string[]
  flags: Map<string, string | true>
}

export function parseFlags(argv: string[]): ParsedFlags {
  const positional: string[] = []
  const flags = new Map<string, string | true>()
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) {
      positional.push(a)
      continue
    }
    const eq = a.indexOf('=')
    if (eq > 0) {
      flags.set(a.slice(2, eq), a.slice(eq + 1))
    } else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
      flags.set(a.slice(2), argv[++i])
    } else {
      flags.set(a.slice(2), true)
    }
  }
  return { positional, flags }
}

export const kebabToCamel = (s: string) => s.replace(/[-_]([a-z0-9])/g, (_, c: string) => c.toUpperCase())
export const camelToKebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

// Plain decimal numbers only: Number() would also take "", " ", "0x10" and "Infinity".
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/

/** A numeric flag's value, or an error naming the flag. */
export function numberFlag(v: string | true | undefined, flag: string): number {
  if (v === true || v === undefined) throw new Error(`--${flag}: expected a number, got nothing`)
  const n = Number(v)
  if (!DECIMAL.test(v.trim()) || !Number.isFinite(n)) throw new Error(`--${flag}: expected a number, got "${v}"`)
  return n
}

/** An integer flag at least `min`, or an error naming the flag. */
export function intFlag(v: string | true | undefined, flag: string, min: number): number {
  const n = numberFlag(v, flag)
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${flag}: expected ${min === 1 ? 'a positive integer' : min === 0 ? 'a non-negative integer' : `an integer >= ${min}`}, got "${v}"`)
  return n
}

/** TrainingArguments fields settable from flags, with the parser each needs. */
function fieldParsers(): Map<string, (v: string | true, flag: string) => unknown> {
  const defaults = new TrainingArguments() as unknown as Record<string, unknown>
  const parsers = new Map<string, (v: string | true, flag: string) => unknown>()
  const number = (v: string | true, flag: string) => numberFlag(v, flag)
  const bool = (v: string | true, flag: string) => {
    if (v === true || v === 'true' || v === '1') return true
    if (v === 'false' || v === '0') return false
    throw new Error(`--${flag}: expected true or false, got "${v}"`)
  }
  const str = (v: string | true, flag: string) => {
    if (v === true || v === '') throw new Error(`--${flag}: expected a value`)
    return v
  }
  for (const [k, v] of Object.entries(defaults)) {
    if (typeof v === 'number') parsers.set(k, number)
    else if (typeof v === 'boolean') parsers.set(k, bool)
    else if (typeof v === 'string') parsers.set(k, str)
  }
  // Fields whose default is null.
  for (const k of ['evalSteps', 'saveTotalLimit', 'dataSeed']) parsers.set(k, number)
  parsers.set('metricForBestModel', str)
  parsers.set('greaterIsBetter', bool)
  parsers.set('resumeFromCheckpoint', (v) => (v === true || v === 'true' ? true : v))
  parsers.set('classWeights', (v, flag) => str(v, flag).split(',').map((x) => number(x, flag)))
  parsers.set('reportTo', (v, flag) => {
    const list = str(v, flag).split(',')
    return list.length === 1 ? list[0] : list
  })
  return parsers
}

/** Splits flags into TrainingArguments fields and the rest (command options). */
export function trainingArgsFromFlags(flags: Map<string, string | true>, known: Set<string>): { fields: Record<string, unknown>; rest: Map<string, string | true> } {
  const parsers = fieldParsers()
  const fields: Record<string, unknown> = {}
  const rest = new Map<string, string | true>()
  for (const [flag, value] of flags) {
    const field = kebabToCamel(flag)
    const parse = parsers.get(field)
    if (parse) fields[field] = parse(value, flag)
    else if (known.has(flag)) rest.set(flag, value)
    else throw new Error(`unknown flag --${flag} (see bertkit --help)`)
  }
  return { fields, rest }
}

/**
 * new TrainingArguments(fields), its errors naming the command-line flag
 * (--per-device-train-batch-size) rather than the field.
 */
export function trainingArgumentsFromFields(fields: Record<string, unknown>, defaults: Record<string, unknown> = {}): TrainingArguments {
  try {
    return new TrainingArguments({ ...defaults, ...fields })
  } catch (err) {
    const message = (err as Error).message
    const m = /^TrainingArguments: (\w+) /.exec(message)
    if (!m) throw err
    // Every field the message names becomes its flag: "--load-best-model-at-end needs --save-strategy to match --eval-strategy".
    const fields = new Set(Object.keys(new TrainingArguments()))
    const named = message.replace(/^TrainingArguments: /, '').replace(/\b[a-z][a-zA-Z0-9]*\b/g, (w) => (fields.has(w) && (/[A-Z]/.test(w) || w === m[1]) ? `--${camelToKebab(w)}` : w))
    throw new Error(named)
  }
}

export function trainingArgumentFlags(): string[] {
  return [...fieldParsers().keys()].map(camelToKebab)
}
