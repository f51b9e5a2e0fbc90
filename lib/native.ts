// The raw native addon: typed signatures of what native/src/napi exports.
// Everything above this file talks to tensors, not to these functions.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { cudaLibraryDirs } from './cuda_libraries.js'

/** Owns one block of device or host memory. Freed explicitly with free(). */
export interface NativeBuffer {
  readonly freed: boolean
  readonly numel: number
  readonly dtype: number
  readonly device: number
  free(): void
  read(): Float32Array | Int32Array | Uint16Array
  write(values: Float32Array | Int32Array | Uint16Array, offset?: number): void
}

type Buf = NativeBuffer
type OptBuf = NativeBuffer | null

export interface NativeAddon {
  NativeBuffer: new (device: number, dtype: number, numel: number) => NativeBuffer
  gemm(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number, a: Buf, b: Buf,
    beta: number, c: Buf, batch: number, strideA: number, strideB: number, strideC: number): void
  /**
   * a, b: float16 or bfloat16 (same dtype); c: float32; fp32 accumulation. On the CPU a or b may be
   * float32, rounded to the half dtype as it is read; halfDtype (a dtype code) names it, needed when both are.
   * bias (float32, n values; optional): added to every row of every C after the product, the bits of a
   * following addBiasRows without its second pass over C. streamC: C is not read again soon (a weight
   * gradient, read at the optimizer step), so the CPU writes it with non-temporal stores; the same bits.
   */
  gemmMixed(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number, a: Buf, b: Buf,
    beta: number, c: Buf, batch: number, strideA: number, strideB: number, strideC: number, halfDtype?: number | null,
    bias?: Buf | null, streamC?: boolean): void
  /** torch.backends.cuda.matmul.allow_tf32 for the device's fp32 products (off by default; a no-op on the CPU). */
  setAllowTf32(device: number, flag: boolean): void
  fill(x: Buf, n: number, value: number): void
  axpby(n: number, alpha: number, x: Buf, beta: number, y: Buf): void
  mul(n: number, a: Buf, b: Buf, out: Buf): void
  addBiasRows(rows: number, cols: number, bias: Buf, y: Buf): void
  /** out[c] += sum over rows of x[r, c]; write: out holds nothing yet and is written (no zero fill first). */
  sumRows(rows: number, cols: number, x: Buf, out: Buf, write?: boolean): void
  sum(n: number, x: Buf, out: Buf): void
  sumSquares(n: number, x: Buf, out: Buf): void
  cast(n: number, src: Buf, dst: Buf): void
  /** dst = x [rows, cols] cast to dst's dtype (float16 / bfloat16), and sums (+)= x's column sums, from one read of x. */
  castSumRows(rows: number, cols: number, x: Buf, dst: Buf, sums: Buf, write?: boolean): void
  sliceRowsForward(batch: number, srcRows: number, cols: number, start: number, count: number, src: Buf, dst: Buf): void
  sliceRowsBackward(batch: number, srcRows: number, cols: number, start: number, count: number, ddst: Buf, dsrc: Buf): void
  /** y = f(x); half (float16 / bfloat16), when given, also gets y cast to its dtype. */
  activationForward(kind: number, n: number, x: Buf, y: Buf, half?: OptBuf): void
  /**
   * dh = dy * f'(h) (as activationBackward writes it) cast into dst (float16 / bfloat16), with its column sums
   * added to sums (written when write; none when sums is null); scratch: float32 [rows, cols] a backend may keep dh in.
   */
  activationBackwardCastSumRows(kind: number, rows: number, cols: number, h: Buf, dy: Buf, scratch: Buf, dst: Buf,
    sums: OptBuf, write?: boolean): void
  /** dx += dy * f'(x); write: dx holds nothing yet and is written. */
  activationBackward(kind: number, n: number, x: Buf, dy: Buf, dx: Buf, write?: boolean): void
  dropoutForward(n: number, p: number, seed: number | bigint, offset: number | bigint, x: Buf, y: Buf): void
  dropoutBackward(n: number, p: number, seed: number | bigint, offset: number | bigint, dy: Buf, dx: Buf): void
  layernormForward(rows: number, cols: number, eps: number, x: Buf, residual: OptBuf, gamma: Buf, beta: Buf,
    y: Buf, sumOut: OptBuf, mean: Buf, rstd: Buf, half?: OptBuf): void
  layernormBackward(rows: number, cols: number, x: Buf, gamma: Buf, mean: Buf, rstd: Buf, dy: Buf,
    dx: OptBuf, dgamma: OptBuf, dbeta: OptBuf, writeDgamma?: boolean, writeDbeta?: boolean, writeDx?: boolean, dxCopy?: OptBuf): void
  embeddingForward(n: number, dim: number, vocab: number, ids: Buf, table: Buf, out: Buf): void
  embeddingBackward(n: number, dim: number, vocab: number, ids: Buf, dout: Buf, dtable: Buf, paddingIdx: number): void
  /** embeddingBackward into a row-sparse dtable: unmarked rows are written and marked (marksFresh: clear the marks first). CPU only. */
  embeddingBackwardRows(n: number, dim: number, vocab: number, ids: Buf, dout: Buf, dtable: Buf, paddingIdx: number, rowMarks: Buf, marksFresh: boolean): void
  /** Zeroes the rows of x [rows, width] whose mark is 0 (a row-sparse gradient made dense). CPU only. */
  zeroUnmarkedRows(rows: number, width: number, rowMarks: Buf, x: Buf): void
  attentionForward(batch: number, seq: number, heads: number, headDim: number, scale: number, dropoutP: number,
    seed: number | bigint, offset: number | bigint, q: Buf, k: Buf, v: Buf, mask: Buf, probs: Buf, out: Buf): void
  attentionBackward(batch: number, seq: number, heads: number, headDim: number, scale: number, dropoutP: number,
    seed: number | bigint, offset: number | bigint, q: Buf, k: Buf, v: Buf, probs: Buf, dout: Buf,
    dq: OptBuf, dk: OptBuf, dv: OptBuf): void
  /** attentionForward without the [batch, heads, seq, seq] probs: saves lse [batch, heads, seq] (float32) only. */
  flashAttentionForward(batch: number, seq: number, heads: number, headDim: number, scale: number, dropoutP: number,
    seed: number | bigint, offset: number | bigint, q: Buf, k: Buf, v: Buf, mask: Buf, lse: Buf, out: Buf): void
  /** Recomputes the probabilities from lse; out is the forward's output. Accumulates into dq / dk / dv (null: skip). */
  flashAttentionBackward(batch: number, seq: number, heads: number, headDim: number, scale: number, dropoutP: number,
    seed: number | bigint, offset: number | bigint, q: Buf, k: Buf, v: Buf, mask: Buf, lse: Buf, out: Buf, dout: Buf,
    dq: OptBuf, dk: OptBuf, dv: OptBuf): void
  /** dst[o, c, r, i] = src[o, r, c, i] for src [outer, rows, cols, inner]. */
  swapAxesForward(outer: number, rows: number, cols: number, inner: number, src: Buf, dst: Buf): void
  /** dsrc[o, r, c, i] += ddst[o, c, r, i]. */
  swapAxesBackward(outer: number, rows: number, cols: number, inner: number, ddst: Buf, dsrc: Buf): void
  /** out[n, s, t] = x[n, s, index[s, t]]; x [batch, rows, width], index int32 [rows, picks]. */
  gatherColumnsForward(batch: number, rows: number, width: number, picks: number, x: Buf, index: Buf, out: Buf): void
  /** dx[n, s, index[s, t]] += dout[n, s, t]. */
  gatherColumnsBackward(batch: number, rows: number, width: number, picks: number, index: Buf, dout: Buf, dx: Buf): void
  /** probs = softmax(scale * x) over [groups, batch, seq, seq], (i, j) of batch b kept when mask[b, i] and mask[b, j] are non-zero. */
  maskedSoftmaxForward(groups: number, batch: number, seq: number, scale: number, x: Buf, mask: Buf, probs: Buf): void
  /** dx += kept ? scale * p * (dp - rowsum(p * dp)) : 0. */
  maskedSoftmaxBackward(groups: number, batch: number, seq: number, scale: number, probs: Buf, dprobs: Buf, mask: Buf, dx: Buf): void
  /**
   * out[b, d] = max of h[b, s, d] over the s with mask[b, s] != 0 (h [batch, seq, dim] float32, mask int32
   * [batch, seq]); argmax (int32 [batch, dim]) = that s. First index on ties, the first NaN wins; a row
   * with no token gets out = 0, argmax = -1.
   */
  maskedMaxPoolForward(batch: number, seq: number, dim: number, h: Buf, mask: Buf, out: Buf, argmax: Buf): void
  /** dh[b, argmax[b, d], d] += dout[b, d]; argmax outside [0, seq) (an empty row's -1) sends nothing; dh null: skip. */
  maskedMaxPoolBackward(batch: number, seq: number, dim: number, argmax: Buf, dout: Buf, dh: OptBuf): void
  /**
   * dropoutForward over rows of a padded tensor: x, y [rows, cols], row r being padded row rowIndex[r]
   * (int32, written from the host), element (r, c) drawing the padded flat index rowIndex[r] * cols + c.
   */
  dropoutRowsForward(rows: number, cols: number, p: number, seed: number | bigint, offset: number | bigint, rowIndex: Buf, x: Buf, y: Buf): void
  dropoutRowsBackward(rows: number, cols: number, p: number, seed: number | bigint, offset: number | bigint, rowIndex: Buf, dy: Buf, dx: Buf, write?: boolean): void
  /** dst[i] = src[index[i]] (or += when accumulate) over rows of cols floats; src [srcRows, cols], index int32 [n] from the host. */
  gatherRowsForward(n: number, cols: number, srcRows: number, index: Buf, src: Buf, dst: Buf, accumulate: boolean): void
  /** dsrc[index[i]] += ddst[i]; repeated indices all land. */
  gatherRowsBackward(n: number, cols: number, srcRows: number, index: Buf, ddst: Buf, dsrc: Buf): void
  /**
   * Attention over packed sequences: q, k, v, out [tokens, heads * headDim], sequence b = rows
   * [cuSeqlens[b], cuSeqlens[b + 1]) (int32 [batch + 1], from the host), each of length <= seq; probs holds
   * heads * sum of L_b^2 floats. Dropout draws the padded [batch, heads, seq, seq] layout's indices.
   */
  varlenAttentionForward(batch: number, seq: number, heads: number, headDim: number, scale: number, dropoutP: number,
    seed: number | bigint, offset: number | bigint, cuSeqlens: Buf, q: Buf, k: Buf, v: Buf, probs: Buf, out: Buf): void
  varlenAttentionBackward(batch: number, seq: number, heads: number, headDim: number, scale: number, dropoutP: number,
    seed: number | bigint, offset: number | bigint, cuSeqlens: Buf, q: Buf, k: Buf, v: Buf, probs: Buf, dout: Buf,
    dq: OptBuf, dk: OptBuf, dv: OptBuf, writeQ?: boolean, writeK?: boolean, writeV?: boolean): void
  crossEntropyForward(rows: number, classes: number, logits: Buf, labels: Buf, ignoreIndex: number,
    classWeights: OptBuf, loss: Buf): void
  crossEntropyBackward(rows: number, classes: number, logits: Buf, labels: Buf, ignoreIndex: number,
    classWeights: OptBuf, dloss: Buf, dlogits: Buf): void
  adamwStep(n: number, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number,
    gradScale: OptBuf, grad: Buf, param: Buf, expAvg: Buf, expAvgSq: Buf): void
  clipCoefficient(sumSq: Buf, maxNorm: number, clipCoef: Buf): void
  /**
   * adamwStep over `count` tensors of one param group in one op (bit-identical per element); steps[i] is
   * tensor i's 1-based step. A non-zero foundInf[0] (device flag) skips the whole step, leaving everything untouched.
   */
  multiTensorAdamw(count: number, sizes: number[], params: Buf[], grads: Buf[], expAvgs: Buf[], expAvgSqs: Buf[],
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, steps: number[],
    gradScale: OptBuf, foundInf: OptBuf, halves?: Array<Buf | null> | null): void
  /** out[0] += sum over the tensors of sum x^2, in double, rounded once (one op for a global norm). */
  multiTensorSumSquares(count: number, sizes: number[], tensors: Buf[], out: Buf): void
  /** multiTensorSumSquares where rowMarks[i] (null: dense) marks the rows of width widths[i] that a row-sparse tensor i holds. CPU only. */
  multiTensorSumSquaresRows(count: number, sizes: number[], tensors: Buf[], rowMarks: Array<Buf | null>, widths: number[], out: Buf): void
  /**
   * AdamW with deferred rows (adamw.cpp): log holds 6 numbers per step (lr, beta1, beta2, eps, weightDecay, step).
   * grad null: catch the rows in ids (null: all) up to the log's last step; grad set: step the marked rows. CPU only.
   */
  adamwRows(rows: number, width: number, ids: OptBuf, nIds: number, rowMarks: OptBuf, rowSteps: Buf, log: number[],
    scaleLog: Buf, gradScale: OptBuf, grad: OptBuf, param: Buf, expAvg: Buf, expAvgSq: Buf): void
  /** foundInf[0] = 1 when x[0] is inf or NaN, else 0 (GradScaler's found_inf from a sum of squares). */
  nonfiniteFlag(x: Buf, foundInf: Buf): void
  probeDevice(device: number): { ok: boolean; description?: string; reason?: string }
  synchronize(device: number): void
  /** Resolves when the device's queued work is done, waiting off the event loop; rejects with a queued op's error. */
  synchronizeAsync(device: number): Promise<void>
  /** CPU ops queued on the stream thread (true, default; BERTKIT_CPU_ASYNC=0 at load makes it false) or run at once. */
  setCpuAsync(on: boolean): void
  getCpuAsync(): boolean
  getNumThreads(): number
  setNumThreads(n: number): void
  /** Live tensor bytes per device, their peaks, and idle bytes the CPU block cache holds for reuse. */
  memoryStats(): { liveBuffers: number; cpuBytes: number; cudaBytes: number; peakCpuBytes: number; peakCudaBytes: number; cpuCachedBytes: number }
  /** Gives the CPU block cache's idle memory back to the system. */
  emptyCache(): void
  resetPeakMemory(): void
  readonly cudaCompiled: boolean
  /** Codes of dtypes, devices and activation kinds by name, from the addon's enums (read through DTYPE_CODE etc.). */
  readonly codes: NativeCodes
  /** The CPU GEMM chosen when the addon loaded (getCpuGemm() for the current one). */
  readonly cpuGemm: string
  /** Switches the CPU GEMM: auto | openblas | builtin | builtin-avx512 | builtin-avx2 | builtin-scalar. */
  setCpuGemm(path: string): string
  getCpuGemm(): string
  /** Switches the CPU's bfloat16 products (gemmMixed): auto | amx | avx512-bf16 | widen (capped by the CPU); returns the name in use. */
  setCpuGemmBf16(path: string): string
  getCpuGemmBf16(): string
  /** What `bertkit doctor` shows: the CPU kernels chosen and, in the CUDA variant, driver, GPUs and where cuBLAS was found. */
  inspectRuntime(): RuntimeReport
  /** Directories searched for cuBLAS before the dynamic linker's paths (a no-op in the CPU-only addon). */
  setCudaLibraryDirs(dirs: string[]): void
}

