// int8 weights for onnx/model_quantized.onnx (what transformers.js loads for
// dtype "q8"): every MatMul weight becomes symmetric int8 with one scale per
// output column, dequantized by a DequantizeLinear in front of the MatMul;
// the word embedding table becomes int8 with one scale per row, and only the
// gathered rows are dequantized. Activations stay float32, so the file is
// about a quarter of the size and the logits move by the weights' rounding.
import { onnx } from 'onnx-proto'

const FLOAT = onnx.TensorProto.DataType.FLOAT
const INT8 = onnx.TensorProto.DataType.INT8

function floatsOf(t: onnx.ITensorProto): Float32Array {
  const raw = t.rawData!
  // Copy: the protobuf bytes need not be 4-byte aligned.
  return new Float32Array(new Uint8Array(raw).buffer, 0, raw.byteLength / 4)
}

function dims(t: onnx.ITensorProto): number[] {
  return (t.dims ?? []).map(Number)
}

const bytesOf = (a: Float32Array | Int8Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)

/**
 * Symmetric int8 of a [rows, cols] matrix with one scale per column
 * (perColumn) or per row: scale = max|w| / 127, q = round(w / scale).
 */
export function quantizeSymmetric(values: Float32Array, rows: number, cols: number, perColumn: boolean): { q: Int8Array; scales: Float32Array } {
  const groups = perColumn ? cols : rows
  const scales = new Float32Array(groups)
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const g = perColumn ? c : r
      const a = Math.abs(values[r * cols + c])
      if (a > scales[g]) scales[g] = a
    }
  }
  for (let g = 0; g < groups; g++) scales[g] = scales[g] > 0 ? Math.fround(scales[g] / 127) : 1
  const q = new Int8Array(values.length)
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const s = scales[perColumn ? c : r]
      q[r * cols + c] = Math.max(-127, Math.min(127, Math.round(values[r * cols + c] / s)))
    }
  }
  return { q, scales }
}

/** Rewrites the model in place: int8 initializers, DequantizeLinear (or Gather + Mul) where they are read. */
export function quantizeGraphWeights(model: onnx.ModelProto, opset: number): void {
  if (opset < 13) throw new Error('quantize: per-axis DequantizeLinear needs opset 13 or later')
  const graph = model.graph!
  const inits = new Map<string, onnx.ITensorProto>()
  for (const t of graph.initializer ?? []) inits.set(t.name!, t)
  const replaced = new Map<string, onnx.ITensorProto[]>()
  const nodes: onnx.INodeProto[] = []
  for (const node of graph.node ?? []) {
    const weightName = node.input?.[1]
    const weight = weightName ? inits.get(weightName) : undefined
    if (node.opType === 'MatMul' && weight && weight.dataType === FLOAT && dims(weight).length === 2 && weightName!.endsWith('.weight_transposed')) {
      const [rows, cols] = dims(weight)
      const name = weightName!
      if (!replaced.has(name)) {
        const { q, scales } = quantizeSymmetric(floatsOf(weight), rows, cols, true)
        replaced.set(name, [
          { name: `${name}_quantized`, dims: [rows, cols], dataType: INT8, rawData: bytesOf(q) },
          { name: `${name}_scale`, dims: [cols], dataType: FLOAT, rawData: bytesOf(scales) },
          { name: `${name}_zero_point`, dims: [cols], dataType: INT8, rawData: new Uint8Array(cols) },
        ])
      }
      const deq = `${name}_dequantized_${nodes.length}`
      nodes.push({
        opType: 'DequantizeLinear', name: `${node.name}/DequantizeLinear`,
        input: [`${name}_quantized`, `${name}_scale`, `${name}_zero_point`], output: [deq],
        attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }],
      })
      nodes.push({ ...node, input: [node.input![0], deq] })
      continue
    }
    const tableName = node.input?.[0]
    const table = tableName ? inits.get(tableName) : undefined
    if (node.opType === 'Gather' && table && tableName!.endsWith('word_embeddings.weight') && dims(table).length === 2) {
      const [rows, cols] = dims(table)
      const name = tableName!
      if (!replaced.has(name)) {
        const { q, scales } = quantizeSymmetric(floatsOf(table), rows, cols, false)
        replaced.set(name, [
          { name: `${name}_quantized`, dims: [rows, cols], dataType: INT8, rawData: bytesOf(q) },
          { name: `${name}_scale`, dims: [rows, 1], dataType: FLOAT, rawData: bytesOf(scales) },
        ])
      }
      const ids = node.input![1]
      const base = node.name!
      nodes.push({ opType: 'Gather', name: `${base}/rows`, input: [`${name}_quantized`, ids], output: [`${base}/rows_output`] })
      nodes.push({ opType: 'Cast', name: `${base}/Cast`, input: [`${base}/rows_output`], output: [`${base}/Cast_output`],
        attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: FLOAT }] })
      nodes.push({ opType: 'Gather', name: `${base}/scales`, input: [`${name}_scale`, ids], output: [`${base}/scales_output`] })
      nodes.push({ opType: 'Mul', name: `${base}/Mul`, input: [`${base}/Cast_output`, `${base}/scales_output`], output: node.output })
      continue
    }
    nodes.push(node)
  }
  graph.node = nodes
  const still = new Set(nodes.flatMap((n) => n.input ?? []))
  graph.initializer = (graph.initializer ?? []).flatMap((t) => {
    const swap = replaced.get(t.name!)
    if (swap) return still.has(t.name!) ? [t, ...swap] : swap
    return [t]
  })
}
