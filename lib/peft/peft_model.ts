// PeftModel: peft's get_peft_model / PeftModel.from_pretrained for LoRA.
// The wrapped model sits at base_model.model, LoRA layers and
// ModulesToSaveWrappers replace the matched modules in place, so
// namedParameters() yields exactly the names (and order) of peft's
// model.named_parameters(), and the adapter files carry the keys peft writes.
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Module } from '../nn/module.js'
import { Linear } from '../nn/layers.js'
import { formatShape, type Tensor } from '../tensor/tensor.js'
import { manualSeed, getRandomState, setRandomState } from '../tensor/random.js'
import { readSafetensors, writeSafetensors, writeSafetensorsAsync, atomicWriteFile, atomicWriteFileAsync, type HostTensor } from '../hub/safetensors.js'
import { makeDirs } from '../hub/dirs.js'
import { LoraConfig, ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, SEQ_CLS_MODULES } from './config.js'
import { checkFinite } from '../models/modeling_utils.js'
import { modelFamilies } from '../models/families.js'
import { LoraLinear, ModulesToSaveWrapper, DEFAULT_ADAPTER, type ForwardModule } from './layers.js'

/** What a PEFT model can wrap: a Module with a classifier-style forward and a transformers config. */
export interface PeftBaseModel extends Module {
  forward(inputs: never): { loss: Tensor | null; logits: Tensor }
  readonly config: { model_type: string }
}

type InputsOf<M extends PeftBaseModel> = M['forward'] extends (inputs: infer I) => unknown ? I : never
type OutputOf<M extends PeftBaseModel> = ReturnType<M['forward']>

/** peft's default target modules per model_type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING), of the registered families. */
export const DEFAULT_TARGET_MODULES: Readonly<Record<string, readonly string[]>> = Object.freeze(Object.fromEntries(
  modelFamilies().flatMap((f) => [f.modelType, ...(f.otherModelTypes ?? [])].map((type) => [type, f.loraTargetModules]))))

const PREFIX = 'base_model.model.'

/**
 * peft's _remove_adapter_name_from_state_dict_key for the "default" adapter:
 * the name goes only where it ends the key or precedes its last component.
 */
export function removeAdapterName(key: string): string {
  const suffix = `.${DEFAULT_ADAPTER}`
  if (!key.includes('.')) return key
  if (key.endsWith(suffix)) return key.slice(0, -suffix.length)
  const dot = key.lastIndexOf('.')
  const head = key.slice(0, dot)
  return `${head.endsWith(suffix) ? head.slice(0, -suffix.length) : head}${key.slice(dot)}`
}

/** peft's LoraModel: holds the model under "model". */
export class LoraModel<M extends PeftBaseModel> extends Module {
  readonly model: M

  constructor(model: M) {
    super()
    this.model = this.registerModule('model', model)
  }
}

/** Replaces parent's child `name` (old) with `child`, keeping its place in the parameter order (peft's). */
function setChild(parent: Module, name: string, old: Module, child: Module): void {
  const previous = parent.replaceModule(name, child)
  if (previous !== old) {
    parent.replaceModule(name, previous)
    throw new Error(`peft: internal error: ${parent.constructor.name}.${name} is not the module being replaced`)
  }
}

function parentOf(root: Module, path: string): { parent: Module; name: string } {
  const dot = path.lastIndexOf('.')
  const parentPath = dot < 0 ? '' : path.slice(0, dot)
  for (const [p, m] of root.namedModules()) if (p === parentPath) return { parent: m, name: path.slice(dot + 1) }
  throw new Error(`peft: internal error: no module at "${parentPath}"`)
}

/** A pattern from adapter_config.json as a JavaScript RegExp (peft's are Python regexes; plain names mean the same in both). */
function pythonRegExp(pattern: string, wrap: (p: string) => string, what: string): RegExp {
  try {
    return new RegExp(wrap(pattern))
  } catch (err) {
    throw new Error(`${what} ${JSON.stringify(pattern)} is not a regular expression JavaScript can read (${(err as Error).message})`)
  }
}

/**
 * peft's check_target_module_exists for target_modules / exclude_modules: a
 * string is a regular expression that must match the whole path; a list entry
 * equals the path or its last components.
 */
