#!/usr/bin/env node
// Builds the binaries the npm tarball ships (`npm run prebuild`):
//
//   prebuilds/<platform>-<arch>/bertkit.napi.node        CPU addon
//   prebuilds/<platform>-<arch>/cuda/bertkit_cuda.node   CPU + CUDA addon
//   prebuilds/<platform>-<arch>/manifest.json            what each holds and needs
//
// Both are portable builds: libstdc++ linked in, the built-in GEMM instead of
// OpenBLAS (no shared library a user may lack), and no -march: the CPU kernels
// pick AVX-512, AVX2+FMA or scalar code when they load. The CUDA addon links
// cudart statically and opens cuBLAS at run time, so it loads on machines with
// no GPU and no CUDA at all. Each binary is checked before it is kept: it
// loads in a child process, and needs no shared library outside glibc nor a
// glibc newer than MAX_GLIBC.
//
//   --cuda      the CUDA addon is required (fail when it cannot be built)
//   --no-cuda   the CPU addon only
//   default     the CUDA addon when a toolkit is found (scripts/build/install-cuda-toolkit.sh)
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.resolve(__dirname, '..', '..')
const args = process.argv.slice(2)
const cuda = args.includes('--no-cuda') ? 'off' : args.includes('--cuda') ? 'on' : 'auto'
const tag = `${process.platform}-${process.arch}`
const outDir = path.join(root, 'prebuilds', tag)
const buildDir = 'build-prebuild'
// Ubuntu 22.04 has 2.35, RHEL 9 2.34; Node 20 itself needs 2.28.
const MAX_GLIBC = '2.34'
const ALLOWED_NEEDED = /^(libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|ld-linux[-\w]*\.so\.\d|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1)$/

function log(msg) { process.stderr.write(`prebuild: ${msg}\n`) }
function die(msg) { log(msg); process.exit(1) }

function sh(cmd, cmdArgs, opts = {}) {
  const r = spawnSync(cmd, cmdArgs, { cwd: root, encoding: 'utf8', ...opts })
  if (r.error) die(`${cmd}: ${r.error.message}`)
  return r
}

function versionLess(a, b) {
  const pa = a.split('.').map(Number)
  const pb = b.split('.').map(Number)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    if ((pa[i] || 0) !== (pb[i] || 0)) return (pa[i] || 0) < (pb[i] || 0)
  }
  return false
}

// What a binary asks of the system it lands on; fails on anything beyond glibc.
function checkPortable(file) {
  const dyn = sh('readelf', ['-d', file])
  if (dyn.status !== 0) die(`readelf -d ${file} failed: ${dyn.stderr}`)
  const needed = [...dyn.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1])
  const foreign = needed.filter((n) => !ALLOWED_NEEDED.test(n))
  if (foreign.length) die(`${file} needs ${foreign.join(', ')}, which users may not have`)
  const syms = sh('objdump', ['-T', file])
  const versions = [...new Set([...syms.stdout.matchAll(/GLIBC_(\d+\.\d+(?:\.\d+)?)/g)].map((m) => m[1]))]
  const glibc = versions.reduce((max, v) => (versionLess(max, v) ? v : max), '2.2.5')
  if (versionLess(MAX_GLIBC, glibc)) {
    const culprits = syms.stdout.split('\n').filter((l) => l.includes(`GLIBC_${glibc}`)).map((l) => l.trim().split(/\s+/).pop())
    die(`${file} needs glibc ${glibc} (${culprits.join(', ')}); prebuilt binaries must run on glibc ${MAX_GLIBC}`)
  }
  if (/GLIBCXX_/.test(syms.stdout)) die(`${file} needs the system libstdc++ (GLIBCXX symbols); it must be linked statically`)
  return { needed, glibc }
}

function loadsInChild(file) {
  const probe = 'const a = require(process.argv[1]); const r = a.inspectRuntime(); ' +
    'const p = a.cudaCompiled ? a.probeDevice(1) : null; console.log(JSON.stringify({ runtime: r, probe: p, nccl: a.ncclCompiled === true }))'
  const r = sh(process.execPath, ['-e', probe, file])
  if (r.status !== 0) die(`${file} does not load: ${r.stderr}`)
  return JSON.parse(r.stdout.trim())
}

