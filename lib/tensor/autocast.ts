// Mixed precision as torch.autocast does it for matrix products: inside
// autocast('bfloat16' | 'float16', fn), linear and matmul multiply half-
// precision copies of their operands with fp32 accumulation into fp32
// outputs; every other op, the master weights and the optimizer stay fp32.
// Half copies of weights are cached for the duration of the autocast region
// (keyed by the weight's version, bumped whenever the weight changes). On the
// CPU, bf16 copies outlive the region: AdamW rewrites each one in the pass
// that updates its weight (the same bits as casting the new weight), so the
// next region needs no cast. Copies nobody read since the optimizer's
// previous step are freed, so without autocast they go within two steps.
import { native, type NativeBuffer } from '../native.js'
import { Tensor, emptyUntracked } from './tensor.js'
import { Storage } from './storage.js'

export type HalfDType = 'float16' | 'bfloat16'

interface Region {
  dtype: HalfDType
  weights: Map<Tensor, { version: number; half: Tensor }>
  /** The last activation cast (query, key and value all read the same hidden state). */
  lastActivation: { tensor: Tensor; version: number; half: Tensor } | null
}

let region: Region | null = null

/** bf16 copies kept between regions; used: read by a region since the last sweep. */
const carried = new Map<Tensor, { version: number; half: Tensor; used: boolean }>()

export function autocastDtype(): HalfDType | null {
  return region?.dtype ?? null
}

/** Runs fn with half-precision matrix products. Regions do not nest. */
export function autocast<T>(dtype: HalfDType | null, fn: () => T): T {
  if (dtype === null) return fn()
  if (dtype !== 'float16' && dtype !== 'bfloat16') throw new Error(`autocast: dtype must be float16 or bfloat16, got ${dtype}`)
  if (region) throw new Error('autocast: regions do not nest')
  region = { dtype, weights: new Map(), lastActivation: null }
  const mine = region
  try {
    const result = fn()
    if (result instanceof Promise) throw new Error('autocast(fn): fn must be synchronous')
    return result
  } finally {
    for (const [w, { version, half }] of mine.weights) {
      if (mine.dtype === 'bfloat16' && w.device === 'cpu' && !w.disposed && !half.disposed) carried.set(w, { version, half, used: true })
      else half.dispose()
    }
    mine.lastActivation?.half.dispose()
    region = null
  }
}

/** A half-precision copy of a float32 tensor (untracked: the caller owns it). */
export function castHalf(x: Tensor, dtype: HalfDType): Tensor {
  const out = new Tensor(Storage.allocate(x.numel, dtype, x.device), x.shape, false)
  native().cast(x.numel, x.buffer, out.buffer)
  return out
}

/** The half copy of a weight for the current region, cast once per weight version. */
/**
 * castHalf of a [rows, cols] float32 tensor that also adds its column sums to
 * sums (writes them when write): one read of x for both (a Linear's backward).
 */
export function castHalfSumRows(x: Tensor, dtype: HalfDType, rows: number, cols: number, sums: Tensor, write: boolean): Tensor {
  const out = new Tensor(Storage.allocate(x.numel, dtype, x.device), x.shape, false)
  native().castSumRows(rows, cols, x.buffer, out.buffer, sums.buffer, write)
  return out
}

export function halfWeight(w: Tensor): Tensor {
  if (!region) throw new Error('internal: halfWeight outside autocast')
  const cached = region.weights.get(w)
  if (cached && cached.version === w.version) return cached.half
  cached?.half.dispose()
  const kept = carried.get(w)
  if (kept) {
    carried.delete(w)
    if (kept.version === w.version && kept.half.dtype === region.dtype && !kept.half.disposed) {
      region.weights.set(w, { version: kept.version, half: kept.half })
      return kept.half
    }
    kept.half.dispose()
  }
  const half = castHalf(w, region.dtype)
  region.weights.set(w, { version: w.version, half })
  return half
}

export { emptyUntracked }

/**
 * The half copy of an activation for the current region: cast once however
 * many products read it in a row (a layer's query, key and value
 * projections), so owned by the region. Callers that keep it save() it.
 */
/**
 * @internal For ops whose output a Linear is likely to read next (an
 * activation, a LayerNorm): under autocast, an empty half tensor for the op to
 * write its output's cast into as it computes it, else null. Hand it to
 * keepHalfActivation once written.
 */
export function halfTwin(x: Tensor): Tensor | null {
  if (!region) return null
  return new Tensor(Storage.allocate(x.numel, region.dtype, x.device), x.shape, false)
}

/** @internal Makes half (x cast, written by the op that made x) what halfActivation(x) returns. */
export function keepHalfActivation(x: Tensor, half: Tensor): void {
  if (!region) {
    half.dispose()
    return
  }
  region.lastActivation?.half.dispose()
  region.lastActivation = { tensor: x, version: x.version, half }
}

export function halfActivation(x: Tensor): Tensor {
  if (!region) throw new Error('internal: halfActivation outside autocast')
  const last = region.lastActivation
  if (last && last.tensor === x && last.version === x.version && !last.half.disposed) return last.half
  last?.half.dispose()
  const half = castHalf(x, region.dtype)
  region.lastActivation = { tensor: x, version: x.version, half }
  return half
}

/**
 * @internal For the optimizer, once per step before its updates: frees the
 * kept bf16 copies no region read since the previous sweep (autocast is no
 * longer in use, or the weight no longer in the model).
 */
export function sweepHalfWeights(): void {
  for (const [w, entry] of carried) {
    if (entry.used && !w.disposed && !entry.half.disposed) {
      entry.used = false
    } else {
      entry.half.dispose()
      carried.delete(w)
    }
  }
}

/**
 * @internal For the optimizer: the kept bf16 copy of w that its update of w
 * should rewrite (null: none, or the copy is also held elsewhere, e.g. saved
 * for a backward still to run). The copy is then taken to match `version`,
 * the weight's version after the update.
 */
export function halfCopyToUpdate(w: Tensor, version: number): NativeBuffer | null {
  const entry = carried.get(w)
  if (!entry || entry.half.disposed || entry.half.rawStorage.shared || w.disposed) return null
  entry.version = version
  return entry.half.rawBuffer
}

/** Frees the bf16 copies kept between autocast regions of these weights (all weights when not given). */
export function releaseHalfWeights(weights?: Iterable<Tensor>): void {
  for (const w of weights ?? [...carried.keys()]) {
    carried.get(w)?.half.dispose()
    carried.delete(w)
  }
}
