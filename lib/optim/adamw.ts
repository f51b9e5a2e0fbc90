// torch.optim.AdamW: decoupled weight decay, bias-corrected moments, one
// native multi-tensor step per param group (bit-identical to stepping each
// tensor alone). State (exp_avg, exp_avg_sq) exists only for parameters that
// received a gradient, so frozen weights cost no memory.
import { native, DTYPE_CODE, type NativeBuffer } from '../native.js'
import { deviceCode } from '../tensor/device.js'
import { rowMarksOf, rowSparseEnabled } from '../tensor/row_sparse.js'
import { Tensor, zeros, formatShape } from '../tensor/tensor.js'
import { noGrad } from '../tensor/autograd.js'
import { halfCopyToUpdate, releaseHalfWeights, sweepHalfWeights } from '../tensor/autocast.js'

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
  /**
   * Defer the update of embedding rows whose gradient is exactly zero until
   * they are read (default true; BERTKIT_LAZY_ROWS=0 turns it off). Results are
   * bit-identical to the dense step wherever they can be observed.
   */
  lazyRows?: boolean
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
  /** Rows whose updates are deferred (lazy rows), null when every row is up to date. */
  lazy?: LazyRows | null
}

/**
 * Deferred updates of the rows of a [rows, width] parameter that a step's
 * row-sparse gradient left at zero. A row must still get every step's update
 * with a zero gradient (weight decay, decaying moments); it gets them, replayed
 * with the very arithmetic of the dense step, when someone needs the row: the
 * embedding's lookup of that row, the next step that touches it, or any access
 * to the parameter's or its moments' data (which catches up every row).
 */
interface LazyRows {
  rows: number
  width: number
  /** int32 [rows]: the step each row is up to date with. */
  rowSteps: NativeBuffer
  /** 6 numbers per step since every row was last up to date: lr, beta1, beta2, eps, weightDecay, step. */
  log: number[]
  /** float32 [LAZY_LOG_STEPS]: each logged step's gradient scale (a device value, never read back). */
  scaleLog: NativeBuffer
}