export interface RuntimeReport {
  cpu: { gemm: string; gemmBf16: string; vecmath: string }
  cuda:
    | { compiled: false }
    | {
        compiled: true
        driverVersion: number
        runtimeVersion: number
        buildToolkit: string
        buildArchs: string
        cudart: string
        deviceError?: string
        gpus: { index: number; name: string; computeCapability: string; multiprocessors: number; totalBytes: number }[]
        cublasPath: string | null
        cublasTried: string[]
        libraryDirs: string[]
      }
}

/** The numbers the addon takes for each kind of code, by name: exported by the addon from its own enums. */
export interface NativeCodes {
  readonly dtype: Readonly<Record<string, number>>
  readonly device: Readonly<Record<string, number>>
  readonly activation: Readonly<Record<string, number>>
}

/** dtype codes (codes.dtype of the addon; names as dtype.h's dtype_name) */
export const DTYPE_CODE = addonCodes('dtype', { float32: 'float32', float16: 'float16', bfloat16: 'bfloat16', int32: 'int32' })
/** device codes (codes.device of the addon) */
export const DEVICE_CODE = addonCodes('device', { cpu: 'cpu', cuda: 'cuda' })
/** transformers' hidden_act names, each with the native activation kind (Backend::Activation) it selects */
/**
 * transformers' activation names (ACT2FN keys) → Backend::Activation kinds.
 * Names with the same function share a kernel: the tanh-approximated GELUs
 * (gelu_new, gelu_pytorch_tanh, gelu_accurate, gelu_fast: the same formula,
 * gelu_fast's 10-digit constant equals sqrt(2/pi) in float32), silu / swish.
 */
