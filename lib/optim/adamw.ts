// torch.optim.AdamW: decoupled weight decay, bias-corrected moments, one
// native multi-tensor step per param group (bit-identical to stepping each
// tensor alone). State (exp_avg, exp_avg_sq) exists only for parameters that
// received a gradient, so frozen weights cost no memory.
import { native, type NativeBuffer } from '../native.js'
import { Tensor, zeros, formatShape } from '../tensor/tensor.js'
import { noGrad } from '../tensor/autograd.js'

export interface ParamGroup {
  params: Tensor[]
  lr?: number
  weightDecay?: number
  betas?: [number, number]
  eps?: number
}

export interface AdamWOptions {
  lr?: number
  betas?: [number, number]
  eps?: number
  /** torch's default for AdamW is 0.01. */
  weightDecay?: number
}

interface ResolvedGroup {
  params: Tensor[]
  lr: number
  weightDecay: number
  betas: [number, number]
  eps: number
}

interface ParamState {
  step: number
  expAvg: Tensor
  expAvgSq: Tensor
}

function checkHyper(where: string, o: { lr: number; betas: [number, number]; eps: number; weightDecay: number }): void {
  if (!(o.lr >= 0)) throw new RangeError(`${where}: lr must be >= 0, got ${o.lr}`)
  if (!(o.eps >= 0)) throw new RangeError(`${where}: eps must be >= 0, got ${o.eps}`)
  if (!(o.weightDecay >= 0)) throw new RangeError(`${where}: weightDecay must be >= 0, got ${o.weightDecay}`)
  for (const [i, b] of o.betas.entries()) {
    if (!(b >= 0 && b < 1)) throw new RangeError(`${where}: betas[${i}] must be in [0, 1), got ${b}`)
  }
}

export class AdamW {
  readonly paramGroups: ResolvedGroup[]
  private readonly state = new Map<Tensor, ParamState>()

  constructor(params: Tensor[] | ParamGroup[], options: AdamWOptions = {}) {
    if (params.length === 0) throw new Error('AdamW: no parameters to optimize (is every parameter frozen?)')
    const defaults = {
      lr: options.lr ?? 1e-3,
      betas: options.betas ?? ([0.9, 0.999] as [number, number]),
      eps: options.eps ?? 1e-8,
      weightDecay: options.weightDecay ?? 1e-2,
    }
    checkHyper('AdamW', defaults)
    const groups: ParamGroup[] = params.length > 0 && params[0] instanceof Tensor
      ? [{ params: params as Tensor[] }]
      : (params as ParamGroup[])
    const seen = new Set<Tensor>()
    this.paramGroups = groups.map((g, gi) => {
      const resolved: ResolvedGroup = {
        params: [...g.params],
        lr: g.lr ?? defaults.lr,
        weightDecay: g.weightDecay ?? defaults.weightDecay,
        betas: g.betas ?? defaults.betas,
        eps: g.eps ?? defaults.eps,
      }
      checkHyper(`AdamW group ${gi}`, resolved)
      for (const p of resolved.params) {
        if (!(p instanceof Tensor)) throw new TypeError(`AdamW: group ${gi} holds something that is not a Tensor`)
        if (p.dtype !== 'float32') throw new TypeError(`AdamW: parameters must be float32 masters, got ${p.dtype} ${formatShape(p.shape)}`)
        if (seen.has(p)) throw new Error(`AdamW: a parameter ${formatShape(p.shape)} appears in more than one group`)
        seen.add(p)
      }
      return resolved
    })
  }

  /**
   * One update of every parameter that has a gradient. gradScale, when given,
   * is a one-element device tensor multiplied into every gradient first (the
   * clipping coefficient from clipGradNorm, or 1/loss-scale), read on the device.
   */
  step(options: { gradScale?: Tensor | null } = {}): void {
    const addon = native()
    const gradScale = options.gradScale ?? null
    noGrad(() => {
      // One native op per param group for all its tensors (bert-base: 2 instead of 201).
      for (const group of this.paramGroups) {
        const sizes: number[] = [], steps: number[] = []
        const params: NativeBuffer[] = [], grads: NativeBuffer[] = [], expAvgs: NativeBuffer[] = [], expAvgSqs: NativeBuffer[] = []
        for (const p of group.params) {
          if (!p.grad) continue
          let st = this.state.get(p)
          if (!st) {
            st = { step: 0, expAvg: zeros(p.shape, { device: p.device }), expAvgSq: zeros(p.shape, { device: p.device }) }
            st.expAvg.kept = true
            st.expAvgSq.kept = true
            this.state.set(p, st)
          }
          st.step++
          p.version++
          sizes.push(p.numel)
          steps.push(st.step)
          params.push(p.buffer)
          grads.push(p.grad.buffer)
          expAvgs.push(st.expAvg.buffer)
          expAvgSqs.push(st.expAvgSq.buffer)
        }
        if (sizes.length === 0) continue
        addon.multiTensorAdamw(sizes.length, sizes, params, grads, expAvgs, expAvgSqs, group.lr, group.betas[0],
          group.betas[1], group.eps, group.weightDecay, steps, gradScale ? gradScale.buffer : null, null)
      }
    })
  }

  /** Drops gradients (torch's set_to_none=True default): memory is freed, the next backward starts from zero. */
  zeroGrad(): void {
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        if (p.grad) {
          p.grad.dispose()
          p.grad = null
        }
      }
    }
  }

  /** Per-parameter state, for checkpoints and tests. */
  stateOf(p: Tensor): Readonly<ParamState> | undefined {
    return this.state.get(p)
  }

  /** Restores one parameter's state (resuming from a checkpoint). */
  setState(p: Tensor, step: number, expAvg: Float32Array, expAvgSq: Float32Array): void {
    if (!this.paramGroups.some((g) => g.params.includes(p))) throw new Error('AdamW.setState: the tensor is not one of this optimizer\'s parameters')
    if (expAvg.length !== p.numel || expAvgSq.length !== p.numel) {
      throw new Error(`AdamW.setState: state has ${expAvg.length} / ${expAvgSq.length} values for a parameter of ${p.numel}`)
    }
    if (!Number.isInteger(step) || step < 0) throw new Error(`AdamW.setState: step must be a non-negative integer, got ${step}`)
    let st = this.state.get(p)
    if (!st) {
      st = { step: 0, expAvg: zeros(p.shape, { device: p.device }), expAvgSq: zeros(p.shape, { device: p.device }) }
      st.expAvg.kept = true
      st.expAvgSq.kept = true
      this.state.set(p, st)
    }
    st.step = step
    st.expAvg.buffer.write(expAvg)
    st.expAvgSq.buffer.write(expAvgSq)
  }

  /** Number of parameters holding optimizer state. */
  get stateSize(): number {
    return this.state.size
  }

  /** Frees the moments. The optimizer cannot be used afterwards. */
  dispose(): void {
    for (const st of this.state.values()) {
      st.expAvg.dispose()
      st.expAvgSq.dispose()
    }
    this.state.clear()
  }
}