function matchesTargets(targets: string[] | string, key: string, what = 'targetModules'): boolean {
  if (typeof targets === 'string') return pythonRegExp(targets, (p) => `^(?:${p})$`, what).test(key)
  return targets.some((t) => key === t || key.endsWith(`.${t}`))
}

/**
 * peft keeps every module named in modules_to_save (and everything inside
 * it) away from LoRA: re.match(rf"(^|.*\.){m}($|\..*)", key), m being a
 * regular expression.
 */
function insideSaved(modulesToSave: string[], key: string): boolean {
  return modulesToSave.some((m) => pythonRegExp(m, (p) => `^(?:^|.*\\.)(?:${p})(?:$|\\..*)$`, 'modulesToSave').test(key))
}

// The modules peft puts inside a LoRA layer (named_modules of a lora.Linear), relative to it.
const LORA_SUBMODULES = ['base_layer', 'lora_dropout', 'lora_dropout.default', 'lora_A', 'lora_A.default', 'lora_B', 'lora_B.default',
  'lora_embedding_A', 'lora_embedding_B', 'lora_magnitude_vector']

/** Linear layer paths with layer indices folded ("bert.encoder.layer.*.attention.self.query"), for error messages. */
function describeLinears(paths: string[]): string {
  const folded = [...new Set(paths.map((p) => p.replace(/\.\d+\./g, '.*.')))]
  return folded.join(', ')
}

export interface InjectionPlan {
  lora: Array<{ path: string; module: Linear }>
  save: Array<{ path: string; module: ForwardModule }>
  /** target_modules as peft writes it back ("all-linear" becomes the list of paths). */
  targetModules: string[] | string
  /** modules_to_save entries that matched no module (peft ignores them). */
  unmatchedSave: string[]
}

/**
 * Decides which modules get LoRA and which are saved in full, exactly as
 * peft 0.21 does, or explains why peft would refuse (or build something
 * else than what the config says):
 *  - LoRA: target_modules (names matching the path's last components, a
 *    regex over the whole path, or "all-linear", which for SEQ_CLS leaves out
 *    the classifier head), minus exclude_modules, minus anything inside a
 *    modules_to_save module (a regex over whole path components);
 *  - modules_to_save: every module whose path merely ENDS with an entry
 *    (key.endswith(name): "classifier" also matches DistilBERT's
 *    "pre_classifier"), wrapped whole whatever its type, after LoRA is in.
 */
