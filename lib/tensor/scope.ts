// Scopes give every intermediate tensor a deterministic owner. Inside
// tidy(fn), each tensor and autograd node created is recorded; when fn
// returns, everything not returned (or kept) is disposed. See lifetimes.md.
import type { Tensor } from './tensor.js'
import type { Node } from './autograd.js'

interface Scope {
  tensors: Tensor[]
  nodes: Node[]
}

const stack: Scope[] = []

export function trackTensor(t: Tensor): void {
  const top = stack[stack.length - 1]
  if (top) top.tensors.push(t)
}

export function trackNode(n: Node): void {
  const top = stack[stack.length - 1]
  if (top) top.nodes.push(n)
}

function collectTensors(value: unknown, out: Set<Tensor>, seen: Set<unknown>, isTensor: (v: unknown) => v is Tensor): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return
  seen.add(value)
  if (isTensor(value)) {
    out.add(value)
    return
  }
  if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, out, seen, isTensor)
    return
  }
  if (value instanceof Map) {
    for (const v of value.values()) collectTensors(v, out, seen, isTensor)
    return
  }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value as Record<string, unknown>)) collectTensors(v, out, seen, isTensor)
  }
}

let tensorCheck: ((v: unknown) => v is Tensor) | null = null
/** Set once by tensor.ts to break the import cycle. */
export function registerTensorCheck(fn: (v: unknown) => v is Tensor): void {
  tensorCheck = fn
}

/**
 * Runs fn; tensors created inside and not reachable from its result (through
 * arrays, Maps and plain objects) are disposed when it returns or throws.
 * Autograd nodes created inside survive only if a returned tensor needs them
 * for a later backward(); they then belong to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T {
  const scope: Scope = { tensors: [], nodes: [] }
  stack.push(scope)
  let result: T
  try {
    result = fn()
  } catch (err) {
    stack.pop()
    for (const n of scope.nodes) n.release()
    for (const t of scope.tensors) t.dispose()
    throw err
  }
  if (result instanceof Promise) {
    stack.pop()
    throw new Error('tidy(fn): fn must be synchronous; use tidyAsync for async work')
  }
  stack.pop()
  const kept = new Set<Tensor>()
  collectTensors(result, kept, new Set(), tensorCheck!)
  const parent = stack[stack.length - 1]
  const needGraph = [...kept].some((t) => t.gradFn !== null)
  for (const n of scope.nodes) {
    if (needGraph) {
      if (parent) parent.nodes.push(n)
    } else {
      n.release()
    }
  }
  for (const t of scope.tensors) {
    if (t.kept) continue // keep(t): owned by the caller from now on
    if (kept.has(t)) {
      if (parent) parent.tensors.push(t)
    } else {
      t.dispose()
    }
  }
  return result
}

/** Number of open scopes (for tests). */
export function scopeDepth(): number {
  return stack.length
}
