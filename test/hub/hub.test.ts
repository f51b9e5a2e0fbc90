// Hub downloads against a fake Hub on 127.0.0.1: the cache layout Python's
// huggingface_hub reads (blobs, relative snapshot links, refs), cache hits,
// HF_HUB_OFFLINE, HF_TOKEN, HF_ENDPOINT / HF_HOME / HF_HUB_CACHE, broken and
// corrupted downloads, and the errors for missing repos and files.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { HubError, hfHubDownload, listRepoFiles, normalizeEtag, resolveModelDir, snapshotDownload, hubFileUrl, selectModelFiles, type DownloadProgress } from '../../lib/hub/hub.js'
import { hubCacheDir, hubEndpoint, hubToken, isOfflineMode } from '../../lib/hub/config.js'
import { fnmatchToRegExp, globToRegExp, matchesRepoPatterns } from '../../lib/hub/glob.js'
import { caught as caughtError, scratchDirs } from '../helpers/scratch.js'
import { FakeHub, FIXTURES, MODEL_COMMIT, DATASET_COMMIT, fixtureHub, gitBlobSha1, readTree, sha256 } from '../fixtures/hub/server.js'

const { root, fresh: freshCache } = scratchDirs('bertkit-hub-', 'cache')

const MODEL = 'bertkit-test/tiny-bert'
const DATASET = 'bertkit-test/tiny-tomatoes'
const modelFiles = readTree(join(FIXTURES, 'model'))
const datasetFiles = readTree(join(FIXTURES, 'dataset'))

const HF_VARS = ['HF_ENDPOINT', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HOME', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_TOKEN_PATH', 'XDG_CACHE_HOME']
const savedEnv = Object.fromEntries(HF_VARS.map((k) => [k, process.env[k]]))
function resetEnv(): void {
  for (const k of HF_VARS) delete process.env[k]
}
resetEnv()
// A developer's own token file must not leak into requests.
process.env.HF_TOKEN_PATH = join(root, 'no-token-file')
t.teardown(() => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
})

const hub = fixtureHub()
hub.addRepo({
  type: 'model',
  id: 'bertkit-test/private-bert',
  commit: '3333333333333333333333333333333333333333',
  files: new Map([['config.json', Buffer.from('{"model_type":"bert"}')]]),
  lfs: new Set(),
  private: true,
})
hub.token = 'hf_secret_test_token'
let endpoint = ''
t.before(async () => {
  endpoint = await hub.start()
})
t.teardown(() => hub.close())

const base = () => ({ endpoint, progress: false as const })

const caught = (p: Promise<unknown>) => caughtError<HubError>(p)

t.test('a small file: blob named by git sha1, relative snapshot link, refs/main', async (t) => {
  const cacheDir = freshCache()
  hub.clearLog()
  const path = await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'config.json' })
  const storage = join(cacheDir, 'models--bertkit-test--tiny-bert')
  const content = modelFiles.get('config.json')!
  t.equal(path, join(storage, 'snapshots', MODEL_COMMIT, 'config.json'))
  t.ok(lstatSync(path).isSymbolicLink(), 'the snapshot entry is a link')
  t.equal(readlinkSync(path), join('..', '..', 'blobs', gitBlobSha1(content)), 'relative link to the blob')
  t.same(readFileSync(path), content)
  t.equal(readFileSync(join(storage, 'refs', 'main'), 'utf8'), MODEL_COMMIT, 'refs/main holds the commit, no newline')
  t.same(readdirSync(join(storage, 'blobs')), [gitBlobSha1(content)], 'one blob, no temp file left')
  t.same(hub.requests.map((r) => `${r.method} ${r.url}`), [`HEAD /${MODEL}/resolve/main/config.json`, `GET /${MODEL}/resolve/main/config.json`])
  t.equal(hub.requests[0].headers['accept-encoding'], 'identity')
})

t.test('an LFS file: etag from X-Linked-Etag (sha256), size from X-Linked-Size, body from the CDN redirect', async (t) => {
  const cacheDir = freshCache()
  hub.clearLog()
  const seen: DownloadProgress[] = []
  const path = await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'model.safetensors', onProgress: (p) => seen.push(p) })
  const content = modelFiles.get('model.safetensors')!
  t.same(readFileSync(path), content)
  t.equal(realpathSync(path), join(realpathSync(cacheDir), 'models--bertkit-test--tiny-bert', 'blobs', sha256(content)))
  t.same(hub.requests.map((r) => `${r.method} ${r.url}`), [`HEAD /${MODEL}/resolve/main/model.safetensors`, `GET /cdn/${sha256(content)}`])
  t.equal(hub.requests[1].headers.host, new URL(hub.cdnUrl).host, 'the GET goes to the CDN origin')
  t.ok(seen.length >= 1, 'progress reported')
  t.same(seen[seen.length - 1], { repoId: MODEL, filename: 'model.safetensors', downloaded: content.length, total: content.length })
})