export function planInjection(model: PeftBaseModel, config: LoraConfig): InjectionPlan {
  const modelName = model.constructor.name
  const modules = [...model.namedModules()].filter(([p]) => p !== '')
  const linears = modules.filter(([, m]) => m instanceof Linear).map(([p]) => p)
  let targets = config.targetModules
  let written: string[] | string | null = targets
  if (targets === null) {
    const modelType = model.config?.model_type
    const defaults = typeof modelType === 'string' && Object.hasOwn(DEFAULT_TARGET_MODULES, modelType) ? DEFAULT_TARGET_MODULES[modelType] : undefined
    if (!defaults) {
      throw new Error(`getPeftModel: no default targetModules for model_type ${JSON.stringify(modelType)} (known: ${Object.keys(DEFAULT_TARGET_MODULES).join(', ')}); ` +
        `set targetModules, e.g. ["query", "value"]; the Linear layers of ${modelName} are: ${describeLinears(linears)}`)
    }
    targets = [...defaults]
    written = targets
  }
  const saveNames = config.modulesToSave ?? []
  const seqCls = config.taskType === 'SEQ_CLS'
  if (typeof targets === 'string' && targets.toLowerCase() === 'all-linear') {
    // peft's _maybe_include_all_linear_layers: every Linear, less a SEQ_CLS model's head ("score", else "classifier").
    const head = seqCls ? ['score', 'classifier'].find((n) => modules.some(([p]) => p === n)) : undefined
    targets = linears.filter((p) => p !== head)
    written = targets
  }

  // ---- LoRA ----
  const lora: InjectionPlan['lora'] = []
  const resolvedTargets = targets
  const leftOut: string[] = []
  for (const [path, m] of modules) {
    if (!matchesTargets(resolvedTargets, path)) continue
    if ((config.excludeModules !== null && matchesTargets(config.excludeModules, path, 'excludeModules')) || insideSaved(saveNames, path)) {
      leftOut.push(path)
      continue
    }
    if (!(m instanceof Linear)) {
      throw new Error(`targetModules ${JSON.stringify(config.targetModules)} matches "${path}" (${m.constructor.name}), but LoRA wraps Linear layers only; the Linear layers of ${modelName} are: ${describeLinears(linears)}`)
    }
    lora.push({ path, module: m })
  }
  if (lora.length === 0) {
    const why = leftOut.length ? ` once excludeModules and modulesToSave left out ${describeLinears(leftOut)}` : ''
    throw new Error(`targetModules ${JSON.stringify(config.targetModules)} matched no Linear layer of ${modelName}${why}; its Linear layers are: ${describeLinears(linears)}`)
  }

  // ---- modules_to_save, over the module paths as they are once LoRA is in ----
  const loraPaths = new Set(lora.map((l) => l.path))
  const matches = (key: string) => saveNames.find((n) => key.endsWith(n) || (seqCls && `base_model.model.${key}`.endsWith(n)))
  const save: InjectionPlan['save'] = []
  const matched = new Set<string>()
  const hint = 'peft matches modules_to_save by the end of the module path (key.endswith(name))'
  for (const [path, m] of modules) {
    if (loraPaths.has(path)) {
      for (const sub of ['', ...LORA_SUBMODULES]) {
        const key = sub ? `${path}.${sub}` : path
        const hit = matches(key)
        if (hit) {
          throw new Error(`modulesToSave ${JSON.stringify(hit)} matches "${key}", ${sub ? 'inside' : 'which is'} a LoRA layer (targetModules picked "${path}"); ` +
            `peft refuses this (modules_to_save cannot wrap a LoRA layer or its parts; ${hint}). Leave "${path}" out with excludeModules, or change the names`)
        }
      }
      continue
    }
    const hit = matches(path)
    if (!hit) continue
    for (const n of saveNames) if (path.endsWith(n) || (seqCls && `base_model.model.${path}`.endsWith(n))) matched.add(n)
    const outer = save.find((s) => path.startsWith(`${s.path}.`))
    if (outer) {
      // peft wraps such a module a second time (beside the copy, or inside it) and saves one key for
      // two wrappers, which its own PeftModel.from_pretrained then fails on (KeyError). Without
      // parameters nothing is saved and nothing changes; otherwise refuse.
      if (m.parameters().length === 0) continue
      throw new Error(`modulesToSave ${JSON.stringify(hit)} matches "${path}", inside "${outer.path}", which is saved whole already (${hint}); ` +
        `peft wraps the inner module a second time and cannot load the adapter it saves (KeyError in PeftModel.from_pretrained), so bertkit refuses it: list only one of them`)
    }
    if (m.constructor.name === 'ModuleList' || m.constructor.name === 'ModuleDict') {
      throw new Error(`modulesToSave ${JSON.stringify(hit)} matches "${path}", a ${m.constructor.name}: peft cannot save a container (${hint})`)
    }
    const holdsLora = [...loraPaths].find((l) => l.startsWith(`${path}.`))
    if (holdsLora) {
      throw new Error(`modulesToSave ${JSON.stringify(hit)} matches "${path}", which holds the LoRA layer "${holdsLora}" (${hint}); ` +
        'its saved copy would hold a second copy of the adapter, which peft cannot load back (KeyError); change targetModules or modulesToSave')
    }
    save.push({ path, module: m as ForwardModule })
  }
  const optional = seqCls ? new Set<string>(SEQ_CLS_MODULES) : new Set<string>()
  const unmatchedSave = [...new Set(saveNames)].filter((n) => !matched.has(n) && !optional.has(n))
  return { lora, save, targetModules: written!, unmatchedSave }
}

export interface GetPeftModelOptions {
  /** Seeds the initialisation of A (and B when initLoraWeights is false); default: the current random state. */
  seed?: number
}

/** Snapshot to undo an injection exactly (a failed load must leave the model as it was). */
interface Undo {
  replaced: Array<{ parent: Module; name: string; original: Module; wrapper: Module }>
  requiresGrad: Map<Tensor, boolean>
}

