#!/usr/bin/env node
// Builds the native addon: bertkit's `install` script, `npm run build:native`
// and `npm run build:cuda`.
//
// On install, a prebuilt binary for this platform that loads (tried in a child
// process) means there is nothing to build. Otherwise, from source: cmake-js
// when CMake is found (the CPU addon, plus the CUDA variant when nvcc and cuBLAS
// are), else node-gyp with binding.gyp (the CPU addon only). Both are found
// wherever npm put them: resolved from this package (hoisted or nested), npm's
// own node-gyp, or PATH. Nothing is downloaded: headers come from
// node-api-headers / node-addon-api.
//
//   --force        build from source even when a prebuilt binary loads
//   --cuda         the CUDA variant is required: a failed CUDA build is an error
//   BERTKIT_CUDA=on|off|auto       the same choice by environment (default auto)
//   BERTKIT_BUILD=cmake|node-gyp   force one build system
//   BERTKIT_BUILD_FROM_SOURCE=1    as --force (for `npm install` / `npm rebuild`)
//   BERTKIT_BLAS=auto|openblas|builtin
//
// Every failure ends with one line saying what is missing and the command that
// fixes it.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.resolve(__dirname, '..', '..')
const args = process.argv.slice(2)
const force = args.includes('--force') || /^(1|true|on)$/i.test(process.env.BERTKIT_BUILD_FROM_SOURCE || '')
const wantCuda = args.includes('--cuda') ? 'on' : (process.env.BERTKIT_CUDA || 'auto').toLowerCase()
const blas = process.env.BERTKIT_BLAS || 'auto'
const forced = (process.env.BERTKIT_BUILD || '').toLowerCase()
const platformTag = `${process.platform}-${process.arch}`
const jobs = String(Math.max(1, os.availableParallelism ? os.availableParallelism() : os.cpus().length))

function log(msg) { process.stderr.write(`bertkit: ${msg}\n`) }

function fail(what, fix) {
  log(`building the native addon failed: ${what}`)
  log(`fix: ${fix}`)
  process.exit(1)
}

if (!['auto', 'on', 'off'].includes(wantCuda)) fail(`BERTKIT_CUDA must be auto, on or off (got "${process.env.BERTKIT_CUDA}")`, 'unset BERTKIT_CUDA or set it to auto, on or off')
if (forced && !['cmake', 'node-gyp'].includes(forced)) fail(`BERTKIT_BUILD must be cmake or node-gyp (got "${process.env.BERTKIT_BUILD}")`, 'unset BERTKIT_BUILD')

function which(bin) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue
    const full = path.join(dir, bin)
    try {
      fs.accessSync(full, fs.constants.X_OK)
      if (fs.statSync(full).isFile()) return full
    } catch { /* not here */ }
  }
  return null
}

function run(cmd, cmdArgs, env = process.env) {
  log(`${path.basename(cmd)} ${cmdArgs.join(' ')}`)
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit', env })
  if (r.error) log(`${cmd}: ${r.error.message}`)
  return r.status === 0
}

// ---- a prebuilt binary ------------------------------------------------------------
function prebuiltLoads() {
  const dir = path.join(root, 'prebuilds', platformTag)
  let files = []
  try { files = fs.readdirSync(dir).filter((f) => f.endsWith('.node')) } catch { return false }
  if (files.length === 0) return false
  // A child process: a binary that cannot load (an older C library, another CPU)
  // must not take this process down, and must lead to a source build instead.
  const file = path.join(dir, files[0])
  const r = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', file], { encoding: 'utf8' })
  if (r.status === 0) {
    log(`using the prebuilt binary ${path.relative(root, file)}`)
    return true
  }
  log(`the prebuilt binary ${path.relative(root, file)} does not load here (${(r.stderr || '').split('\n').find((l) => /Error|GLIBC/.test(l)) || 'unknown error'}); building from source`)
  return false
}

if (!force && wantCuda !== 'on' && prebuiltLoads()) process.exit(0)

// ---- the tools, wherever npm put them ----------------------------------------------
function resolveFrom(request) {
  for (const base of [root, process.cwd()]) {
    try { return require.resolve(request, { paths: [base] }) } catch { /* next */ }
  }
  return null
}

function findCmakeJs() {
  return resolveFrom('cmake-js/bin/cmake-js')
}

function findNodeGyp() {
  // npm runs install scripts with npm_config_node_gyp pointing at its own node-gyp.
  const fromNpm = process.env.npm_config_node_gyp
  if (fromNpm && fs.existsSync(fromNpm)) return { cmd: process.execPath, pre: [fromNpm] }
  const resolved = resolveFrom('node-gyp/bin/node-gyp.js')
  if (resolved) return { cmd: process.execPath, pre: [resolved] }
  // npm's own copy, next to the npm that runs this node.
  const npmBundled = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')
  if (fs.existsSync(npmBundled)) return { cmd: process.execPath, pre: [npmBundled] }
  const onPath = which('node-gyp')
  return onPath ? { cmd: onPath, pre: [] } : null
}

