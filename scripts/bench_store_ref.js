'use strict'
// Reference side of scripts/bench_store.py: times the REFERENCE Corestore
// (corestore 6.18.4 / hypercore 10.38.2 from tests/interop/node_modules; run
// `npm ci` there first) on disk with its default random-access-file storage.
//
//   node scripts/bench_store_ref.js make DIR N PRIMARY_KEY_HEX
//   node scripts/bench_store_ref.js open DIR N
//   node scripts/bench_store_ref.js list DIR
//
// Prints one JSON line:
//   make: {"case":"make","cores","seconds"}
//         new Corestore(DIR, {primaryKey}); for i < N: get({name: "core-<i>"}),
//         append one block "core-<i> block 0", close the session (the core auto-closes).
//   open: {"case":"open","cores","ready_seconds","first_seconds","seconds","fds"}
//         times new Corestore(DIR) + ready() (ready_seconds), then for i < N, one at a
//         time: get({name: "core-<i>"}) + ready() + get(0) (checked), sessions kept open;
//         first_seconds = up to the first core's get(0), seconds = up to the last one.
//         fds = this process's open file descriptors with every session still open
//         (random-access-file keeps a pool of ~512 and cycles them).
//   list: {"case":"list","cores","seconds","digest","rss_bytes"}
//         corestore 6 has no listing: walks cores/*/*/* and opens each core by its
//         discovery key (as replication does: store.get({_discoveryKey}), no create),
//         reads key, corestore/name, length and byteLength, closes it. digest =
//         sha256 over the sorted lines "<key hex> <name> <length> <byteLength>\n"
//         (name "-" when absent), as bench_store.py computes from list_cores().
// Timings use process.hrtime.bigint(). Exit 1 with {"error": message} on failure.

const fs = require('fs')
const path = require('path')
const crypto = require('crypto')

const NM = path.join(__dirname, '../tests/interop/node_modules')
const Corestore = require(path.join(NM, 'corestore'))
const b4a = require(path.join(NM, 'b4a'))

const now = () => process.hrtime.bigint()
const secs = (a, b) => Number(b - a) / 1e9

function block (i) {
  return b4a.from('core-' + i + ' block 0')
}

function countFds () {
  try {
    return fs.readdirSync('/proc/self/fd').length
  } catch {
    return null
  }
}

async function make (dir, n, pk) {
  const t0 = now()
  const store = new Corestore(dir, { primaryKey: b4a.from(pk, 'hex') })
  await store.ready()
  for (let i = 0; i < n; i++) {
    const core = store.get({ name: 'core-' + i })
    await core.ready()
    if (core.length === 0) await core.append(block(i))
    await core.close()
  }
  await store.close()
  return { case: 'make', cores: n, seconds: secs(t0, now()) }
}

async function open (dir, n) {
  const t0 = now()
  const store = new Corestore(dir)
  await store.ready()
  const tReady = now()
  const sessions = []
  let tFirst = null
  for (let i = 0; i < n; i++) {
    const core = store.get({ name: 'core-' + i })
    await core.ready()
    const b = await core.get(0)
    if (!b || !b4a.equals(b, block(i))) throw new Error('core-' + i + ': wrong block 0')
    sessions.push(core)
    if (i === 0) tFirst = now()
  }
  const t1 = now()
  const fds = countFds()
  await store.close()
  return { case: 'open', cores: n, ready_seconds: secs(t0, tReady), first_seconds: secs(t0, tFirst), seconds: secs(t0, t1), fds }
}

async function list (dir) {
  const t0 = now()
  const store = new Corestore(dir)
  await store.ready()
  const lines = []
  const root = path.join(dir, 'cores')
  const ls = (p) => { try { return fs.readdirSync(p).sort() } catch { return [] } }
  for (const a of ls(root)) {
    for (const b of ls(path.join(root, a))) {
      for (const id of ls(path.join(root, a, b))) {
        const core = store.get({ _discoveryKey: b4a.from(id, 'hex'), active: false })
        try {
          await core.ready()
          const name = await core.getUserData('corestore/name')
          lines.push(b4a.toString(core.key, 'hex') + ' ' + (name ? b4a.toString(name) : '-') + ' ' + core.length + ' ' + core.byteLength + '\n')
        } finally {
          await core.close()
        }
      }
    }
  }
  await store.close()
  const t1 = now()
  lines.sort()
  const h = crypto.createHash('sha256')
  for (const l of lines) h.update(l)
  return { case: 'list', cores: lines.length, seconds: secs(t0, t1), digest: h.digest('hex'), rss_bytes: process.memoryUsage().rss }
}

async function main (argv) {
  const [cmd, dir, a] = argv
  if (cmd === 'make') return make(dir, Number(a), argv[3])
  if (cmd === 'open') return open(dir, Number(a))
  if (cmd === 'list') return list(dir)
  throw new Error('usage: bench_store_ref.js make DIR N PRIMARY_KEY_HEX | open DIR N | list DIR')
}

main(process.argv.slice(2)).then(
  (out) => process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0)),
  (err) => {
    console.error(String((err && err.stack) || err))
    process.stdout.write(JSON.stringify({ error: String((err && err.message) || err) }) + '\n', () => process.exit(1))
  }
)