export const ACTIVATION_KIND = {
  gelu: 'GeluErf', gelu_python: 'GeluErf',
  gelu_new: 'GeluTanh', gelu_pytorch_tanh: 'GeluTanh', gelu_python_tanh: 'GeluTanh', gelu_accurate: 'GeluTanh', gelu_fast: 'GeluTanh',
  tanh: 'Tanh', relu: 'Relu', silu: 'Silu', swish: 'Silu', quick_gelu: 'QuickGelu', mish: 'Mish', sigmoid: 'Sigmoid',
  relu6: 'Relu6', leaky_relu: 'LeakyRelu', linear: 'Identity', relu2: 'Relu2', gelu_10: 'GeluClip10', laplace: 'Laplace',
  hardswish: 'Hardswish', sqrtsoftplus: 'SqrtSoftplus',
} as const
/** activation codes by transformers' hidden_act name (codes.activation of the addon) */
export const ACTIVATION_CODE = addonCodes('activation', ACTIVATION_KIND)

/**
 * A table whose values are read from the addon's codes when first used (the
 * addon loads lazily), so no number is copied by hand: `names` maps each key
 * to its name in the addon. A name the loaded addon lacks (an addon older
 * than this code) throws, naming it. After its first read a key is a plain
 * read-only value.
 */
