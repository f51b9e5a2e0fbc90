// Unpadded (variable-length) execution, the technique of MLPerf's unpadded
// BERT, FlashAttention's varlen kernels and transformers'
// DataCollatorWithFlattening: the padding of a batch is removed once, after
// the collator, and every layer but attention runs on the real tokens only,
// [tokens, hidden] instead of [batch, seq, hidden]; attention runs per
// sequence from the packed layout; the head gathers the rows it needs.
//
// The results are the padded path's: a real token never sees a padded one
// (its attention gives padded keys exactly zero weight), every op but
// attention treats rows independently, and dropout draws the padded
// layout's mask (dropoutRows, varlenAttention key their Philox draws by the
// padded flat index and reserve the padded number of counters). Only sums
// over rows (weight gradients) may round differently.
//
// A PackedBatch describes one batch: which padded rows are real (rowIndex,
// b * seq + s), where each sequence starts (cuSeqlens), and its first tokens'
// rows (firstRows, the [CLS] rows). It is built from the attention mask's host
// copy (no device read) and only for masks the collator makes: every row
// 1…1 0…0 (right padding), at least one token per row, values 0 or 1. Other
// masks (left padding, empty rows) run padded, as does a batch without padding.
import { native } from '../native.js'
import { Tensor, empty, emptyUntracked, formatShape, tensor } from './tensor.js'
import { record, save } from './autograd.js'
import { nextPhiloxRange } from './random.js'
import type { DeviceName } from './device.js'

function fail(op: string, message: string): never {
  throw new Error(`${op}: ${message}`)
}

// ---- when to unpad ---------------------------------------------------------------

// The defaults per device. CUDA: padded until the varlen kernels have passed
// scripts/gpu/gpu-check.sh on a GPU (the backend table's varlenAttention,
// gatherRows and dropoutRows cases, and the model tests with BERTKIT_UNPAD=on).
const DEFAULT_UNPAD: Record<DeviceName, boolean> = { cpu: true, cuda: false }
let unpadOverride: boolean | null = null

function parseUnpad(value: string, where: string): boolean | null {
  const v = value.toLowerCase()
  if (v === 'on' || v === '1' || v === 'true') return true
  if (v === 'off' || v === '0' || v === 'false') return false
  if (v === 'auto' || v === '') return null
  throw new Error(`${where} must be on, off or auto, got "${value}"`)
}

/**
 * Turns unpadded execution of the sequence-classification models on or off
 * for every device from now on ("auto": the per-device default again, on for
 * the CPU, off for CUDA). Takes precedence over BERTKIT_UNPAD.
 */
export function setUnpadding(mode: 'on' | 'off' | 'auto'): void {
  unpadOverride = parseUnpad(mode, 'setUnpadding')
}

/** Whether the models unpad on `device`: setUnpadding(), else BERTKIT_UNPAD, else the default. */
export function unpaddingEnabled(device: DeviceName): boolean {
  if (unpadOverride !== null) return unpadOverride
  const fromEnv = process.env.BERTKIT_UNPAD
  return (fromEnv ? parseUnpad(fromEnv, 'BERTKIT_UNPAD') : null) ?? DEFAULT_UNPAD[device]
}

// ---- the packed layout of one batch --------------------------------------------------

export class PackedBatch {
  /** int32 [tokens]: the padded row (b * seq + s) of each real token, in order. */
  readonly rowIndex: Tensor
  /** int32 [batch + 1]: sequence b is packed rows [cuSeqlens[b], cuSeqlens[b + 1]). */
  readonly cuSeqlens: Tensor
  /** int32 [batch]: the packed row of each sequence's first token. */
  readonly firstRows: Tensor
  readonly tokens: number
  private readonly owned: Tensor[] = []