export class PeftModel<M extends PeftBaseModel = PeftBaseModel> extends Module {
  readonly base_model: LoraModel<M>
  /** The adapter's config ("default" adapter), as it will be written to adapter_config.json. */
  readonly peftConfig: LoraConfig
  private readonly loraLayers = new Map<string, LoraLinear>()
  private readonly savedModules = new Map<string, ModulesToSaveWrapper<ForwardModule>>()
  private undo: Undo | null
  private released = false

  /** Use getPeftModel() or PeftModel.fromPretrained(). */
  constructor(model: M, config: LoraConfig, options: GetPeftModelOptions & { inference?: boolean; fromFile?: string } = {}) {
    super()
    if (!(model instanceof Module)) throw new TypeError('getPeftModel: the model must be a bertkit Module (e.g. BertForSequenceClassification)')
    if (model instanceof PeftModel || [...model.namedModules()].some(([, m]) => m instanceof LoraLinear || m instanceof ModulesToSaveWrapper)) {
      throw new Error('getPeftModel: the model already holds LoRA layers; unload() the first adapter before adding another')
    }
    const cfg = config.clone()
    cfg.validate('LoraConfig')
    const plan = planInjection(model, cfg)
    if (plan.unmatchedSave.length) {
      const linears = [...model.namedModules()].filter(([, m]) => m instanceof Linear).map(([p]) => p)
      const message = `modulesToSave ${JSON.stringify(plan.unmatchedSave)} matched no module of ${model.constructor.name} (peft matches the end of each module path); its Linear layers are: ${describeLinears(linears)}`
      // peft ignores such names; an adapter it saved must load, a new config is more likely a typo.
      if (options.fromFile === undefined) throw new Error(message)
      process.stderr.write(`bertkit: ${options.fromFile}: ${message}; ignored, as peft does\n`)
    }
    if (cfg.fanInFanOut) {
      // peft's behaviour for torch.nn.Linear targets: fan_in_fan_out only applies to Conv1D weights.
      process.stderr.write('bertkit: fan_in_fan_out is set to true but the target modules are Linear layers; setting fan_in_fan_out to false\n')
      cfg.fanInFanOut = false
    }
    cfg.targetModules = plan.targetModules
    this.peftConfig = cfg
    if (options.seed !== undefined) manualSeed(options.seed)

    const undo: Undo = { replaced: [], requiresGrad: new Map() }
    for (const [, p] of model.namedParameters()) undo.requiresGrad.set(p, p.requiresGrad)
    try {
      for (const { path, module } of plan.lora) {
        const { parent, name } = parentOf(model, path)
        const wrapper = new LoraLinear(module, { r: cfg.r, loraAlpha: cfg.loraAlpha, loraDropout: cfg.loraDropout, useRslora: cfg.useRslora, initLoraWeights: cfg.initLoraWeights })
        setChild(parent, name, module, wrapper)
        undo.replaced.push({ parent, name, original: module, wrapper })
        this.loraLayers.set(path, wrapper)
      }
      // peft marks the adapters trainable before it wraps modules_to_save, so
      // a wrapped module's original stays frozen even with bias "all".
      for (const [name, p] of model.namedParameters()) {
        p.requiresGrad = name.includes('lora_') || (cfg.bias === 'all' && name.includes('bias'))
      }
      if (cfg.bias === 'lora_only') for (const l of this.loraLayers.values()) if (l.bias) l.bias.requiresGrad = true
      for (const { path, module } of plan.save) {
        const { parent, name } = parentOf(model, path)
        const wrapper = new ModulesToSaveWrapper(module)
        // Reads of .training through the wrapper agree with the copy until the next train() / eval().
        wrapper.training = module.training
        for (const p of module.parameters()) p.requiresGrad = false
        for (const p of wrapper.active.parameters()) p.requiresGrad = true
        setChild(parent, name, module, wrapper)
        undo.replaced.push({ parent, name, original: module, wrapper })
        this.savedModules.set(path, wrapper)
      }
      if (options.inference) for (const [, p] of model.namedParameters()) p.requiresGrad = false
      for (const [, p] of model.namedParameters()) {
        if (!p.requiresGrad && p.grad) {
          p.grad.dispose()
          p.grad = null
        }
      }
    } catch (err) {
      this.rollback(undo)
      throw err
    }
    this.undo = undo
    this.base_model = this.registerModule('base_model', new LoraModel(model))
  }