/** Every row is brought up to date after this many deferred steps, so the log stays small. */
const LAZY_LOG_STEPS = 64

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
  private readonly lazyRows: boolean

  constructor(params: Tensor[] | ParamGroup[], options: AdamWOptions = {}) {
    if (params.length === 0) throw new Error('AdamW: no parameters to optimize (is every parameter frozen?)')
    const defaults = {
      lr: options.lr ?? 1e-3,
      betas: options.betas ?? ([0.9, 0.999] as [number, number]),
      eps: options.eps ?? 1e-8,
      weightDecay: options.weightDecay ?? 1e-2,
    }
    checkHyper('AdamW', defaults)
    this.lazyRows = options.lazyRows ?? true
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
      sweepHalfWeights()
      // One native op per param group for all its tensors (bert-base: 2 instead of 201).
      for (const group of this.paramGroups) {
        const sizes: number[] = [], steps: number[] = []
        const params: NativeBuffer[] = [], grads: NativeBuffer[] = [], expAvgs: NativeBuffer[] = [], expAvgSqs: NativeBuffer[] = []
        // autocast's kept bf16 copies of these weights, rewritten in the same pass (no cast next step).
        const halves: Array<NativeBuffer | null> = []
        let anyHalf = false
        for (const p of group.params) {
          if (!p.grad) continue
          let st = this.state.get(p)
          if (!st) {
            st = { step: 0, expAvg: zeros(p.shape, { device: p.device }), expAvgSq: zeros(p.shape, { device: p.device }) }
            st.expAvg.kept = true
            st.expAvgSq.kept = true
            this.state.set(p, st)
          }
          const marks = this.lazyRows && rowSparseEnabled() && p.ndim === 2 ? rowMarksOf(p.grad) : null
          if (marks && marks.rows === p.shape[0] && marks.width === p.shape[1]) {
            this.stepRows(p, st, group, gradScale, marks.marks)
            continue
          }
          st.step++
          p.version++
          sizes.push(p.numel)
          steps.push(st.step)
          params.push(p.buffer)
          grads.push(p.grad.buffer)
          expAvgs.push(st.expAvg.buffer)
          expAvgSqs.push(st.expAvgSq.buffer)
          const half = p.device === 'cpu' ? halfCopyToUpdate(p, p.version) : null
          halves.push(half)
          anyHalf ||= half !== null
        }
        if (sizes.length === 0) continue
        addon.multiTensorAdamw(sizes.length, sizes, params, grads, expAvgs, expAvgSqs, group.lr, group.betas[0],
          group.betas[1], group.eps, group.weightDecay, steps, gradScale ? gradScale.buffer : null, null,
          anyHalf ? halves : null)
      }
    })
  }

  /** One step of a parameter with a row-sparse gradient: its marked rows now, the others deferred. */
  private stepRows(p: Tensor, st: ParamState, group: ResolvedGroup, gradScale: Tensor | null, marks: NativeBuffer): void {
    const addon = native()
    st.step++
    p.version++
    let lazy = st.lazy
    if (!lazy) {
      // Work someone else deferred on these tensors (another optimizer) is done first: one hook each.
      for (const t of [p, st.expAvg, st.expAvgSq]) void t.buffer
      const [rows, width] = p.shape
      const rowSteps = new addon.NativeBuffer(deviceCode(p.device), DTYPE_CODE.int32, rows)
      rowSteps.write(new Int32Array(rows).fill(st.step - 1))
      const scaleLog = new addon.NativeBuffer(deviceCode(p.device), DTYPE_CODE.float32, LAZY_LOG_STEPS)
      lazy = st.lazy = { rows, width, rowSteps, log: [], scaleLog }
      // Whoever reaches the data some other way gets every row up to date first.
      const all = () => this.catchUp(p, st)
      p.rawStorage.beforeAccess = all
      p.rawStorage.beforeRowAccess = (ids, n) => this.catchUpRows(p, st, ids, n)
      st.expAvg.rawStorage.beforeAccess = all
      st.expAvgSq.rawStorage.beforeAccess = all
    }
    lazy.log.push(group.lr, group.betas[0], group.betas[1], group.eps, group.weightDecay, st.step)
    addon.adamwRows(lazy.rows, lazy.width, null, 0, marks, lazy.rowSteps, lazy.log, lazy.scaleLog,
      gradScale ? gradScale.buffer : null, p.grad!.rawBuffer, p.rawBuffer, st.expAvg.rawBuffer, st.expAvgSq.rawBuffer)
    if (lazy.log.length / 6 >= LAZY_LOG_STEPS) this.catchUp(p, st)
  }

  /** Brings the given rows of a parameter with deferred rows up to date (the embedding's lookup). */
  private catchUpRows(p: Tensor, st: ParamState, ids: NativeBuffer, n: number): void {
    const lazy = st.lazy
    if (!lazy) return
    native().adamwRows(lazy.rows, lazy.width, ids, n, null, lazy.rowSteps, lazy.log, lazy.scaleLog, null, null,
      p.rawBuffer, st.expAvg.rawBuffer, st.expAvgSq.rawBuffer)
  }

  /** Brings every deferred row of a parameter up to date and forgets the log. */
  private catchUp(p: Tensor, st: ParamState): void {
    const lazy = st.lazy
    if (!lazy) return
    st.lazy = null
    for (const t of [p, st.expAvg, st.expAvgSq]) {
      if (t.disposed) continue
      t.rawStorage.beforeAccess = null
      t.rawStorage.beforeRowAccess = null
    }
    try {
      if (!p.disposed) {
        native().adamwRows(lazy.rows, lazy.width, null, 0, null, lazy.rowSteps, lazy.log, lazy.scaleLog, null, null,
          p.rawBuffer, st.expAvg.rawBuffer, st.expAvgSq.rawBuffer)
      }
    } finally {
      lazy.rowSteps.free()
      lazy.scaleLog.free()
    }
  }

  /**
   * Brings every row whose update was deferred (lazyRows) up to date. Any read
   * of a parameter or of its moments does this by itself; call it to do the
   * work at a chosen time (the end of training).
   */
  flush(): void {
    for (const [p, st] of this.state) this.catchUp(p, st)
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

  /** Frees the moments (after bringing deferred rows up to date). The optimizer cannot be used afterwards. */
  dispose(): void {
    this.flush()
    releaseHalfWeights(this.paramGroups.flatMap((g) => g.params))
    for (const st of this.state.values()) {
      st.expAvg.dispose()
      st.expAvgSq.dispose()
    }
    this.state.clear()
  }
}
