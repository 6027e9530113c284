// HTTP-only bittorrent-tracker (webtorrent) instance used as a benchmark reference.
// Usage: node bt_tracker.mjs PORT [PEERS_PER_SWARM]
// Import the server module only: the package index also loads the WebRTC client, whose native
// addon is not built when installing with --ignore-scripts.
import Server from 'bittorrent-tracker/server'

const port = Number(process.argv[2] || 6970)
// The library keeps at most 1000 peers per swarm by default (an LRU), which would make the
// large-swarm scenarios measure a 1000-peer swarm; raise it so every tracker holds the whole swarm.
const peersCacheLength = Number(process.argv[3] || 100000)

const server = new Server({ udp: false, ws: false, http: true, stats: false, peersCacheLength })
server.on('error', (err) => { console.error('tracker error:', err.message) })
server.on('warning', () => {}) // rejected announces are counted by the load generator
server.listen(port, '127.0.0.1', () => { console.log(`listening on 127.0.0.1:${port}`) })

const stop = () => { server.close(() => process.exit(0)) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
