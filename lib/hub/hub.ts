// Hugging Face Hub downloads into the cache layout of Python's huggingface_hub
// (see cache.ts), over node's fetch.
//
// Why not @huggingface/hub: its downloadFileToCacheDir (2.x) never writes
// refs/<revision>, so Python's hf_hub_download(local_files_only=True) cannot
// find what it downloaded; it names snapshot folders by the last commit that
// touched each file instead of the revision's commit; it always asks the
// network first (no HF_HUB_OFFLINE, no cache hit without a request); and it
// reads neither HF_ENDPOINT nor HF_TOKEN. The protocol below is small and
// follows huggingface_hub's file_download.py:
//
// - HEAD {endpoint}/{datasets/}{repo}/resolve/{revision}/{path}, following
//   redirects that stay on the Hub's origins (renamed repos) but not those to
//   a CDN: that redirect response carries the metadata, and the GET to the
//   CDN gets no token. The commit is X-Repo-Commit; the etag is X-Linked-Etag,
//   else ETag, stripped of W/ and quotes; the size is X-Linked-Size, else
//   Content-Length of a non-redirect.
// - GET into blobs/<etag>.<random>.incomplete, renamed to blobs/<etag> only
//   once every byte arrived (and, for LFS files, whose etag is the sha256, the
//   hash matched). A broken connection is retried from where it stopped (HTTP
//   Range) and otherwise leaves nothing behind under the blob's name.
// - snapshots/<commit>/<path> is a relative link to the blob; refs/<revision>
//   holds the commit.
// - Offline, or when the Hub cannot be reached, the cache answers alone.
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, readdirSync, readFileSync, renameSync, statSync, unlinkSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { hubCacheDir, hubEndpoint, hubToken, isOfflineMode, progressBarsDisabled, type HubOptions } from './config.js'
import {
  REGEX_COMMIT_HASH,
  blobPath,
  checkRepoFilename,
  checkRepoId,
  checkRepoType,
  checkRevision,
  classifySnapshotEntry,
  brokenLinkMessage,
  existsFollowing,
  linkPointer,
  scanSnapshot,
  pointerPath,
  readRef,
  storageFolder,
  tagCacheDir,
  writeRef,
  type RepoType,
} from './cache.js'
import { matchesRepoPatterns } from './glob.js'
import { makeDirs } from './dirs.js'

export type { HubOptions } from './config.js'
export type { RepoType } from './cache.js'

export type HubErrorCode =
  | 'RepoNotFound'
  | 'EntryNotFound'
  | 'RevisionNotFound'
  | 'GatedRepo'
  | 'HttpError'
  | 'Network'
  | 'Offline'
  | 'BadResponse'
  | 'Interrupted'
  | 'ChecksumMismatch'
  | 'WriteFailed'
  | 'UnsupportedWeights'
  | 'NoWeights'
  | 'BrokenCache'

export interface HubErrorDetails {
  repoId?: string
  repoType?: RepoType
  filename?: string
  revision?: string
  status?: number
  url?: string
}

export class HubError extends Error {
  constructor(
    message: string,
    readonly code: HubErrorCode,
    readonly details: HubErrorDetails = {},
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = 'HubError'
  }
}

export interface DownloadProgress {
  repoId: string
  filename: string
  /** Bytes in the cache's temp file so far. */
  downloaded: number
  /** Expected size, when the server said. */
  total?: number
}

export interface DownloadOptions extends HubOptions {
  /** Called as bytes arrive (at most every 100 ms, and once at the end). */
  onProgress?: (progress: DownloadProgress) => void
  /** The stderr progress line; default: when stderr is a terminal and HF_HUB_DISABLE_PROGRESS_BARS is unset. */
  progress?: boolean
  /** How many times a broken download is resumed (default 3). */
  retries?: number
}

export interface FileRequest extends DownloadOptions {
  repoId: string
  filename: string
  repoType?: RepoType
  /** Branch, tag or commit hash (default "main"). */
  revision?: string
}

export interface RepoRequest extends DownloadOptions {
  repoId: string
  repoType?: RepoType
  revision?: string
}

export interface SnapshotRequest extends RepoRequest {
  /** fnmatch patterns as in huggingface_hub ("*.json", "data/"): only matching files are downloaded. */
  allowPatterns?: string | string[]
  ignorePatterns?: string | string[]
}

function describeRepo(repoId: string, repoType: RepoType): string {
  return `${repoType} repo "${repoId}"`
}

/** Python's urllib.parse.quote: everything but letters, digits, "_.-~" and the safe characters is escaped. */
function quote(s: string, safe = '/'): string {
  let out = encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  for (const ch of safe) out = out.split(encodeURIComponent(ch)).join(ch)
  return out
}

function repoUrlPrefix(endpoint: string, repoId: string, repoType: RepoType): string {
  return `${endpoint}/${repoType === 'dataset' ? 'datasets/' : ''}${repoId}`
}

