'use strict'
// Drives a REFERENCE Corestore (corestore 6.18.4 / hypercore 10.38.2, pinned in
// ./package.json) on a directory with its default random-access-file storage,
// so the Python Spacecorestore can be checked against it in both directions.
//
//   node refstore.js build   DIR SCRIPT_JSON
//   node refstore.js read    DIR SCRIPT_JSON
//   node refstore.js lock    DIR SECONDS [--until-stdin-eof]
//   node refstore.js trylock DIR
//
// SCRIPT_JSON is a JSON text (starting with "{") or the path of a file holding one.
// Prints one JSON object per line on stdout (one line, except `lock`). Exit
// status 0 on success; 1 on error, with {"error": message, "code": err.code}.
// Diagnostics go to stderr.
//
// A core is named by a *target*:
//   {"name": str, "namespace": [str, ...]}   store.namespace(a).namespace(b)....get({name})
//                                            (namespace defaults to [] = the root store)
//   {"key": hex}                             store.get({key}) -- opened by key only
//
// build: {"primaryKey": hex | null, "ops": [op, ...]}
//   new Corestore(DIR, {primaryKey}) then, for each op, in order:
//   {"get": target, "append": [hex, ...], "setUserData": {key: hex | null, ...}}
//       get the core (creates it: a key-only get creates an empty, unwritable core),
//       append the blocks as one batch (optional), set the user data (optional,
//       in key order as given), then close that session (the core auto-closes;
//       the reference never flushes on close, so oplog entries stay pending)
//   {"setUserData": {"name", "namespace", "key": str, "value": hex | null}}
//       shorthand for {"get": {name, namespace}, "setUserData": {key: value}}
//   then closes the store and prints
//   {"primaryKey": hex, "cores": [core, ...]}  one entry per distinct core, in
//   first-touch order: {"name": str|null, "namespace": [..]|null, "namespaceHash":
//   hex|null, "key", "discoveryKey", "length", "byteLength", "fork", "writable",
//   "userData": {key: hex}}
//
// read: {"primaryKey": hex | null, "cores": [target + {"append": [hex...]?,
//        "encryptionKey": hex?, "blocks": bool?}, ...]}
//   opens the store and, for each target, gets the core with createIfMissing:
//   false (a core that is not there is an error for that entry, not a new core),
//   reads its state, optionally appends (then reads again) and prints
//   {"primaryKey", "cores": [{"target", "key", "discoveryKey", "length",
//    "byteLength", "fork", "writable", "signatureValid", "verifierAccepts",
//    "userData", "blocks": [hex|null...], "lengthBefore", "appended"} |
//    {"target", "error", "code"}],
//    "filesChanged": [path...]}   every file of DIR added, removed or changed
//                                 by this run (expected [] when nothing is appended)
//   signatureValid: the stored signature checked with hypercore-crypto verify() over
//   the compat signable (TREE || treeHash || u64le(length) || u64le(fork)); null at
//   length 0 or for a manifest (non-compat) core; verifierAccepts: the reference's
//   own verifier as a cross-check.
//
// lock: opens the store (taking the OFD lock on primary-key), prints
//   {"event": "locked"}, holds it SECONDS (or until stdin reaches EOF with
//   --until-stdin-eof, whichever is first), closes, prints {"event": "released"}.
// trylock: opens the store and closes it: {"ok": true}, or exit 1 with
//   {"error", "code"} (ELOCKED when another process or store holds the lock).

const fs = require('fs')
const path = require('path')
const nodeCrypto = require('crypto')

const b4a = require('b4a')
const hcrypto = require('hypercore-crypto')
const Corestore = require('corestore')
const caps = require('hypercore/lib/caps')

const hex = (b) => (b === null || b === undefined) ? null : b4a.toString(b, 'hex')

function usage (msg) {
  const e = new Error(msg)
  e.code = 'USAGE'
  return e
}

function fromHex (s, what, len) {
  if (typeof s !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(s)) throw usage(what + ': expected a hex string')
  const b = b4a.from(s, 'hex')
  if (len !== undefined && b.byteLength !== len) throw usage(what + ': expected ' + len + ' bytes, got ' + b.byteLength)
  return b
}

function loadScript (arg) {
  if (!arg) throw usage('missing SCRIPT_JSON')
  const text = arg.trimStart().startsWith('{') ? arg : fs.readFileSync(arg, 'utf-8')
  const spec = JSON.parse(text)
  if (!spec || typeof spec !== 'object') throw usage('script: expected a JSON object')
  return spec
}