  private constructor(readonly batch: number, readonly seq: number, readonly lengths: Int32Array,
    private readonly hostRows: Int32Array, readonly device: DeviceName) {
    this.tokens = hostRows.length
    const cu = new Int32Array(batch + 1)
    for (let b = 0; b < batch; b++) cu[b + 1] = cu[b] + lengths[b]
    this.rowIndex = this.own(tensor(hostRows, { shape: [this.tokens], dtype: 'int32', device }))
    this.cuSeqlens = this.own(tensor(cu, { shape: [batch + 1], dtype: 'int32', device }))
    this.firstRows = this.own(tensor(cu.subarray(0, batch), { shape: [batch], dtype: 'int32', device }))
  }

  private own(t: Tensor): Tensor {
    this.owned.push(t)
    return t
  }

  /**
   * The packed layout of a mask (int32 [batch, seq] host values), or null when
   * it has no padding to remove or is not a collator's right-padded 0/1 mask.
   */
  static fromMask(mask: Int32Array, batch: number, seq: number, device: DeviceName): PackedBatch | null {
    if (mask.length !== batch * seq) throw new Error(`PackedBatch: mask has ${mask.length} values for [${batch}, ${seq}]`)
    const lengths = new Int32Array(batch)
    let tokens = 0
    for (let b = 0; b < batch; b++) {
      const row = b * seq
      let len = 0
      while (len < seq && mask[row + len] === 1) len++
      for (let s = len; s < seq; s++) if (mask[row + s] !== 0) return null
      if (len === 0) return null
      lengths[b] = len
      tokens += len
    }
    if (tokens === batch * seq) return null
    const rows = new Int32Array(tokens)
    let t = 0
    for (let b = 0; b < batch; b++) for (let s = 0; s < lengths[b]; s++) rows[t++] = b * seq + s
    return new PackedBatch(batch, seq, lengths, rows, device)
  }

  /** int32 ids [batch, seq] → their real tokens [tokens], from the host copy (owned by this batch). */
  packIds(ids: Tensor): Tensor {
    if (ids.dtype !== 'int32' || ids.ndim !== 2 || ids.shape[0] !== this.batch || ids.shape[1] !== this.seq) {
      fail('packIds', `ids must be int32 [${this.batch}, ${this.seq}], got ${ids.dtype} ${formatShape(ids.shape)}`)
    }
    const values = ids.toInt32Array()
    const out = new Int32Array(this.tokens)
    for (let t = 0; t < this.tokens; t++) out[t] = values[this.hostRows[t]]
    return this.own(tensor(out, { shape: [this.tokens], dtype: 'int32', device: ids.device }))
  }

  /**
   * Runs a lookup of packed ids; a native "ids[t] = v is out of range" error
   * names the padded flat index instead, so callers report [row, column].
   */
  padIndexErrors<T>(fn: () => T): T {
    try {
      return fn()
    } catch (err) {
      const message = (err as Error).message
      const m = /ids\[(\d+)\]( = -?\d+ is out of range)/.exec(message)
      if (!m) throw err
      const padded = this.hostRows[Number(m[1])]
      throw new RangeError(message.replace(m[0], `ids[${padded}]${m[2]}`))
    }
  }

  dispose(): void {
    for (const t of this.owned) t.dispose()
  }
}

/** The packed layout an encoder layer was handed in place of its attention mask, or null (a padded batch). */
export function asPacked(maskOrPacked: Tensor | PackedBatch): PackedBatch | null {
  return maskOrPacked instanceof PackedBatch ? maskOrPacked : null
}

/**
 * The packed layout for a batch whose attention mask is `mask` (null: no
 * padding), when unpadding is enabled on the device and the mask allows it;
 * else null (run padded). The caller disposes it.
 */
export function unpadBatch(mask: Tensor | null | undefined, device: DeviceName): PackedBatch | null {
  if (!mask || !unpaddingEnabled(device)) return null
  if (mask.dtype !== 'int32' || mask.ndim !== 2) return null
  const [batch, seq] = mask.shape
  return PackedBatch.fromMask(mask.toInt32Array(), batch, seq, device)
}

// LoRA's dropout sits inside Linear-shaped modules whose forward takes one
// tensor; it finds the batch's layout here. The models set it around their
// encoder (withPackedBatch) and clear it around products that are not over
// tokens (DeBERTa's relative position table).
let active: PackedBatch | null = null