t.test('a long download shows a progress line on stderr', async (t) => {
  const cacheDir = freshCache()
  const content = modelFiles.get('model.safetensors')!
  hub.slow.set(sha256(content), 8)
  const written: string[] = []
  const original = process.stderr.write
  process.stderr.write = ((chunk: string | Uint8Array) => {
    written.push(String(chunk))
    return true
  }) as typeof process.stderr.write
  try {
    await hfHubDownload({ endpoint, cacheDir, repoId: MODEL, filename: 'model.safetensors', progress: true })
  } finally {
    process.stderr.write = original
  }
  const text = written.join('')
  t.match(text, /\rDownloading model\.safetensors: [\d.]+ kB \/ 6\.5 kB \(\d+%\), [\d.]+ [kM]?B\/s/)
  t.match(text, /\(100%\)[^\r]*\n$/, 'ends at 100% with a newline')
  written.length = 0
  process.stderr.write = ((chunk: string | Uint8Array) => {
    written.push(String(chunk))
    return true
  }) as typeof process.stderr.write
  try {
    await hfHubDownload({ endpoint, cacheDir: freshCache(), repoId: MODEL, filename: 'model.safetensors', progress: true })
  } finally {
    process.stderr.write = original
  }
  t.same(written, [], 'a quick download stays quiet')
})

t.test('second call: cache hit without download; commit-hash revision and an unreachable Hub: no network at all', async (t) => {
  const cacheDir = freshCache()
  const first = await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'model.safetensors' })
  hub.clearLog()
  const again = await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'model.safetensors' })
  t.equal(again, first)
  t.same(hub.requests.map((r) => r.method), ['HEAD'], 'a branch is checked for a new commit (as in Python), nothing is downloaded')
  hub.clearLog()
  const byCommit = await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'model.safetensors', revision: MODEL_COMMIT })
  t.equal(byCommit, first)
  t.equal(hub.requests.length, 0, 'a commit hash is immutable: no request')

  // A port nobody listens on: the Hub is unreachable, the cache answers.
  const dead = createServer()
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r))
  const deadEndpoint = `http://127.0.0.1:${(dead.address() as AddressInfo).port}`
  await new Promise<void>((r) => dead.close(() => r()))
  t.equal(await hfHubDownload({ endpoint: deadEndpoint, progress: false, cacheDir, repoId: MODEL, filename: 'model.safetensors' }), first)
  {
    const err = await caught(hfHubDownload({ endpoint: deadEndpoint, progress: false, cacheDir, repoId: MODEL, filename: 'vocab.txt' }))
    t.ok(err instanceof HubError, 'a HubError')
    t.equal(err.code, 'Network')
    t.match(err.message, /cannot reach .*"vocab\.txt" of model repo "bertkit-test\/tiny-bert".*not in the cache/)
  }
})

t.test('the blob is reused when another revision links the same content', async (t) => {
  const cacheDir = freshCache()
  const other = new FakeHub()
  const content = Buffer.from('shared content')
  other.addRepo({ type: 'model', id: 'o/r', commit: 'a'.repeat(40), files: new Map([['f.txt', content]]), lfs: new Set(), branches: new Map([['v2', { commit: 'b'.repeat(40), files: new Map([['f.txt', content]]), lfs: new Set<string>() }]]) })
  const url = await other.start()
  t.teardown(() => other.close())
  const p1 = await hfHubDownload({ endpoint: url, progress: false, cacheDir, repoId: 'o/r', filename: 'f.txt' })
  other.clearLog()
  const p2 = await hfHubDownload({ endpoint: url, progress: false, cacheDir, repoId: 'o/r', filename: 'f.txt', revision: 'v2' })
  t.not(p1, p2)
  t.equal(realpathSync(p1), realpathSync(p2), 'one blob for both snapshots')
  t.same(other.requests.map((r) => r.method), ['HEAD'], 'no second download')
  t.equal(readFileSync(join(cacheDir, 'models--o--r', 'refs', 'v2'), 'utf8'), 'b'.repeat(40))
})

