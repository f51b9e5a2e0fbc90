// LoraConfig: peft's LoraConfig with camelCase names in TypeScript and peft's
// snake_case adapter_config.json on disk, so an adapter directory is shared
// with Python. Options that would change the math and that bertkit does not
// implement (DoRA, rank patterns, layer selection, ...) are refused when set,
// never silently ignored.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

export type LoraBias = 'none' | 'all' | 'lora_only'
export type PeftTaskType = 'SEQ_CLS'

/** The peft release whose adapter_config.json layout and defaults this file writes (test/oracles/check_lora_interop.py checks it). */
export const PEFT_FORMAT_VERSION = '0.21.2'

export const ADAPTER_CONFIG_NAME = 'adapter_config.json'

const MAX_RANK = 1 << 16
export const ADAPTER_WEIGHTS_NAME = 'adapter_model.safetensors'

/** Module names a SEQ_CLS task adds to modules_to_save, as peft's PeftModelForSequenceClassification does. */
export const SEQ_CLS_MODULES = ['classifier', 'score'] as const

export interface LoraConfigInit {
  /** Rank of the update (default 8). */
  r?: number
  /** Scale numerator: the update is multiplied by loraAlpha / r (default 8). */
  loraAlpha?: number
  /** Dropout on the input of the low-rank path (default 0). */
  loraDropout?: number
  /**
   * Which Linear layers get an adapter: names matched against the end of the
   * module path (["query", "value"]), a regular expression that must match a
   * whole module path, or "all-linear". null: the default for the model type.
   */
  targetModules?: string[] | string | null
  /** Module paths that must not get an adapter (same matching as targetModules). */
  excludeModules?: string[] | string | null
  /** Modules trained in full and saved with the adapter, e.g. ["classifier"]. */
  modulesToSave?: string[] | null
  /** Which biases train: none, all of the model's, or those of adapted layers. */
  bias?: LoraBias
  /** Only for Conv1D-style weights stored [in, out]; BERT's Linear layers are [out, in]. */
  fanInFanOut?: boolean
  /** Scale by loraAlpha / sqrt(r) instead of loraAlpha / r. */
  useRslora?: boolean
  /** true: A kaiming-uniform, B zero (the update starts at 0); "gaussian": A normal(0, 1/r); false: A and B both random. */
  initLoraWeights?: boolean | 'gaussian'
  /** "SEQ_CLS" adds the classifier ("classifier", "score") to modulesToSave, as peft does. */
  taskType?: PeftTaskType | null
  baseModelNameOrPath?: string | null
  revision?: string | null
  inferenceMode?: boolean
}

// adapter_config.json fields peft writes, with the values that mean "feature off".
// A loaded config whose field differs from these is refused (the feature is not implemented).
const UNSUPPORTED_WHEN_SET: Record<string, unknown> = {
  alora_invocation_tokens: null,
  alpha_pattern: {},
  arrow_config: null,
  corda_config: null,
  eva_config: null,
  kasa_config: null,
  layer_replication: null,
  layers_pattern: null,
  layers_to_transform: null,
  loftq_config: {},
  lora_bias: false,
  lora_ga_config: null,
  megatron_config: null,
  monteclora_config: null,
  rank_pattern: {},
  target_parameters: null,
  trainable_token_indices: null,
  use_bdlora: null,
  use_dora: false,
  use_qalora: false,
  velora_config: null,
}

// Fields that do not change the computation, written with peft's defaults.
const INERT_DEFAULTS: Record<string, unknown> = {
  ensure_weight_tying: false,
  megatron_core: 'megatron.core',
  qalora_group_size: 16,
}

function isEmptyLike(v: unknown): boolean {
  return v === null || v === undefined || v === false || (typeof v === 'object' && Object.keys(v as object).length === 0) || (Array.isArray(v) && v.length === 0)
}