/** huggingface_hub's hf_hub_url. */
export function hubFileUrl(repoId: string, filename: string, options: { repoType?: RepoType; revision?: string; endpoint?: string } = {}): string {
  const repoType = checkRepoType(options.repoType, 'hubFileUrl')
  return `${repoUrlPrefix(hubEndpoint(options), repoId, repoType)}/resolve/${quote(options.revision ?? 'main', '')}/${quote(filename)}`
}

function requestHeaders(options: HubOptions): Record<string, string> {
  const headers: Record<string, string> = { 'user-agent': `bertkit; node/${process.versions.node}` }
  const token = hubToken(options)
  if (token) headers.authorization = `Bearer ${token}`
  return headers
}

function secondsFromEnv(name: string, fallback: number): number {
  const v = Number(process.env[name])
  return Number.isFinite(v) && v > 0 ? v : fallback
}

/** huggingface_hub's _normalize_etag: lstrip of the characters "W" and "/", then strip of quotes. */
export function normalizeEtag(etag: string | null): string | null {
  if (etag === null) return null
  return etag.replace(/^[W/]+/, '').replace(/^"+|"+$/g, '') || null
}

function intOrUndefined(v: string | null): number | undefined {
  if (v === null || !/^\d+$/.test(v.trim())) return undefined
  return Number(v)
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause
    return cause instanceof Error && cause.message && !err.message.includes(cause.message) ? `${err.message} (${cause.message})` : err.message
  }
  return String(err)
}

interface Target {
  repoId: string
  repoType: RepoType
  revision: string
  filename?: string
}

function what(t: Target): string {
  return t.filename ? `"${t.filename}" of ${describeRepo(t.repoId, t.repoType)}` : describeRepo(t.repoId, t.repoType)
}

/**
 * The error for a failed Hub response, from its status and the Hub's
 * X-Error-Code header (HEAD responses carry no body, so the header is the only
 * explanation there is).
 */
async function httpError(res: Response, url: string, t: Target, where: string): Promise<HubError> {
  const code = res.headers.get('x-error-code')
  let serverMessage = res.headers.get('x-error-message') ?? ''
  if (!serverMessage) {
    try {
      const body = await res.text()
      try {
        const parsed = JSON.parse(body) as { error?: unknown }
        if (typeof parsed.error === 'string') serverMessage = parsed.error
      } catch {
        serverMessage = body.slice(0, 200)
      }
    } catch {
      // no body
    }
  }
  const details: HubErrorDetails = { repoId: t.repoId, repoType: t.repoType, filename: t.filename, revision: t.revision, status: res.status, url }
  const suffix = ` (HTTP ${res.status}${code ? ` ${code}` : ''} from ${url}${serverMessage ? `: ${serverMessage.trim()}` : ''})`
  if (code === 'RevisionNotFound') {
    return new HubError(`${where}: revision "${t.revision}" does not exist in ${describeRepo(t.repoId, t.repoType)}${suffix}`, 'RevisionNotFound', details)
  }
  if (code === 'GatedRepo') {
    return new HubError(`${where}: ${describeRepo(t.repoId, t.repoType)} is gated: accept its conditions on the Hub and set HF_TOKEN to a token of that account${suffix}`, 'GatedRepo', details)
  }
  if (code === 'RepoNotFound' || (res.status === 401 && code !== 'EntryNotFound')) {
    return new HubError(
      `${where}: ${describeRepo(t.repoId, t.repoType)} was not found${t.filename ? ` (fetching "${t.filename}")` : ''}; if it is private or gated, set HF_TOKEN${suffix}`,
      'RepoNotFound',
      details,
    )
  }
  if (code === 'EntryNotFound' || (res.status === 404 && t.filename)) {
    return new HubError(`${where}: ${what(t)} was not found at revision "${t.revision}"${suffix}`, 'EntryNotFound', details)
  }
  return new HubError(`${where}: request for ${what(t)} failed${suffix}`, 'HttpError', details)
}

function isRetryableStatus(status: number): boolean {
  return status === 429 || status >= 500
}

/** Errors that mean "the Hub could not be reached", after which the cache may answer instead. */
function isConnectivityError(err: unknown): boolean {
  if (err instanceof HubError) return err.code === 'Network' || (err.code === 'HttpError' && (err.details.status ?? 0) >= 500) || err.code === 'BadResponse'
  return true
}

async function doFetch(f: typeof fetch, url: string, init: RequestInit, t: Target, where: string): Promise<Response> {
  try {
    return await f(url, init)
  } catch (err) {
    throw new HubError(`${where}: cannot reach ${url} for ${what(t)}: ${errorText(err)}`, 'Network', { repoId: t.repoId, repoType: t.repoType, filename: t.filename, revision: t.revision, url }, { cause: err })
  }
}

interface FileMetadata {
  commit: string
  etag: string
  size?: number
  location: string
}

const HUB_ORIGINS = ['https://huggingface.co', 'https://hub-ci.huggingface.co', 'https://hf.co']

