// A shared cache is input like any other: refs, revisions, repo ids and file
// names that would lead out of the cache, snapshot links that point outside
// the repo's blobs, links whose blob is gone, and blobs whose content no
// longer matches their name. Each is refused (or repaired) with a message
// naming the file, online and offline; `bertkit cache verify` finds them all.
import t from 'tap'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { HubError, cachedSnapshot, hfHubDownload, listRepoFiles, repoInfo, resolveModelDir, snapshotDownload } from '../../lib/hub/hub.js'
import { checkRepoFilename, checkRepoId, checkRevision, readRef, storageFolder, tryLoadFromCache } from '../../lib/hub/cache.js'
import { verifyCache } from '../../lib/hub/verify.js'
import { main } from '../../lib/cli/main.js'
import { AutoTokenizer } from '../../lib/tokenization/index.js'
import { loadDataset } from '../../lib/data/load_dataset.js'
import { FIXTURES, MODEL_COMMIT, fixtureHub, readTree, sha256 } from '../fixtures/hub/server.js'
import { caught, scratchDirs } from '../helpers/scratch.js'

const { root, fresh: freshCache } = scratchDirs('bertkit-hub-safety-', 'cache')
for (const k of ['HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_TOKEN', 'HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_HOME']) delete process.env[k]
process.env.HF_TOKEN_PATH = join(root, 'no-token-file')

const MODEL = 'bertkit-test/tiny-bert'
const DATASET = 'bertkit-test/tiny-tomatoes'
const STORAGE = 'models--bertkit-test--tiny-bert'
const modelFiles = readTree(join(FIXTURES, 'model'))
const hub = fixtureHub()
let endpoint = ''
t.before(async () => {
  endpoint = await hub.start()
})
t.teardown(() => hub.close())
const base = () => ({ endpoint, progress: false as const })

/** A tree outside every cache, laid out like a snapshot, that a tampered ref or link could lead to. */
const outside = join(root, 'outside')
mkdirSync(outside)
writeFileSync(join(outside, 'config.json'), '{"model_type":"bert","planted":true}')
writeFileSync(join(outside, 'secret.txt'), 'not for the model loader')


t.test('revisions, repo ids and file names that could leave the cache are refused before any request', async (t) => {
  const badRevisions = ['..', '../../etc', 'a/../../b', 'main/..', '/etc/passwd', 'refs\\..\\..\\x', 'C:\\x', 'C:x', '', './main', 'a//b', 'x\0y', 'main/', '.hidden']
  for (const r of badRevisions) {
    t.throws(() => checkRevision(r, 'test'), /is not a valid revision/, `revision ${JSON.stringify(r)}`)
  }
  for (const r of ['main', 'v1.0', 'refs/pr/1', 'refs/convert/parquet', 'a'.repeat(40), 'release-2024_01']) t.equal(checkRevision(r, 'test'), r)
  const badIds = ['..', '../x', 'a/..', 'a/../b', '/abs', 'a/b/c', 'a\\b', '.hidden', 'x--y', 'x..y', 'C:', 'c:/x', 'org/name.git', 'café', '-x', 'x-', '', 'a/']
  for (const id of badIds) t.throws(() => checkRepoId(id, 'test'), /is not a valid Hub repo id/, `repo id ${JSON.stringify(id)}`)
  for (const id of ['bert-base-uncased', 'org/name', 'o/n.v2', 'A_B/c-d']) t.equal(checkRepoId(id, 'test'), id)
  const badFiles = ['../x', 'a/../../x', '..', '/etc/passwd', 'C:/x', 'C:x', 'a\\..\\x', '\\\\server\\share\\x', './x', 'a//b', 'a/', 'a/./b', 'x\0']
  for (const f of badFiles) t.throws(() => checkRepoFilename(f, 'test'), /not a relative path inside a repo/, `filename ${JSON.stringify(f)}`)

  const cacheDir = freshCache()
  hub.clearLog()
  for (const revision of ['../../../outside', 'a/../../b', '/abs']) {
    for (const offline of [false, true]) {
      await t.rejects(hfHubDownload({ ...base(), cacheDir, offline, repoId: MODEL, filename: 'config.json', revision }), /is not a valid revision/)
      await t.rejects(snapshotDownload({ ...base(), cacheDir, offline, repoId: MODEL, revision }), /is not a valid revision/)
      await t.rejects(resolveModelDir(MODEL, { ...base(), cacheDir, offline, revision }), /is not a valid revision/)
    }
    await t.rejects(listRepoFiles({ ...base(), cacheDir, repoId: MODEL, revision }), /is not a valid revision/)
    await t.rejects(repoInfo({ ...base(), cacheDir, repoId: MODEL, revision }), /is not a valid revision/)
    t.throws(() => cachedSnapshot({ cacheDir, repoId: MODEL, revision }), /is not a valid revision/)
  }
  for (const repoId of ['../outside', 'a/../../b', '..']) {
    await t.rejects(hfHubDownload({ ...base(), cacheDir, repoId, filename: 'config.json' }), /is not a valid Hub repo id/)
    t.throws(() => cachedSnapshot({ cacheDir, repoId }), /is not a valid Hub repo id/)
    t.throws(() => tryLoadFromCache(cacheDir, repoId, 'model', 'config.json'), /is not a valid Hub repo id/)
    t.throws(() => storageFolder(cacheDir, repoId, 'model'), /is not a valid Hub repo id/)
  }
  for (const filename of ['../../../outside/config.json', '/etc/passwd', 'C:\\x', 'a\\..\\..\\x']) {
    await t.rejects(hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename }), /not a relative path inside a repo/)
    await t.rejects(hfHubDownload({ ...base(), cacheDir, offline: true, repoId: MODEL, filename }), /not a relative path inside a repo/)
  }
  t.equal(hub.requests.length, 0, 'nothing reached the network')
  t.same(readdirSync(cacheDir), [], 'nothing was written into the cache')
})