  /** The wrapped model's config (id2label, num_labels, ...). */
  get config(): M['config'] {
    return this.base_model.model.config
  }

  get numLabels(): number {
    return (this.base_model.model as unknown as { numLabels: number }).numLabels
  }

  /** The LoRA layers by module path (relative to the wrapped model). */
  get loraModules(): ReadonlyMap<string, LoraLinear> {
    return this.loraLayers
  }

  /** The ModulesToSaveWrappers by module path. */
  get modulesToSaveWrappers(): ReadonlyMap<string, ModulesToSaveWrapper<ForwardModule>> {
    return this.savedModules
  }

  forward(inputs: InputsOf<M>): OutputOf<M> {
    this.checkUsable('forward')
    return (this.base_model.model.forward as (i: InputsOf<M>) => OutputOf<M>).call(this.base_model.model, inputs)
  }

  // ---- parameter summary ----------------------------------------------------

  /** [trainable, all] element counts, as peft's get_nb_trainable_parameters (all includes the frozen originals of saved modules). */
  getNbTrainableParameters(): [number, number] {
    let trainable = 0, all = 0
    for (const [, p] of this.namedParameters()) {
      all += p.numel
      if (p.requiresGrad) trainable += p.numel
    }
    return [trainable, all]
  }

  /** The line peft's print_trainable_parameters() prints. */
  trainableParametersLine(): string {
    const [trainable, all] = this.getNbTrainableParameters()
    const fmt = (n: number) => n.toLocaleString('en-US')
    return `trainable params: ${fmt(trainable)} || all params: ${fmt(all)} || trainable%: ${(all ? (100 * trainable) / all : 0).toFixed(4)}`
  }

  printTrainableParameters(): void {
    console.log(this.trainableParametersLine())
  }

  // ---- merging -----------------------------------------------------------------

  /** Folds scaling·B·A into every adapted weight (peft's merge_adapter); forward then runs the base layers alone. */
  merge(): void {
    this.checkUsable('merge')
    for (const l of this.loraLayers.values()) l.merge()
  }

  /** Takes the update back out of the weights (peft's unmerge_adapter). */
  unmerge(): void {
    this.checkUsable('unmerge')
    for (const l of this.loraLayers.values()) l.unmerge()
  }

  get merged(): boolean {
    return [...this.loraLayers.values()].every((l) => l.merged)
  }

  /**
   * Merges the adapters, puts the base layers (and the trained copies of saved
   * modules) back in place and returns the plain model (peft's
   * merge_and_unload). This PeftModel is unusable afterwards.
   */
  mergeAndUnload(): M {
    this.merge()
    return this.unloadInternal()
  }

  /**
   * The plain model without the adapters' effect (peft's unload): base layers
   * back (unmerged first, so the weights are the base's), the trained copies of
   * saved modules kept in place of the originals, as peft does.
   */
  unload(): M {
    this.checkUsable('unload')
    this.unmerge()
    return this.unloadInternal()
  }

  private unloadInternal(): M {
    const model = this.base_model.model
    for (const [path, l] of this.loraLayers) {
      const { parent, name } = parentOf(model, path)
      setChild(parent, name, l, l.base_layer)
      for (const d of [l.lora_A.get(DEFAULT_ADAPTER), l.lora_B.get(DEFAULT_ADAPTER)]) d.dispose()
    }
    for (const [path, w] of this.savedModules) {
      const { parent, name } = parentOf(model, path)
      setChild(parent, name, w, w.active)
      w.original_module.dispose()
    }
    this.loraLayers.clear()
    this.savedModules.clear()
    this.released = true
    return model
  }

  private rollback(undo: Undo): void {
    for (const r of [...undo.replaced].reverse()) {
      const { parent, name, original, wrapper } = r
      setChild(parent, name, wrapper, original)
      if (wrapper instanceof LoraLinear) for (const d of [wrapper.lora_A.get(DEFAULT_ADAPTER), wrapper.lora_B.get(DEFAULT_ADAPTER)]) d.dispose()
      if (wrapper instanceof ModulesToSaveWrapper) wrapper.active.dispose()
    }
    for (const [p, flag] of undo.requiresGrad) p.requiresGrad = flag
    this.loraLayers.clear()
    this.savedModules.clear()
    this.released = true
  }

