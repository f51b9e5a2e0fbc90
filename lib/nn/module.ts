// Module: a tree of named parameters and submodules, registered in the order
// transformers registers them, so namedParameters() yields the same names in
// the same order as torch's named_parameters().
import { Tensor, keep, empty, formatShape } from '../tensor/tensor.js'
import { noGrad } from '../tensor/autograd.js'
import { native } from '../native.js'

export class Module {
  training = true
  private readonly params = new Map<string, Tensor>()
  private readonly children = new Map<string, Module>()

  /** Registers a parameter: kept out of every tidy() scope, requiring grad. */
  protected registerParameter(name: string, value: Tensor): Tensor {
    if (this.params.has(name) || this.children.has(name)) throw new Error(`${this.constructor.name}: "${name}" is registered twice`)
    keep(value)
    value.requiresGrad = true
    this.params.set(name, value)
    return value
  }

  protected registerModule<M extends Module>(name: string, module: M): M {
    if (this.params.has(name) || this.children.has(name)) throw new Error(`${this.constructor.name}: "${name}" is registered twice`)
    this.children.set(name, module)
    return module
  }

  /**
   * Puts `module` in the place of the submodule registered as `name` — the same
   * place in the parameter order, as torch's setattr on a registered child —
   * and points every property that held the old child at the new one, since
   * forward() reads its layers through properties. Returns the old child.
   */
  replaceModule(name: string, module: Module): Module {
    const old = this.children.get(name)
    if (!old) throw new Error(`${this.constructor.name}: no submodule "${name}" to replace`)
    this.children.set(name, module)
    const holder = this as unknown as Record<string, unknown>
    for (const key of Object.keys(holder)) if (holder[key] === old) holder[key] = module
    return old
  }

