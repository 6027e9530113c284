// The WebSocket (WebTorrent) load of bench/ws.py, the same for every tracker measured.
//
//   node ws_load.mjs load URL CONNECTIONS TORRENTS OFFERS WARMUP SECONDS SDP_LENGTH
//     Each connection is one leecher of torrent i % TORRENTS and keeps one announce in flight:
//     an announce carrying OFFERS offers of SDP_LENGTH characters, the next one as soon as its
//     reply is in. Every offer relayed to a connection is answered at once, as a browser
//     does. Counts, over SECONDS after WARMUP seconds, the announces answered and the messages
//     sent (announces and answers: what the tracker reads), and prints them as JSON.
//
//   node ws_load.mjs idle URL CONNECTIONS TORRENTS
//     Opens CONNECTIONS connections, each announcing once (no offers) then staying idle, and
//     prints {"opened": n, ...}. Then, at each line read on stdin: "check" scrapes on every
//     connection and prints how many were answered within 30 seconds; "close" closes them all.
//
// Info hashes, peer ids and offer ids are 20 characters of code points 0-255, as browsers
// send them. The client side is kept cheap, so that the tracker, not the load, is what runs
// out of processor: WebSocket framing written here on plain sockets (a zero mask, which the
// protocol allows and which makes masking a copy), and relayed offers answered by copying
// their ids' JSON text rather than parsing each message whole.
import net from 'node:net'
import crypto from 'node:crypto'
import readline from 'node:readline'

const [mode, url, ...rest] = process.argv.slice(2)
const { hostname, port, pathname } = new URL(url)

const id = () => JSON.stringify(crypto.randomBytes(20).toString('latin1'))

function frame (text) {
  const payload = Buffer.from(text, 'utf8')
  const length = payload.length
  let head
  if (length < 126) {
    head = Buffer.from([0x81, 0x80 | length, 0, 0, 0, 0])
  } else if (length < 65536) {
    head = Buffer.from([0x81, 0x80 | 126, length >> 8, length & 255, 0, 0, 0, 0])
  } else {
    head = Buffer.alloc(14)
    head[0] = 0x81
    head[1] = 0x80 | 127
    head.writeBigUInt64BE(BigInt(length), 2)
  }
  return Buffer.concat([head, payload])
}

// The JSON text of a string field of a message, quotes included, as it came.
function field (text, name) {
  const key = `"${name}":"`
  let start = text.indexOf(key)
  if (start < 0) return null
  start += key.length - 1
  let end = start + 1
  while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1
  return text.slice(start, end + 1)
}

// A WebSocket on a plain socket: onText(text) for each text message from the server.
function connect (onOpen, onText, onClose) {
  const socket = net.connect(Number(port), hostname)
  socket.setNoDelay(true)
  let buffered = Buffer.alloc(0)
  let open = false
  socket.on('connect', () => {
    const key = crypto.randomBytes(16).toString('base64')
    socket.write(`GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`)
  })
  socket.on('data', data => {
    buffered = buffered.length ? Buffer.concat([buffered, data]) : data
    if (!open) {
      const end = buffered.indexOf('\r\n\r\n')
      if (end < 0) return
      if (!buffered.subarray(0, 12).toString().includes(' 101')) {
        socket.destroy()
        return
      }
      buffered = buffered.subarray(end + 4)
      open = true
      onOpen(socket)
    }
    let offset = 0
    while (buffered.length - offset >= 2) {
      let length = buffered[offset + 1] & 127
      let start = offset + 2
      if (length === 126) {
        if (buffered.length - offset < 4) break
        length = buffered.readUInt16BE(offset + 2)
        start = offset + 4
      } else if (length === 127) {
        if (buffered.length - offset < 10) break
        length = Number(buffered.readBigUInt64BE(offset + 2))
        start = offset + 10
      }
      if (buffered.length < start + length) break
      const opcode = buffered[offset] & 15
      if (opcode === 1) onText(socket, buffered.toString('utf8', start, start + length))
      else if (opcode === 8) socket.end()
      offset = start + length
    }
    buffered = offset === buffered.length ? Buffer.alloc(0) : buffered.subarray(offset)
  })
  socket.on('error', () => {})
  socket.on('close', () => onClose(socket))
  return socket
}