function storeOpts (spec) {
  const opts = {}
  if (spec.primaryKey !== null && spec.primaryKey !== undefined) opts.primaryKey = fromHex(spec.primaryKey, 'primaryKey', 32)
  return opts
}

// one namespace view per path, shared by every op of the run
function viewFor (store, views, nsPath) {
  if (!Array.isArray(nsPath) || nsPath.some((p) => typeof p !== 'string')) throw usage('namespace: expected an array of strings')
  const id = JSON.stringify(nsPath)
  let v = views.get(id)
  if (!v) {
    v = store
    for (const p of nsPath) v = v.namespace(p)
    views.set(id, v)
  }
  return v
}

function openTarget (store, views, t, extra) {
  if (!t || typeof t !== 'object') throw usage('target: expected an object')
  if (t.key !== undefined) return store.get({ key: fromHex(t.key, 'key', 32), ...extra })
  if (typeof t.name !== 'string') throw usage('target: needs "name" (string) or "key" (hex)')
  return viewFor(store, views, t.namespace || []).get({ name: t.name, ...extra })
}

function userDataOf (core) {
  const out = {}
  for (const { key, value } of core.core.header.userData) out[key] = hex(value)
  return out
}

function checkSignature (core) {
  const tree = core.core.tree
  const sig = tree.signature
  if (!sig) return { signatureValid: null, verifierAccepts: null }
  const verifier = core.core.verifier
  const verifierAccepts = verifier ? !!verifier.verify(tree.batch(), sig) : null
  const manifest = core.core.header.manifest
  const compat = !manifest || (manifest.signers.length === 1 && b4a.equals(manifest.signers[0].publicKey, core.key))
  if (!compat) return { signatureValid: null, verifierAccepts }
  const signable = caps.treeSignableCompat(tree.hash(), tree.length, tree.fork, false)
  return { signatureValid: hcrypto.verify(signable, sig, core.key), verifierAccepts }
}

function state (core) {
  return {
    key: hex(core.key),
    discoveryKey: hex(core.discoveryKey),
    length: core.length,
    byteLength: core.byteLength,
    fork: core.fork,
    writable: core.writable
  }
}

// -------------------------------------------------------------------- build

async function cmdBuild (dir, scriptArg) {
  if (!dir) throw usage('usage: refstore.js build DIR SCRIPT_JSON')
  const spec = loadScript(scriptArg)
  const ops = spec.ops || []
  if (!Array.isArray(ops)) throw usage('script: "ops" must be an array')

  const store = new Corestore(dir, storeOpts(spec))
  await store.ready()
  const views = new Map()
  const cores = new Map() // key hex -> entry
  try {
    for (let n = 0; n < ops.length; n++) {
      let op = ops[n]
      try {
        if (op.get === undefined && op.setUserData !== undefined) {
          const { name, namespace, key, value } = op.setUserData
          op = { get: { name, namespace }, setUserData: { [key]: value } }
        }
        if (op.get === undefined) throw usage('unknown op: ' + JSON.stringify(op).slice(0, 200))
        const core = openTarget(store, views, op.get, {})
        try {
          await core.ready()
          if (op.append !== undefined) {
            if (!Array.isArray(op.append)) throw usage('append: expected an array of hex strings')
            if (op.append.length) await core.append(op.append.map((h) => fromHex(h, 'append')))
          }
          if (op.setUserData !== undefined) {
            for (const [k, v] of Object.entries(op.setUserData)) {
              await core.setUserData(k, (v === null || v === undefined) ? null : fromHex(v, 'setUserData.' + k))
            }
          }
          const k = hex(core.key)
          const named = op.get.key === undefined
          const prev = cores.get(k)
          const entry = {
            name: named ? op.get.name : (prev ? prev.name : null),
            namespace: named ? (op.get.namespace || []) : (prev ? prev.namespace : null),
            namespaceHash: named ? hex(viewFor(store, views, op.get.namespace || [])._namespace) : (prev ? prev.namespaceHash : null),
            ...state(core),
            userData: userDataOf(core)
          }
          cores.set(k, entry)
        } finally {
          await core.close()
        }
      } catch (err) {
        err.message = 'op ' + n + ': ' + err.message
        throw err
      }
    }
  } finally {
    await store.close()
  }
  return { primaryKey: hex(store.primaryKey), cores: [...cores.values()] }
}

// --------------------------------------------------------------------- read

