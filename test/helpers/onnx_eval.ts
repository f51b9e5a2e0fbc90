// A float64 interpreter for the ONNX operators bertkit's exporter writes,
// written from the ONNX operator specification (onnx/docs/Operators.md), so
// that `npm test` can run an exported graph without onnxruntime or Python.
// It is a reference, not a runtime: plain loops, numpy broadcasting, every
// shape checked. The reference suite runs the same files in onnxruntime.
import { onnx } from 'onnx-proto'

export interface Value {
  /** Element kind: int64 and bool are held as whole numbers in the same float64 array. */
  kind: 'float' | 'int' | 'bool'
  shape: number[]
  data: Float64Array
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1)
const stridesOf = (shape: number[]) => {
  const s = new Array<number>(shape.length)
  let acc = 1
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc
    acc *= shape[i]
  }
  return s
}

function fail(node: onnx.INodeProto, msg: string): never {
  throw new Error(`onnx_eval: ${node.opType} ${node.name}: ${msg}`)
}

function broadcastShape(node: onnx.INodeProto, ...shapes: number[][]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length))
  const out = new Array<number>(rank).fill(1)
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i
      if (s[i] === out[o] || s[i] === 1) continue
      if (out[o] === 1) out[o] = s[i]
      else fail(node, `shapes [${shapes.map((x) => x.join(',')).join('] [')}] do not broadcast`)
    }
  }
  return out
}

/** Flat index into `shape` (right-aligned, broadcast) for each flat index of `out`. */
function broadcastIndex(shape: number[], out: number[]): Int32Array {
  const n = numel(out)
  const idx = new Int32Array(n)
  const inStrides = stridesOf(shape)
  const offset = out.length - shape.length
  const coord = new Array<number>(out.length).fill(0)
  for (let i = 0; i < n; i++) {
    let flat = 0
    for (let d = 0; d < shape.length; d++) if (shape[d] !== 1) flat += coord[d + offset] * inStrides[d]
    idx[i] = flat
    for (let d = out.length - 1; d >= 0; d--) {
      if (++coord[d] < out[d]) break
      coord[d] = 0
    }
  }
  return idx
}

function elementwise(node: onnx.INodeProto, inputs: Value[], kind: Value['kind'], fn: (...x: number[]) => number): Value {
  const shape = broadcastShape(node, ...inputs.map((v) => v.shape))
  const maps = inputs.map((v) => broadcastIndex(v.shape, shape))
  const out = new Float64Array(numel(shape))
  const args = new Array<number>(inputs.length)
  for (let i = 0; i < out.length; i++) {
    for (let k = 0; k < inputs.length; k++) args[k] = inputs[k].data[maps[k][i]]
    out[i] = fn(...args)
  }
  return { kind, shape, data: out }
}

/** erf to float64 accuracy: its Maclaurin series below 4, ±1 beyond (1 - erf(4) < 2e-8). */
export function erf(x: number): number {
  const a = Math.abs(x)
  if (a >= 4) return Math.sign(x)
  let term = x, sum = x
  for (let n = 1; n < 200; n++) {
    term *= -x * x / n
    const add = term / (2 * n + 1)
    sum += add
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break
  }
  return (2 / Math.sqrt(Math.PI)) * sum
}

function attrs(node: onnx.INodeProto): Map<string, onnx.IAttributeProto> {
  return new Map((node.attribute ?? []).map((a) => [a.name!, a]))
}

const intAttr = (a: Map<string, onnx.IAttributeProto>, name: string, dflt?: number): number => {
  const v = a.get(name)
  if (v === undefined) {
    if (dflt === undefined) throw new Error(`onnx_eval: missing attribute ${name}`)
    return dflt
  }
  return Number(v.i)
}

const axisOf = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis)

export function tensorValue(t: onnx.ITensorProto): Value {
  const dims = (t.dims ?? []).map(Number)
  const raw = t.rawData!
  // A copy: a decoded Buffer's slice() is a view into a shared pool, and typed views need alignment.
  const bytes = new Uint8Array(raw)
  const T = onnx.TensorProto.DataType
  let data: Float64Array, kind: Value['kind']
  switch (t.dataType) {
    case T.FLOAT: data = Float64Array.from(new Float32Array(bytes.buffer, 0, bytes.byteLength / 4)); kind = 'float'; break
    case T.INT64: data = Float64Array.from(new BigInt64Array(bytes.buffer, 0, bytes.byteLength / 8), Number); kind = 'int'; break
    case T.INT32: data = Float64Array.from(new Int32Array(bytes.buffer, 0, bytes.byteLength / 4)); kind = 'int'; break
    case T.INT8: data = Float64Array.from(new Int8Array(bytes.buffer, 0, bytes.byteLength)); kind = 'int'; break
    case T.BOOL: data = Float64Array.from(bytes); kind = 'bool'; break
    default: throw new Error(`onnx_eval: initializer ${t.name} has data type ${t.dataType}`)
  }
  if (data.length !== numel(dims)) throw new Error(`onnx_eval: initializer ${t.name} holds ${data.length} values for [${dims.join(', ')}]`)
  return { kind, shape: dims, data }
}