function load ([connections, torrents, offers, warmup, seconds, sdpLength]) {
  const hashes = Array.from({ length: Number(torrents) }, id)
  const sdp = JSON.stringify('v=0\r\n' + 'a'.repeat(Number(sdpLength) - 5))
  const answerSdp = JSON.stringify('v=1\r\n' + 'a'.repeat(Number(sdpLength) - 5))
  let counting = false
  const counts = { announces: 0, answers_sent: 0, offers_received: 0, answers_received: 0, failures: 0, closed: 0 }
  let opened = 0
  for (let i = 0; i < Number(connections); i++) {
    const infoHash = hashes[i % hashes.length]
    const peerId = id()
    let event = ',"event":"started"'
    // One announce in flight: the next goes when its reply is in.
    let waiting = false
    const announce = socket => {
      waiting = true
      let text = `{"action":"announce","info_hash":${infoHash},"peer_id":${peerId},` +
        `"numwant":${offers},"uploaded":0,"downloaded":0,"left":1000000${event},"offers":[`
      for (let k = 0; k < Number(offers); k++) {
        text += `${k ? ',' : ''}{"offer":{"type":"offer","sdp":${sdp}},"offer_id":${id()}}`
      }
      event = ''
      socket.write(frame(text + ']}'))
    }
    connect(socket => { opened++; announce(socket) }, (socket, text) => {
      if (text.includes('"offer":')) {
        if (counting) counts.offers_received++
        socket.write(frame(
          `{"action":"announce","info_hash":${infoHash},"peer_id":${peerId},` +
          `"to_peer_id":${field(text, 'peer_id')},"offer_id":${field(text, 'offer_id')},` +
          `"answer":{"type":"answer","sdp":${answerSdp}}}`
        ))
        if (counting) counts.answers_sent++
      } else if (text.includes('"answer":')) {
        if (counting) counts.answers_received++
      } else if (text.includes('"failure reason"')) {
        if (counting) counts.failures++
      } else if (waiting) {
        waiting = false
        if (counting) counts.announces++
        announce(socket)
      }
    }, () => { if (counting) counts.closed++ })
  }
  setTimeout(() => {
    counting = true
    const started = process.hrtime.bigint()
    setTimeout(() => {
      counting = false
      const elapsed = Number(process.hrtime.bigint() - started) / 1e9
      process.stdout.write(JSON.stringify({ ...counts, opened, seconds: elapsed }) + '\n')
      process.exit(0)
    }, Number(seconds) * 1000)
  }, Number(warmup) * 1000)
}

function idle ([connections, torrents]) {
  const hashes = Array.from({ length: Number(torrents) }, id)
  const total = Number(connections)
  const sockets = []
  let opened = 0
  let failed = 0
  let closed = 0
  let next = 0
  let checking = null
  // A few hundred handshakes at a time, as browsers arriving would be.
  const start = () => {
    if (next >= total) return
    const i = next++
    const infoHash = hashes[i % hashes.length]
    const peerId = id()
    let answered = false
    connect(socket => {
      socket.write(frame(`{"action":"announce","info_hash":${infoHash},"peer_id":${peerId},` +
        '"numwant":0,"uploaded":0,"downloaded":0,"left":1000,"event":"started"}'))
    }, (socket, text) => {
      if (!answered) {
        answered = true
        if (text.includes('"failure reason"')) {
          failed++
        } else {
          opened++
          sockets.push({ socket, infoHash })
        }
        start()
        report()
      } else if (checking) {
        checking(socket, text)
      }
    }, () => {
      closed++
      if (!answered) { answered = true; failed++; start(); report() }
    })
  }
  const report = () => {
    if (opened + failed === total) process.stdout.write(JSON.stringify({ opened, failed }) + '\n')
  }
  for (let k = 0; k < 256; k++) start()
  const lines = readline.createInterface({ input: process.stdin })
  lines.on('line', line => {
    if (line === 'check') {
      const pending = new Set(sockets.map(entry => entry.socket))
      let answered = 0
      const finish = () => {
        checking = null
        process.stdout.write(JSON.stringify({ answered, unanswered: pending.size, closed }) + '\n')
      }
      const timer = setTimeout(finish, 30000)
      checking = (socket, text) => {
        if (text.includes('"scrape"') && pending.delete(socket)) {
          answered++
          if (!pending.size) { clearTimeout(timer); finish() }
        }
      }
      for (const { socket, infoHash } of sockets) {
        socket.write(frame(`{"action":"scrape","info_hash":${infoHash}}`))
      }
    } else if (line === 'close') {
      for (const { socket } of sockets) socket.destroy()
      setTimeout(() => process.exit(0), 200)
    }
  })
}

if (mode === 'load') load(rest)
else if (mode === 'idle') idle(rest)
else {
  process.stderr.write('usage: node ws_load.mjs load|idle URL ...\n')
  process.exit(2)
}
