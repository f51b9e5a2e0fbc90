// Reverse-mode autograd on a tape. Each differentiable op that sees an input
// needing a gradient records a Node on its output: the inputs, the tensors it
// saved, and a backward closure that ACCUMULATES into the gradient buffers it
// is handed (null = not needed, skip the work). Nothing is recorded when no
// input needs a gradient, so frozen parts of a model cost no backward at all.
import { native } from '../native.js'
import { Tensor, emptyUntracked, formatShape } from './tensor.js'
import { trackNode } from './scope.js'

let gradEnabled = true

export function isGradEnabled(): boolean {
  return gradEnabled
}

/** Runs fn without recording the tape (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const previous = gradEnabled
  gradEnabled = false
  try {
    return fn()
  } finally {
    gradEnabled = previous
  }
}

/**
 * Accumulates into gradInputs[i] (null: not needed). `saved` are the tensors
 * handed to record(), in the same order; closures must read inputs through
 * them, never through the original tensors, which a scope may have disposed.
 * fresh[i] is true only for inputs the node declared overwritable and whose
 * gradient buffer is new: it holds garbage and must be written, not added to
 * (so the engine skips zero-filling it — a large share of backward memory traffic).
 */
export type BackwardFn = (gradOutput: Tensor, gradInputs: Array<Tensor | null>, saved: ReadonlyArray<Tensor | null>, fresh: readonly boolean[]) => void

export class Node {
  released = false
  /** Set by record(): the tensor this node produced (used only as a key). */
  output: Tensor | null = null

  constructor(
    readonly name: string,
    readonly inputs: ReadonlyArray<Tensor | null>,
    private readonly saved: Array<Tensor | null>,
    private readonly backwardFn: BackwardFn,
    /** Per input: can backward write its gradient without reading it first? */
    readonly overwrites: readonly boolean[] = [],
  ) {}

  /** @internal */
  runBackward(gradOutput: Tensor, gradInputs: Array<Tensor | null>, fresh: readonly boolean[]): void {
    if (this.released) {
      throw new Error(`backward: the graph through ${this.name} was already freed; pass { retainGraph: true } to the first backward() to go through it twice`)
    }
    this.backwardFn(gradOutput, gradInputs, this.saved, fresh)
  }

  /** Drops the tensors saved for backward. Idempotent. */
  release(): void {
    if (this.released) return
    this.released = true
    for (const t of this.saved) t?.dispose()
    this.saved.length = 0
  }
}

export function needsGrad(t: Tensor | null | undefined): t is Tensor {
  return !!t && t.requiresGrad
}

/** A reference to t's memory that stays valid until the node is released, whatever scopes do to t. */
export function save(t: Tensor): Tensor
export function save(t: Tensor | null): Tensor | null
export function save(t: Tensor | null): Tensor | null {
  if (t === null) return null
  return new Tensor(t.retainStorage(), t.shape, false)
}

/** True when an op with these inputs will record a node: compute saved-only work only then. */
export function willRecord(inputs: Array<Tensor | null>): boolean {
  return gradEnabled && inputs.some(needsGrad)
}

/**
 * Records a node for `output` when grad mode is on and some input needs a
 * gradient. The node takes ownership of `saved` (views made with save() or
 * untracked temporaries); when nothing is recorded they are disposed at once.
 */
export function record(
  name: string,
  output: Tensor,
  inputs: Array<Tensor | null>,
  saved: Array<Tensor | null>,
  backward: BackwardFn,
  overwrites: readonly boolean[] = [],
): Tensor {
  if (!willRecord(inputs)) {
    for (const t of saved) t?.dispose()
    return output
  }
  const node = new Node(name, inputs, saved, backward, overwrites)
  node.output = output
  output.gradFn = node
  trackNode(node)
  return output
}

function topologicalOrder(root: Node): Node[] {
  // Iterative DFS post-order: deep graphs (many layers) must not blow the stack.
  const order: Node[] = []
  const visited = new Set<Node>()
  const stack: Array<{ node: Node; next: number }> = [{ node: root, next: 0 }]
  visited.add(root)
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]
    if (frame.next < frame.node.inputs.length) {
      const input = frame.node.inputs[frame.next++]
      const child = input?.gradFn
      if (child && !visited.has(child)) {
        visited.add(child)
        stack.push({ node: child, next: 0 })
      }
    } else {
      order.push(frame.node)
      stack.pop()
    }
  }
  return order
}

function zerosLike(t: Tensor): Tensor {
  const z = emptyUntracked(t.shape, t.device)
  native().fill(z.buffer, z.numel, 0)
  return z
}

let leafGradReady: ((leaf: Tensor) => void) | null = null
let backwardDepth = 0
/** Leaves reached by a backward run inside a node's backward (activation checkpointing). */
const nestedLeaves = new Set<Tensor>()

/**
 * Calls fn with each leaf as soon as backward has issued the last op that
 * adds to its gradient (torch's post-accumulate-grad hook; data-parallel
 * training starts reducing a gradient bucket there). Leaves of a backward
 * run nested inside a node's backward (a checkpointed block) are reported
 * when the outermost backward ends, since the outer graph cannot tell when
 * their last contribution comes. Returns a function that removes the hook.
 */
