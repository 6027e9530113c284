// bittorrent-tracker (webtorrent) serving WebSocket peers alone: the reference of bench/ws.py.
// Usage: node bt_ws.mjs PORT
// Import the server module only: the package index also loads the WebRTC client, whose native
// addon is not built when installing with --ignore-scripts.
import Server from 'bittorrent-tracker/server'

const port = Number(process.argv[2] || 6970)
const server = new Server({ udp: false, http: false, ws: true, stats: false })
server.on('error', (err) => { console.error('tracker error:', err.message) })
server.on('warning', () => {}) // refused messages are counted by the load generator
server.listen(port, '127.0.0.1', () => { console.log(`listening on 127.0.0.1:${port}`) })

const stop = () => { server.close(() => process.exit(0)) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