/** huggingface_hub's _is_same_or_hub_host: redirects there are followed and may carry the token. */
function isHubOrigin(from: string, target: string): boolean {
  const origin = new URL(target).origin
  return origin === new URL(from).origin || HUB_ORIGINS.includes(origin) || origin === new URL(hubEndpoint()).origin
}

async function fileMetadata(url: string, headers: Record<string, string>, f: typeof fetch, t: Target, where: string): Promise<FileMetadata> {
  let current = url
  const timeoutMs = secondsFromEnv('HF_HUB_ETAG_TIMEOUT', 10) * 1000
  for (let hop = 0; hop < 10; hop++) {
    // identity: a compressed response would report the compressed length, not the file's.
    const res = await doFetch(f, current, { method: 'HEAD', headers: { ...headers, 'accept-encoding': 'identity' }, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) }, t, where)
    const isRedirect = res.status >= 300 && res.status < 400
    let location = current
    if (isRedirect) {
      const loc = res.headers.get('location')
      if (!loc) throw new HubError(`${where}: ${current} answered ${res.status} without a Location header`, 'BadResponse', { ...t, url: current, status: res.status })
      const next = new URL(loc, current).href
      if (isHubOrigin(current, next)) {
        // Still on the Hub (a renamed repo): ask again there.
        current = next
        continue
      }
      // A CDN or storage host with a signed URL: this response carries the file's metadata.
      location = next
    } else if (!res.ok) {
      throw await httpError(res, current, t, where)
    }
    const commit = res.headers.get('x-repo-commit')
    const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'))
    if (!commit || !REGEX_COMMIT_HASH.test(commit)) {
      throw new HubError(
        `${where}: the response from ${current} has ${commit ? `an invalid X-Repo-Commit header ${JSON.stringify(commit)}` : 'no X-Repo-Commit header'}, so it does not come from a Hugging Face Hub server; check HF_ENDPOINT (${new URL(url).origin}) and any proxy`,
        'BadResponse',
        { ...t, url: current },
      )
    }
    if (!etag) throw new HubError(`${where}: the response from ${current} has no ETag, so the cached copy could not be named by its content`, 'BadResponse', { ...t, url: current })
    const size = intOrUndefined(res.headers.get('x-linked-size')) ?? (isRedirect ? undefined : intOrUndefined(res.headers.get('content-length')))
    return { commit, etag, size, location }
  }
  throw new HubError(`${where}: too many redirects starting at ${url}`, 'BadResponse', { ...t, url })
}

function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['kB', 'MB', 'GB', 'TB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v.toFixed(1)} ${units[i]}`
}

/** One self-overwriting stderr line per download, shown only once it has run for a while (short downloads stay quiet). */
class ProgressLine {
  private readonly started = Date.now()
  private lastShown = 0
  private lastCallback = 0
  private shown = false

  constructor(
    private readonly label: string,
    private readonly enabled: boolean,
    private readonly callback?: (p: DownloadProgress) => void,
    private readonly info?: { repoId: string; filename: string },
  ) {}

  update(downloaded: number, total: number | undefined, final = false): void {
    const now = Date.now()
    if (this.callback && this.info && (final || now - this.lastCallback >= 100)) {
      this.lastCallback = now
      this.callback({ ...this.info, downloaded, total })
    }
    if (!this.enabled || (!final && now - this.lastShown < 200) || (!this.shown && now - this.started < 500)) return
    this.lastShown = now
    this.shown = true
    const seconds = Math.max(0.001, (now - this.started) / 1000)
    const pct = total ? ` (${Math.floor((100 * downloaded) / total)}%)` : ''
    const line = `${this.label}: ${humanBytes(downloaded)}${total ? ` / ${humanBytes(total)}` : ''}${pct}, ${humanBytes(downloaded / seconds)}/s`
    process.stderr.write(`\r${line}\x1b[K`)
  }

  end(): void {
    if (this.shown) process.stderr.write('\n')
    this.shown = false
  }
}

/**
 * Streams url into blob via a temp file beside it; the blob appears (by
 * rename) only when complete and, for sha256 etags, verified.
 */
