// One rank of the process-group tests (test/distributed/process_group.test.ts):
// connects with the environment the launcher would set, runs SCENARIO and
// prints one JSON line "RESULT {...}" for the test to read.
import { initProcessGroup, destroyProcessGroup } from '../../../lib/distributed/index.js'
import { tensor, synchronizeAsync } from '../../../lib/tensor/index.js'

async function main(): Promise<void> {
  const scenario = process.env.SCENARIO ?? 'ops'
  const started = Date.now()
  const device = (process.env.DEVICE ?? 'cpu') as 'cpu' | 'cuda'
  const pg = await initProcessGroup({ device, timeout: Number(process.env.TIMEOUT_MS ?? 20000) })
  const rank = pg.rank
  const world = pg.worldSize
  if (scenario === 'ops') {
    const f = tensor(Float32Array.from([rank + 1, -rank, 0.5 * rank, 1e-3]), { device })
    const i = tensor(Int32Array.from([rank, 10 * rank + 1]), { dtype: 'int32', device })
    await pg.allReduce(f, 'sum')
    await pg.allReduce(i, 'max')
    const m = tensor(Float32Array.from([rank, -rank]), { device })
    await pg.allReduce(m, 'min')
    const b = tensor(Float32Array.from([rank * 100, rank * 100 + 1, rank * 100 + 2]), { device })
    await pg.broadcast(b, world - 1)
    const gathered = await pg.allGather(tensor(Int32Array.from([rank, rank * rank]), { dtype: 'int32', device }))
    await pg.barrier()
    // A bucket of two tensors, averaged in place as one collective.
    const c1 = tensor(Float32Array.from([rank + 1, 2]), { device }), c2 = tensor(Float32Array.from([rank * 2]), { device })
    await pg.allReduceCoalesced([c1, c2], 'avg')
    // Collectives queued behind CPU ops: the sum sees the value written by the op before it.
    const q = tensor(Float32Array.from([1, 1]), { device })
    const work = pg.allReduceAsync(q)
    work.wait()
    await synchronizeAsync(device)
    console.log('RESULT ' + JSON.stringify({
      rank, world, describe: pg.describe(),
      sum: f.toArray(), max: i.toArray(), min: m.toArray(), broadcast: b.toArray(),
      allGather: gathered.map((g) => g.toArray()), coalescedAvg: [...c1.toArray(), ...c2.toArray()], queued: q.toArray(), completed: work.isCompleted,
    }))
    destroyProcessGroup()
    return
  }
  if (scenario === 'die') {
    // DIE_RANK is killed while the others wait in a collective with it.
    const x = tensor(Float32Array.from([1]))
    await pg.allReduce(x)
    if (rank === Number(process.env.DIE_RANK)) {
      await new Promise((r) => setTimeout(r, 500))
      process.kill(process.pid, 'SIGKILL')
    }
    try {
      await pg.allReduce(x)
      console.log('RESULT ' + JSON.stringify({ rank, error: null }))
    } catch (e) {
      console.log('RESULT ' + JSON.stringify({ rank, error: (e as Error).message, seconds: (Date.now() - started) / 1000 }))
      process.exitCode = 3
    }
    return
  }
  throw new Error(`unknown SCENARIO ${scenario}`)
}

main().catch((e) => {
  console.log('RESULT ' + JSON.stringify({ error: (e as Error).message }))
  process.exitCode = 2
})