  /** Frees every parameter; after unload() / mergeAndUnload() the model belongs to the caller and is left alone. */
  override dispose(): void {
    if (!this.released) super.dispose()
  }

  private checkUsable(what: string): void {
    if (this.released) throw new Error(`PeftModel.${what}: the adapters were unloaded; use the model unload() returned`)
  }

  // ---- adapter state dict (peft's key names) ---------------------------------------

  /**
   * The tensors peft's get_peft_model_state_dict returns, under the keys it
   * writes: every LoRA A / B; the biases the bias setting trains ("all": every
   * key ending in ".bias", the frozen originals of saved modules included;
   * "lora_only": the adapted layers'); each saved module's trained copy under
   * the module's own path ("base_model.model.classifier.out_proj.weight").
   * The adapter name comes out of each key as peft takes it out: only where it
   * is the second-to-last component ("lora_A.default.weight" → "lora_A.weight",
   * but "classifier.modules_to_save.default.dense.bias" stays as it is).
   */
  adapterStateDict(): Map<string, Tensor> {
    this.checkUsable('adapterStateDict')
    const out = new Map<string, Tensor>()
    for (const [name, p] of this.adapterParameters()) out.set(removeAdapterName(name), p)
    for (const [path, w] of this.savedModules) {
      for (const [n, p] of w.active.namedParameters()) out.set(`${PREFIX}${path}.${n}`, p)
    }
    return out
  }

  /** [name, parameter] of the LoRA tensors and of the biases the bias setting saves, in namedParameters() order. */
  private adapterParameters(): Array<[string, Tensor]> {
    const bias = this.peftConfig.bias
    const loraTensors = new Set<Tensor>()
    const loraBiases = new Set<Tensor>()
    for (const l of this.loraLayers.values()) {
      loraTensors.add(l.lora_A.get(DEFAULT_ADAPTER).weight)
      loraTensors.add(l.lora_B.get(DEFAULT_ADAPTER).weight)
      if (l.bias) loraBiases.add(l.bias)
    }
    return [...this.namedParameters()].filter(([name, p]) => loraTensors.has(p)
      || (bias === 'all' && (name === 'bias' || name.endsWith('.bias')))
      || (bias === 'lora_only' && loraBiases.has(p)))
  }

  /** adapter_model.safetensors key → parameter name, for every key peft may write for this model. */
  private adapterKeyMap(): Map<string, string> {
    const keys = new Map<string, string>()
    for (const [name] of this.adapterParameters()) keys.set(removeAdapterName(name), name)
    for (const [path, w] of this.savedModules) {
      for (const [n] of w.active.namedParameters()) {
        const copy = `${PREFIX}${path}.modules_to_save.${DEFAULT_ADAPTER}.${n}`
        keys.set(`${PREFIX}${path}.${n}`, copy)
        // Written with bias "all" (the copy's and the frozen original's biases), accepted in any case.
        keys.set(removeAdapterName(copy), copy)
        keys.set(`${PREFIX}${path}.original_module.${n}`, `${PREFIX}${path}.original_module.${n}`)
      }
    }
    return keys
  }

  /** The parameter name a key of adapter_model.safetensors loads into, or null. */
  private parameterForAdapterKey(key: string, own: Map<string, Tensor>, keys: Map<string, string>): string | null {
    const mapped = keys.get(key)
    if (mapped !== undefined) return mapped
    if (own.has(key)) return key
    // Older peft releases wrote an adapted layer's bias without "base_layer".
    const older = key.replace(/\.bias$/, '.base_layer.bias')
    return key.endsWith('.bias') && own.has(older) ? older : null
  }