/** Runs fn with `packed` as the layout of token rows for modules that cannot be handed it. */
export function withPackedBatch<T>(packed: PackedBatch | null, fn: () => T): T {
  const before = active
  active = packed
  try {
    return fn()
  } finally {
    active = before
  }
}

/** The layout set by withPackedBatch, when x [rows, cols] is a tensor of its token rows; else null. */
export function packedBatchOf(x: Tensor): PackedBatch | null {
  return active && x.ndim === 2 && x.shape[0] === active.tokens ? active : null
}

// ---- ops --------------------------------------------------------------------------

function checkRows(op: string, x: Tensor, rows: number, what: string): number {
  if (!(x instanceof Tensor)) fail(op, `'x' must be a Tensor`)
  if (x.disposed) fail(op, `'x' ${formatShape(x.shape)} was disposed (use after free)`)
  if (x.dtype !== 'float32') fail(op, `'x' must be float32, got ${x.dtype}`)
  const cols = x.shape[x.ndim - 1] ?? 1
  if (x.ndim < 1 || cols === 0 || x.numel !== rows * cols) fail(op, `x ${formatShape(x.shape)} must be ${what}`)
  return cols
}

/** x [batch, seq, cols] (or [batch * seq, cols]) → its real tokens [tokens, cols]. */
export function packRows(x: Tensor, packed: PackedBatch): Tensor {
  const src = packed.batch * packed.seq
  const cols = checkRows('packRows', x, src, `[${packed.batch}, ${packed.seq}, cols]`)
  const addon = native()
  const out = empty([packed.tokens, cols], { device: x.device })
  addon.gatherRowsForward(packed.tokens, cols, src, packed.rowIndex.buffer, x.buffer, out.buffer, false)
  return record('packRows', out, [x], [save(packed.rowIndex)], (g, [gx], [sIndex]) => {
    addon.gatherRowsBackward(packed.tokens, cols, src, sIndex!.buffer, g.buffer, gx!.buffer)
  })
}

/** x [tokens, cols] → [batch, seq, cols], zeros at the padding. */
export function unpackRows(x: Tensor, packed: PackedBatch): Tensor {
  const cols = checkRows('unpackRows', x, packed.tokens, `[${packed.tokens}, cols]`)
  const src = packed.batch * packed.seq
  const addon = native()
  const out = empty([packed.batch, packed.seq, cols], { device: x.device })
  addon.fill(out.buffer, out.numel, 0)
  addon.gatherRowsBackward(packed.tokens, cols, src, packed.rowIndex.buffer, x.buffer, out.buffer)
  return record('unpackRows', out, [x], [save(packed.rowIndex)], (g, [gx], [sIndex]) => {
    addon.gatherRowsForward(packed.tokens, cols, src, sIndex!.buffer, g.buffer, gx!.buffer, true)
  })
}

/** x [tokens, cols] → each sequence's first token [batch, cols] (h[:, 0] of the padded layout). */
export function firstTokenRows(x: Tensor, packed: PackedBatch): Tensor {
  const cols = checkRows('firstTokenRows', x, packed.tokens, `[${packed.tokens}, cols]`)
  const addon = native()
  const out = empty([packed.batch, cols], { device: x.device })
  addon.gatherRowsForward(packed.batch, cols, packed.tokens, packed.firstRows.buffer, x.buffer, out.buffer, false)
  return record('firstTokenRows', out, [x], [save(packed.firstRows)], (g, [gx], [sIndex]) => {
    addon.gatherRowsBackward(packed.batch, cols, packed.tokens, sIndex!.buffer, g.buffer, gx!.buffer)
  })
}

/**
 * Dropout of token rows x [tokens, cols] drawing the padded batch's mask:
 * the same elements are dropped as dropout() drops of the padded
 * [batch, seq, cols] tensor, and as many Philox counters are reserved.
 */