async function downloadBlob(
  url: string,
  headers: Record<string, string>,
  blob: string,
  etag: string,
  expectedSize: number | undefined,
  t: Target & { filename: string },
  options: DownloadOptions,
  where: string,
): Promise<void> {
  const f = options.fetch ?? fetch
  // Unique per download, as huggingface_hub >= 1.x does: two processes
  // fetching the same blob never write into one file.
  const tmp = `${blob}.${randomBytes(4).toString('hex')}.incomplete`
  const retries = options.retries ?? 3
  const stallMs = secondsFromEnv('HF_HUB_DOWNLOAD_TIMEOUT', 10) * 1000
  // LFS files are named by their sha256: check it, since a flaky proxy can return wrong bytes with the right length.
  const verify = /^[0-9a-f]{64}$/.test(etag)
  const showLine = options.progress ?? (process.stderr.isTTY === true && !progressBarsDisabled())
  const progress = new ProgressLine(`Downloading ${t.filename}`, showLine, options.onProgress, { repoId: t.repoId, filename: t.filename })
  const file = await open(tmp, 'w')
  let renamed = false
  try {
    let written = 0
    let hash = verify ? createHash('sha256') : null
    let total = expectedSize
    for (let attempt = 0; ; attempt++) {
      const controller = new AbortController()
      let timer: NodeJS.Timeout | undefined
      const arm = () => {
        clearTimeout(timer)
        timer = setTimeout(() => controller.abort(new Error(`no data for ${stallMs / 1000} s`)), stallMs)
      }
      try {
        const reqHeaders: Record<string, string> = { ...headers, 'accept-encoding': 'identity' }
        if (written > 0) reqHeaders.range = `bytes=${written}-`
        arm()
        const res = await doFetch(f, url, { headers: reqHeaders, redirect: 'follow', signal: controller.signal }, t, where)
        if (!res.ok) {
          const err = await httpError(res, url, t, where)
          if (!isRetryableStatus(res.status)) throw Object.assign(err, { fatal: true })
          throw err
        }
        if (written > 0 && res.status !== 206) {
          // The server ignored the Range request: start over.
          written = 0
          hash = verify ? createHash('sha256') : null
          await file.truncate(0)
        }
        if (total === undefined) {
          const len = intOrUndefined(res.headers.get('content-length'))
          if (len !== undefined) total = written + len
        }
        if (!res.body) throw new HubError(`${where}: ${url} sent no body for ${what(t)}`, 'BadResponse', { ...t, url })
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          arm()
          try {
            await file.write(chunk, 0, chunk.length, written)
          } catch (err) {
            // A full disk or a read-only cache: fetching again cannot help.
            throw new HubError(`${where}: cannot write ${tmp} while downloading ${what(t)}: ${errorText(err)}; nothing was stored in the cache`, 'WriteFailed', { ...t, url }, { cause: err })
          }
          hash?.update(chunk)
          written += chunk.length
          if (total !== undefined && written > total) {
            throw Object.assign(new HubError(`${where}: ${url} sent more than the ${total} bytes announced for ${what(t)}`, 'BadResponse', { ...t, url }), { fatal: true })
          }
          progress.update(written, total)
        }
        if (total !== undefined && written < total) {
          throw new HubError(`${where}: the connection closed after ${written} of ${total} bytes of ${what(t)}`, 'Interrupted', { ...t, url })
        }
        break
      } catch (err) {
        const fatal = (err as { fatal?: boolean }).fatal === true || (err instanceof HubError && err.code === 'WriteFailed')
        if (fatal || attempt >= retries) {
          if (err instanceof HubError && ['EntryNotFound', 'RepoNotFound', 'GatedRepo', 'BadResponse', 'WriteFailed'].includes(err.code)) throw err
          throw new HubError(
            `${where}: downloading ${what(t)} failed after ${written} bytes${total !== undefined ? ` of ${total}` : ''} (${attempt + 1} attempt${attempt ? 's' : ''}); nothing was stored in the cache, run again to retry: ${errorText(err)}`,
            err instanceof HubError && err.code !== 'Network' ? err.code : 'Interrupted',
            { ...t, url },
            { cause: err },
          )
        }
        await new Promise((r) => setTimeout(r, Math.min(8000, 250 * 2 ** attempt)))
      } finally {
        clearTimeout(timer)
      }
    }
    progress.update(written, total, true)
    if (hash) {
      const digest = hash.digest('hex')
      if (digest !== etag) {
        throw new HubError(`${where}: ${what(t)} downloaded with sha256 ${digest}, but the Hub names it ${etag}; nothing was stored in the cache`, 'ChecksumMismatch', { ...t, url })
      }
    }
    await file.sync()
    await file.close()
    renameSync(tmp, blob)
    renamed = true
  } finally {
    progress.end()
    await file.close().catch(() => undefined)
    if (!renamed) {
      try {
        unlinkSync(tmp)
      } catch {
        // already gone
      }
    }
  }
}

/**
 * A killed download leaves blobs/<etag>.<8 hex>.incomplete. Before fetching the
 * same blob again, such files of ours that nobody has written to for an hour
 * are removed (a live download stops after HF_HUB_DOWNLOAD_TIMEOUT without
 * data, so an hour-old one is dead). Python's own <etag>.incomplete is left alone.
 */
function removeStaleIncomplete(blob: string): void {
  const dir = dirname(blob)
  const prefix = `${basename(blob)}.`
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !/^\.[0-9a-f]{8}\.incomplete$/.test(name.slice(prefix.length - 1))) continue
    try {
      const path = join(dir, name)
      if (Date.now() - statSync(path).mtimeMs > 3600_000) unlinkSync(path)
    } catch {
      // gone already, or not ours to remove
    }
  }
}

