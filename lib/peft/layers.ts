// The modules peft puts into a model, with peft's attribute names so that
// namedParameters() shows the names peft's named_parameters() shows:
//   LoraLinear            base_layer.{weight,bias}, lora_A.default.weight, lora_B.default.weight
//   ModulesToSaveWrapper  original_module.*, modules_to_save.default.*
import { Module } from '../nn/module.js'
import { Linear, Dropout } from '../nn/layers.js'
import { linear, add, scale } from '../tensor/ops.js'
import { noGrad } from '../tensor/autograd.js'
import { tensor, type Tensor } from '../tensor/tensor.js'
import { hostUniform, hostNormal } from '../tensor/random.js'
import { native } from '../native.js'
import { withDeferredInit } from '../nn/init.js'

/** The adapter name peft uses when none is given; bertkit holds one adapter per model. */
export const DEFAULT_ADAPTER = 'default'

/** torch.nn.ModuleDict: children named by key, in insertion order. */
export class ModuleDict<M extends Module> extends Module {
  private readonly entries = new Map<string, M>()

  constructor(items: Record<string, M> = {}) {
    super()
    for (const [k, m] of Object.entries(items)) this.set(k, m)
  }

  set(key: string, module: M): M {
    this.entries.set(key, module)
    return this.registerModule(key, module)
  }

  get(key: string): M {
    const m = this.entries.get(key)
    if (!m) throw new Error(`ModuleDict: no entry "${key}" (entries: ${[...this.entries.keys()].join(', ') || 'none'})`)
    return m
  }

  keys(): string[] {
    return [...this.entries.keys()]
  }
}

/** Uniform(-bound, bound) values as torch's kaiming_uniform_(a=sqrt(5)) draws them: bound = 1/sqrt(fan_in). */
function kaimingUniform(rows: number, fanIn: number): Float32Array {
  const bound = 1 / Math.sqrt(fanIn)
  const out = new Float32Array(rows * fanIn)
  for (let i = 0; i < out.length; i++) out[i] = (2 * hostUniform() - 1) * bound
  return out
}

/** Identity with no parameters, for lora_dropout when p is 0 (peft uses nn.Identity). */
class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x
  }
}

export interface LoraLinearOptions {
  r: number
  loraAlpha: number
  loraDropout: number
  useRslora: boolean
  initLoraWeights: boolean | 'gaussian'
}

/**
 * y = base_layer(x) + (dropout(x)·Aᵀ·scaling)·Bᵀ, A [r, in], B [out, r],
 * scaling = alpha / r (alpha / sqrt(r) with rsLoRA). merge() folds
 * scaling·B·A into the base weight; forward then runs the base layer alone.
 */
export class LoraLinear extends Module {
  readonly base_layer: Linear
  readonly lora_dropout: ModuleDict<Module>
  readonly lora_A: ModuleDict<Linear>
  readonly lora_B: ModuleDict<Linear>
  readonly r: number
  readonly scaling: number
  private mergedFlag = false

  constructor(base: Linear, options: LoraLinearOptions) {
    super()
    const { r } = options
    this.r = r
    this.scaling = options.useRslora ? options.loraAlpha / Math.sqrt(r) : options.loraAlpha / r
    const device = base.weight.device
    this.base_layer = this.registerModule('base_layer', base)
    const drop = options.loraDropout > 0 ? new Dropout(options.loraDropout) : new Identity()
    this.lora_dropout = this.registerModule('lora_dropout', new ModuleDict<Module>({ [DEFAULT_ADAPTER]: drop }))
    // Built with deferred (never run) initialisers: the values come from peft's scheme below, drawn from the seed.
    const { value: [a, b] } = withDeferredInit(() => [
      new Linear(base.inFeatures, r, { bias: false, device }),
      new Linear(r, base.outFeatures, { bias: false, device }),
    ])
    noGrad(() => {
      if (options.initLoraWeights === 'gaussian') {
        a.weight.buffer.write(Float32Array.from({ length: a.weight.numel }, () => hostNormal() / r))
      } else {
        a.weight.buffer.write(kaimingUniform(r, base.inFeatures))
      }
      // init_lora_weights=False keeps torch's nn.Linear default for B as well: the update starts non-zero.
      b.weight.buffer.write(options.initLoraWeights === false ? kaimingUniform(base.outFeatures, r) : new Float32Array(b.weight.numel))
    })
    this.lora_A = this.registerModule('lora_A', new ModuleDict({ [DEFAULT_ADAPTER]: a }))
    this.lora_B = this.registerModule('lora_B', new ModuleDict({ [DEFAULT_ADAPTER]: b }))
  }

  get inFeatures(): number {
    return this.base_layer.inFeatures
  }

