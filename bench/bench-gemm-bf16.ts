// bfloat16 GEMM on this CPU at the MiniLM training shapes (an unpadded batch
// of 16 rotten-tomatoes sentences is ~440 tokens: m = 448), each path —
// float32 (the built-in AVX-512 SGEMM), bf16 widened to float32, AVX512-BF16,
// AMX-BF16 — as GFLOP/s and as a share of the peak of its instruction
// measured on this machine in the same run (bench/peak_flops.c: register-
// only loops of VFMADD231PS / VDPBF16PS / TDPBF16PS on every thread, taken
// before each round of products, so both see the same load). The nominal
// peak (clock x FLOP per cycle) is shown too; which one is meaningful on a
// shared machine is said in the output.
//
// Usage: npm run bench:gemm-bf16 -- [--reps 5] [--threads 2] [--out benchmarks/gemm-bf16-cpu]
// Needs a C compiler (cc) for the peak loops.
import { spawnSync } from 'node:child_process'
import { writeFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join, dirname } from 'node:path'
import os from 'node:os'
import { native, DTYPE_CODE, type NativeBuffer } from '../lib/native.js'
import { args, flag, median } from './common.js'

const reps = Number(flag('reps', '5'))
const threads = Number(flag('threads', '2'))
const outBase = flag('out', join('benchmarks', 'gemm-bf16-cpu'))
const N = native()
N.setNumThreads(threads)

// [m, n, k, transA, transB, what]
const shapes: Array<[number, number, number, boolean, boolean, string]> = [
  [448, 384, 384, false, true, 'Q/K/V/attention output, forward'],
  [448, 1536, 384, false, true, 'intermediate, forward'],
  [448, 384, 1536, false, true, 'output, forward'],
  [448, 384, 1536, false, false, 'intermediate, dX'],
  [1536, 384, 448, true, false, 'intermediate, dW'],
  [384, 1536, 448, true, false, 'output, dW'],
]
type Path = 'fp32' | 'widen' | 'avx512-bf16' | 'amx'
const paths: Path[] = ['fp32', 'widen', 'avx512-bf16', 'amx']
const peakOf: Record<Path, string | null> = { fp32: 'fp32', widen: 'fp32', 'avx512-bf16': 'avx512bf16', amx: 'amx' }

function buf(dtype: 'float32' | 'bfloat16', n: number): NativeBuffer {
  const b = new N.NativeBuffer(0, DTYPE_CODE[dtype], n)
  if (dtype === 'float32') b.write(Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.5))
  else b.write(Uint16Array.from({ length: n }, (_, i) => 0x3e00 + (i % 0x180)))
  return b
}