/** sha256 or git blob sha1 of a file, streamed. */
export async function hashFile(path: string, algorithm: 'sha256' | 'git-sha1'): Promise<string> {
  const hash = createHash(algorithm === 'sha256' ? 'sha256' : 'sha1')
  if (algorithm === 'git-sha1') hash.update(`blob ${statSync(path).size}\0`)
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/**
 * How a blob's name says it is checked: LFS blobs are named by their sha256,
 * regular files by their git blob sha1 (the etags the Hub sends); other names
 * cannot be checked.
 */
export function blobAlgorithm(name: string): 'sha256' | 'git-sha1' | null {
  if (/^[0-9a-f]{64}$/.test(name)) return 'sha256'
  if (/^[0-9a-f]{40}$/.test(name)) return 'git-sha1'
  return null
}

/** Why a cached blob does not match its name (or the size the Hub announced), or null when it does. Only sha256 names are hashed here (as on download). */
async function blobMismatch(blob: string, size: number | undefined): Promise<string | null> {
  const actualSize = statSync(blob).size
  if (size !== undefined && actualSize !== size) return `${actualSize} bytes, not ${size}`
  const name = basename(blob)
  if (blobAlgorithm(name) !== 'sha256') return null
  const digest = await hashFile(blob, 'sha256')
  return digest === name ? null : `sha256 ${digest}`
}

function offlineMiss(t: Target & { filename?: string }, cacheDir: string, where: string): HubError {
  const hint = t.filename ? `hf download ${t.repoType === 'dataset' ? '--repo-type dataset ' : ''}${t.repoId} ${t.filename}` : `hf download ${t.repoType === 'dataset' ? '--repo-type dataset ' : ''}${t.repoId}`
  return new HubError(
    `${where}: ${what(t)} (revision "${t.revision}") is not in the cache ${cacheDir}, and HF_HUB_OFFLINE is set, so it cannot be downloaded; run once online, or fetch it with Python (\`${hint}\`), or pass a local directory`,
    'Offline',
    { repoId: t.repoId, repoType: t.repoType, filename: t.filename, revision: t.revision },
  )
}

/**
 * huggingface_hub's hf_hub_download into the shared cache: returns the path of
 * snapshots/<commit>/<filename> (a link to the blob). Cached files are reused
 * without a download; offline, or with the Hub unreachable, only the cache is
 * read.
 */
export async function hfHubDownload(request: FileRequest): Promise<string> {
  const where = 'hfHubDownload'
  const repoId = checkRepoId(request.repoId, where)
  const filename = checkRepoFilename(request.filename, where)
  const repoType = checkRepoType(request.repoType, where)
  const revision = checkRevision(request.revision ?? 'main', where)
  const t = { repoId, repoType, revision, filename }
  const cacheDir = hubCacheDir(request)
  const storage = storageFolder(cacheDir, repoId, repoType)

  // finalAnswer: the cache is all there is (offline, or the Hub unreachable), so a broken link is an error naming it.
  const fromCache = (finalAnswer: boolean): string | null => {
    const commit = readRef(storage, revision)
    if (!commit) return null
    const entry = classifySnapshotEntry(storage, pointerPath(storage, commit, filename))
    if (entry.kind === 'broken' && finalAnswer) throw new HubError(`${where}: ${brokenLinkMessage(entry)}`, 'BrokenCache', t)
    return entry.kind === 'file' ? entry.path : null
  }
  // A commit hash names immutable content: a cached copy needs no check.
  if (REGEX_COMMIT_HASH.test(revision)) {
    const p = fromCache(false)
    if (p) return p
  }
  if (isOfflineMode(request)) {
    const p = fromCache(true)
    if (p) return p
    throw offlineMiss(t, cacheDir, where)
  }

  const headers = requestHeaders(request)
  const url = hubFileUrl(repoId, filename, { repoType, revision, endpoint: hubEndpoint(request) })
  let meta: FileMetadata
  try {
    meta = await fileMetadata(url, headers, request.fetch ?? fetch, t, where)
  } catch (err) {
    // As huggingface_hub: a missing file or revision is final; anything else
    // (no network, Hub down, a token problem) falls back to the cache.
    if (err instanceof HubError && (err.code === 'EntryNotFound' || err.code === 'RevisionNotFound')) throw err
    const p = fromCache(true)
    if (p) return p
    if (err instanceof HubError && isConnectivityError(err)) {
      err.message += `; it is not in the cache ${cacheDir} either`
    }
    throw err
  }

  const blob = blobPath(storage, meta.etag)
  const pointer = pointerPath(storage, meta.commit, filename)
  const entry = classifySnapshotEntry(storage, pointer)
  // The size the Hub announced is a free check against a truncated or replaced blob; a broken link is repaired below.
  if (entry.kind === 'file' && (meta.size === undefined || statSync(pointer).size === meta.size)) {
    try {
      writeRef(storage, revision, meta.commit)
    } catch {
      // a read-only shared cache: the file is there, the ref is a convenience
    }
    return pointer
  }
  makeDirs(join(storage, 'blobs'), 'Hub cache folder')
  tagCacheDir(cacheDir)
  writeRef(storage, revision, meta.commit)
  // A blob already there (another revision's, or a leftover) is reused only if it still matches its name.
  if (!existsFollowing(blob) || (await blobMismatch(blob, meta.size)) !== null) {
    let downloadHeaders = headers
    if (!isHubOrigin(url, meta.location)) {
      // A signed CDN URL: the token is for the Hub, never for a third party.
      const { authorization: _dropped, ...rest } = headers
      downloadHeaders = rest
    }
    removeStaleIncomplete(blob)
    await downloadBlob(meta.location, downloadHeaders, blob, meta.etag, meta.size, t, request, where)
  }
  linkPointer(blob, pointer, storage)
  return pointer
}

interface TreeEntry {
  type: string
  path: string
}

function nextLink(res: Response): string | null {
  const link = res.headers.get('link')
  if (!link) return null
  for (const part of link.split(',')) {
    const m = /<([^>]+)>\s*;(?:.*;)?\s*rel="?next"?/.exec(part)
    if (m) return m[1]
  }
  return null
}

async function getJson(url: string, t: Target, options: HubOptions, where: string): Promise<{ json: unknown; res: Response }> {
  const f = options.fetch ?? fetch
  const res = await doFetch(f, url, { headers: requestHeaders(options), signal: AbortSignal.timeout(secondsFromEnv('HF_HUB_ETAG_TIMEOUT', 10) * 3000) }, t, where)
  if (!res.ok) throw await httpError(res, url, t, where)
  const text = await res.text()
  try {
    return { json: JSON.parse(text), res }
  } catch {
    throw new HubError(`${where}: ${url} did not answer JSON (got ${JSON.stringify(text.slice(0, 80))}); check HF_ENDPOINT`, 'BadResponse', { ...t, url })
  }
}

/**
 * Every file path of a repo at a revision (the Hub's tree API, recursive,
 * following its pagination), sorted. Needs the network.
 */
export async function listRepoFiles(request: RepoRequest): Promise<string[]> {
  const where = 'listRepoFiles'
  const repoId = checkRepoId(request.repoId, where)
  const repoType = checkRepoType(request.repoType, where)
  const revision = checkRevision(request.revision ?? 'main', where)
  const t = { repoId, repoType, revision }
  if (isOfflineMode(request)) {
    throw new HubError(`${where}: listing the files of ${describeRepo(repoId, repoType)} needs the Hub, and HF_HUB_OFFLINE is set`, 'Offline', t)
  }
  let url: string | null = `${hubEndpoint(request)}/api/${repoType}s/${repoId}/tree/${quote(revision, '')}?recursive=true&expand=false`
  const files: string[] = []
  for (let page = 0; url && page < 10000; page++) {
    const { json, res } = await getJson(url, t, request, where)
    if (!Array.isArray(json)) throw new HubError(`${where}: ${url} did not answer a list of tree entries`, 'BadResponse', { ...t, url })
    for (const e of json as TreeEntry[]) if (e && e.type === 'file' && typeof e.path === 'string') files.push(e.path)
    const next = nextLink(res)
    url = next ? new URL(next, url).href : null
  }
  return files.sort()
}

export interface RepoInfo {
  /** The commit the revision points to. */
  sha: string
  files: string[]
}

/** The commit and file list of a revision (GET /api/{type}s/{repo}/revision/{revision}). */
export async function repoInfo(request: RepoRequest): Promise<RepoInfo> {
  const where = 'repoInfo'
  const repoId = checkRepoId(request.repoId, where)
  const repoType = checkRepoType(request.repoType, where)
  const revision = checkRevision(request.revision ?? 'main', where)
  const t = { repoId, repoType, revision }
  if (isOfflineMode(request)) throw new HubError(`${where}: ${describeRepo(repoId, repoType)} needs the Hub, and HF_HUB_OFFLINE is set`, 'Offline', t)
  const url = `${hubEndpoint(request)}/api/${repoType}s/${repoId}/revision/${quote(revision, '')}`
  const { json } = await getJson(url, t, request, where)
  const info = json as { sha?: unknown; siblings?: Array<{ rfilename?: unknown }> }
  if (typeof info.sha !== 'string' || !REGEX_COMMIT_HASH.test(info.sha)) {
    throw new HubError(`${where}: ${url} gave no commit hash ("sha") for ${describeRepo(repoId, repoType)}`, 'BadResponse', { ...t, url })
  }
  const files = Array.isArray(info.siblings)
    ? info.siblings.map((s) => s.rfilename).filter((f): f is string => typeof f === 'string').sort()
    : await listRepoFiles({ ...request, repoId, repoType, revision: info.sha })
  return { sha: info.sha, files }
}

function snapshotDir(cacheDir: string, repoId: string, repoType: RepoType, commit: string): string {
  return join(storageFolder(cacheDir, repoId, repoType), 'snapshots', commit)
}

/** The cached snapshot of a revision, or null. */
export function cachedSnapshot(request: { repoId: string; repoType?: RepoType; revision?: string; cacheDir?: string }): string | null {
  const where = 'cachedSnapshot'
  const repoType = checkRepoType(request.repoType, where)
  const repoId = checkRepoId(request.repoId, where)
  const cacheDir = hubCacheDir(request)
  const commit = readRef(storageFolder(cacheDir, repoId, repoType), checkRevision(request.revision ?? 'main', where))
  if (!commit) return null
  const dir = snapshotDir(cacheDir, repoId, repoType, commit)
  if (!existsFollowing(dir)) return null
  // Callers read any file of the folder: every entry must lead into the repo's blobs.
  scanSnapshot(dir)
  return dir
}

/**
 * huggingface_hub's snapshot_download: every file of a revision (or those
 * matching allowPatterns, minus ignorePatterns) into the cache; returns
 * snapshots/<commit>. Offline, or with the Hub unreachable, returns the cached
 * snapshot of the revision when there is one (which may hold fewer files).
 */
export async function snapshotDownload(request: SnapshotRequest): Promise<string> {
  const where = 'snapshotDownload'
  const repoId = checkRepoId(request.repoId, where)
  const repoType = checkRepoType(request.repoType, where)
  const revision = checkRevision(request.revision ?? 'main', where)
  const cacheDir = hubCacheDir(request)
  const t = { repoId, repoType, revision }
  const cached = () => {
    const dir = cachedSnapshot({ repoId, repoType, revision, cacheDir })
    if (!dir) return null
    // Of the files asked for, a link to a missing blob is named rather than left for a reader to trip on.
    for (const [rel, entry] of scanSnapshot(dir).broken) {
      if (matchesRepoPatterns(rel, request.allowPatterns, request.ignorePatterns)) throw new HubError(`${where}: ${brokenLinkMessage(entry)}`, 'BrokenCache', { ...t, filename: rel })
    }
    return dir
  }
  if (isOfflineMode(request)) {
    const dir = cached()
    if (dir) return dir
    throw offlineMiss(t, cacheDir, where)
  }
  let info: RepoInfo
  try {
    info = await repoInfo({ ...request, repoId, repoType, revision })
  } catch (err) {
    if (isConnectivityError(err)) {
      const dir = cached()
      if (dir) return dir
    }
    throw err
  }
  const files = info.files.filter((f) => matchesRepoPatterns(f, request.allowPatterns, request.ignorePatterns))
  for (const filename of files) {
    await hfHubDownload({ ...request, repoId, repoType, filename, revision: info.sha })
  }
  const storage = storageFolder(cacheDir, repoId, repoType)
  const dir = snapshotDir(cacheDir, repoId, repoType, info.sha)
  makeDirs(dir, 'Hub cache folder')
  writeRef(storage, revision, info.sha)
  // Entries this call did not write (a shared cache) are read by the caller too.
  scanSnapshot(dir)
  return dir
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'vocab.txt', 'spm.model', 'special_tokens_map.json', 'added_tokens.json']
const SAFETENSORS = 'model.safetensors'
const SAFETENSORS_INDEX = 'model.safetensors.index.json'
const OTHER_WEIGHTS = ['pytorch_model.bin', 'pytorch_model.bin.index.json', 'tf_model.h5', 'flax_model.msgpack', 'model.ckpt.index', 'rust_model.ot']

/** The files a model directory needs, or a clear error for repos bertkit cannot load. */
export function selectModelFiles(files: string[], repoLabel: string): { config: string; tokenizer: string[]; weights: string; sharded: boolean } {
  const has = new Set(files)
  if (!has.has('config.json')) throw new HubError(`${repoLabel} has no config.json, so it is not a transformers model`, 'NoWeights')
  // spm.model is only read when there is no tokenizer.json (DeBERTa-v3 repos ship both).
  const tokenizer = TOKENIZER_FILES.filter((f) => has.has(f) && !(f === 'spm.model' && has.has('tokenizer.json')))
  if (has.has(SAFETENSORS)) return { config: 'config.json', tokenizer, weights: SAFETENSORS, sharded: false }
  if (has.has(SAFETENSORS_INDEX)) return { config: 'config.json', tokenizer, weights: SAFETENSORS_INDEX, sharded: true }
  const others = OTHER_WEIGHTS.filter((f) => has.has(f))
  if (others.length > 0) {
    throw new HubError(
      `${repoLabel} has weights only as ${others.join(', ')}; bertkit reads safetensors (model.safetensors or a sharded index) and never unpickles .bin files. ` +
        'Convert once with Python: `AutoModel.from_pretrained(id).save_pretrained(dir, safe_serialization=True)` and pass that directory, ' +
        'or pass the revision of the Hub\'s safetensors conversion pull request (e.g. revision: "refs/pr/1") if the repo has one',
      'UnsupportedWeights',
    )
  }
  throw new HubError(`${repoLabel} has no model weights (no ${SAFETENSORS} or ${SAFETENSORS_INDEX})`, 'NoWeights')
}

function shardNames(indexPath: string, label: string): string[] {
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(indexPath, 'utf8'))
  } catch (err) {
    throw new HubError(`${label}: ${indexPath} is not valid JSON: ${errorText(err)}`, 'BadResponse')
  }
  const map = (parsed as { weight_map?: unknown } | null)?.weight_map
  if (!map || typeof map !== 'object') throw new HubError(`${label}: ${indexPath} has no "weight_map" object`, 'BadResponse')
  const shards = [...new Set(Object.values(map as Record<string, unknown>))]
  return shards.map((s) => checkRepoFilename(s, `${label}: weight_map of ${indexPath}`))
}

