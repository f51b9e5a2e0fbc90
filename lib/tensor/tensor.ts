// Tensor: shape, dtype, device and a reference to native storage, plus the
// autograd fields (requiresGrad, grad, gradFn). All data lives in native
// memory; JavaScript only sees copies (toArray, toFloat32Array).
import { native } from '../native.js'
import { getDefaultDevice, deviceCode, type DeviceName } from './device.js'
import { Storage, type DType } from './storage.js'
import { registerTensorCheck, trackTensor } from './scope.js'
import type { Node } from './autograd.js'

export type { DType } from './storage.js'
export type Shape = readonly number[]

export interface TensorOptions {
  dtype?: DType
  device?: DeviceName
  requiresGrad?: boolean
}

export function shapeNumel(shape: Shape): number {
  let n = 1
  for (const d of shape) n *= d
  return n
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(', ')}]`
}

function checkShape(shape: Shape, where: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`${where}: invalid shape ${formatShape(shape)}`)
  }
}

let nextId = 1

export class Tensor {
  readonly id = nextId++
  readonly shape: Shape
  /** Set by autograd ops on their outputs; null for leaves and for tensors made without grad. */
  gradFn: Node | null = null
  /** Accumulated gradient of a leaf that requires grad (owned by this tensor). */
  grad: Tensor | null = null
  /** Survives every tidy() scope; the caller disposes it. */
  kept = false
  /** Bumped whenever the data changes in place (optimizer steps, loads): invalidates cached casts. */
  version = 0
  private _requiresGrad = false
  private storage: Storage | null

  /** @internal use the factory functions (tensor, zeros, empty, ...). */
  constructor(storage: Storage, shape: Shape, track = true) {
    this.storage = storage
    this.dtype = storage.dtype
    this.device = storage.device
    this.shape = Object.freeze([...shape])
    if (track) trackTensor(this)
  }

  /** Kept on the tensor itself, so metadata stays readable after dispose (autograd keys on it). */
  readonly dtype: DType
  readonly device: DeviceName

  get numel(): number {
    return shapeNumel(this.shape)
  }

  get ndim(): number {
    return this.shape.length
  }

  get disposed(): boolean {
    return this.storage === null || !this.storage.alive
  }

  /** True for leaves that asked for gradients and for every output of an op recorded on the tape. */
  get requiresGrad(): boolean {
    return this._requiresGrad || this.gradFn !== null
  }

  /** Only leaves (tensors not produced by a differentiable op) may change this, as in torch. */
  set requiresGrad(value: boolean) {
    if (this.gradFn !== null && !value) {
      throw new Error('requiresGrad: cannot turn off gradients of a non-leaf tensor; use detach()')
    }
    if (value && this.dtype !== 'float32') {
      throw new Error(`requiresGrad: only float32 tensors can require gradients, this one is ${this.dtype}`)
    }
    this._requiresGrad = value
  }

  get isLeaf(): boolean {
    return this.gradFn === null
  }

  /** @internal the native buffer; throws a clear error once disposed. */
  get buffer() {
    return this.liveStorage('buffer').buffer
  }

  /** @internal the storage itself, for owners of deferred work on it (see Storage.beforeAccess). */
  get rawStorage(): Storage {
    return this.liveStorage('storage')
  }

  /** @internal the buffer without running deferred work on it: for the owner of that work only. */
  get rawBuffer() {
    return this.liveStorage('buffer').rawBuffer
  }

  /** @internal shared storage, retained for a view or an autograd node. */
  retainStorage(): Storage {
    return this.liveStorage('retain').retain()
  }

  private liveStorage(what: string): Storage {
    if (this.storage === null || !this.storage.alive) {
      throw new Error(`tensor ${formatShape(this.shape)} was disposed (use after free: ${what})`)
    }
    return this.storage
  }

  /** Releases this tensor's reference to its memory (and its gradient). Idempotent. */
  dispose(): void {
    if (this.storage !== null) {
      this.storage.release()
      this.storage = null
    }
    if (this.grad) {
      this.grad.dispose()
      this.grad = null
    }
  }

  /** A flat copy of the data as numbers (float16/bfloat16 are widened). For tests and small reads. */
  toArray(): number[] {
    return Array.from(this.toFloat32Array())
  }

  toFloat32Array(): Float32Array {
    const raw = this.buffer.read()
    if (this.dtype === 'float32') return raw as Float32Array
    if (this.dtype === 'int32') return Float32Array.from(raw as Int32Array)
    const bits = raw as Uint16Array
    const out = new Float32Array(bits.length)
    const view = new DataView(new ArrayBuffer(4))
    for (let i = 0; i < bits.length; i++) {
      if (this.dtype === 'bfloat16') {
        view.setUint32(0, bits[i] << 16)
        out[i] = view.getFloat32(0)
      } else {
        out[i] = halfToFloat(bits[i])
      }
    }
    return out
  }

  toInt32Array(): Int32Array {
    if (this.dtype !== 'int32') throw new Error(`toInt32Array: tensor is ${this.dtype}`)
    return this.buffer.read() as Int32Array
  }

  /** The value of a one-element tensor. Synchronises with the device. */
  item(): number {
    if (this.numel !== 1) throw new Error(`item: tensor ${formatShape(this.shape)} has ${this.numel} elements, not 1`)
    return this.toFloat32Array()[0]
  }

  /** Reverse-mode autograd from this tensor (a scalar unless a gradient is given). */
  backward(gradient?: Tensor, options: { retainGraph?: boolean } = {}): void {
    // Imported lazily: autograd.ts imports this module.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { runBackward } = require('./autograd.js') as typeof import('./autograd.js')
    runBackward(this, gradient, options.retainGraph ?? false)
  }

  /** A new tensor sharing this one's memory, cut from the graph. */
  detach(): Tensor {
    return new Tensor(this.retainStorage(), this.shape)
  }

  toString(): string {
    return `Tensor(${formatShape(this.shape)}, ${this.dtype}, ${this.device}${this.disposed ? ', disposed' : ''})`
  }
}

registerTensorCheck((v: unknown): v is Tensor => v instanceof Tensor)

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exponent = (h >> 10) & 0x1f
  const mantissa = h & 0x3ff
  if (exponent === 0) return sign * mantissa * 2 ** -24
  if (exponent === 31) return mantissa ? NaN : sign * Infinity
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
}

/** An uninitialised tensor (like torch.empty). */
export function empty(shape: Shape, options: TensorOptions = {}): Tensor {
  checkShape(shape, 'empty')
  const dtype = options.dtype ?? 'float32'
  const device = options.device ?? getDefaultDevice()
  const t = new Tensor(Storage.allocate(shapeNumel(shape), dtype, device), shape)
  if (options.requiresGrad) t.requiresGrad = true
  return t
}

/** @internal an untracked empty float32 tensor (gradients of leaves: owned by the leaf, not a scope). */
export function emptyUntracked(shape: Shape, device: DeviceName): Tensor {
  return new Tensor(Storage.allocate(shapeNumel(shape), 'float32', device), shape, false)
}

export function full(shape: Shape, value: number, options: TensorOptions = {}): Tensor {
  const dtype = options.dtype ?? 'float32'
  const t = empty(shape, { ...options, dtype, requiresGrad: false })
  if (dtype === 'float32') {
    native().fill(t.buffer, t.numel, value)
  } else {
    writeValues(t, new Array(t.numel).fill(value))
  }
  if (options.requiresGrad) t.requiresGrad = true
  return t
}

export function zeros(shape: Shape, options: TensorOptions = {}): Tensor {
  return full(shape, 0, options)
}

export function ones(shape: Shape, options: TensorOptions = {}): Tensor {
  return full(shape, 1, options)
}

type NestedNumbers = number | readonly NestedNumbers[]

function inferShape(data: NestedNumbers): number[] {
  const shape: number[] = []
  let cur: NestedNumbers = data
  while (Array.isArray(cur)) {
    shape.push(cur.length)
    cur = (cur as readonly NestedNumbers[])[0]
  }
  return shape
}

function flatten(data: NestedNumbers, shape: number[], depth: number, out: number[]): void {
  if (depth === shape.length) {
    if (typeof data !== 'number') throw new TypeError('tensor: nested arrays must hold numbers')
    out.push(data)
    return
  }
  if (!Array.isArray(data) || data.length !== shape[depth]) {
    throw new TypeError(`tensor: ragged nested array at depth ${depth} (expected length ${shape[depth]})`)
  }
  for (const d of data as readonly NestedNumbers[]) flatten(d, shape, depth + 1, out)
}

function writeValues(t: Tensor, values: ArrayLike<number>): void {
  switch (t.dtype) {
    case 'float32': t.buffer.write(values instanceof Float32Array ? values : Float32Array.from(values)); break
    case 'int32': {
      for (let i = 0; i < values.length; i++) {
        if (!Number.isInteger(values[i])) throw new TypeError(`tensor: int32 value at [${i}] is not an integer: ${values[i]}`)
      }
      t.buffer.write(values instanceof Int32Array ? values : Int32Array.from(values))
      break
    }
    default: {
      // Go through a float32 buffer and the native cast, so rounding matches the device.
      const tmp = new Tensor(Storage.allocate(values.length, 'float32', t.device), [values.length], false)
      try {
        tmp.buffer.write(Float32Array.from(values))
        native().cast(values.length, tmp.buffer, t.buffer)
      } finally {
        tmp.dispose()
      }
    }
  }
}

/**
 * A tensor from nested arrays or a flat typed array plus a shape.
 * tensor([[1, 2], [3, 4]]) or tensor(new Float32Array(6), { shape: [2, 3] }).
 */
export function tensor(data: NestedNumbers | ArrayLike<number>, options: TensorOptions & { shape?: Shape } = {}): Tensor {
  let shape: number[]
  let flat: ArrayLike<number>
  if (ArrayBuffer.isView(data)) {
    flat = data as unknown as ArrayLike<number>
    shape = options.shape ? [...options.shape] : [flat.length]
  } else if (typeof data === 'number') {
    flat = [data]
    shape = options.shape ? [...options.shape] : []
  } else {
    const arr = data as NestedNumbers
    const inferred = inferShape(arr)
    const out: number[] = []
    flatten(arr, inferred, 0, out)
    flat = out
    shape = options.shape ? [...options.shape] : inferred
  }
  checkShape(shape, 'tensor')
  if (shapeNumel(shape) !== flat.length) {
    throw new RangeError(`tensor: ${flat.length} values do not fill shape ${formatShape(shape)}`)
  }
  const dtype = options.dtype ?? (data instanceof Int32Array ? 'int32' : 'float32')
  const t = empty(shape, { dtype, device: options.device })
  try {
    if (flat.length > 0) writeValues(t, flat)
  } catch (err) {
    t.dispose()
    throw err
  }
  if (options.requiresGrad) t.requiresGrad = true
  return t
}

/** Marks a tensor to survive every enclosing tidy(); the caller disposes it. */
export function keep<T extends Tensor>(t: T): T {
  t.kept = true
  return t
}

export function memoryStats() {
  return native().memoryStats()
}

export { deviceCode }