t.test('a ref whose content is not a commit hash (refs/main = "../../..") is refused, online and offline', async (t) => {
  const cacheDir = freshCache()
  await resolveModelDir(MODEL, { ...base(), cacheDir })
  const storage = join(cacheDir, STORAGE)
  // Lay out a "snapshot" outside the cache where the tampered ref would lead.
  const escape = join('..', '..', '..', 'outside')
  writeFileSync(join(storage, 'refs', 'main'), escape)
  const message = /refs\/main should hold a 40-character commit hash but holds "\.\.\/\.\.\/\.\.\/outside"/
  t.throws(() => readRef(storage, 'main'), message)
  t.throws(() => cachedSnapshot({ cacheDir, repoId: MODEL }), message)
  t.throws(() => tryLoadFromCache(cacheDir, MODEL, 'model', 'config.json'), message)
  await t.rejects(resolveModelDir(MODEL, { ...base(), cacheDir, offline: true }), message)
  await t.rejects(hfHubDownload({ ...base(), cacheDir, offline: true, repoId: MODEL, filename: 'config.json' }), message)
  await t.rejects(snapshotDownload({ ...base(), cacheDir, offline: true, repoId: MODEL }), message)
  await t.rejects(AutoTokenizer.fromPretrained(MODEL, { ...base(), cacheDir, offline: true }), message)
  // Online, the Hub's answer rewrites the ref; the tampered one is never followed.
  const dir = await resolveModelDir(MODEL, { ...base(), cacheDir })
  t.equal(dir, join(storage, 'snapshots', MODEL_COMMIT))
  t.equal(readFileSync(join(storage, 'refs', 'main'), 'utf8'), MODEL_COMMIT, 'the ref is repaired')
  // A ref naming a commit hash with extra path parts is just as bad.
  writeFileSync(join(storage, 'refs', 'main'), `${MODEL_COMMIT}/../../../../outside`)
  await t.rejects(resolveModelDir(MODEL, { ...base(), cacheDir, offline: true }), /should hold a 40-character commit hash/)
})

