// A rank for the launcher tests: prints the environment the launcher gave it;
// FAIL_RANK exits with FAIL_CODE at once, the others then wait (SLEEP_MS).
const keys = ['RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'GROUP_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'BERTKIT_NUM_THREADS', 'OMP_NUM_THREADS']
console.log('ENV ' + JSON.stringify(Object.fromEntries(keys.map((k) => [k, process.env[k] ?? null])).valueOf()) + ' ARGS ' + JSON.stringify(process.argv.slice(2)))
if (process.env.FAIL_RANK === process.env.RANK) process.exit(Number(process.env.FAIL_CODE ?? 1))
if (process.env.SLEEP_MS) setTimeout(() => undefined, Number(process.env.SLEEP_MS))
