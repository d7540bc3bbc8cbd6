'use strict'
// Reference side of scripts/bench_transport.py: the REFERENCE secret stream
// (@hyperswarm/secret-stream 6.9.2 from tests/interop/node_modules; run
// `npm ci` there first) over loopback TCP. One endpoint per process.
//
//   node scripts/bench_transport_ref.js sink   --port P --count N --size S [--timeout SEC]
//   node scripts/bench_transport_ref.js source --port P --count N --size S [--timeout SEC]
//   node scripts/bench_transport_ref.js hs-server --port P [--timeout SEC]
//   node scripts/bench_transport_ref.js hs-client --port P --count N [--seconds T] [--timeout SEC]
//
// sink: listens on 127.0.0.1:P (0 = any free port), prints
//   {"event":"listening","port":…}; accepts one connection as the Noise
//   responder, receives N messages of S bytes, then prints
//   {"event":"done","messages":N,"bytes":…,"seconds":…} where seconds runs from
//   the handshake completing to the N-th message arriving, and exits 0.
// source: connects as the initiator, writes N messages of S bytes as fast as
//   the stream accepts them (waiting for 'drain' when write() returns false),
//   ends the stream and exits 0 once the socket has closed.
// hs-server: listens; for each connection completes the handshake (responder)
//   and ends its side when the peer ends. Runs until SIGTERM or --timeout.
// hs-client: N sequential connections (or until --seconds elapsed): TCP connect,
//   Noise handshake, end, wait for the server's header and end; prints
//   {"event":"done","handshakes":n,"seconds":…}.
// Static key pairs are random (as hyperswarm's); every loop is bounded by a
// count and by --timeout (default 120 s, exit 3 when hit). Loopback only.

const net = require('net')
const path = require('path')

const NM = path.join(__dirname, '../tests/interop/node_modules')
const SecretStream = require(path.join(NM, '@hyperswarm/secret-stream'))

function parse (argv) {
  const [mode, ...rest] = argv
  const o = { mode, port: 0, count: 1000, size: 65536, seconds: 0, timeout: 120 }
  for (let i = 0; i < rest.length; i++) {
    const k = rest[i]
    const v = rest[++i]
    if (v === undefined) usage('missing value for ' + k)
    if (k === '--port') o.port = Number(v)
    else if (k === '--count') o.count = Number(v)
    else if (k === '--size') o.size = Number(v)
    else if (k === '--seconds') o.seconds = Number(v)
    else if (k === '--timeout') o.timeout = Number(v)
    else usage('unknown option ' + k)
  }
  if (!['sink', 'source', 'hs-server', 'hs-client'].includes(mode)) usage('bad mode')
  for (const k of ['port', 'count', 'size', 'seconds', 'timeout']) {
    if (!Number.isFinite(o[k]) || o[k] < 0) usage('bad ' + k)
  }
  return o
}

function usage (msg) {
  process.stderr.write(msg + '\n(see the header of bench_transport_ref.js)\n')
  process.exit(2)
}

function out (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

const now = () => process.hrtime.bigint()
const secs = (a, b) => Number(b - a) / 1e9

function guard (o) {
  const t = setTimeout(() => {
    out({ event: 'timeout' })
    process.exit(3)
  }, o.timeout * 1000)
  t.unref()
}

function sink (o) {
  const server = net.createServer((socket) => {
    server.close()
    const s = new SecretStream(false, socket)
    let t0 = null
    let n = 0
    let bytes = 0
    s.on('error', (err) => out({ event: 'error', message: err.message }))
    s.opened.then((ok) => {
      if (ok) t0 = now()
    })
    s.on('data', (m) => {
      if (t0 === null) t0 = now()
      n++
      bytes += m.byteLength
      if (n === o.count) {
        const t1 = now()
        out({ event: 'done', messages: n, bytes, seconds: secs(t0, t1) })
        s.end()
        setImmediate(() => process.exit(0))
      }
    })
    s.on('end', () => {
      if (n < o.count) {
        out({ event: 'error', message: `stream ended after ${n} messages` })
        process.exit(1)
      }
    })
  })
  server.listen(o.port, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }))
}

function source (o) {
  const socket = net.connect(o.port, '127.0.0.1')
  const s = new SecretStream(true, socket)
  const msg = Buffer.alloc(o.size, 0x61)
  let i = 0
  s.on('error', (err) => {
    out({ event: 'error', message: err.message })
    process.exit(1)
  })
  s.on('close', () => {
    out({ event: 'done', messages: i })
    process.exit(0)
  })
  s.on('data', () => {})
  function pump () {
    while (i < o.count) {
      i++
      if (!s.write(msg)) {
        s.once('drain', pump)
        return
      }
    }
    s.end()
  }
  s.opened.then((ok) => {
    if (ok) pump()
  })
}

function hsServer (o) {
  const server = net.createServer((socket) => {
    const s = new SecretStream(false, socket)
    s.on('error', () => {})
    s.on('data', () => {})
    s.on('end', () => s.end())
  })
  server.listen(o.port, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }))
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0))
}

function hsClient (o) {
  let n = 0
  const t0 = now()
  const deadline = o.seconds > 0 ? t0 + BigInt(Math.round(o.seconds * 1e9)) : null
  function one () {
    if (n >= o.count || (deadline !== null && now() >= deadline)) {
      out({ event: 'done', handshakes: n, seconds: secs(t0, now()) })
      process.exit(0)
    }
    const socket = net.connect(o.port, '127.0.0.1')
    socket.setNoDelay(true)
    const s = new SecretStream(true, socket)
    let done = false
    s.on('error', (err) => {
      out({ event: 'error', message: err.message })
      process.exit(1)
    })
    s.on('data', () => {})
    // opened = Noise done; we end at once, and the connection counts when it has
    // closed, i.e. after the server's header and its end (FIN) have arrived.
    s.opened.then((ok) => {
      if (!ok) {
        out({ event: 'error', message: 'handshake failed' })
        process.exit(1)
      }
      s.end()
    })
    s.on('close', () => {
      if (done) return
      done = true
      n++
      one()
    })
  }
  one()
}

const o = parse(process.argv.slice(2))
guard(o)
if (o.mode === 'sink') sink(o)
else if (o.mode === 'source') source(o)
else if (o.mode === 'hs-server') hsServer(o)
else hsClient(o)
