// Where the CUDA variant looks for cuBLAS, in order. The addon links cudart
// statically and opens cuBLAS at run time (native/src/cuda/cublas_api.h), so
// a prebuilt binary works with cuBLAS from any of these:
//   1. BERTKIT_CUDA_LIB_PATH (directories, ':'-separated)
//   2. the nvidia-* Python wheels, looked up as torch does: nvidia/<lib>/lib
//      under each site-packages of the active Python (venv, conda, user, system)
//   3. a system toolkit: $CUDA_HOME, $CUDA_PATH, /usr/local/cuda
// and last the dynamic linker's own search (LD_LIBRARY_PATH, ld.so.cache).
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { homedir } from 'node:os'
import { delimiter, join } from 'node:path'

/** Sub-directories of a site-packages dir where the wheels put cuBLAS: CUDA 13's shared tree, then CUDA 12's per-library one. */
const WHEEL_LIB_DIRS = ['nvidia/cu13/lib', 'nvidia/cublas/lib', 'nvidia/cu12/lib']

function pythonDirsUnder(prefix: string): string[] {
  const lib = join(prefix, 'lib')
  let names: string[]
  try {
    names = readdirSync(lib)
  } catch {
    return []
  }
  return names.filter((n) => /^python3(\.\d+)?$/.test(n)).flatMap((n) => [join(lib, n, 'site-packages'), join(lib, n, 'dist-packages')])
}

/** A GPU driver is installed: only then is it worth starting Python to ask for its paths. */
function driverPresent(): boolean {
  return existsSync('/proc/driver/nvidia/version') || existsSync('/dev/nvidiactl')
}

function pythonSitePackages(): string[] {
  const python = process.env.BERTKIT_PYTHON ?? 'python3'
  const r = spawnSync(python, ['-c', 'import json, site, sys; print(json.dumps([p for p in sys.path if p] + site.getsitepackages() + [site.getusersitepackages()]))'], {
    encoding: 'utf8',
    timeout: 5000,
    stdio: ['ignore', 'pipe', 'ignore'],
  })
  if (r.status !== 0 || !r.stdout) return []
  try {
    const parsed = JSON.parse(r.stdout.trim()) as unknown
    return Array.isArray(parsed) ? parsed.filter((p): p is string => typeof p === 'string') : []
  } catch {
    return []
  }
}

/** Site-packages directories that may hold the nvidia-* wheels, most specific first. */
export function sitePackagesDirs(options: { askPython?: boolean } = {}): string[] {
  const dirs: string[] = []
  for (const prefix of [process.env.VIRTUAL_ENV, process.env.CONDA_PREFIX]) if (prefix) dirs.push(...pythonDirsUnder(prefix))
  if (options.askPython ?? driverPresent()) dirs.push(...pythonSitePackages())
  dirs.push(...pythonDirsUnder(join(homedir(), '.local')), ...pythonDirsUnder('/usr/local'), ...pythonDirsUnder('/usr'))
  return dirs
}

/** The directories handed to the addon's cuBLAS lookup, existing ones only, without repeats. */
export function cudaLibraryDirs(options: { askPython?: boolean } = {}): string[] {
  const explicit = (process.env.BERTKIT_CUDA_LIB_PATH ?? '').split(delimiter).filter(Boolean)
  const wheels = sitePackagesDirs(options).flatMap((site) => WHEEL_LIB_DIRS.map((sub) => join(site, sub)))
  const system: string[] = []
  for (const root of [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda']) {
    if (root) system.push(join(root, 'lib64'), join(root, 'targets', process.arch === 'arm64' ? 'sbsa-linux' : 'x86_64-linux', 'lib'))
  }
  const seen = new Set<string>()
  const out: string[] = []
  // Explicit directories are kept even when missing, so a typo shows in the "tried" list.
  for (const d of explicit) if (!seen.has(d)) { seen.add(d); out.push(d) }
  for (const d of [...wheels, ...system]) {
    if (seen.has(d) || !existsSync(d)) continue
    seen.add(d)
    out.push(d)
  }
  return out
}