function main() {
  const tmp = mkdtempSync(join(os.tmpdir(), 'bertkit-peak-'))
  const exe = join(tmp, 'peak_flops')
  const cc = spawnSync('cc', ['-O2', '-pthread', '-mavx512f', '-mavx512bf16', '-mamx-tile', '-mamx-bf16',
    join(__dirname, '..', '..', 'bench', 'peak_flops.c'), '-o', exe], { encoding: 'utf8' })
  if (cc.status !== 0) throw new Error(`cannot build bench/peak_flops.c: ${cc.stderr}`)
  const peak = (kind: string): number | null => {
    const r = spawnSync(exe, [kind, String(threads), '0.3'], { encoding: 'utf8' })
    return r.status === 0 ? (JSON.parse(r.stdout) as { gflops: number }).gflops : null
  }
  const peaks: Record<string, number[]> = { fp32: [], avx512bf16: [], amx: [] }
  const gflops = new Map<string, number[]>()
  // Each timing over the peak of its instruction measured just before it (a shared machine's load changes by the second).
  const shares = new Map<string, number[]>()
  const names: Record<string, string> = {}
  const loads: number[] = []
  for (let rep = 0; rep < reps; rep++) {
    loads.push(os.loadavg()[0])
    for (const [m, n, k, ta, tb] of shapes) {
      const a32 = buf('float32', m * k), b32 = buf('float32', k * n), c = buf('float32', m * n)
      const a16 = buf('bfloat16', m * k), b16 = buf('bfloat16', k * n)
      for (const path of paths) {
        const before = peak(peakOf[path]!)
        if (before !== null) peaks[peakOf[path]!].push(before)
        if (path !== 'fp32') names[path] = N.setCpuGemmBf16(path)
        const run = () => path === 'fp32'
          ? N.gemm(ta, tb, m, n, k, 1, a32, b32, 0, c, 1, 0, 0, 0)
          : N.gemmMixed(ta, tb, m, n, k, 1, a16, b16, 0, c, 1, 0, 0, 0)
        run()
        N.synchronize(0)
        // At least 5 GFLOP a timing (38 calls of the smallest shape): with a few
        // calls of 0.7 ms, a timing was as much the pool's wake-up after the
        // peak loop as the product (the 448 x 384 x 384 share ranged 43-86 %).
        const calls = Math.max(3, Math.ceil(5e9 / (2 * m * n * k)))
        const times: number[] = []
        for (let r = 0; r < 5; r++) {
          const t0 = process.hrtime.bigint()
          for (let i = 0; i < calls; i++) run()
          N.synchronize(0)
          times.push(Number(process.hrtime.bigint() - t0) / 1e9 / calls)
        }
        const key = `${m}x${n}x${k}${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}:${path}`
        const rate = 2 * m * n * k / median(times) / 1e9
        gflops.set(key, [...(gflops.get(key) ?? []), rate])
        if (before !== null) shares.set(key, [...(shares.get(key) ?? []), rate / before])
      }
      N.setCpuGemmBf16('auto')
      for (const b of [a32, b32, c, a16, b16]) b.free()
    }
    process.stderr.write(`rep ${rep + 1}/${reps} done (load ${os.loadavg()[0].toFixed(1)})\n`)
  }
  rmSync(tmp, { recursive: true, force: true })
  const mhz = Number(/cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? NaN)
  const nominal = (flopPerCycle: number) => (mhz * 1e6 * flopPerCycle * threads / 1e9).toFixed(0)
  const peakText = (kind: string) => peaks[kind].length ? `${median(peaks[kind]).toFixed(0)} [${Math.min(...peaks[kind]).toFixed(0)}–${Math.max(...peaks[kind]).toFixed(0)}]` : 'n/a (not available)'
  const lines = [
    '# bfloat16 GEMM on this CPU: MiniLM training shapes, % of the measured peak',
    '',
    `Paths: fp32 = bertkit's built-in AVX-512 SGEMM; bf16 ${Object.entries(names).map(([p, n]) => `${p} = "${n}"`).join(', ')}. ${threads} threads, each figure the median over ${reps} rounds of the median of 5 timings, each timing at least 5 GFLOP of back-to-back calls.`,
    `Peaks, GFLOP/s on ${threads} threads, median [min–max] of the register-only loops (bench/peak_flops.c), one run just before every timing: fp32 FMA ${peakText('fp32')}, AVX512-BF16 ${peakText('avx512bf16')}, AMX-BF16 ${peakText('amx')}. Nominal at the reported ${mhz} MHz: fp32 ${nominal(64)} (2 FMA x 16 lanes x 2), AVX512-BF16 ${nominal(64)} if VDPBF16PS issued once per cycle (64 FLOP), AMX ${nominal(1024)} (one TDPBF16PS of 16384 FLOP per 16 cycles). "% of its peak": each timing divided by the peak of the path's own instruction measured just before it, median [min–max] over rounds. On a machine shared with other work both figures swing with the neighbours' load (a timing can catch a quieter second than its peak loop, hence shares above 100 %); only a quiet machine gives the real percentage.`,
    `Machine: ${os.cpus()[0]?.model ?? 'unknown'} (${os.cpus().length} cores); date ${new Date().toISOString().slice(0, 10)}; load average (1 min) during the run: median ${median(loads).toFixed(1)} [${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}].`,
    `Command: \`npm run bench:gemm-bf16 -- ${args.join(' ')}\``,
    '',
    '| product (m x n x k, op) | what | fp32 GFLOP/s (% of its peak) | bf16 widened GFLOP/s | AVX512-BF16 GFLOP/s (% of its peak) | AMX GFLOP/s (% of its peak) | AMX / fp32 |',
    '|---|---|---|---|---|---|---|',
  ]
  for (const [m, n, k, ta, tb, what] of shapes) {
    const key = (p: Path) => `${m}x${n}x${k}${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}:${p}`
    const g = (p: Path) => median(gflops.get(key(p)) ?? [NaN])
    const pct = (p: Path) => {
      const xs = shares.get(key(p)) ?? []
      return xs.length ? ` (${(100 * median(xs)).toFixed(0)} % [${(100 * Math.min(...xs)).toFixed(0)}–${(100 * Math.max(...xs)).toFixed(0)}])` : ''
    }
    lines.push(`| ${m} x ${n} x ${k}, ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} | ${what} | ${g('fp32').toFixed(0)}${pct('fp32')} | ${g('widen').toFixed(0)} | ${g('avx512-bf16').toFixed(0)}${pct('avx512-bf16')} | ${g('amx').toFixed(0)}${pct('amx')} | ${(g('amx') / g('fp32')).toFixed(1)}x |`)
  }
  const table = lines.join('\n') + '\n'
  mkdirSync(dirname(outBase) || '.', { recursive: true })
  writeFileSync(`${outBase}.md`, table)
  writeFileSync(`${outBase}.json`, JSON.stringify({ date: new Date().toISOString(), args, threads, mhz, loads, peaks, names, gflops: Object.fromEntries(gflops), shares: Object.fromEntries(shares) }, null, 2) + '\n')
  console.log(table)
}

main()