function addonCodes<K extends string>(group: keyof NativeCodes, names: Readonly<Record<K, string>>): Readonly<Record<K, number>> {
  const table = {} as Record<K, number>
  for (const [key, name] of Object.entries(names) as Array<[K, string]>) {
    Object.defineProperty(table, key, {
      enumerable: true,
      configurable: true,
      get: () => {
        const codes = native().codes?.[group] ?? {}
        const code = codes[name]
        if (code === undefined) {
          throw new Error(`the bertkit addon has no ${group} code "${name}" (it has: ${Object.keys(codes).join(', ') || 'none'}); ` +
            'rebuild it with `npm run build:native`')
        }
        Object.defineProperty(table, key, { value: code, enumerable: true, writable: false, configurable: false })
        return code
      },
    })
  }
  return Object.preventExtensions(table)
}

const packageRoot = join(__dirname, '..', '..')
const platformTag = `${process.platform}-${process.arch}`

/** What loaded: which variant, from where, and (for `auto`) why CUDA was not used. */
export interface LoadedAddon {
  addon: NativeAddon
  variant: 'cpu' | 'cuda'
  /** prebuilt: shipped in prebuilds/; source: built here (build/Release); explicit: BERTKIT_ADDON_PATH. */
  origin: 'prebuilt' | 'source' | 'explicit'
  path: string
  note?: string
}