t.test('snapshot links that lead outside the repo blobs are refused wherever the cache is read', async (t) => {
  for (const how of ['relative link', 'absolute link', 'link to another repo', 'snapshot folder is a link', 'sub-folder is a link']) {
    const cacheDir = freshCache()
    const dir = await resolveModelDir(MODEL, { ...base(), cacheDir })
    const storage = join(cacheDir, STORAGE)
    let planted: string
    if (how === 'relative link') {
      planted = join(dir, 'config.json')
      unlinkSync(planted)
      symlinkSync(join('..', '..', '..', '..', 'outside', 'config.json'), planted)
    } else if (how === 'absolute link') {
      planted = join(dir, 'vocab.txt')
      unlinkSync(planted)
      symlinkSync(join(outside, 'secret.txt'), planted)
    } else if (how === 'link to another repo') {
      const other = join(cacheDir, 'models--x--y', 'blobs')
      mkdirSync(other, { recursive: true })
      writeFileSync(join(other, 'b'), '{"model_type":"bert"}')
      planted = join(dir, 'config.json')
      unlinkSync(planted)
      symlinkSync(join(other, 'b'), planted)
    } else if (how === 'snapshot folder is a link') {
      rmSync(dir, { recursive: true })
      symlinkSync(outside, dir)
      planted = dir
    } else {
      symlinkSync(outside, join(dir, 'extra'))
      planted = join(dir, 'extra')
    }
    const refused = /outside|refusing to read/
    await t.rejects(resolveModelDir(MODEL, { ...base(), cacheDir, offline: true }), refused, `${how}: resolveModelDir offline`)
    await t.rejects(resolveModelDir(MODEL, { ...base(), cacheDir }), refused, `${how}: resolveModelDir online`)
    await t.rejects(snapshotDownload({ ...base(), cacheDir, offline: true, repoId: MODEL }), refused, `${how}: snapshotDownload offline`)
    t.throws(() => cachedSnapshot({ cacheDir, repoId: MODEL }), refused, `${how}: cachedSnapshot`)
    if (how === 'relative link' || how === 'link to another repo') {
      await t.rejects(hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'config.json' }), refused, `${how}: hfHubDownload online`)
      await t.rejects(hfHubDownload({ ...base(), cacheDir, offline: true, repoId: MODEL, filename: 'config.json' }), refused, `${how}: hfHubDownload offline`)
    }
    const report = await verifyCache({ cacheDir, repoId: MODEL })
    t.ok(report.problems.some((p) => p.path.startsWith(planted) && /outside/.test(p.message)), `${how}: cache verify names ${planted}`)
    void storage
  }
})

t.test('a snapshot folder that is a link out of the cache is never written through', async (t) => {
  const cacheDir = freshCache()
  await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'vocab.txt' })
  const snap = join(cacheDir, STORAGE, 'snapshots', MODEL_COMMIT)
  const elsewhere = mkdtempSync(join(root, 'elsewhere'))
  rmSync(snap, { recursive: true })
  symlinkSync(elsewhere, snap)
  await t.rejects(hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'config.json' }), /outside the repo's snapshots folder; refusing to write there/)
  t.same(readdirSync(elsewhere), [], 'no link was made outside the cache')
})

t.test('a snapshot link to a missing blob is named; online it is downloaded again', async (t) => {
  const cacheDir = freshCache()
  const dir = await resolveModelDir(MODEL, { ...base(), cacheDir })
  const weights = join(dir, 'model.safetensors')
  const blob = realpathSync(weights)
  unlinkSync(blob)
  const named = new RegExp(`${weights.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is a broken link: its blob \\.\\./\\.\\./blobs/${sha256(modelFiles.get('model.safetensors')!)} does not exist`)
  await t.rejects(resolveModelDir(MODEL, { ...base(), cacheDir, offline: true }), named, 'offline: the broken link is named, not "no model weights"')
  await t.rejects(hfHubDownload({ ...base(), cacheDir, offline: true, repoId: MODEL, filename: 'model.safetensors' }), named)
  t.throws(() => tryLoadFromCache(cacheDir, MODEL, 'model', 'model.safetensors'), /is a broken link/)
  await t.rejects(snapshotDownload({ ...base(), cacheDir, offline: true, repoId: MODEL, allowPatterns: '*.safetensors' }), named)
  t.ok(await snapshotDownload({ ...base(), cacheDir, offline: true, repoId: MODEL, allowPatterns: '*.json' }), 'a broken link not asked for does not get in the way')
  const report = await verifyCache({ cacheDir })
  t.same(report.problems.map((p) => p.path), [weights])
  t.match(report.problems[0].message, /broken link/)
  // Online: the blob is fetched again and the link works; stale unfinished downloads of it (ours, an hour idle) go.
  const blobsDir = join(cacheDir, STORAGE, 'blobs')
  const stale = join(blobsDir, `${basename(blob)}.0badf00d.incomplete`)
  const fresh = join(blobsDir, `${basename(blob)}.1badf00d.incomplete`)
  const python = join(blobsDir, `${basename(blob)}.incomplete`)
  for (const f of [stale, fresh, python]) writeFileSync(f, 'partial')
  const hourAgo = new Date(Date.now() - 2 * 3600_000)
  utimesSync(stale, hourAgo, hourAgo)
  utimesSync(python, hourAgo, hourAgo)
  hub.clearLog()
  t.equal(await resolveModelDir(MODEL, { ...base(), cacheDir }), dir)
  t.same(readFileSync(weights), modelFiles.get('model.safetensors'))
  t.ok(hub.requests.some((r) => r.method === 'GET' && r.url.startsWith('/cdn/')), 'downloaded again')
  t.notOk(existsSync(stale), 'an hour-old unfinished download of ours is removed')
  t.ok(existsSync(fresh) && existsSync(python), 'a recent one, and Python\'s own, are left alone')
  for (const f of [fresh, python]) unlinkSync(f)

  // The same for a dataset file: named rather than a split silently missing.
  const dsDir = await snapshotDownload({ ...base(), cacheDir, repoId: DATASET, repoType: 'dataset' })
  const files = readdirSync(join(dsDir, 'data'))
  const victim = join(dsDir, 'data', files[0])
  unlinkSync(realpathSync(victim))
  await t.rejects(loadDataset(DATASET, { ...base(), cacheDir, offline: true }), /is a broken link/)
})