  /**
   * Loads adapter tensors (peft's keys) after checking every key and shape:
   * on any error nothing is written. Returns the parameter names written.
   */
  loadAdapterWeights(tensors: Map<string, HostTensor | Float32Array>, source = ADAPTER_WEIGHTS_NAME): string[] {
    this.checkUsable('loadAdapterWeights')
    const own = this.stateDict()
    const keys = this.adapterKeyMap()
    const values = new Map<string, Float32Array>()
    const unexpected: string[] = []
    const hint = ' (an adapter made for another base model, or with other target_modules / modules_to_save?)'
    for (const [key, t] of tensors) {
      const name = this.parameterForAdapterKey(key, own, keys)
      if (!name) {
        unexpected.push(key)
        continue
      }
      const p = own.get(name)!
      const data = t instanceof Float32Array ? t : t.data
      const shape = t instanceof Float32Array ? null : t.shape
      if (!(data instanceof Float32Array)) throw new Error(`${source}: tensor "${key}" has dtype ${(t as HostTensor).dtype}; adapter weights must be floating point`)
      if (shape ? formatShape(shape) !== formatShape(p.shape) : data.length !== p.numel) {
        throw new Error(`${source}: tensor "${key}" has shape ${shape ? formatShape(shape) : `${data.length} values`}, the model expects ${formatShape(p.shape)} for ${name}${hint}`)
      }
      checkFinite(source, key, data, shape ?? p.shape)
      values.set(name, data)
    }
    if (unexpected.length) {
      throw new Error(`${source}: ${unexpected.length} tensor(s) have no place in this model: ${unexpected.slice(0, 8).join(', ')}${unexpected.length > 8 ? ', …' : ''}${hint}`)
    }
    const loaded = new Set([...values.keys()].map((n) => own.get(n)))
    const missing = [...this.adapterStateDict()].filter(([, p]) => !loaded.has(p)).map(([k]) => k)
    if (missing.length) {
      throw new Error(`${source}: the adapter lacks ${missing.length} tensor(s) this config needs: ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', …' : ''}${hint}`)
    }
    super.loadStateDict(values, { source })
    return [...values.keys()]
  }

  /**
   * Module.loadStateDict, also taking adapter_model.safetensors' keys (what
   * savePretrained writes), so a Trainer can restore a PEFT model from its own
   * checkpoints. With adapter keys, strict means "every adapter tensor".
   */
  override loadStateDict(values: Map<string, Float32Array | Tensor>, options: { strict?: boolean; source?: string } = {}): { missingKeys: string[]; unexpectedKeys: string[] } {
    const own = this.stateDict()
    if ([...values.keys()].every((k) => own.has(k))) return super.loadStateDict(values, options)
    const host = new Map<string, Float32Array>()
    for (const [k, v] of values) host.set(k, v instanceof Float32Array ? v : v.toFloat32Array())
    if (options.strict) {
      this.loadAdapterWeights(host, options.source)
      return { missingKeys: [], unexpectedKeys: [] }
    }
    const translated = new Map<string, Float32Array>()
    const unexpectedKeys: string[] = []
    const keys = this.adapterKeyMap()
    for (const [k, v] of host) {
      const name = this.parameterForAdapterKey(k, own, keys)
      if (name) translated.set(name, v)
      else unexpectedKeys.push(k)
    }
    const { missingKeys } = super.loadStateDict(translated, options)
    return { missingKeys, unexpectedKeys }
  }

  // ---- files -------------------------------------------------------------------

  /** adapter_config.json's fields for this model. */
  adapterConfigJSON(): Record<string, unknown> {
    const cfg = this.peftConfig
    const model = this.base_model.model
    const modelType = model.config?.model_type
    // peft records the base class only for a task-less PeftModel (AutoPeftModel uses it).
    const autoMapping = cfg.taskType === null
      ? { base_model_class: model.constructor.name, parent_library: `transformers.models.${String(modelType).replace(/-/g, '_')}.modeling_${String(modelType).replace(/-/g, '_')}` }
      : null
    return cfg.toJSON({ inference_mode: true, auto_mapping: autoMapping })
  }

  /**
   * Writes adapter_config.json + adapter_model.safetensors (peft's files and
   * keys; weights first, each atomically, so an interrupted save keeps the
   * previous files). peft's generated README.md model card is not written.
   */
  savePretrained(dir: string): void {
    this.checkUsable('savePretrained')
    makeDirs(dir, 'adapter directory')
    writeSafetensors(join(dir, ADAPTER_WEIGHTS_NAME), this.adapterEntries(), { format: 'pt' })
    atomicWriteFile(join(dir, ADAPTER_CONFIG_NAME), JSON.stringify(this.adapterConfigJSON(), null, 2) + '\n')
  }

