// A small ONNX graph builder over onnx-proto (the protobuf classes generated
// from onnx.proto): nodes, initializers and typed graph inputs/outputs, then
// one ModelProto encoded by protobufjs. Names follow the model's modules
// ("/bert/encoder/layer.0/attention/MatMul") and initializers keep
// transformers' parameter names, so a graph viewer reads like the model.
import { onnx } from 'onnx-proto'

export type ElemType = 'float32' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool'

export const ONNX_DATA_TYPE: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  int8: onnx.TensorProto.DataType.INT8,
  uint8: onnx.TensorProto.DataType.UINT8,
  bool: onnx.TensorProto.DataType.BOOL,
}

/** An attribute value with its ONNX type spelled out (a JS number alone cannot say int or float). */
export type Attr =
  | { int: number }
  | { float: number }
  | { ints: number[] }
  | { floats: number[] }
  | { string: string }

export const int = (v: number): Attr => ({ int: v })
export const float = (v: number): Attr => ({ float: v })
export const ints = (v: number[]): Attr => ({ ints: v })

/** The ONNX IR version that first carries an opset (onnx's versioning table). */
export function irVersionFor(opset: number): number {
  if (opset <= 14) return 7
  if (opset <= 18) return 8
  if (opset <= 20) return 9
  return 10
}

export type HostArray = Float32Array | BigInt64Array | Int32Array | Int8Array | Uint8Array

function elemTypeOf(values: HostArray, bool = false): ElemType {
  if (values instanceof Float32Array) return 'float32'
  if (values instanceof BigInt64Array) return 'int64'
  if (values instanceof Int32Array) return 'int32'
  if (values instanceof Int8Array) return 'int8'
  return bool ? 'bool' : 'uint8'
}

function attributeProto(name: string, value: Attr): onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType
  if ('int' in value) return { name, type: T.INT, i: value.int }
  if ('float' in value) return { name, type: T.FLOAT, f: value.float }
  if ('ints' in value) return { name, type: T.INTS, ints: value.ints }
  if ('floats' in value) return { name, type: T.FLOATS, floats: value.floats }
  return { name, type: T.STRING, s: new TextEncoder().encode(value.string) }
}

export interface ValueInfo {
  name: string
  type: ElemType
  /** A number for a fixed size, a string for a named dynamic axis. */
  dims: Array<number | string>
}

export class GraphBuilder {
  private readonly nodes: onnx.INodeProto[] = []
  private readonly initializers: onnx.ITensorProto[] = []
  private readonly inputs: ValueInfo[] = []
  private readonly outputs: ValueInfo[] = []
  private readonly used = new Set<string>()
  private readonly constants = new Map<string, string>()
  private readonly scopes: string[] = []
  /** Bytes of initializer data so far (the protobuf limit is 2 GiB). */
  initializerBytes = 0

  constructor(readonly opset: number) {}

  private unique(base: string): string {
    let name = base
    for (let i = 1; this.used.has(name); i++) name = `${base}_${i}`
    this.used.add(name)
    return name
  }

  /** Runs fn with node names prefixed by `name` (a module path). */
  scope<T>(name: string, fn: () => T): T {
    this.scopes.push(name)
    try {
      return fn()
    } finally {
      this.scopes.pop()
    }
  }

  input(name: string, type: ElemType, dims: Array<number | string>): string {
    this.used.add(name)
    this.inputs.push({ name, type, dims })
    return name
  }

  /** Marks an existing value as a graph output (an Identity renames it). */
  output(value: string, name: string, type: ElemType, dims: Array<number | string>): void {
    this.used.add(name)
    this.nodes.push({ opType: 'Identity', input: [value], output: [name], name: this.unique(`/${name}/Identity`) })
    this.outputs.push({ name, type, dims })
  }

