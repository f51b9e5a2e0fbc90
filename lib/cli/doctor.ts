// `bertkit doctor`: what this installation runs on — which addon loaded and
// from where, the CPU and the kernels it chose, and for CUDA the driver, the
// GPUs and where cuBLAS was found (or every place it was looked for).
import { existsSync, readFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { loadNative, cudaVariantPath, type LoadedAddon, type RuntimeReport } from '../native.js'
import { resolveDevice } from '../tensor/device.js'
import { cudaLibraryDirs } from '../cuda_libraries.js'
import { glooLibraryPaths, ncclStatus } from '../distributed/process_group.js'

export interface DoctorReport {
  bertkit: string
  node: string
  platform: string
  addon: { variant: LoadedAddon['variant']; origin: LoadedAddon['origin']; path: string; note?: string } | { error: string }
  cpu: { model: string; cores: number; flags: string[]; threads?: number; gemm?: string; gemmBf16?: string; vecmath?: string }
  cuda?: RuntimeReport['cuda'] & { usable: boolean; reason?: string; description?: string; variantPath: string | null }
  device?: string
  /** bertkit launch: where the Gloo shim is (CPU), what the NCCL lookup finds (CUDA). */
  dataParallel?: { gloo: string | null; nccl: string | null }
}

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string }
  return pkg.version
}

// The ISA features the CPU kernels choose between, as /proc/cpuinfo names them.
const INTERESTING_FLAGS = ['avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile', 'asimd', 'sve']

function cpuFlags(): string[] {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8')
    const line = /^(flags|Features)\s*:\s*(.*)$/m.exec(info)
    if (!line) return []
    const have = new Set(line[2].split(/\s+/))
    return INTERESTING_FLAGS.filter((f) => have.has(f))
  } catch {
    return []
  }
}

export function doctorReport(): DoctorReport {
  const report: DoctorReport = {
    bertkit: packageVersion(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    addon: { error: '' },
    cpu: { model: cpus()[0]?.model ?? 'unknown', cores: cpus().length, flags: cpuFlags() },
  }
  let loaded: LoadedAddon
  try {
    loaded = loadNative()
  } catch (err) {
    report.addon = { error: (err as Error).message }
    return report
  }
  report.addon = { variant: loaded.variant, origin: loaded.origin, path: loaded.path, ...(loaded.note ? { note: loaded.note } : {}) }
  if (typeof loaded.addon.inspectRuntime !== 'function') {
    report.addon = { error: `the addon at ${loaded.path} is older than this package (it lacks inspectRuntime); rebuild it: npm run build:native` }
    return report
  }
  // Asks Python for its site-packages even without a driver, to show where cuBLAS would come from.
  if (loaded.addon.cudaCompiled) loaded.addon.setCudaLibraryDirs(cudaLibraryDirs({ askPython: true }))
  const runtime = loaded.addon.inspectRuntime()
  report.cpu.threads = loaded.addon.getNumThreads()
  report.cpu.gemm = runtime.cpu.gemm
  report.cpu.gemmBf16 = runtime.cpu.gemmBf16
  report.cpu.vecmath = runtime.cpu.vecmath
  const probe = loaded.addon.probeDevice(1)
  report.cuda = { ...runtime.cuda, usable: probe.ok, variantPath: cudaVariantPath(), ...(probe.ok ? { description: probe.description } : { reason: loaded.note ?? probe.reason }) }
  report.dataParallel = { gloo: glooLibraryPaths().find((p) => existsSync(p)) ?? null, nccl: ncclStatus() }
  try {
    report.device = resolveDevice('auto')
  } catch (err) {
    report.device = `error: ${(err as Error).message}`
  }
  return report
}

function cudaVersion(v: number): string {
  return v ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : 'none'
}

export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = []
  lines.push(`bertkit ${r.bertkit} on Node ${r.node}, ${r.platform}`)
  if ('error' in r.addon) {
    lines.push(`addon:  NOT LOADED — ${r.addon.error}`)
  } else {
    lines.push(`addon:  ${r.addon.variant === 'cuda' ? 'CPU + CUDA' : 'CPU'} variant, ${r.addon.origin === 'prebuilt' ? 'prebuilt binary' : r.addon.origin === 'source' ? 'built from source' : 'BERTKIT_ADDON_PATH'}: ${r.addon.path}`)
    if (r.addon.note) lines.push(`        note: ${r.addon.note}`)
  }
  lines.push(`cpu:    ${r.cpu.model}, ${r.cpu.cores} logical cores; ISA: ${r.cpu.flags.join(' ') || 'baseline'}`)
  if (r.cpu.gemm) lines.push(`        kernels: GEMM ${r.cpu.gemm}, bf16 GEMM ${r.cpu.gemmBf16 ?? 'n/a'} (BERTKIT_GEMM_BF16), vector maths ${r.cpu.vecmath}; ${r.cpu.threads} threads (BERTKIT_NUM_THREADS)`)
  const c = r.cuda
  if (c) {
    if (!c.compiled) {
      lines.push(`cuda:   not in this addon (${c.variantPath ? `a CUDA variant exists at ${c.variantPath} but did not load` : 'no CUDA variant installed for this platform'})`)
    } else {
      lines.push(`cuda:   ${c.usable ? 'usable' : 'NOT usable'} — built with CUDA ${c.buildToolkit} for ${c.buildArchs}; cudart ${c.cudart}`)
      lines.push(`        driver: ${c.driverVersion ? `supports CUDA ${cudaVersion(c.driverVersion)}` : 'no NVIDIA driver found (libcuda.so.1)'}`)
      if (c.deviceError) lines.push(`        devices: ${c.deviceError}`)
      for (const g of c.gpus) {
        lines.push(`        gpu ${g.index}: ${g.name}, compute capability ${g.computeCapability}, ${(g.totalBytes / 2 ** 30).toFixed(1)} GiB, ${g.multiprocessors} SMs`)
      }
      if (c.gpus.length === 0 && !c.deviceError) lines.push('        devices: none')
      lines.push(`        cuBLAS: ${c.cublasPath ?? 'not found'}`)
      if (!c.cublasPath || c.cublasTried.length) {
        for (const t of c.cublasTried) lines.push(`          tried ${t}`)
        if (!c.cublasPath) lines.push('          install: pip install nvidia-cublas (CUDA 13), or set BERTKIT_CUDA_LIB_PATH to the folder with libcublas.so.13')
      }
      if (c.description) lines.push(`        ${c.description}`)
      if (!c.usable && c.reason) lines.push(`        why not: ${c.reason}`)
    }
  }
  if (r.device) lines.push(`device: "auto" selects ${r.device}`)
  if (r.dataParallel) {
    lines.push(`data parallel (bertkit launch): gloo ${r.dataParallel.gloo ?? 'not built (apt-get install libgloo-dev, then npm rebuild bertkit)'}`)
    if (r.dataParallel.nccl) lines.push(`        nccl: ${r.dataParallel.nccl}`)
  }
  return lines.join('\n')
}

export function runDoctor(args: string[]): number {
  const report = doctorReport()
  if (args.includes('--json')) console.log(JSON.stringify(report, null, 2))
  else console.log(formatDoctor(report))
  return 'error' in report.addon ? 1 : 0
}