t.test('HF_HUB_OFFLINE: only the cache, a clear error naming repo and file', async (t) => {
  const cacheDir = freshCache()
  const cached = await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'config.json' })
  hub.clearLog()
  process.env.HF_HUB_OFFLINE = '1'
  t.teardown(() => delete process.env.HF_HUB_OFFLINE)
  t.equal(isOfflineMode(), true)
  t.equal(await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'config.json' }), cached)
  {
    const err = await caught(hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'vocab.txt' }))
    t.equal(err.code, 'Offline')
    t.match(err.message, /"vocab\.txt" of model repo "bertkit-test\/tiny-bert" \(revision "main"\) is not in the cache .* HF_HUB_OFFLINE/)
  }
  await t.rejects(listRepoFiles({ ...base(), cacheDir, repoId: MODEL }), /HF_HUB_OFFLINE/)
  t.equal(hub.requests.length, 0, 'offline: no request at all')
  process.env.HF_HUB_OFFLINE = 'false'
  t.equal(isOfflineMode(), false, 'only 1/ON/YES/TRUE switch it on')
})

t.test('HF_TOKEN goes out as a Bearer token; a private repo without it is a clear error', async (t) => {
  const cacheDir = freshCache()
  {
    const err = await caught(hfHubDownload({ ...base(), cacheDir, repoId: 'bertkit-test/private-bert', filename: 'config.json' }))
    t.equal(err.code, 'RepoNotFound')
    t.match(err.message, /model repo "bertkit-test\/private-bert" was not found \(fetching "config\.json"\); if it is private or gated, set HF_TOKEN/)
  }
  process.env.HF_TOKEN = hub.token!
  t.teardown(() => delete process.env.HF_TOKEN)
  hub.clearLog()
  const path = await hfHubDownload({ ...base(), cacheDir, repoId: 'bertkit-test/private-bert', filename: 'config.json' })
  t.equal(readFileSync(path, 'utf8'), '{"model_type":"bert"}')
  t.ok(hub.requests.length === 2 && hub.requests.every((r) => r.headers.authorization === `Bearer ${hub.token}`), 'HEAD and GET carry the token')
  hub.clearLog()
  await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'model.safetensors' })
  t.equal(hub.requests[0].headers.authorization, `Bearer ${hub.token}`, 'the Hub gets the token')
  t.match(hub.requests[1].url, /^\/cdn\//)
  t.equal(hub.requests[1].headers.authorization, undefined, 'the CDN (another origin) does not')
  hub.clearLog()
  await t.rejects(hfHubDownload({ ...base(), cacheDir: freshCache(), repoId: 'bertkit-test/private-bert', filename: 'config.json', token: false }))
  t.equal(hub.requests[0].headers.authorization, undefined, 'token: false sends none')
})

t.test('the token file that `hf auth login` writes is used when HF_TOKEN is unset', async (t) => {
  const home = join(root, 'hfhome-token')
  mkdirSync(home, { recursive: true })
  writeFileSync(join(home, 'token'), `${hub.token}\n`)
  delete process.env.HF_TOKEN_PATH
  process.env.HF_HOME = home
  t.teardown(() => {
    delete process.env.HF_HOME
    process.env.HF_TOKEN_PATH = join(root, 'no-token-file')
  })
  t.equal(hubToken(), hub.token)
  process.env.HF_TOKEN = 'from-env'
  t.equal(hubToken(), 'from-env', 'HF_TOKEN wins over the file')
  delete process.env.HF_TOKEN
})