function looksLikePath(s: string): boolean {
  return s.startsWith('.') || s.startsWith('/') || s.startsWith('~') || s.includes('\\') || s.split('/').length > 2 || /^[A-Za-z]:/.test(s)
}

/**
 * A model directory for fromPretrained: a local directory as is; else a Hub
 * repo id, whose config, tokenizer files and safetensors weights (single file
 * or index plus shards) are fetched into the cache, returning the snapshot
 * folder. Repos with only pytorch_model.bin get a clear error.
 */
export async function resolveModelDir(idOrDir: string, options: DownloadOptions & { revision?: string } = {}): Promise<string> {
  const where = 'resolveModelDir'
  if (typeof idOrDir !== 'string' || idOrDir === '') throw new TypeError(`${where}: expected a model directory or Hub repo id, got ${JSON.stringify(idOrDir)}`)
  try {
    if (statSync(idOrDir).isDirectory()) return resolve(idOrDir)
  } catch {
    // not a local path: a Hub id
  }
  if (looksLikePath(idOrDir)) throw new Error(`${where}: "${idOrDir}" is not a directory (and not a Hub repo id "org/name")`)
  const repoId = checkRepoId(idOrDir, where)
  const repoType: RepoType = 'model'
  const revision = checkRevision(options.revision ?? 'main', where)
  const label = `${where}: model repo "${repoId}"${revision === 'main' ? '' : ` at revision "${revision}"`}`
  const cacheDir = hubCacheDir(options)

  const fromCache = (): string => {
    const dir = cachedSnapshot({ repoId, repoType, revision, cacheDir })
    if (!dir) throw offlineMiss({ repoId, repoType, revision }, cacheDir, where)
    const listing = scanSnapshot(dir)
    // Broken links count as present here, so that the error names the link rather than saying "no weights".
    const sel = selectModelFiles([...listing.files, ...listing.broken.keys()], `${label} (cached in ${dir})`)
    const brokenNamed = (f: string) => {
      const b = listing.broken.get(f)
      if (b) throw new HubError(`${label}: ${brokenLinkMessage(b)}`, 'BrokenCache', { repoId, repoType, revision, filename: f })
    }
    brokenNamed(sel.config)
    brokenNamed(sel.weights)
    const needed = [sel.config, sel.weights, ...(sel.sharded ? shardNames(join(dir, sel.weights), label) : [])]
    needed.forEach(brokenNamed)
    sel.tokenizer.forEach(brokenNamed)
    const storage = storageFolder(cacheDir, repoId, repoType)
    const missing = needed.filter((f) => classifySnapshotEntry(storage, join(dir, ...f.split('/'))).kind !== 'file')
    if (missing.length > 0) throw new HubError(`${label}: the cached snapshot ${dir} lacks ${missing.join(', ')}, and the Hub cannot be asked (offline)`, 'Offline', { repoId, repoType, revision, filename: missing[0] })
    return dir
  }
  if (isOfflineMode(options)) return fromCache()

  let info: RepoInfo
  try {
    info = await repoInfo({ ...options, repoId, repoType, revision })
  } catch (err) {
    if (isConnectivityError(err) && cachedSnapshot({ repoId, repoType, revision, cacheDir })) return fromCache()
    throw err
  }
  const sel = selectModelFiles(info.files, label)
  const get = (filename: string) => hfHubDownload({ ...options, repoId, repoType, filename, revision: info.sha })
  for (const f of [sel.config, ...sel.tokenizer]) await get(f)
  const weights = await get(sel.weights)
  if (sel.sharded) {
    for (const shard of shardNames(weights, label)) {
      if (!info.files.includes(shard)) throw new HubError(`${label}: ${sel.weights} names the shard "${shard}", which the repo does not have`, 'NoWeights', { repoId, repoType, revision, filename: shard })
      await get(shard)
    }
  }
  writeRef(storageFolder(cacheDir, repoId, repoType), revision, info.sha)
  const dir = snapshotDir(cacheDir, repoId, repoType, info.sha)
  // The model loader may read any file of the folder, including ones this call did not fetch.
  scanSnapshot(dir)
  return dir
}