  get outFeatures(): number {
    return this.base_layer.outFeatures
  }

  get weight(): Tensor {
    return this.base_layer.weight
  }

  get bias(): Tensor | null {
    return this.base_layer.bias
  }

  get merged(): boolean {
    return this.mergedFlag
  }

  forward(x: Tensor): Tensor {
    const y = this.base_layer.forward(x)
    if (this.mergedFlag) return y
    const a = this.lora_A.get(DEFAULT_ADAPTER).weight
    const b = this.lora_B.get(DEFAULT_ADAPTER).weight
    const dropped = (this.lora_dropout.get(DEFAULT_ADAPTER) as Dropout | Identity).forward(x)
    // Scaling the rank-r intermediate instead of the output costs r/out of the work; same value.
    return add(y, linear(scale(linear(dropped, a), this.scaling), b))
  }

  /** W += scaling·B·A (once). */
  merge(): void {
    if (this.mergedFlag) return
    this.addDelta(this.scaling)
    this.mergedFlag = true
  }

  /** W -= scaling·B·A: the inverse of merge() up to float32 rounding. */
  unmerge(): void {
    if (!this.mergedFlag) return
    this.addDelta(-this.scaling)
    this.mergedFlag = false
  }

  /** scaling·B·A [out, in], for tests and inspection. */
  deltaWeight(): Tensor {
    const out = tensor(new Float32Array(this.outFeatures * this.inFeatures), { shape: [this.outFeatures, this.inFeatures], device: this.weight.device })
    native().gemm(false, false, this.outFeatures, this.inFeatures, this.r, this.scaling,
      this.lora_B.get(DEFAULT_ADAPTER).weight.buffer, this.lora_A.get(DEFAULT_ADAPTER).weight.buffer, 0, out.buffer, 1, 0, 0, 0)
    return out
  }

  private addDelta(factor: number): void {
    const w = this.base_layer.weight
    // W = factor·B[out, r]·A[r, in] + W, in place on the device.
    native().gemm(false, false, this.outFeatures, this.inFeatures, this.r, factor,
      this.lora_B.get(DEFAULT_ADAPTER).weight.buffer, this.lora_A.get(DEFAULT_ADAPTER).weight.buffer, 1, w.buffer, 1, 0, 0, 0)
    // Cached half-precision copies of W are now stale.
    w.version++
  }
}

/** Any module with a forward: what modules_to_save may wrap (a Linear, a LayerNorm, a whole head). */
export interface ForwardModule extends Module {
  forward(...args: never[]): unknown
}

/**
 * peft's ModulesToSaveWrapper: keeps the original module (frozen) and a full
 * copy (copy.deepcopy) that forward uses and training updates; only the copy
 * is saved with the adapter. The module can be of any kind: a Linear, a
 * LayerNorm, RoBERTa's classification head. Like peft's __getattr__,
 * reading a field the wrapper does not have (a Dropout's p, a head's dense)
 * reads the active copy's.
 */
export class ModulesToSaveWrapper<M extends ForwardModule> extends Module {
  readonly original_module: M
  readonly modules_to_save: ModuleDict<M>

  constructor(original: M, copy: M = original.deepCopy()) {
    super()
    this.original_module = this.registerModule('original_module', original)
    this.modules_to_save = this.registerModule('modules_to_save', new ModuleDict({ [DEFAULT_ADAPTER]: copy }))
    const src = [...original.namedParameters()]
    const dst = [...copy.namedParameters()]
    if (src.length !== dst.length || src.some(([n, p], i) => dst[i][0] !== n || dst[i][1].numel !== p.numel)) {
      throw new Error(`ModulesToSaveWrapper: the copy of ${original.constructor.name} does not have the original's parameters`)
    }
    if (src.some(([, p], i) => dst[i][1] === p)) throw new Error('ModulesToSaveWrapper: the copy shares parameters with the original')
    // A wrapper is a new module (train mode); the copy keeps the original's mode, as copy.deepcopy does.
    return new Proxy(this, {
      get(target, prop, receiver) {
        if (prop in target) return Reflect.get(target, prop, receiver)
        const active = target.active as unknown as Record<PropertyKey, unknown>
        const v = active[prop]
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(active) : v
      },
    })
  }

  get active(): M {
    return this.modules_to_save.get(DEFAULT_ADAPTER)
  }

  forward(...args: never[]): unknown {
    return this.active.forward(...args)
  }

  // Typed views of what code outside forward reads of a wrapped Linear (the proxy serves any other field).
  get weight(): Tensor | undefined {
    return (this.active as unknown as { weight?: Tensor }).weight
  }

  get bias(): Tensor | null | undefined {
    return (this.active as unknown as { bias?: Tensor | null }).bias
  }
}
