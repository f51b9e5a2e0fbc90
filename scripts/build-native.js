#!/usr/bin/env node
// Builds the native addon on `npm install` (and `npm run build:native`).
// Order: a prebuilt binary for this platform (nothing to do) -> cmake-js (CMake
// found) -> node-gyp with binding.gyp (CPU backend only). Never downloads
// headers: cmake-js takes them from node-api-headers because package.json
// declares binary.napi_versions; node-gyp is pointed at the same headers.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const args = process.argv.slice(2)
const force = args.includes('--force')
const wantCuda = args.includes('--cuda') ? 'on' : (process.env.BERTKIT_CUDA || 'auto')
const blas = process.env.BERTKIT_BLAS || 'auto'

function log(msg) { process.stderr.write(`bertkit: ${msg}\n`) }

function hasPrebuilt() {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`)
  return fs.existsSync(dir) && fs.readdirSync(dir).some((f) => f.endsWith('.node'))
}

function run(cmd, cmdArgs) {
  log(`${cmd} ${cmdArgs.join(' ')}`)
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit', env: process.env })
  return r.status === 0
}

function which(bin) {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : null
}

if (!force && hasPrebuilt()) {
  log('using the prebuilt binary in prebuilds/')
  process.exit(0)
}

// node-gyp wants a Node source tree for --nodedir; a Node-API addon needs only
// the Node-API headers plus a minimal common.gypi, written here so node-gyp
// never downloads Node's headers.
function nodeApiNodedir() {
  // Outside build/: node-gyp rebuild empties build/ before configuring.
  const dir = path.join(root, 'node_modules', '.bertkit-nodedir')
  fs.mkdirSync(path.join(dir, 'include'), { recursive: true })
  const headers = path.join(path.dirname(require.resolve('node-api-headers/package.json')), 'include')
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

const cmakeJs = path.join(root, 'node_modules', '.bin', 'cmake-js')
const forceGyp = process.env.BERTKIT_BUILD === 'node-gyp'
if (!forceGyp && which('cmake') && fs.existsSync(cmakeJs)) {
  const ok = run(cmakeJs, ['compile', '--out', 'build', `--CDBERTKIT_CUDA=${wantCuda}`, `--CDBERTKIT_BLAS=${blas}`,
    '--parallel', String(Math.max(1, require('node:os').availableParallelism()))])
  if (ok) process.exit(0)
  log('cmake-js failed; trying node-gyp (CPU backend only)')
} else {
  log(forceGyp ? 'BERTKIT_BUILD=node-gyp: building the CPU backend with node-gyp' : 'cmake not found; building the CPU backend with node-gyp')
}
const nodeGyp = path.join(root, 'node_modules', '.bin', 'node-gyp')
if (run(nodeGyp, ['rebuild', `--nodedir=${nodeApiNodedir()}`, '-j', String(Math.max(1, require('node:os').availableParallelism()))])) process.exit(0)
log('building the native addon failed: install cmake (or python3 + make) and a C++17 compiler')
process.exit(1)