export class LoraConfig {
  readonly peftType = 'LORA'
  r: number
  loraAlpha: number
  loraDropout: number
  targetModules: string[] | string | null
  excludeModules: string[] | string | null
  modulesToSave: string[] | null
  bias: LoraBias
  fanInFanOut: boolean
  useRslora: boolean
  initLoraWeights: boolean | 'gaussian'
  taskType: PeftTaskType | null
  baseModelNameOrPath: string | null
  revision: string | null
  inferenceMode: boolean
  /** adapter_config.json fields bertkit does not interpret (inert ones), written back unchanged. */
  readonly extra: Record<string, unknown> = {}

  constructor(init: LoraConfigInit = {}) {
    this.r = init.r ?? 8
    this.loraAlpha = init.loraAlpha ?? 8
    this.loraDropout = init.loraDropout ?? 0
    this.targetModules = init.targetModules === undefined ? null : Array.isArray(init.targetModules) ? [...init.targetModules] : init.targetModules
    this.excludeModules = init.excludeModules === undefined ? null : Array.isArray(init.excludeModules) ? [...init.excludeModules] : init.excludeModules
    // Copied only when it is a list: anything else stays as given for validate() to name.
    this.modulesToSave = Array.isArray(init.modulesToSave) ? [...init.modulesToSave] : (init.modulesToSave ?? null)
    this.bias = init.bias ?? 'none'
    this.fanInFanOut = init.fanInFanOut ?? false
    this.useRslora = init.useRslora ?? false
    this.initLoraWeights = init.initLoraWeights ?? true
    this.taskType = init.taskType ?? null
    this.baseModelNameOrPath = init.baseModelNameOrPath ?? null
    this.revision = init.revision ?? null
    this.inferenceMode = init.inferenceMode ?? false
    this.validate('LoraConfig')
  }

  /** The factor applied to B·A·x. */
  get scaling(): number {
    return this.useRslora ? this.loraAlpha / Math.sqrt(this.r) : this.loraAlpha / this.r
  }