function storeDigests (root) {
  const out = new Map()
  const walk = (d) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, ent.name)
      if (ent.isDirectory()) walk(p)
      else out.set(path.relative(root, p), nodeCrypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex'))
    }
  }
  walk(root)
  return out
}

async function readCore (core, want) {
  await core.ready()
  const out = state(core)
  Object.assign(out, checkSignature(core))
  out.userData = userDataOf(core)
  if (want.blocks !== false) {
    const pending = []
    for (let i = 0; i < core.length; i++) pending.push(core.get(i, { wait: false }))
    out.blocks = (await Promise.all(pending)).map(hex)
  }
  return out
}

async function cmdRead (dir, scriptArg) {
  if (!dir) throw usage('usage: refstore.js read DIR SCRIPT_JSON')
  if (!fs.existsSync(dir)) { const e = new Error('No such directory: ' + dir); e.code = 'ENOENT'; throw e }
  const spec = loadScript(scriptArg)
  const targets = spec.cores || []
  if (!Array.isArray(targets)) throw usage('script: "cores" must be an array')

  const before = storeDigests(dir)
  const store = new Corestore(dir, storeOpts(spec))
  await store.ready()
  const views = new Map()
  const results = []
  try {
    for (const t of targets) {
      const extra = { createIfMissing: false }
      if (t.encryptionKey) extra.encryptionKey = fromHex(t.encryptionKey, 'encryptionKey', 32)
      let core = null
      try {
        core = openTarget(store, views, t, extra)
        let out = await readCore(core, t)
        if (Array.isArray(t.append) && t.append.length) {
          const lengthBefore = out.length
          await core.append(t.append.map((h) => fromHex(h, 'append')))
          out = await readCore(core, t)
          out.lengthBefore = lengthBefore
          out.appended = t.append.length
        }
        results.push({ target: t, ...out })
      } catch (err) {
        if (err && err.code === 'USAGE') throw err
        results.push({ target: t, error: String((err && err.message) || err), code: (err && err.code) || null })
      } finally {
        if (core) await core.close().catch(() => {})
      }
    }
  } finally {
    await store.close()
  }
  const after = storeDigests(dir)
  const changed = []
  for (const [p, d] of after) if (before.get(p) !== d) changed.push(p)
  for (const p of before.keys()) if (!after.has(p)) changed.push(p)
  return { primaryKey: hex(store.primaryKey), cores: results, filesChanged: changed.sort() }
}

// -------------------------------------------------------------------- locks

function emitLine (obj) {
  return new Promise((resolve) => process.stdout.write(JSON.stringify(obj) + '\n', resolve))
}

async function cmdLock (dir, seconds, flag) {
  const secs = Number(seconds)
  if (!dir || !Number.isFinite(secs) || secs < 0) throw usage('usage: refstore.js lock DIR SECONDS [--until-stdin-eof]')
  if (flag !== undefined && flag !== '--until-stdin-eof') throw usage('unknown argument: ' + flag)
  const store = new Corestore(dir)
  await store.ready()
  await emitLine({ event: 'locked' })
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, secs * 1000)
    if (flag === '--until-stdin-eof') {
      process.stdin.on('data', () => {})
      process.stdin.on('end', () => { clearTimeout(timer); resolve() })
      process.stdin.on('error', () => { clearTimeout(timer); resolve() })
      process.stdin.resume()
    }
  })
  await store.close()
  process.stdin.pause()
  return { event: 'released' }
}

async function cmdTrylock (dir) {
  if (!dir) throw usage('usage: refstore.js trylock DIR')
  const store = new Corestore(dir)
  try {
    await store.ready()
  } finally {
    await store.close().catch(() => {})
  }
  return { ok: true }
}

// --------------------------------------------------------------------- main

async function main (argv) {
  const [cmd, dir, ...rest] = argv
  if (cmd === 'build') return cmdBuild(dir, rest[0])
  if (cmd === 'read') return cmdRead(dir, rest[0])
  if (cmd === 'lock') return cmdLock(dir, rest[0], rest[1])
  if (cmd === 'trylock') return cmdTrylock(dir)
  throw usage('usage: refstore.js build DIR SCRIPT_JSON | read DIR SCRIPT_JSON | lock DIR SECONDS [--until-stdin-eof] | trylock DIR')
}

function emit (obj, code) {
  process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code))
}

main(process.argv.slice(2)).then(
  (out) => emit(out, 0),
  (err) => {
    console.error(String((err && err.stack) || err))
    emit({ error: String((err && err.message) || err), code: (err && err.code) || null }, 1)
  }
)