  /** A named initializer (weights keep their transformers names). */
  initializer(name: string, values: HostArray, dims: number[], options: { bool?: boolean } = {}): string {
    const n = dims.reduce((a, b) => a * b, 1)
    if (values.length !== n) throw new Error(`ONNX export: initializer ${name} has ${values.length} values for dims [${dims.join(', ')}]`)
    const unique = this.unique(name)
    const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength)
    this.initializerBytes += bytes.byteLength
    this.initializers.push({
      name: unique,
      dims,
      dataType: ONNX_DATA_TYPE[elemTypeOf(values, options.bool)],
      // raw_data is little-endian, as typed arrays are on every platform Node runs on.
      rawData: bytes,
    })
    return unique
  }

  /** An int64 constant (shapes, axes, indices), shared between uses. `dims` [] makes a scalar. */
  int64(values: number[], dims: number[] = [values.length]): string {
    const key = `i64:${dims.join('x')}:${values.join(',')}`
    let name = this.constants.get(key)
    if (!name) {
      name = this.initializer(`const_i64_${values.length === 1 ? String(values[0]).replace('-', 'm') : this.constants.size}`, BigInt64Array.from(values.map(BigInt)), dims)
      this.constants.set(key, name)
    }
    return name
  }

  /** A float32 constant (scalar by default), shared between uses. */
  float32(value: number, dims: number[] = []): string {
    const key = `f32:${dims.join('x')}:${Object.is(value, -0) ? '-0' : value}`
    let name = this.constants.get(key)
    if (!name) {
      const n = dims.reduce((a, b) => a * b, 1)
      name = this.initializer(`const_f32_${this.constants.size}`, new Float32Array(n).fill(value), dims)
      this.constants.set(key, name)
    }
    return name
  }

  /** Adds a node; returns its output name(s). */
  op(opType: string, inputs: string[], attrs: Record<string, Attr> = {}): string {
    return this.opN(opType, inputs, 1, attrs)[0]
  }

  opN(opType: string, inputs: string[], outputs: number, attrs: Record<string, Attr> = {}): string[] {
    const path = this.scopes.length ? `/${this.scopes.join('/')}` : ''
    const name = this.unique(`${path}/${opType}`)
    const outs = Array.from({ length: outputs }, (_, i) => this.unique(`${name}_output_${i}`))
    this.nodes.push({
      opType,
      name,
      input: inputs,
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => attributeProto(k, v)),
    })
    return outs
  }

  /** The model, ready to encode. */
  build(meta: { graphName: string; producerVersion: string; docString?: string; metadata?: Record<string, string> }): onnx.ModelProto {
    const valueInfo = (v: ValueInfo): onnx.IValueInfoProto => ({
      name: v.name,
      type: {
        tensorType: {
          elemType: ONNX_DATA_TYPE[v.type],
          shape: { dim: v.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
        },
      },
    })
    return onnx.ModelProto.create({
      irVersion: irVersionFor(this.opset),
      opsetImport: [{ domain: '', version: this.opset }],
      producerName: 'bertkit',
      producerVersion: meta.producerVersion,
      docString: meta.docString ?? '',
      graph: {
        name: meta.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs.map(valueInfo),
        output: this.outputs.map(valueInfo),
      },
      metadataProps: Object.entries(meta.metadata ?? {}).map(([key, value]) => ({ key, value })),
    })
  }
}

/** Serialises a model; protobuf messages cannot exceed 2 GiB, so larger weights are refused by name. */
export function encodeModel(model: onnx.ModelProto, initializerBytes: number): Uint8Array {
  const limit = 2 ** 31 - 1
  if (initializerBytes > limit - 64 * 1024 * 1024) {
    throw new Error(`ONNX export: the weights take ${(initializerBytes / 2 ** 30).toFixed(2)} GiB, past the 2 GiB a single .onnx protobuf can hold (external data files are not supported by this exporter)`)
  }
  return onnx.ModelProto.encode(model).finish()
}

/** Decodes an .onnx file (tests and tools). */
export function decodeModel(bytes: Uint8Array): onnx.ModelProto {
  return onnx.ModelProto.decode(bytes)
}