function reduce(node: onnx.INodeProto, x: Value, axesIn: number[] | null, keep: boolean, init: number, step: (acc: number, v: number) => number, finish: (acc: number, n: number) => number): Value {
  const rank = x.shape.length
  const axes = new Set((axesIn ?? x.shape.map((_, i) => i)).map((a) => axisOf(a, rank)))
  const outShape = x.shape.map((d, i) => (axes.has(i) ? 1 : d))
  const out = new Float64Array(numel(outShape)).fill(init)
  const counts = numel(x.shape) / Math.max(1, numel(outShape))
  const xs = stridesOf(x.shape), os = stridesOf(outShape)
  for (let i = 0; i < x.data.length; i++) {
    let o = 0, r = i
    for (let d = 0; d < rank; d++) {
      const c = Math.floor(r / xs[d])
      r -= c * xs[d]
      if (!axes.has(d)) o += c * os[d]
    }
    out[o] = step(out[o], x.data[i])
  }
  for (let i = 0; i < out.length; i++) out[i] = finish(out[i], counts)
  void node
  return { kind: x.kind, shape: keep ? outShape : x.shape.filter((_, i) => !axes.has(i)), data: out }
}

function matmul(node: onnx.INodeProto, a: Value, b: Value): Value {
  if (a.shape.length < 2 || b.shape.length < 2) fail(node, 'operands must have rank 2 or more')
  const [n, k] = a.shape.slice(-2), [k2, m] = b.shape.slice(-2)
  if (k !== k2) fail(node, `inner dimensions ${k} and ${k2} differ`)
  const batch = broadcastShape(node, a.shape.slice(0, -2), b.shape.slice(0, -2))
  const am = broadcastIndex(a.shape.slice(0, -2), batch), bm = broadcastIndex(b.shape.slice(0, -2), batch)
  const out = new Float64Array(numel(batch) * n * m)
  for (let p = 0; p < numel(batch); p++) {
    const ao = am[p] * n * k, bo = bm[p] * k * m, oo = p * n * m
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < m; j++) {
        let s = 0
        for (let q = 0; q < k; q++) s += a.data[ao + i * k + q] * b.data[bo + q * m + j]
        out[oo + i * m + j] = s
      }
    }
  }
  return { kind: 'float', shape: [...batch, n, m], data: out }
}