  /** [name, module] pairs, this module first (name ''), depth first, as torch's named_modules(). */
  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this]
    for (const [name, child] of this.children) {
      yield* child.namedModules(prefix ? `${prefix}.${name}` : name)
    }
  }

  /** [name, parameter] pairs in torch's named_parameters() order. */
  *namedParameters(prefix = ''): Generator<[string, Tensor]> {
    for (const [modName, mod] of this.namedModules(prefix)) {
      for (const [name, p] of mod.params) yield [modName ? `${modName}.${name}` : name, p]
    }
  }

  parameters(): Tensor[] {
    return [...this.namedParameters()].map(([, p]) => p)
  }

  /** Sets training mode on this module and every descendant (dropout on/off). */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode
    return this
  }

  eval(): this {
    return this.train(false)
  }

  /** On encoders: recompute each layer during backward instead of keeping its activations (set by gradientCheckpointingEnable). */
  gradientCheckpointing = false

  /** True on modules whose forward can checkpoint their layers (the encoders). */
  get supportsGradientCheckpointing(): boolean {
    return false
  }

  /**
   * transformers' gradient_checkpointing_enable(): every encoder in this model
   * keeps only each layer's input while training and recomputes the layer in
   * backward (lib/tensor/checkpoint.ts): less memory for about one more forward.
   */
  gradientCheckpointingEnable(): void {
    const encoders = [...this.namedModules()].filter(([, m]) => m.supportsGradientCheckpointing)
    if (encoders.length === 0) throw new Error(`${this.constructor.name} does not support gradient checkpointing: none of its modules checkpoints its layers`)
    for (const [, m] of encoders) m.gradientCheckpointing = true
  }

  gradientCheckpointingDisable(): void {
    for (const [, m] of this.namedModules()) m.gradientCheckpointing = false
  }

  /** transformers' is_gradient_checkpointing. */
  get isGradientCheckpointing(): boolean {
    return [...this.namedModules()].some(([, m]) => m.gradientCheckpointing)
  }

  /**
   * Whether a classification forward may run on the real tokens only. Not
   * while training with gradient checkpointing: its recomputation during
   * backward runs after the batch's packed layout has been freed, so those
   * steps run padded (same results, as every unpadded path equals the padded one).
   */
  protected unpadsThisStep(): boolean {
    return !(this.training && this.isGradientCheckpointing)
  }

  /** name → parameter (the live tensors, not copies). */
  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParameters())
  }

  /**
   * Copies values into the parameters by name. Returns the names that were
   * expected but absent (missing) and present but unknown (unexpected), as
   * transformers reports them; strict mode throws on either. Shapes must match.
   */
  loadStateDict(values: Map<string, Float32Array | Tensor>, options: { strict?: boolean; source?: string } = {}): { missingKeys: string[]; unexpectedKeys: string[] } {
    const own = this.stateDict()
    const source = options.source ? ` (${options.source})` : ''
    const missingKeys = [...own.keys()].filter((k) => !values.has(k))
    const unexpectedKeys = [...values.keys()].filter((k) => !own.has(k))
    if (options.strict && (missingKeys.length || unexpectedKeys.length)) {
      throw new Error(`loadStateDict${source}: missing keys [${missingKeys.join(', ')}], unexpected keys [${unexpectedKeys.join(', ')}]`)
    }
    // Validate every shape before writing anything, so a bad checkpoint leaves the model untouched.
    for (const [name, p] of own) {
      const v = values.get(name)
      if (!v) continue
      const n = v instanceof Tensor ? v.numel : v.length
      const shape = v instanceof Tensor ? formatShape(v.shape) : `${n} values`
      if (n !== p.numel || (v instanceof Tensor && formatShape(v.shape) !== formatShape(p.shape))) {
        throw new Error(`loadStateDict${source}: tensor "${name}" has shape ${shape}, the model expects ${formatShape(p.shape)}`)
      }
    }
    noGrad(() => {
      for (const [name, p] of own) {
        const v = values.get(name)
        if (!v) continue
        if (v instanceof Tensor) native().axpby(p.numel, 1, v.buffer, 0, p.buffer)
        else p.buffer.write(v)
        p.version++
      }
    })
    return { missingKeys, unexpectedKeys }
  }

  /**
   * A copy as torch's copy.deepcopy makes one (peft's modules_to_save copies):
   * the same class and tree, every parameter a new tensor holding the same
   * values and requiresGrad flag, training flags kept. Fields that are not
   * modules or parameters (the config, sizes, options) are shared.
   */
  deepCopy(): this {
    const memo = new Map<unknown, unknown>()
    // Parameters first, so fields that point at them (this.weight) find the copies.
    for (const [, p] of this.namedParameters()) {
      if (memo.has(p)) continue
      const copy = keep(empty(p.shape, { device: p.device }))
      native().axpby(p.numel, 1, p.buffer, 0, copy.buffer)
      copy.requiresGrad = p.requiresGrad
      memo.set(p, copy)
    }
    const copyValue = (v: unknown): unknown => {
      if (memo.has(v)) return memo.get(v)
      if (v instanceof Module) {
        const m = Object.create(Object.getPrototypeOf(v)) as Record<PropertyKey, unknown>
        memo.set(v, m)
        for (const key of Reflect.ownKeys(v)) m[key] = copyValue((v as unknown as Record<PropertyKey, unknown>)[key])
        return m
      }
      if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, copyValue(x)]))
      if (Array.isArray(v) && v.some((x) => x instanceof Module || x instanceof Tensor)) return v.map(copyValue)
      return v
    }
    return copyValue(this) as this
  }

  /** Frees every parameter (and gradient). The module cannot be used afterwards. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose()
  }
}

/** Children named "0", "1", … as torch.nn.ModuleList names them. */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[]

  constructor(items: M[]) {
    super()
    this.items = items
    items.forEach((m, i) => this.registerModule(String(i), m))
  }

  get length(): number {
    return this.items.length
  }

  override replaceModule(name: string, module: Module): Module {
    const old = super.replaceModule(name, module)
    const i = this.items.indexOf(old as M)
    if (i >= 0) this.items[i] = module as M
    return old
  }
}