t.test('HF_ENDPOINT, HF_HOME and HF_HUB_CACHE choose the server and the cache', async (t) => {
  const home = join(root, 'hfhome')
  process.env.HF_ENDPOINT = `${endpoint}/`
  process.env.HF_HOME = home
  t.teardown(() => {
    delete process.env.HF_ENDPOINT
    delete process.env.HF_HOME
    delete process.env.HF_HUB_CACHE
  })
  t.equal(hubEndpoint(), endpoint, 'trailing slash dropped')
  t.equal(hubCacheDir(), join(home, 'hub'))
  const p = await hfHubDownload({ repoId: MODEL, filename: 'vocab.txt', progress: false })
  t.equal(p, join(home, 'hub', 'models--bertkit-test--tiny-bert', 'snapshots', MODEL_COMMIT, 'vocab.txt'))
  const cacheDir = join(root, 'explicit-hub-cache')
  process.env.HF_HUB_CACHE = cacheDir
  t.equal(hubCacheDir(), cacheDir, 'HF_HUB_CACHE wins over HF_HOME')
  const q = await hfHubDownload({ repoId: DATASET, repoType: 'dataset', filename: 'README.md', progress: false })
  t.equal(q, join(cacheDir, 'datasets--bertkit-test--tiny-tomatoes', 'snapshots', DATASET_COMMIT, 'README.md'))
  delete process.env.HF_HOME
  delete process.env.HF_HUB_CACHE
  process.env.XDG_CACHE_HOME = join(root, 'xdg')
  t.teardown(() => delete process.env.XDG_CACHE_HOME)
  t.equal(hubCacheDir(), join(root, 'xdg', 'huggingface', 'hub'))
})

t.test('a download broken half-way leaves nothing in the cache; running again succeeds', async (t) => {
  const cacheDir = freshCache()
  const content = modelFiles.get('model.safetensors')!
  const sha = sha256(content)
  hub.cutAfter.set(sha, content.length >> 1)
  {
    const err = await caught(hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'model.safetensors', retries: 0 }))
    t.equal(err.code, 'Interrupted')
    t.match(err.message, /downloading "model\.safetensors" of model repo "bertkit-test\/tiny-bert" failed after \d+ bytes of 6680 .*nothing was stored in the cache/)
  }
  const storage = join(cacheDir, 'models--bertkit-test--tiny-bert')
  t.same(readdirSync(join(storage, 'blobs')), [], 'no blob and no .incomplete file')
  t.notOk(existsSync(join(storage, 'snapshots', MODEL_COMMIT, 'model.safetensors')), 'no snapshot entry')
  const path = await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'model.safetensors' })
  t.same(readFileSync(path), content)
  t.same(readdirSync(join(storage, 'blobs')), [sha])
})

t.test('a broken connection is resumed with a Range request', async (t) => {
  const cacheDir = freshCache()
  const content = modelFiles.get('model.safetensors')!
  hub.cutAfter.set(sha256(content), 3000)
  hub.clearLog()
  const path = await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'model.safetensors' })
  t.same(readFileSync(path), content)
  const gets = hub.requests.filter((r) => r.method === 'GET')
  t.equal(gets.length, 2)
  t.equal(gets[0].headers.range, undefined)
  t.match(gets[1].headers.range, /^bytes=\d+-$/, 'the retry asks for the rest only')
  t.ok(Number(/\d+/.exec(gets[1].headers.range as string)![0]) > 0)
})

t.test('wrong bytes of the right length fail the sha256 check and are not cached', async (t) => {
  const cacheDir = freshCache()
  const content = modelFiles.get('model.safetensors')!
  hub.corrupt.add(sha256(content))
  {
    const err = await caught(hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'model.safetensors' }))
    t.equal(err.code, 'ChecksumMismatch')
  }
  t.same(readdirSync(join(cacheDir, 'models--bertkit-test--tiny-bert', 'blobs')), [])
})

t.test('404s and other bad answers: clear errors naming repo and file', async (t) => {
  const cacheDir = freshCache()
  {
    const err = await caught(hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'nope.json' }))
    t.equal(err.code, 'EntryNotFound')
    t.match(err.message, /"nope\.json" of model repo "bertkit-test\/tiny-bert" was not found at revision "main" \(HTTP 404 EntryNotFound/)
  }
  await t.rejects(hfHubDownload({ ...base(), cacheDir, repoId: 'bertkit-test/missing', filename: 'config.json' }), /model repo "bertkit-test\/missing" was not found \(fetching "config\.json"\)/)
  {
    const err = await caught(hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'config.json', revision: 'v9' }))
    t.equal(err.code, 'RevisionNotFound')
    t.match(err.message, /revision "v9" does not exist in model repo "bertkit-test\/tiny-bert"/)
  }
  await t.rejects(hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: '../escape' }), /not a relative path inside a repo/)
  await t.rejects(hfHubDownload({ ...base(), cacheDir, repoId: 'a/b/c', filename: 'x' }), /not a valid Hub repo id/)
  hub.omitCommitHeader = true
  t.teardown(() => {
    hub.omitCommitHeader = false
  })
  await t.rejects(hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'vocab.txt' }), /no X-Repo-Commit header, so it does not come from a Hugging Face Hub server; check HF_ENDPOINT/)
})