t.test('blobs are checked against their sha256: on download, on reuse, and by `bertkit cache verify`', async (t) => {
  const cacheDir = freshCache()
  const dir = await resolveModelDir(MODEL, { ...base(), cacheDir })
  const weights = join(dir, 'model.safetensors')
  const good = modelFiles.get('model.safetensors')!
  const blob = realpathSync(weights)
  t.equal(await verifyCache({ cacheDir }).then((r) => r.problems.length), 0, 'a fresh cache verifies clean')
  {
    const r = await verifyCache({ cacheDir })
    t.equal(r.blobsChecked, readdirSync(join(cacheDir, STORAGE, 'blobs')).length, 'every blob (sha256 and git sha1 names) is hashed')
  }
  // Same length, one byte changed: only hashing can tell.
  const bad = Buffer.from(good)
  bad[bad.length >> 1] ^= 0x55
  writeFileSync(blob, bad)
  const report = await verifyCache({ cacheDir })
  t.same(report.problems.map((p) => p.path), [blob])
  t.match(report.problems[0].message, /content does not match its name: sha256 is [0-9a-f]{64}/)
  // The CLI prints it and exits non-zero.
  const out: string[] = []
  const log = console.log
  console.log = (...a: unknown[]) => { out.push(a.join(' ')) }
  let code: number
  try {
    code = await main(['cache', 'verify', '--cache-dir', cacheDir])
  } finally {
    console.log = log
  }
  t.equal(code, 1, 'exit status 1 when a problem is found')
  t.match(out.join('\n'), new RegExp(`${blob.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: content does not match`))
  await t.rejects(main(['cache', 'verify', '--cache-dir', cacheDir, '--repo', '../x']), /not a valid Hub repo id/)
  await t.rejects(main(['cache', 'frob']), /unknown cache command "frob"/)

  // A new revision that links the same blob: the damaged blob is replaced, not linked.
  const other = await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'model.safetensors', revision: MODEL_COMMIT })
  t.equal(other, weights, 'the same snapshot entry')
  unlinkSync(weights)
  hub.clearLog()
  await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'model.safetensors' })
  t.same(readFileSync(weights), good, 'relinked to a blob that was downloaded again, since the cached one failed its sha256')
  t.ok(hub.requests.some((r) => r.method === 'GET'), 'it was downloaded again')

  // A truncated blob behind an existing link: the size the Hub announces gives it away online.
  writeFileSync(blob, good.subarray(0, 10))
  await hfHubDownload({ ...base(), cacheDir, repoId: MODEL, filename: 'model.safetensors' })
  t.same(readFileSync(weights), good, 'a truncated blob is downloaded again')
  t.equal((await verifyCache({ cacheDir })).problems.length, 0)

  // Unfinished downloads and tampered refs are reported too.
  writeFileSync(join(cacheDir, STORAGE, 'blobs', `${sha256(good)}.abcd1234.incomplete`), 'partial')
  writeFileSync(join(cacheDir, STORAGE, 'refs', 'main'), '../../x')
  const r2 = await verifyCache({ cacheDir })
  t.same(r2.problems.map((p) => p.message.split(/[:;]/)[0]).sort(), ['an unfinished download (no snapshot uses it)', 'holds "../../x", not a commit hash'].sort())
  t.ok(existsSync(cacheDir))
})