export function dropoutRows(x: Tensor, p: number, training: boolean, packed: PackedBatch): Tensor {
  const cols = checkRows('dropoutRows', x, packed.tokens, `[${packed.tokens}, cols]`)
  if (!(p >= 0 && p < 1)) fail('dropoutRows', `p must be in [0, 1), got ${p}`)
  if (!training || p === 0) return x
  const addon = native()
  const { seed, offset } = nextPhiloxRange(packed.batch * packed.seq * cols)
  const out = empty(x.shape, { device: x.device })
  addon.dropoutRowsForward(packed.tokens, cols, p, seed, offset, packed.rowIndex.buffer, x.buffer, out.buffer)
  return record('dropout', out, [x], [save(packed.rowIndex)], (g, [gx], [sIndex], [fresh]) => {
    addon.dropoutRowsBackward(packed.tokens, cols, p, seed, offset, sIndex!.buffer, g.buffer, gx!.buffer, fresh)
  }, [true])
}

export interface VarlenAttentionOptions {
  heads: number
  /** Dropout on the attention probabilities (attention_probs_dropout_prob). */
  dropoutP?: number
  training?: boolean
  /** Defaults to 1/sqrt(head_dim). */
  scale?: number
}

/**
 * attention() of the padded batch, computed per sequence from the packed
 * layout: q, k, v [tokens, hidden] → [tokens, hidden]. Saves the
 * probabilities of the real tokens only (heads · Σ L² floats instead of
 * batch · heads · seq²). Dropout draws the padded layout's mask.
 */
export function varlenAttention(q: Tensor, k: Tensor, v: Tensor, packed: PackedBatch, options: VarlenAttentionOptions): Tensor {
  const op = 'varlenAttention'
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (!(t instanceof Tensor) || t.disposed) fail(op, `'${name}' must be a live Tensor`)
    if (t.dtype !== 'float32') fail(op, `'${name}' must be float32, got ${t.dtype}`)
    if (t.ndim !== 2 || t.shape[0] !== packed.tokens || t.shape[1] !== q.shape[1]) {
      fail(op, `q ${formatShape(q.shape)}, k ${formatShape(k.shape)} and v ${formatShape(v.shape)} must all be [${packed.tokens}, hidden]`)
    }
    if (t.device !== packed.device) fail(op, `'${name}' is on ${t.device}, the packed batch on ${packed.device}`)
  }
  const hidden = q.shape[1]
  const heads = options.heads
  if (!Number.isInteger(heads) || heads < 1 || hidden % heads !== 0) {
    fail(op, `hidden size ${hidden} is not a multiple of the number of heads (${heads})`)
  }
  const headDim = hidden / heads
  const scaleFactor = options.scale ?? 1 / Math.sqrt(headDim)
  const p = options.training ? (options.dropoutP ?? 0) : 0
  if (!(p >= 0 && p < 1)) fail(op, `dropoutP must be in [0, 1), got ${p}`)
  const { batch, seq } = packed
  const { seed, offset } = p > 0 ? nextPhiloxRange(batch * heads * seq * seq) : { seed: 0n, offset: 0n }
  let squares = 0
  for (const len of packed.lengths) squares += len * len
  const addon = native()
  const out = empty(q.shape, { device: q.device })
  const probs = emptyUntracked([heads * squares], q.device)
  addon.varlenAttentionForward(batch, seq, heads, headDim, scaleFactor, p, seed, offset, packed.cuSeqlens.buffer,
    q.buffer, k.buffer, v.buffer, probs.buffer, out.buffer)
  return record('attention', out, [q, k, v], [save(q), save(k), save(v), probs, save(packed.cuSeqlens)],
    (g, [gq, gk, gv], [sq, sk, sv, sProbs, sCu], [freshQ, freshK, freshV]) => {
      addon.varlenAttentionBackward(batch, seq, heads, headDim, scaleFactor, p, seed, offset, sCu!.buffer, sq!.buffer,
        sk!.buffer, sv!.buffer, sProbs!.buffer, g.buffer, gq ? gq.buffer : null, gk ? gk.buffer : null, gv ? gv.buffer : null,
        freshQ, freshK, freshV)
    }, [true, true, true])
}