t.test('a renamed repo: the Hub relative redirect is followed', async (t) => {
  hub.renames.set('model:old-org/tiny-bert', MODEL)
  t.teardown(() => hub.renames.delete('model:old-org/tiny-bert'))
  const cacheDir = freshCache()
  const p = await hfHubDownload({ ...base(), cacheDir, repoId: 'old-org/tiny-bert', filename: 'config.json' })
  t.same(readFileSync(p), modelFiles.get('config.json'))
  t.ok(p.includes('models--old-org--tiny-bert'), 'cached under the name asked for, as Python does')
})

t.test('listRepoFiles follows the tree pagination; datasets use /api/datasets', async (t) => {
  hub.treePageSize = 2
  t.teardown(() => {
    hub.treePageSize = 1000
  })
  hub.clearLog()
  t.same(await listRepoFiles({ ...base(), repoId: MODEL }), [...modelFiles.keys()].sort())
  t.equal(hub.requests.length, 2, 'four files, two a page')
  t.match(hub.requests[0].url, /^\/api\/models\/bertkit-test\/tiny-bert\/tree\/main\?recursive=true/)
  t.same(await listRepoFiles({ ...base(), repoId: DATASET, repoType: 'dataset' }), [...datasetFiles.keys()].sort())
  await t.rejects(listRepoFiles({ ...base(), repoId: DATASET, repoType: 'dataset', revision: 'refs/convert/parquet' }), /revision "refs\/convert\/parquet" does not exist/)
  t.match(hub.requests[hub.requests.length - 1].url, /tree\/refs%2Fconvert%2Fparquet\?/, 'revision escaped as one path segment')
})

t.test('snapshotDownload with allowPatterns', async (t) => {
  const cacheDir = freshCache()
  const dir = await snapshotDownload({ ...base(), cacheDir, repoId: MODEL, allowPatterns: ['*.json'] })
  t.equal(dir, join(cacheDir, 'models--bertkit-test--tiny-bert', 'snapshots', MODEL_COMMIT))
  t.same(readdirSync(dir).sort(), ['config.json', 'tokenizer_config.json'])
  const ds = await snapshotDownload({ ...base(), cacheDir, repoId: DATASET, repoType: 'dataset', allowPatterns: 'data/' })
  t.same(readdirSync(join(ds, 'data')).sort(), ['test-00000-of-00001.parquet', 'train-00000-of-00001.parquet', 'validation-00000-of-00001.parquet'])
  t.equal(readFileSync(join(cacheDir, 'datasets--bertkit-test--tiny-tomatoes', 'refs', 'main'), 'utf8'), DATASET_COMMIT)
  hub.clearLog()
  t.equal(await snapshotDownload({ ...base(), cacheDir, repoId: MODEL, offline: true }), dir, 'offline: the cached snapshot')
  t.equal(hub.requests.length, 0)
})

t.test('resolveModelDir: local folders as they are, Hub ids to a snapshot with config, tokenizer and weights', async (t) => {
  const local = join(root, 'local-model')
  mkdirSync(local)
  t.equal(await resolveModelDir(local), local)
  await t.rejects(resolveModelDir('./no/such/dir'), /"\.\/no\/such\/dir" is not a directory/)

  const cacheDir = freshCache()
  const dir = await resolveModelDir(MODEL, { ...base(), cacheDir })
  t.same(readdirSync(dir).sort(), ['config.json', 'model.safetensors', 'tokenizer_config.json', 'vocab.txt'])
  hub.clearLog()
  t.equal(await resolveModelDir(MODEL, { ...base(), cacheDir, offline: true }), dir)
  t.equal(hub.requests.length, 0, 'offline from the cache')
  await t.rejects(resolveModelDir(MODEL, { ...base(), cacheDir: freshCache(), offline: true }), /model repo "bertkit-test\/tiny-bert" \(revision "main"\) is not in the cache/)
})