const compiler = which('c++') || which('g++') || which('clang++')
const cmake = which('cmake')
const cmakeJs = findCmakeJs()

// node-gyp wants a Node source tree for --nodedir; a Node-API addon needs only
// the Node-API headers plus a minimal common.gypi, written here so node-gyp
// never downloads Node's headers.
function nodeApiNodedir() {
  // Outside build/: node-gyp rebuild empties build/ before configuring.
  const dir = path.join(root, 'build-nodedir')
  fs.mkdirSync(path.join(dir, 'include'), { recursive: true })
  const headersPkg = resolveFrom('node-api-headers/package.json')
  if (!headersPkg) fail('the node-api-headers package is missing', 'npm install node-api-headers (it is a dependency of bertkit; reinstall bertkit)')
  const headers = path.join(path.dirname(headersPkg), 'include')
  const link = path.join(dir, 'include', 'node')
  fs.rmSync(link, { recursive: true, force: true })
  fs.symlinkSync(headers, link, 'dir')
  fs.writeFileSync(path.join(dir, 'common.gypi'), JSON.stringify({
    variables: { node_module_version: '' },
    target_defaults: {
      default_configuration: 'Release',
      configurations: { Release: { cflags: ['-O3'] }, Debug: {} },
      cflags: ['-fPIC', '-pthread'],
      ldflags: ['-pthread'],
    },
  }, null, 2))
  return dir
}

function buildWithCmake(cuda) {
  // configure, then build: `compile` alone skips configuring an existing build
  // directory, and would silently ignore a changed BERTKIT_CUDA or BERTKIT_BLAS.
  const options = ['--out', 'build', `--CDBERTKIT_CUDA=${cuda}`, `--CDBERTKIT_BLAS=${blas}`]
  return run(process.execPath, [cmakeJs, 'configure', ...options]) && run(process.execPath, [cmakeJs, 'build', ...options, '--parallel', jobs])
}

function buildWithNodeGyp(nodeGyp) {
  return run(nodeGyp.cmd, [...nodeGyp.pre, 'rebuild', `--nodedir=${nodeApiNodedir()}`, '-j', jobs])
}

const cudaFix = 'install a CUDA toolkit with cuBLAS (or run `bash scripts/build/install-cuda-toolkit.sh` in a bertkit clone: PyPI wheels, no GPU needed), then run the build again; or build the CPU addon only with BERTKIT_CUDA=off'
const rebuildCmd = 'BERTKIT_BUILD_FROM_SOURCE=1 npm rebuild bertkit --foreground-scripts'

if (!compiler) {
  fail(`no C++ compiler on PATH (looked for c++, g++, clang++), and no prebuilt binary for ${platformTag} that loads`,
    `install one (Debian/Ubuntu: apt-get install g++ cmake; Fedora/RHEL: dnf install gcc-c++ cmake; macOS: xcode-select --install), then: ${rebuildCmd}`)
}

if (forced !== 'node-gyp') {
  if (cmake && cmakeJs) {
    if (buildWithCmake(wantCuda)) process.exit(0)
    if (wantCuda === 'on') fail('the CUDA variant was asked for (--cuda or BERTKIT_CUDA=on) and its build failed (see the CMake output above)', cudaFix)
    log('the CMake build failed; trying the CPU addon alone with CMake')
    if (wantCuda === 'auto' && buildWithCmake('off')) process.exit(0)
    log('the CMake build of the CPU addon failed too; trying node-gyp')
  } else if (wantCuda === 'on') {
    fail(`the CUDA variant needs CMake and cmake-js (${cmake ? 'found' : 'missing'}: cmake; ${cmakeJs ? 'found' : 'missing'}: cmake-js)`,
      cmake ? 'npm install cmake-js, then run the build again' : `install CMake >= 3.18 (apt-get install cmake, or pip install cmake), then: BERTKIT_CUDA=on ${rebuildCmd}`)
  } else if (forced === 'cmake') {
    fail(`BERTKIT_BUILD=cmake but ${cmake ? 'cmake-js' : 'cmake'} was not found`, cmake ? 'npm install cmake-js' : 'install CMake >= 3.18 (apt-get install cmake, or pip install cmake)')
  } else {
    log(`${cmake ? 'cmake-js' : 'cmake'} not found; building the CPU addon with node-gyp`)
  }
}

if (wantCuda === 'on') fail('the CUDA variant was asked for but node-gyp builds the CPU addon only', `unset BERTKIT_BUILD and install CMake >= 3.18; ${cudaFix}`)
const nodeGyp = findNodeGyp()
if (!nodeGyp) {
  fail('neither CMake with cmake-js nor node-gyp was found',
    `install CMake >= 3.18 (apt-get install cmake, or pip install cmake), or node-gyp (npm install -g node-gyp, which also needs python3 and make), then: ${rebuildCmd}`)
}
if (buildWithNodeGyp(nodeGyp)) process.exit(0)
fail('node-gyp could not build the CPU addon (see its output above; it needs python3, make and a C++17 compiler)',
  `install them (Debian/Ubuntu: apt-get install python3 make g++), or CMake (apt-get install cmake), then: ${rebuildCmd}`)