/** The command that builds the addon from source in an installed package. */
export const BUILD_FROM_SOURCE_HINT = 'npm rebuild bertkit --foreground-scripts (needs a C++17 compiler and CMake, or python3 and make; if npm reports install scripts it did not run, allow bertkit\'s first: npm install-scripts approve bertkit)'

function originOf(path: string): LoadedAddon['origin'] {
  return path.includes(`${join('prebuilds', platformTag)}`) ? 'prebuilt' : 'source'
}

function loadCpuVariant(): { addon: NativeAddon; path: string } {
  // node-gyp-build finds build/Release/bertkit.node (a source build) first, then prebuilds/<platform>-<arch>/.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const load = require('node-gyp-build') as { path(dir: string): string }
  let path: string
  try {
    path = load.path(packageRoot)
  } catch {
    throw new Error(
      `bertkit: no native addon for ${platformTag} (Node ${process.version}): no prebuilt binary in ` +
        `${join(packageRoot, 'prebuilds', platformTag)} and no source build in ${join(packageRoot, 'build', 'Release')}. ` +
        `Build it with: ${BUILD_FROM_SOURCE_HINT}`,
    )
  }
  return { addon: requireAddon(path), path }
}

function requireAddon(path: string): NativeAddon {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(path) as NativeAddon
  } catch (err) {
    const message = (err as Error).message
    const glibc = /GLIBC(XX)?_[\d.]+/.exec(message)
    const why = glibc ? `this system's C library is older than the binary needs (${glibc[0]})` : message.split('\n')[0]
    throw new Error(`bertkit: the native addon ${path} failed to load: ${why}. Build it from source with: ${BUILD_FROM_SOURCE_HINT}`)
  }
}

