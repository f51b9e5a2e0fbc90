// Process groups on Gloo across real processes over loopback: the
// collectives' results, ordering with the CPU stream, and the faults — a
// rendezvous that never completes, mismatched ranks, a rank killed mid-run.
import t from 'tap'
import { join } from 'node:path'
import { freePort, glooMissing, runRanks, workers } from './helpers.js'

const skip = glooMissing()
const script = join(workers, 'collectives.js')

t.test('all-reduce (sum, max, min, a coalesced average), broadcast, all-gather and barrier among 3 processes', { skip: skip ?? false }, async (t) => {
  const port = await freePort()
  const runs = await runRanks(script, [0, 1, 2], { WORLD_SIZE: '3', MASTER_PORT: String(port), SCENARIO: 'ops' })
  for (const r of runs) {
    t.equal(r.code, 0, `rank ${r.rank} exits 0${r.code ? `: ${r.stderr}` : ''}`)
    const res = r.result!
    t.match(res.describe, /^gloo \(.*bertkit_gloo\.so\)$/, 'Gloo through the shim')
    t.same((res.sum as number[]).slice(0, 3), [6, -3, 1.5], `rank ${r.rank}: float32 sum`)
    t.ok(Math.abs((res.sum as number[])[3] - 3e-3) < 1e-9, 'the small value summed')
    t.same(res.max, [2, 21], `rank ${r.rank}: int32 max`)
    t.same(res.min, [0, -2], `rank ${r.rank}: float32 min`)
    t.same(res.broadcast, [200, 201, 202], `rank ${r.rank}: broadcast from rank 2`)
    t.same(res.allGather, [[0, 0], [1, 1], [2, 4]], `rank ${r.rank}: all-gather in rank order`)
    t.same(res.coalescedAvg, [2, 2, 2], `rank ${r.rank}: two tensors averaged as one bucket`)
    t.same(res.queued, [3, 3], `rank ${r.rank}: a collective issued behind queued CPU work, and work after wait() sees its result`)
  }
})

t.test('a rendezvous that never completes times out naming the address and the missing rank', { skip: skip ?? false }, async (t) => {
  const port = await freePort()
  const [alone] = await runRanks(script, [0], { WORLD_SIZE: '2', MASTER_PORT: String(port), TIMEOUT_MS: '1500' })
  t.equal(alone.code, 2)
  t.match(String(alone.result!.error), `rendezvous at tcp://127.0.0.1:${port} timed out after 1.5 s: rank 0 of 2 waited for rank 1, which never joined`)
  t.ok(alone.seconds < 20, `gave up in ${alone.seconds} s`)
  const [orphan] = await runRanks(script, [1], { WORLD_SIZE: '2', MASTER_PORT: String(port), TIMEOUT_MS: '1500' })
  t.equal(orphan.code, 2)
  t.match(String(orphan.result!.error), `rank 1 of 2 found no rendezvous store at tcp://127.0.0.1:${port}`)
  t.match(String(orphan.result!.error), /is rank 0 running/)
})

t.test('ranks that disagree are refused with both sides named', { skip: skip ?? false }, async (t) => {
  const port = await freePort()
  const runs = await Promise.all([
    runRanks(script, [0], { WORLD_SIZE: '2', MASTER_PORT: String(port), TIMEOUT_MS: '8000' }),
    runRanks(script, [1], { WORLD_SIZE: '3', MASTER_PORT: String(port), TIMEOUT_MS: '8000' }),
  ])
  const [r0, r1] = runs.map((r) => r[0])
  t.equal(r0.code, 2)
  t.match(String(r0.result!.error), /rank 1 \(pid \d+ on .*\) was started with WORLD_SIZE=3 but rank 0 of 2 with WORLD_SIZE=2/)
  t.equal(r1.code, 2)
  t.match(String(r1.result!.error), /rank 0 failed \(exit code 1\)/, 'the other side hears why at once')
  const port2 = await freePort()
  const twice = await Promise.all([
    runRanks(script, [0], { WORLD_SIZE: '2', MASTER_PORT: String(port2), TIMEOUT_MS: '3000' }),
    runRanks(script, [0], { WORLD_SIZE: '2', MASTER_PORT: String(port2), TIMEOUT_MS: '3000' }),
  ])
  const messages = twice.map((r) => String(r[0].result?.error))
  t.ok(messages.some((m) => /cannot host the store on port \d+: Address already in use/.test(m)) || messages.some((m) => /already held by another process/.test(m)),
    `two processes with RANK=0 are told: ${messages.join(' | ')}`)
})

t.test('a missing Gloo shim is named, with how to get it', async (t) => {
  const port = await freePort()
  const [r] = await runRanks(script, [0], { WORLD_SIZE: '1', MASTER_PORT: String(port), BERTKIT_GLOO_LIBRARY: '/nonexistent/bertkit_gloo.so' })
  t.equal(r.code, 2)
  t.match(String(r.result!.error), /backend 'gloo' is not available in this build.*apt-get install libgloo-dev.*\/nonexistent\/bertkit_gloo\.so: not found/s)
})

t.test('killing a rank mid-collective: the other exits non-zero within 60 s naming it', { skip: skip ?? false }, async (t) => {
  const port = await freePort()
  const runs = await runRanks(script, [0, 1], { WORLD_SIZE: '2', MASTER_PORT: String(port), SCENARIO: 'die', DIE_RANK: '1' }, 90_000)
  const [survivor, killed] = runs
  t.equal(killed.signal, 'SIGKILL', 'rank 1 was killed')
  t.equal(survivor.code, 3, 'rank 0 exits non-zero')
  t.ok(survivor.seconds < 60, `rank 0 was done after ${survivor.seconds} s`)
  t.match(String(survivor.result!.error), /rank 1 died: its connection closed without a goodbye/, 'the message names the dead rank')
})