function stripInto(src, dst) {
  fs.mkdirSync(path.dirname(dst), { recursive: true })
  const r = sh('strip', ['--strip-unneeded', '-o', dst, src])
  if (r.status !== 0) {
    log(`strip failed (${r.stderr.trim()}); shipping unstripped`)
    fs.copyFileSync(src, dst)
  }
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] })
log(`building ${tag} (CUDA: ${cuda}) in ${buildDir}/`)
const jobs = String(Math.max(1, os.availableParallelism ? os.availableParallelism() : os.cpus().length))
const options = ['--out', buildDir, `--CDBERTKIT_CUDA=${cuda}`, '--CDBERTKIT_BLAS=builtin', '--CDBERTKIT_PORTABLE=ON', '--CDBERTKIT_CUDA_ARCHS=auto']
for (const step of [['configure', ...options], ['build', ...options, '--parallel', jobs]]) {
  const r = spawnSync(process.execPath, [cmakeJs, ...step], { cwd: root, stdio: 'inherit' })
  if (r.status !== 0) die(`cmake-js ${step[0]} failed (see above)`)
}
// A stale CUDA addon from an earlier run must not be shipped when CUDA is off now.
if (cuda === 'off') fs.rmSync(path.join(root, buildDir, 'Release', 'cuda'), { recursive: true, force: true })

fs.rmSync(outDir, { recursive: true, force: true })
const manifest = { platform: tag, builtAt: new Date().toISOString(), node: process.version, binaries: {} }

const cpuSrc = path.join(root, buildDir, 'Release', 'bertkit.node')
const cpuDst = path.join(outDir, 'bertkit.napi.node')
stripInto(cpuSrc, cpuDst)
const cpuNeeds = checkPortable(cpuDst)
const cpuInfo = loadsInChild(cpuDst)
manifest.binaries.cpu = {
  file: path.relative(outDir, cpuDst),
  bytes: fs.statSync(cpuDst).size,
  needs: { glibc: `>= ${cpuNeeds.glibc}`, sharedLibraries: cpuNeeds.needed },
  cpuKernels: 'runtime dispatch: AVX-512, AVX2+FMA or scalar (GEMM and vector maths); built-in GEMM (no OpenBLAS)',
}
log(`CPU addon ${path.relative(root, cpuDst)}: ${manifest.binaries.cpu.bytes} bytes, glibc >= ${cpuNeeds.glibc}, kernels here: ${JSON.stringify(cpuInfo.runtime.cpu)}`)

const cudaSrc = path.join(root, buildDir, 'Release', 'cuda', 'bertkit_cuda.node')
if (fs.existsSync(cudaSrc) && cuda !== 'off') {
  const cudaDst = path.join(outDir, 'cuda', 'bertkit_cuda.node')
  stripInto(cudaSrc, cudaDst)
  const cudaNeeds = checkPortable(cudaDst)
  const info = loadsInChild(cudaDst)
  const c = info.runtime.cuda
  manifest.binaries.cuda = {
    file: path.relative(outDir, cudaDst),
    bytes: fs.statSync(cudaDst).size,
    needs: { glibc: `>= ${cudaNeeds.glibc}`, sharedLibraries: cudaNeeds.needed, driver: `one that supports CUDA ${c.buildToolkit.split('.')[0]}.0 or newer`, cublas: 'libcublas.so.13 or .so.12, found at run time' },
    toolkit: c.buildToolkit,
    architectures: c.buildArchs,
    cudart: c.cudart,
    nccl: info.nccl ? 'compiled in; libnccl.so.2 (nvidia-nccl-cu13 or a system NCCL) is opened when a process group needs it' : 'not compiled (nccl.h was not found)',
  }
  // CI builds the NCCL path of data parallel even without a GPU (scripts/build/install-cuda-toolkit.sh installs nccl.h).
  if (cuda === 'on' && !info.nccl) die('the CUDA addon was built without NCCL (nccl.h not found): pip install nvidia-nccl-cu13, or set NCCL_INCLUDE_DIR')
  log(`CUDA addon ${path.relative(root, cudaDst)}: ${manifest.binaries.cuda.bytes} bytes, CUDA ${c.buildToolkit}, ${c.buildArchs}`)
  log(`  here: ${info.probe.ok ? info.probe.description : info.probe.reason}`)
} else if (cuda === 'on') {
  die('the CUDA addon was required (--cuda) but the build did not produce it')
} else {
  log('no CUDA addon (no CUDA toolkit found; scripts/build/install-cuda-toolkit.sh installs one from PyPI)')
}
// The Gloo shim (CPU data parallel) needs libgloo.so.0 and the system libstdc++, so it is not shipped:
// `npm rebuild bertkit` builds it where libgloo-dev is installed.
manifest.dataParallel = { gloo: 'not prebuilt: built from source where Gloo is installed (apt-get install libgloo-dev)' }
fs.writeFileSync(path.join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n')
log(`wrote ${path.relative(root, outDir)}/`)