function run(node: onnx.INodeProto, x: Value[], opset: number): Value[] {
  const a = attrs(node)
  const op = node.opType!
  const ints = (v: Value) => Array.from(v.data)
  switch (op) {
    case 'Identity': return [x[0]]
    case 'Add': return [elementwise(node, x, x[0].kind, (p, q) => p + q)]
    case 'Sub': return [elementwise(node, x, x[0].kind, (p, q) => p - q)]
    case 'Mul': return [elementwise(node, x, x[0].kind, (p, q) => p * q)]
    case 'Div': return [elementwise(node, x, x[0].kind, (p, q) => (x[0].kind === 'int' ? Math.trunc(p / q) : p / q))]
    case 'Equal': return [elementwise(node, x, 'bool', (p, q) => (p === q ? 1 : 0))]
    case 'And': return [elementwise(node, x, 'bool', (p, q) => (p && q ? 1 : 0))]
    case 'Not': return [elementwise(node, x, 'bool', (p) => (p ? 0 : 1))]
    case 'Where': return [elementwise(node, x, x[1].kind, (c, p, q) => (c ? p : q))]
    case 'Erf': return [elementwise(node, x, 'float', erf)]
    case 'Tanh': return [elementwise(node, x, 'float', Math.tanh)]
    case 'Relu': return [elementwise(node, x, 'float', (v) => Math.max(0, v))]
    case 'Sigmoid': return [elementwise(node, x, 'float', (v) => 1 / (1 + Math.exp(-v)))]
    case 'Sqrt': return [elementwise(node, x, 'float', Math.sqrt)]
    case 'Clip': return [elementwise(node, x, x[0].kind, (v, lo, hi) => Math.min(hi, Math.max(lo, v)))]
    case 'Cast': {
      const to = intAttr(a, 'to')
      const T = onnx.TensorProto.DataType
      if (to === T.FLOAT) return [{ ...x[0], kind: 'float', data: Float64Array.from(x[0].data, Math.fround) }]
      if (to === T.INT64) return [{ ...x[0], kind: 'int', data: Float64Array.from(x[0].data, Math.trunc) }]
      if (to === T.BOOL) return [{ ...x[0], kind: 'bool', data: Float64Array.from(x[0].data, (v) => (v ? 1 : 0)) }]
      return fail(node, `cast to ${to}`)
    }
    case 'Shape': return [{ kind: 'int', shape: [x[0].shape.length], data: Float64Array.from(x[0].shape) }]
    case 'Range': {
      const [start, limit, delta] = x.map((v) => v.data[0])
      const n = Math.max(0, Math.ceil((limit - start) / delta))
      return [{ kind: x[0].kind, shape: [n], data: Float64Array.from({ length: n }, (_, i) => start + i * delta) }]
    }
    case 'Reshape': {
      const target = ints(x[1])
      const shape = target.map((d, i) => (d === 0 ? x[0].shape[i] : d))
      const known = shape.filter((d) => d !== -1).reduce((p, q) => p * q, 1)
      const resolved = shape.map((d) => (d === -1 ? numel(x[0].shape) / known : d))
      if (numel(resolved) !== numel(x[0].shape)) fail(node, `cannot reshape [${x[0].shape}] to [${target}]`)
      return [{ ...x[0], shape: resolved }]
    }
    case 'Unsqueeze': {
      const axes = ints(x[1]).map((v) => axisOf(v, x[0].shape.length + x[1].data.length)).sort((p, q) => p - q)
      const shape = [...x[0].shape]
      for (const ax of axes) shape.splice(ax, 0, 1)
      return [{ ...x[0], shape }]
    }
    case 'Expand': {
      const shape = broadcastShape(node, x[0].shape, ints(x[1]))
      const map = broadcastIndex(x[0].shape, shape)
      return [{ kind: x[0].kind, shape, data: Float64Array.from(map, (i) => x[0].data[i]) }]
    }
    case 'Transpose': {
      const rank = x[0].shape.length
      const perm = a.has('perm') ? a.get('perm')!.ints!.map(Number) : x[0].shape.map((_, i) => rank - 1 - i)
      const shape = perm.map((p) => x[0].shape[p])
      const inStrides = stridesOf(x[0].shape)
      const out = new Float64Array(x[0].data.length)
      const coord = new Array<number>(rank).fill(0)
      for (let i = 0; i < out.length; i++) {
        let src = 0
        for (let d = 0; d < rank; d++) src += coord[d] * inStrides[perm[d]]
        out[i] = x[0].data[src]
        for (let d = rank - 1; d >= 0; d--) {
          if (++coord[d] < shape[d]) break
          coord[d] = 0
        }
      }
      return [{ kind: x[0].kind, shape, data: out }]
    }
    case 'Gather': {
      const [data, idx] = x
      const axis = axisOf(intAttr(a, 'axis', 0), data.shape.length)
      const outer = numel(data.shape.slice(0, axis)), inner = numel(data.shape.slice(axis + 1)), dim = data.shape[axis]
      const shape = [...data.shape.slice(0, axis), ...idx.shape, ...data.shape.slice(axis + 1)]
      const out = new Float64Array(numel(shape))
      let o = 0
      for (let p = 0; p < outer; p++) {
        for (const raw of idx.data) {
          const j = raw < 0 ? raw + dim : raw
          if (!(j >= 0 && j < dim)) fail(node, `index ${raw} out of range [${-dim}, ${dim})`)
          out.set(data.data.subarray((p * dim + j) * inner, (p * dim + j + 1) * inner), o)
          o += inner
        }
      }
      return [{ kind: data.kind, shape, data: out }]
    }
    case 'GatherElements': {
      const [data, idx] = x
      const rank = data.shape.length
      const axis = axisOf(intAttr(a, 'axis', 0), rank)
      const ds = stridesOf(data.shape), is = stridesOf(idx.shape)
      const out = new Float64Array(idx.data.length)
      for (let i = 0; i < out.length; i++) {
        let src = 0, r = i
        for (let d = 0; d < rank; d++) {
          const c = Math.floor(r / is[d])
          r -= c * is[d]
          let v = d === axis ? idx.data[i] : c
          if (d === axis && v < 0) v += data.shape[d]
          if (d === axis && !(v >= 0 && v < data.shape[d])) fail(node, `index ${idx.data[i]} out of range`)
          src += v * ds[d]
        }
        out[i] = data.data[src]
      }
      return [{ kind: data.kind, shape: [...idx.shape], data: out }]
    }
    case 'CumSum': {
      const axis = axisOf(x[1].data[0], x[0].shape.length)
      if (intAttr(a, 'exclusive', 0) || intAttr(a, 'reverse', 0)) fail(node, 'exclusive / reverse are not used by the exporter')
      const st = stridesOf(x[0].shape)
      const out = Float64Array.from(x[0].data)
      for (let i = 0; i < out.length; i++) {
        const c = Math.floor(i / st[axis]) % x[0].shape[axis]
        if (c > 0) out[i] += out[i - st[axis]]
      }
      return [{ ...x[0], data: out }]
    }
    case 'Softmax': {
      const rank = x[0].shape.length
      if (axisOf(intAttr(a, 'axis', -1), rank) !== rank - 1) fail(node, 'only the last axis is used by the exporter')
      const w = x[0].shape[rank - 1]
      const out = new Float64Array(x[0].data.length)
      for (let r = 0; r < out.length; r += w) {
        let max = -Infinity
        for (let i = 0; i < w; i++) max = Math.max(max, x[0].data[r + i])
        let s = 0
        for (let i = 0; i < w; i++) s += (out[r + i] = Math.exp(x[0].data[r + i] - max))
        for (let i = 0; i < w; i++) out[r + i] /= s
      }
      return [{ kind: 'float', shape: x[0].shape, data: out }]
    }
    case 'LayerNormalization': {
      const rank = x[0].shape.length
      if (axisOf(intAttr(a, 'axis', -1), rank) !== rank - 1) fail(node, 'only the last axis is used by the exporter')
      const eps = a.get('epsilon')!.f!
      const w = x[0].shape[rank - 1]
      const out = new Float64Array(x[0].data.length)
      for (let r = 0; r < out.length; r += w) {
        let mean = 0
        for (let i = 0; i < w; i++) mean += x[0].data[r + i]
        mean /= w
        let v = 0
        for (let i = 0; i < w; i++) v += (x[0].data[r + i] - mean) ** 2
        const inv = 1 / Math.sqrt(v / w + eps)
        for (let i = 0; i < w; i++) out[r + i] = (x[0].data[r + i] - mean) * inv * x[1].data[i] + x[2].data[i]
      }
      return [{ kind: 'float', shape: x[0].shape, data: out }]
    }
    case 'ReduceMean':
    case 'ReduceSum':
    case 'ReduceMax': {
      const axesAsInput = op === 'ReduceSum' ? opset >= 13 : opset >= 18
      const axes = axesAsInput ? (x[1] ? ints(x[1]) : null) : (a.get('axes')?.ints?.map(Number) ?? null)
      const keep = intAttr(a, 'keepdims', 1) === 1
      if (op === 'ReduceMax') return [reduce(node, x[0], axes, keep, -Infinity, Math.max, (v) => v)]
      if (op === 'ReduceSum') return [reduce(node, x[0], axes, keep, 0, (p, q) => p + q, (v) => v)]
      return [reduce(node, x[0], axes, keep, 0, (p, q) => p + q, (v, n) => v / n)]
    }
    case 'MatMul': return [matmul(node, x[0], x[1])]
    case 'DequantizeLinear': {
      const [q, scale, zero] = x
      const axis = axisOf(intAttr(a, 'axis', 1), q.shape.length)
      const st = stridesOf(q.shape)
      const out = new Float64Array(q.data.length)
      for (let i = 0; i < out.length; i++) {
        const c = scale.data.length === 1 ? 0 : Math.floor(i / st[axis]) % q.shape[axis]
        out[i] = Math.fround((q.data[i] - (zero ? zero.data[c] : 0)) * scale.data[c])
      }
      return [{ kind: 'float', shape: q.shape, data: out }]
    }
    default: return fail(node, 'operator not implemented by the test interpreter')
  }
}