t.test('resolveModelDir: sharded checkpoints, pytorch_model.bin-only repos, no weights', async (t) => {
  const other = new FakeHub()
  const config = Buffer.from('{"model_type":"bert"}')
  const index = Buffer.from(JSON.stringify({ metadata: {}, weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' } }))
  other.addRepo({
    type: 'model',
    id: 'o/sharded',
    commit: 'c'.repeat(40),
    files: new Map([
      ['config.json', config],
      ['model.safetensors.index.json', index],
      ['model-00001-of-00002.safetensors', Buffer.from('shard one')],
      ['model-00002-of-00002.safetensors', Buffer.from('shard two')],
      ['pytorch_model.bin', Buffer.from('pickle')],
      ['README.md', Buffer.from('# card')],
    ]),
    lfs: new Set(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'pytorch_model.bin']),
  })
  other.addRepo({ type: 'model', id: 'o/bin-only', commit: 'd'.repeat(40), files: new Map([['config.json', config], ['pytorch_model.bin', Buffer.from('pickle')]]), lfs: new Set() })
  other.addRepo({ type: 'model', id: 'o/no-weights', commit: 'e'.repeat(40), files: new Map([['config.json', config]]), lfs: new Set() })
  const url = await other.start()
  t.teardown(() => other.close())
  const cacheDir = freshCache()
  const dir = await resolveModelDir('o/sharded', { endpoint: url, cacheDir, progress: false })
  t.same(readdirSync(dir).sort(), ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json'], 'no .bin, no README')
  {
    const err = await caught(resolveModelDir('o/bin-only', { endpoint: url, cacheDir, progress: false }))
    t.equal(err.code, 'UnsupportedWeights')
    t.match(err.message, /model repo "o\/bin-only" has weights only as pytorch_model\.bin; bertkit reads safetensors/)
  }
  await t.rejects(resolveModelDir('o/no-weights', { endpoint: url, cacheDir, progress: false }), /model repo "o\/no-weights" has no model weights/)
})

t.test('URL and etag rules of huggingface_hub', async (t) => {
  t.equal(hubFileUrl('org/m', 'sub dir/f(1).json', { endpoint: 'http://h' }), 'http://h/org/m/resolve/main/sub%20dir/f%281%29.json')
  t.equal(hubFileUrl('org/d', 'a.parquet', { endpoint: 'http://h', repoType: 'dataset', revision: 'refs/convert/parquet' }), 'http://h/datasets/org/d/resolve/refs%2Fconvert%2Fparquet/a.parquet')
  t.equal(normalizeEtag('W/"abc"'), 'abc')
  t.equal(normalizeEtag('"abc"'), 'abc')
  t.equal(normalizeEtag(null), null)
})

t.test('pattern dialects: fnmatch for allowPatterns, glob for data files', async (t) => {
  t.ok(fnmatchToRegExp('*.json').test('a/b.json'), 'fnmatch * crosses /')
  t.notOk(globToRegExp('*.json').test('a/b.json'), 'glob * does not')
  t.ok(globToRegExp('**/train[-._ 0-9]*').test('train.csv'), '**/ matches zero folders')
  t.ok(globToRegExp('**/train[-._ 0-9]*').test('data/train-00000-of-00001.parquet'))
  t.notOk(globToRegExp('**/train[-._ 0-9]*').test('data/trainer.csv'))
  t.ok(globToRegExp('**/*[-._ 0-9]test/**').test('default/partial-test/0000.parquet'))
  t.ok(globToRegExp('data/[!x]*.csv').test('data/a.csv'))
  t.notOk(globToRegExp('data/[!x]*.csv').test('data/x.csv'))
  t.ok(matchesRepoPatterns('data/train.parquet', 'data/'))
  t.notOk(matchesRepoPatterns('README.md', ['*.json', 'data/']))
  t.notOk(matchesRepoPatterns('a.json', '*.json', 'a*'), 'ignore wins')
})

t.test('selectModelFiles: the tokenizer files a model download fetches', async (t) => {
  const bert = selectModelFiles(['config.json', 'model.safetensors', 'tokenizer.json', 'vocab.txt', 'tokenizer_config.json'], 'bert')
  t.same(bert.tokenizer, ['tokenizer.json', 'tokenizer_config.json', 'vocab.txt'])
  const debertaBoth = selectModelFiles(['config.json', 'model.safetensors', 'tokenizer.json', 'spm.model', 'tokenizer_config.json'], 'deberta')
  t.same(debertaBoth.tokenizer, ['tokenizer.json', 'tokenizer_config.json'], 'spm.model is skipped when tokenizer.json is there')
  const debertaSpm = selectModelFiles(['config.json', 'model.safetensors', 'spm.model', 'tokenizer_config.json'], 'deberta')
  t.same(debertaSpm.tokenizer, ['tokenizer_config.json', 'spm.model'], 'a bare spm.model is fetched')
})