  validate(source: string): void {
    if (typeof this.r !== 'number' || !Number.isInteger(this.r) || this.r < 1) throw new Error(`${source}: r must be a positive integer, got ${JSON.stringify(this.r)}`)
    // A rank beyond any layer's width only allocates: A is [r, in_features].
    if (this.r > MAX_RANK) throw new Error(`${source}: r must be at most ${MAX_RANK} (a rank above a layer's width adds nothing), got ${this.r}`)
    for (const [name, v] of [['useRslora', this.useRslora], ['fanInFanOut', this.fanInFanOut], ['inferenceMode', this.inferenceMode]] as const) {
      if (typeof v !== 'boolean') throw new Error(`${source}: ${name} must be true or false, got ${JSON.stringify(v)}`)
    }
    if (typeof this.loraAlpha !== 'number' || !Number.isFinite(this.loraAlpha)) throw new Error(`${source}: loraAlpha must be a finite number, got ${JSON.stringify(this.loraAlpha)}`)
    if (typeof this.loraDropout !== 'number' || !(this.loraDropout >= 0 && this.loraDropout < 1)) throw new Error(`${source}: loraDropout must be in [0, 1), got ${JSON.stringify(this.loraDropout)}`)
    if (!['none', 'all', 'lora_only'].includes(this.bias)) throw new Error(`${source}: bias must be "none", "all" or "lora_only", got ${JSON.stringify(this.bias)}`)
    if (this.taskType !== null && this.taskType !== 'SEQ_CLS') throw new Error(`${source}: task_type ${JSON.stringify(this.taskType)} is not supported (bertkit has sequence classification models: "SEQ_CLS" or null)`)
    if (![true, false, 'gaussian'].includes(this.initLoraWeights)) throw new Error(`${source}: initLoraWeights must be true, false or "gaussian", got ${JSON.stringify(this.initLoraWeights)}`)
    for (const [name, v] of [['targetModules', this.targetModules], ['excludeModules', this.excludeModules]] as const) {
      if (v === null) continue
      if (typeof v === 'string') {
        if (v === '') throw new Error(`${source}: ${name} is an empty string`)
        if (v !== 'all-linear') {
          try {
            new RegExp(v)
          } catch (err) {
            throw new Error(`${source}: ${name} ${JSON.stringify(v)} is not a valid regular expression (${(err as Error).message})`)
          }
        }
      } else if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== 'string' || x === '')) {
        throw new Error(`${source}: ${name} must be a non-empty list of module names, a regular expression or "all-linear", got ${JSON.stringify(v)}`)
      }
    }
    if (this.modulesToSave !== null && (!Array.isArray(this.modulesToSave) || this.modulesToSave.some((x) => typeof x !== 'string' || x === ''))) {
      throw new Error(`${source}: modulesToSave must be a list of module names, got ${JSON.stringify(this.modulesToSave)}`)
    }
  }

  /** adapter_config.json as peft writes it (every field, sorted keys). */
  toJSON(extraFields: Record<string, unknown> = {}): Record<string, unknown> {
    const fields: Record<string, unknown> = {
      ...UNSUPPORTED_WHEN_SET,
      ...INERT_DEFAULTS,
      ...this.extra,
      auto_mapping: null,
      base_model_name_or_path: this.baseModelNameOrPath,
      bias: this.bias,
      exclude_modules: this.excludeModules,
      fan_in_fan_out: this.fanInFanOut,
      inference_mode: this.inferenceMode,
      init_lora_weights: this.initLoraWeights,
      lora_alpha: this.loraAlpha,
      lora_dropout: this.loraDropout,
      modules_to_save: this.modulesToSave,
      peft_type: this.peftType,
      peft_version: PEFT_FORMAT_VERSION,
      r: this.r,
      revision: this.revision,
      target_modules: this.targetModules,
      task_type: this.taskType,
      use_rslora: this.useRslora,
      ...extraFields,
    }
    return Object.fromEntries(Object.keys(fields).sort().map((k) => [k, fields[k]]))
  }

  /** From adapter_config.json's object; `source` names the file in errors. */
  static fromJSON(raw: unknown, source = ADAPTER_CONFIG_NAME): LoraConfig {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${source}: adapter config must be a JSON object`)
    const o = raw as Record<string, unknown>
    const peftType = o.peft_type ?? 'LORA'
    if (peftType !== 'LORA') throw new Error(`${source}: peft_type ${JSON.stringify(peftType)} is not supported (bertkit loads LORA adapters)`)
    const refused: string[] = []
    for (const [k, off] of Object.entries(UNSUPPORTED_WHEN_SET)) {
      if (k in o && !isEmptyLike(o[k]) && JSON.stringify(o[k]) !== JSON.stringify(off)) refused.push(`${k}=${JSON.stringify(o[k])}`)
    }
    if (refused.length) throw new Error(`${source}: these peft options are not supported by bertkit: ${refused.join(', ')}`)
    const known = new Set(['peft_type', 'peft_version', 'auto_mapping', 'base_model_name_or_path', 'bias', 'exclude_modules', 'fan_in_fan_out',
      'inference_mode', 'init_lora_weights', 'lora_alpha', 'lora_dropout', 'modules_to_save', 'r', 'revision', 'target_modules', 'task_type', 'use_rslora'])
    const str = (v: unknown) => (v === undefined ? undefined : (v as string | null))
    const initLora = o.init_lora_weights
    if (initLora !== undefined && initLora !== true && initLora !== false && initLora !== 'gaussian') {
      throw new Error(`${source}: init_lora_weights ${JSON.stringify(initLora)} is not supported (true, false or "gaussian")`)
    }
    let config: LoraConfig
    try {
      config = new LoraConfig({
        r: o.r as number | undefined,
        loraAlpha: o.lora_alpha as number | undefined,
        loraDropout: o.lora_dropout as number | undefined,
        targetModules: o.target_modules as string[] | string | null | undefined,
        excludeModules: o.exclude_modules as string[] | string | null | undefined,
        modulesToSave: o.modules_to_save as string[] | null | undefined,
        bias: o.bias as LoraBias | undefined,
        fanInFanOut: o.fan_in_fan_out as boolean | undefined,
        useRslora: o.use_rslora as boolean | undefined,
        initLoraWeights: initLora as boolean | 'gaussian' | undefined,
        taskType: str(o.task_type) as PeftTaskType | null | undefined,
        baseModelNameOrPath: str(o.base_model_name_or_path),
        revision: str(o.revision),
        inferenceMode: o.inference_mode as boolean | undefined,
      })
    } catch (err) {
      // Name the fields as the file does (snake_case).
      const snake: Record<string, string> = { loraAlpha: 'lora_alpha', loraDropout: 'lora_dropout', useRslora: 'use_rslora', fanInFanOut: 'fan_in_fan_out',
        inferenceMode: 'inference_mode', targetModules: 'target_modules', excludeModules: 'exclude_modules', modulesToSave: 'modules_to_save', initLoraWeights: 'init_lora_weights' }
      const message = (err as Error).message.replace(/^LoraConfig: /, '').replace(/^[a-zA-Z]+/, (name) => snake[name] ?? name)
      throw new Error(`${source}: ${message}`)
    }
    for (const [k, v] of Object.entries(o)) {
      if (!known.has(k) && !(k in UNSUPPORTED_WHEN_SET)) config.extra[k] = v
    }
    return config
  }

  /** Reads <dir>/adapter_config.json. */
  static fromPretrained(dir: string): LoraConfig {
    const path = join(dir, ADAPTER_CONFIG_NAME)
    if (!existsSync(path)) throw new Error(`${dir}: no ${ADAPTER_CONFIG_NAME} (not a peft adapter directory)`)
    let raw: unknown
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'))
    } catch (err) {
      throw new Error(`${path}: cannot read adapter config (${(err as Error).message})`)
    }
    return LoraConfig.fromJSON(raw, path)
  }

  clone(): LoraConfig {
    const c = LoraConfig.fromJSON(this.toJSON(), 'LoraConfig')
    c.inferenceMode = this.inferenceMode
    return c
  }
}

/**
 * The CLI's --lora spec: comma-separated key=value pairs, where a bare item
 * continues the previous list: "r=8,alpha=16,dropout=0.1,targets=query,value,save=classifier".
 * Keys: r, alpha, dropout, targets (names, or all-linear), save, bias, rslora.
 */
export function loraConfigFromSpec(spec: string, base: LoraConfigInit = {}): LoraConfig {
  const lists: Record<string, string[]> = {}
  let current: string | null = null
  for (const raw of spec.split(',')) {
    const item = raw.trim()
    if (item === '') continue
    const eq = item.indexOf('=')
    if (eq > 0) {
      current = item.slice(0, eq).trim()
      if (current in lists) throw new Error(`--lora: "${current}" is given twice`)
      lists[current] = [item.slice(eq + 1).trim()]
    } else if (current === 'targets' || current === 'save') {
      lists[current].push(item)
    } else {
      throw new Error(`--lora: cannot read "${item}" (expected key=value; only targets= and save= take several names)`)
    }
  }
  const allowed = ['r', 'alpha', 'dropout', 'targets', 'save', 'bias', 'rslora']
  for (const k of Object.keys(lists)) {
    if (!allowed.includes(k)) throw new Error(`--lora: unknown key "${k}" (known: ${allowed.join(', ')})`)
  }
  const number = (k: string): number | undefined => {
    if (!lists[k]) return undefined
    const v = lists[k][0]
    const n = Number(v)
    if (v === '' || !Number.isFinite(n)) throw new Error(`--lora: ${k} must be a number, got "${v}"`)
    return n
  }
  const init: LoraConfigInit = { ...base }
  if (lists.r) init.r = number('r')
  if (lists.alpha) init.loraAlpha = number('alpha')
  if (lists.dropout) init.loraDropout = number('dropout')
  if (lists.targets) init.targetModules = lists.targets.length === 1 && lists.targets[0] === 'all-linear' ? 'all-linear' : lists.targets
  if (lists.save) init.modulesToSave = lists.save
  if (lists.bias) init.bias = lists.bias[0] as LoraBias
  if (lists.rslora) init.useRslora = lists.rslora[0] === 'true' || lists.rslora[0] === '1'
  try {
    return new LoraConfig(init)
  } catch (err) {
    throw new Error(`--lora: ${(err as Error).message.replace(/^LoraConfig: /, '')}`)
  }
}