/**
 * Path of the CUDA variant when it was built (or shipped), else null. Any
 * source build (build/Release) wins over every prebuilt, so a developer's
 * fresh CPU build is never shadowed by an older prebuilt CUDA binary.
 */
export function cudaVariantPath(): string | null {
  const built = join(packageRoot, 'build', 'Release', 'cuda', 'bertkit_cuda.node')
  if (existsSync(built)) return built
  if (existsSync(join(packageRoot, 'build', 'Release', 'bertkit.node'))) return null
  const prebuilt = join(packageRoot, 'prebuilds', platformTag, 'cuda', 'bertkit_cuda.node')
  return existsSync(prebuilt) ? prebuilt : null
}

let loaded: LoadedAddon | null = null

function withCudaLibraries(result: LoadedAddon): LoadedAddon {
  // Tells the CUDA variant where cuBLAS may be before anything probes the GPU.
  if (result.addon.cudaCompiled && typeof result.addon.setCudaLibraryDirs === 'function') {
    result.addon.setCudaLibraryDirs(cudaLibraryDirs())
  }
  return result
}

/**
 * Loads the addon once. The CUDA variant (which contains the CPU backend too)
 * is preferred when it exists and BERTKIT_DEVICE is not "cpu"; it loads even
 * without a GPU or cuBLAS (cudart is static, cuBLAS is opened on first use), and
 * device selection then says why it uses the CPU. If it fails to load, the CPU
 * variant is used and `note` says why.
 */
export function loadNative(): LoadedAddon {
  if (loaded) return loaded
  // An explicit addon file (a developer's private build directory, a test of a variant).
  const explicit = process.env.BERTKIT_ADDON_PATH
  if (explicit) {
    const addon = requireAddon(explicit)
    loaded = withCudaLibraries({ addon, variant: addon.cudaCompiled ? 'cuda' : 'cpu', origin: 'explicit', path: explicit })
    return loaded
  }
  const wanted = (process.env.BERTKIT_DEVICE ?? 'auto').toLowerCase()
  const cudaPath = wanted === 'cpu' ? null : cudaVariantPath()
  if (cudaPath) {
    try {
      loaded = withCudaLibraries({ addon: requireAddon(cudaPath), variant: 'cuda', origin: originOf(cudaPath), path: cudaPath })
      return loaded
    } catch (err) {
      const cpu = loadCpuVariant()
      loaded = { ...cpu, variant: 'cpu', origin: originOf(cpu.path), note: `the CUDA build failed to load (${(err as Error).message.split('\n')[0]})` }
      return loaded
    }
  }
  const cpu = loadCpuVariant()
  loaded = { ...cpu, variant: 'cpu', origin: originOf(cpu.path) }
  return loaded
}

export function native(): NativeAddon {
  return loadNative().addon
}