/**
 * Runs the model's graph on named inputs (int64 given as numbers). Checks on
 * the way that every node reads only values defined before it (the ONNX
 * topological-order rule) and that the graph inputs given match the declared
 * element type and rank.
 */
export function evaluateModel(model: onnx.IModelProto, feeds: Record<string, { shape: number[]; data: ArrayLike<number> }>): Map<string, Value> {
  const graph = model.graph!
  const opset = Number(model.opsetImport![0].version)
  const values = new Map<string, Value>()
  for (const t of graph.initializer ?? []) values.set(t.name!, tensorValue(t))
  for (const input of graph.input ?? []) {
    const feed = feeds[input.name!]
    if (!feed) throw new Error(`onnx_eval: no value for graph input ${input.name}`)
    const dims = input.type!.tensorType!.shape!.dim!
    if (dims.length !== feed.shape.length) throw new Error(`onnx_eval: ${input.name} has rank ${feed.shape.length}, the graph declares ${dims.length}`)
    values.set(input.name!, { kind: 'int', shape: feed.shape, data: Float64Array.from(feed.data) })
  }
  for (const node of graph.node ?? []) {
    const ins = (node.input ?? []).map((n) => {
      if (n === '') return undefined as unknown as Value
      const v = values.get(n)
      if (!v) throw new Error(`onnx_eval: ${node.opType} ${node.name} reads "${n}" before anything defines it`)
      return v
    })
    const outs = run(node, ins, opset)
    node.output!.forEach((name, i) => values.set(name, outs[i]))
  }
  return values
}