  /** savePretrained without holding the event loop while the files are written. */
  async savePretrainedAsync(dir: string): Promise<void> {
    this.checkUsable('savePretrained')
    makeDirs(dir, 'adapter directory')
    await writeSafetensorsAsync(join(dir, ADAPTER_WEIGHTS_NAME), this.adapterEntries(), { format: 'pt' })
    await atomicWriteFileAsync(join(dir, ADAPTER_CONFIG_NAME), JSON.stringify(this.adapterConfigJSON(), null, 2) + '\n')
  }

  private adapterEntries() {
    return [...this.adapterStateDict()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, p]) => [key, {
      dtype: 'F32' as const,
      shape: p.shape,
      data: () => p.toFloat32Array(),
    }] as const)
  }

  /**
   * peft's PeftModel.from_pretrained(model, dir): injects the adapter that dir
   * describes into `model` and loads its weights. isTrainable false (peft's
   * default) freezes everything, for inference. On any error (unsupported
   * option, a tensor with another shape, keys for another model) the model is
   * left exactly as it was.
   */
  static fromPretrained<M extends PeftBaseModel>(model: M, dir: string, options: { isTrainable?: boolean } = {}): PeftModel<M> {
    const config = LoraConfig.fromPretrained(dir)
    const file = join(dir, ADAPTER_WEIGHTS_NAME)
    if (!existsSync(file)) {
      const bin = existsSync(join(dir, 'adapter_model.bin')) ? ' (found adapter_model.bin: re-save it with peft\'s safe_serialization=True)' : ''
      throw new Error(`${dir}: no ${ADAPTER_WEIGHTS_NAME}${bin}`)
    }
    const { tensors } = readSafetensors(file)
    config.inferenceMode = !options.isTrainable
    if (config.taskType === 'SEQ_CLS') {
      // Files from peft releases that did not write the classifier into modules_to_save still save it.
      const missing = SEQ_CLS_MODULES.filter((m) => !(config.modulesToSave ?? []).includes(m))
      if (missing.length) config.modulesToSave = [...(config.modulesToSave ?? []), ...missing]
    }
    // Loading must not consume randomness: the initial A is overwritten anyway.
    const state = getRandomState()
    let peft: PeftModel<M>
    try {
      peft = new PeftModel(model, config, { inference: !options.isTrainable, fromFile: join(dir, ADAPTER_CONFIG_NAME) })
    } finally {
      setRandomState(state)
    }
    try {
      peft.loadAdapterWeights(tensors, file)
    } catch (err) {
      peft.rollback(peft.undo!)
      throw err
    }
    // As peft: an adapter loaded for inference is put in eval mode (dropout off); a trainable one keeps the base's mode.
    if (!options.isTrainable) peft.eval()
    return peft
  }
}

/** peft's PeftModelForSequenceClassification: the same model; taskType SEQ_CLS adds the classifier to modulesToSave. */
export class PeftModelForSequenceClassification<M extends PeftBaseModel = PeftBaseModel> extends PeftModel<M> {}

/**
 * peft's get_peft_model(model, config): wraps the model's matching Linear
 * layers with LoRA, freezes every base weight, and trains (and saves) the
 * modulesToSave in full. The model object itself is modified (as in peft).
 */
export function getPeftModel<M extends PeftBaseModel>(model: M, config: LoraConfig, options: GetPeftModelOptions = {}): PeftModel<M> {
  if (!(config instanceof LoraConfig)) throw new TypeError('getPeftModel: config must be a LoraConfig')
  const cfg = config.clone()
  cfg.inferenceMode = config.inferenceMode
  if (cfg.taskType === 'SEQ_CLS') {
    // As peft: extend (not replace), so an explicit ["classifier"] ends up listed twice.
    cfg.modulesToSave = [...(cfg.modulesToSave ?? []), ...SEQ_CLS_MODULES]
    return new PeftModelForSequenceClassification(model, cfg, options)
  }
  return new PeftModel(model, cfg, options)
}

/** Whether a directory holds a peft adapter (adapter_config.json). */
export function isAdapterDir(dir: string): boolean {
  return existsSync(join(resolve(dir), ADAPTER_CONFIG_NAME))
}
