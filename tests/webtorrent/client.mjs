// One bittorrent-tracker Client (webtorrent's own, on node-datachannel) that announces the
// torrent to the tracker at the announce URL given, as a seeder or a leecher, and waits for
// a WebRTC data channel to another peer found through it. Over the channel it says hello and
// waits for the other side's hello. Prints one JSON line: what it received, and how long it
// took. Run two, in two processes: clients of one process share one WebSocket, on which a
// tracker takes one peer id per torrent.
import Client from 'bittorrent-tracker'
import { randomBytes } from 'node:crypto'

const [announce, infoHash, role, seconds] = process.argv.slice(2)
const started = Date.now()
const result = { role, received: null, warnings: [], errors: [] }

const client = new Client({
  infoHash,
  peerId: randomBytes(20).toString('hex'),
  announce: [announce],
  port: 6881,
  rtcConfig: { iceServers: [] },
  getAnnounceOpts: () => ({ left: role === 'seeder' ? 0 : 1000, uploaded: 0, downloaded: 0 })
})
client.on('warning', err => result.warnings.push(err.message))
client.on('error', err => result.errors.push(err.message))
client.on('peer', peer => {
  const hello = () => peer.send(`hello from the ${role}`)
  if (peer.connected) hello()
  else peer.once('connect', hello)
  peer.on('data', data => {
    result.received = new TextDecoder().decode(data)
    // A moment for our own hello to reach the other side before the channel goes.
    setTimeout(() => finish(0), 1000)
  })
  peer.on('error', err => result.errors.push(`peer: ${err.message}`))
})
client.start()

const timer = setTimeout(() => finish(1), Number(seconds) * 1000)

function finish (code) {
  clearTimeout(timer)
  result.seconds = (Date.now() - started) / 1000
  process.stdout.write(JSON.stringify(result) + '\n')
  client.destroy()
  setTimeout(() => process.exit(code), 200)
}
