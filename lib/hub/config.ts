// The Hugging Face environment, read the way Python's huggingface_hub reads it
// so that both see the same endpoint, token, cache and offline switch.
// Everything is read at call time, not at import: a process (or a test) may
// change process.env between calls.
import { readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'

export const DEFAULT_ENDPOINT = 'https://huggingface.co'

/** Options every Hub call accepts; each overrides the matching environment variable. */
export interface HubOptions {
  /** Default: HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string
  /** The hub cache folder. Default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string
  /** A token, or false to send none. Default: HF_TOKEN, else the token file `hf auth login` writes. */
  token?: string | false
  /** Only the cache, never the network. Default: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to 1/ON/YES/TRUE. */
  offline?: boolean
  /** Replaces the global fetch (proxies, tests). */
  fetch?: typeof fetch
}

function env(name: string): string | undefined {
  const v = process.env[name]
  return v === undefined || v === '' ? undefined : v
}

function expandHome(p: string): string {
  if (p === '~') return homedir()
  if (p.startsWith('~/')) return join(homedir(), p.slice(2))
  return p
}

/** Python's constants._is_true: 1, ON, YES, TRUE in any case. */
export function isTrueEnv(value: string | undefined): boolean {
  return value !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(value.trim().toUpperCase())
}

export function hubEndpoint(options: HubOptions = {}): string {
  // A trailing slash would double up in every URL; huggingface_hub strips it too.
  return (options.endpoint ?? env('HF_ENDPOINT') ?? DEFAULT_ENDPOINT).replace(/\/+$/, '')
}

/** HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(): string {
  const home = env('HF_HOME')
  if (home) return resolve(expandHome(home))
  return resolve(expandHome(env('XDG_CACHE_HOME') ?? join(homedir(), '.cache')), 'huggingface')
}

export function hubCacheDir(options: HubOptions = {}): string {
  // HUGGINGFACE_HUB_CACHE is the legacy name huggingface_hub still honours under HF_HUB_CACHE.
  const dir = options.cacheDir ?? env('HF_HUB_CACHE') ?? env('HUGGINGFACE_HUB_CACHE')
  return dir ? resolve(expandHome(dir)) : join(hfHome(), 'hub')
}

export function isOfflineMode(options: HubOptions = {}): boolean {
  if (options.offline !== undefined) return options.offline
  return isTrueEnv(env('HF_HUB_OFFLINE') ?? env('TRANSFORMERS_OFFLINE'))
}

export function hubToken(options: HubOptions = {}): string | undefined {
  if (options.token === false) return undefined
  if (options.token) return options.token
  const fromEnv = env('HF_TOKEN') ?? env('HUGGING_FACE_HUB_TOKEN')
  if (fromEnv) return fromEnv.trim() || undefined
  // Users who ran `hf auth login` in Python have their token here; reading it
  // keeps gated models working in bertkit without a second login.
  const tokenPath = env('HF_TOKEN_PATH') ? resolve(expandHome(env('HF_TOKEN_PATH')!)) : join(hfHome(), 'token')
  try {
    return readFileSync(tokenPath, 'utf8').trim() || undefined
  } catch {
    return undefined
  }
}

/** HF_HUB_DISABLE_PROGRESS_BARS turns the stderr progress line off, as it does tqdm's bars in Python. */
export function progressBarsDisabled(): boolean {
  return isTrueEnv(env('HF_HUB_DISABLE_PROGRESS_BARS'))
}