export function onLeafGradReady(fn: (leaf: Tensor) => void): () => void {
  if (leafGradReady) throw new Error('onLeafGradReady: a hook is already installed')
  leafGradReady = fn
  return () => {
    if (leafGradReady === fn) leafGradReady = null
  }
}

/** Gradient buffers handed out in this backward that nobody has written yet. */
type Unwritten = Set<Tensor>

/**
 * Accumulates d(root)/d(leaf) into leaf.grad for every leaf that requires it.
 * Gradients of intermediate tensors are freed as soon as they are consumed;
 * the graph's saved tensors are freed at the end unless retainGraph.
 */
export function runBackward(root: Tensor, gradient: Tensor | undefined, retainGraph: boolean): void {
  backwardDepth++
  let finished = false
  try {
    runBackwardOnce(root, gradient, retainGraph)
    finished = true
  } finally {
    backwardDepth--
    if (backwardDepth === 0 && nestedLeaves.size > 0) {
      const late = [...nestedLeaves]
      nestedLeaves.clear()
      if (finished) for (const leaf of late) leafGradReady?.(leaf)
    }
  }
}

function runBackwardOnce(root: Tensor, gradient: Tensor | undefined, retainGraph: boolean): void {
  if (!root.requiresGrad) {
    throw new Error(`backward: tensor ${formatShape(root.shape)} does not require grad and has no grad_fn`)
  }
  if (gradient === undefined && root.numel !== 1) {
    throw new Error(`backward: gradient can be implicit only for a scalar output, got ${formatShape(root.shape)}`)
  }
  if (gradient !== undefined && (gradient.numel !== root.numel || gradient.device !== root.device || gradient.dtype !== 'float32')) {
    throw new Error(`backward: gradient ${formatShape(gradient.shape)} (${gradient.dtype}, ${gradient.device}) does not match output ${formatShape(root.shape)} (float32, ${root.device})`)
  }
  const addon = native()
  const seed = emptyUntracked(root.shape, root.device)
  if (gradient) addon.axpby(seed.numel, 1, gradient.buffer, 0, seed.buffer)
  else addon.fill(seed.buffer, 1, 1)

  if (root.gradFn === null) {
    // A leaf: its gradient is the seed itself.
    accumulateLeaf(root, seed)
    seed.dispose()
    leafReady(root)
    return
  }

  const grads = new Map<Tensor, Tensor>()
  const unwritten: Unwritten = new Set()
  grads.set(root, seed)
  const order = topologicalOrder(root.gradFn)
  // With a ready hook: how many nodes still have to add to each leaf's gradient.
  const consumers = leafGradReady ? countLeafConsumers(order) : null
  try {
    for (let i = order.length - 1; i >= 0; i--) {
      const node = order[i]
      const out = node.output!
      const gOut = grads.get(out)
      if (!gOut) {
        if (consumers) leavesDone(node, consumers)
        continue
      }
      grads.delete(out)
      const gradInputs = node.inputs.map((input) => {
        if (!needsGrad(input)) return null
        if (input.gradFn === null) {
          if (!input.grad) {
            input.grad = emptyUntracked(input.shape, input.device)
            unwritten.add(input.grad)
          }
          return input.grad
        }
        let g = grads.get(input)
        if (!g) {
          g = emptyUntracked(input.shape, input.device)
          unwritten.add(g)
          grads.set(input, g)
        }
        return g
      })
      // A new buffer may skip its zero fill only when this node overwrites that
      // input and the tensor is not passed to the node twice (mul(a, a)).
      const fresh = gradInputs.map((g, i) => {
        if (!g || !unwritten.has(g)) return false
        const once = gradInputs.indexOf(g) === gradInputs.lastIndexOf(g)
        if (node.overwrites[i] && once) return true
        return false
      })
      gradInputs.forEach((g, i) => {
        if (g && unwritten.has(g) && !fresh[i]) native().fill(g.buffer, g.numel, 0)
        if (g) unwritten.delete(g)
      })
      try {
        node.runBackward(gOut, gradInputs, fresh)
      } finally {
        gOut.dispose()
      }
      if (!retainGraph) node.release()
      if (consumers) leavesDone(node, consumers)
    }
  } finally {
    for (const g of grads.values()) g.dispose()
  }
}

function leafReady(leaf: Tensor): void {
  if (!leafGradReady) return
  if (backwardDepth > 1) nestedLeaves.add(leaf)
  else leafGradReady(leaf)
}

function leafInputs(node: Node): Set<Tensor> {
  const leaves = new Set<Tensor>()
  for (const input of node.inputs) if (needsGrad(input) && input.gradFn === null) leaves.add(input)
  return leaves
}

function countLeafConsumers(order: Node[]): Map<Tensor, number> {
  const counts = new Map<Tensor, number>()
  for (const node of order) for (const leaf of leafInputs(node)) counts.set(leaf, (counts.get(leaf) ?? 0) + 1)
  return counts
}

function leavesDone(node: Node, consumers: Map<Tensor, number>): void {
  for (const leaf of leafInputs(node)) {
    const left = (consumers.get(leaf) ?? 1) - 1
    consumers.set(leaf, left)
    if (left === 0) leafReady(leaf)
  }
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (!leaf.grad) leaf.grad = zerosLike(leaf)
  native().axpby(g.numel, 1, g.buffer, 1, leaf.grad.buffer)
}
