/*
 * UDP tracker load generator (BEP 15) for bench/udp.py.
 *
 *   udpload HOST PORT WARMUP_S MEASURE_S SOCKETS WINDOW SWARMS PEERS [churn|fixed]
 *
 * SOCKETS sockets, each connected to HOST:PORT with WINDOW announces in flight (closed loop:
 * a reply, or a 1 s timeout, frees its slot for the next announce). Each socket gets its own
 * connection ID and renews it after 60 s, as BEP 15 asks of a client. Announces pick a random
 * peer of PEERS and, with "churn" (the default), a random swarm of SWARMS: almost every announce
 * is by a peer new to its swarm, and the tracker's index grows all along. With "fixed", peer i
 * always announces into swarm i % SWARMS: a population of PEERS peers that the tracker mostly
 * knows already, as a tracker's load is between clients' start and stop. With
 * bench/benchlib.py's identities: info hash
 * udp_swarm_hash(k) = "udp-bench-swarm" + k (4 bytes, big-endian) + "\0"; peer i has peer id
 * "-BM0001-" + i (4 bytes) + PEER_ID_TAIL, port 10000 + i, left 0 for 30% of peers; 5% of
 * announces are "started", 2% "completed", 3% "stopped", the rest periodic; numwant 50.
 *
 * Datagrams move with recvmmsg/sendmmsg, a batch per socket per wake-up, so one core of this
 * program sends and receives far more than the trackers under test answer. It prints one JSON
 * object: replies counted during the measurement only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_WINDOW 256
#define REPLY_MAX 2048
#define TIMEOUT_NS 1000000000LL
#define ID_LIFETIME_NS 60000000000LL
#define HIST_BUCKETS 100000 /* 10 us each: up to 1 s */

enum { FREE, WAIT_CONNECT, WAIT_ANNOUNCE };

struct slot {
    int state;
    uint32_t tid;
    int64_t sent_at;
};

struct client {
    int fd;
    int has_id;
    uint64_t id;
    int64_t id_at;
    int connecting; /* a connect is in flight on this socket */
    uint32_t seq;
    struct slot slots[MAX_WINDOW];
};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void put32(unsigned char *p, uint32_t v) { v = htonl(v); memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }
static uint64_t get64(const unsigned char *p) { return ((uint64_t)get32(p) << 32) | get32(p + 4); }

static long swarms, peers, window_size, n_clients;
static int fixed_swarms; /* "fixed": peer i lives in swarm i % swarms */
static struct client *clients;
static int64_t measure_from, measure_until;
static long long replies, connects, errors_seen, timeouts, short_replies, sent, send_fail;
static long long peers_returned;
static long long hist[HIST_BUCKETS + 1];

static size_t build_announce(unsigned char *out, uint64_t id, uint32_t tid) {
    static const unsigned char tail[8] = {0xfe, 0x00, 0x81, 0x7f, 0xc3, 0x10, 0xaa, 0x55};
    uint32_t k = (uint32_t)(rnd() % (uint64_t)swarms), i = (uint32_t)(rnd() % (uint64_t)peers);
    if (fixed_swarms)
        k = i % (uint32_t)swarms;
    unsigned roll = (unsigned)(rnd() % 100);
    uint32_t event = roll < 5 ? 2 : roll < 7 ? 1 : roll < 10 ? 3 : 0; /* started, completed, stopped */
    put64(out, id);
    put32(out + 8, 1);
    put32(out + 12, tid);
    memcpy(out + 16, "udp-bench-swarm", 15);
    put32(out + 31, k);
    out[35] = 0;
    memcpy(out + 36, "-BM0001-", 8);
    put32(out + 44, i);
    memcpy(out + 48, tail, 8);
    put64(out + 56, 0);                                                  /* downloaded */
    put64(out + 64, (i % 10 < 3 || event == 1) ? 0 : 1000000 + (i % 1000) * 4096ULL); /* left */
    put64(out + 72, 0);                                                  /* uploaded */
    put32(out + 80, event);
    put32(out + 84, 0);                 /* ip: the source address */
    /* key: one per peer, the same at every announce, as libtorrent, qBittorrent and
       Transmission send theirs (aria2 alone sends a new one each time); the HTTP load's too */
    put32(out + 88, i + 1);
    put32(out + 92, 50);                /* numwant */
    out[96] = (unsigned char)((10000 + i) >> 8);
    out[97] = (unsigned char)(10000 + i);
    return 98;
}

static size_t build_connect(unsigned char *out, uint32_t tid) {
    put64(out, 0x41727101980ULL);
    put32(out + 8, 0);
    put32(out + 12, tid);
    return 16;
}

/* Queue the next request of slot s of client c into out; returns its length. */
static size_t next_request(struct client *c, int s, unsigned char *out, int64_t now) {
    struct slot *sl = &c->slots[s];
    uint32_t tid = ((uint32_t)s << 20) | (++c->seq & 0xFFFFF);
    sl->tid = tid;
    sl->sent_at = now;
    if (c->has_id && now - c->id_at < ID_LIFETIME_NS) {
        sl->state = WAIT_ANNOUNCE;
        return build_announce(out, c->id, tid);
    }
    if (c->connecting) {
        sl->state = FREE; /* waits for the connect in flight */
        return 0;
    }
    c->connecting = 1;
    sl->state = WAIT_CONNECT;
    return build_connect(out, tid);
}

static unsigned char outbuf[MAX_WINDOW][128];
static struct mmsghdr outmsgs[MAX_WINDOW];
static struct iovec outiov[MAX_WINDOW];
static int n_out;

static void queue(struct client *c, int s, int64_t now) {
    size_t len = next_request(c, s, outbuf[n_out], now);
    if (len == 0) return;
    outiov[n_out].iov_base = outbuf[n_out];
    outiov[n_out].iov_len = len;
    memset(&outmsgs[n_out], 0, sizeof outmsgs[n_out]);
    outmsgs[n_out].msg_hdr.msg_iov = &outiov[n_out];
    outmsgs[n_out].msg_hdr.msg_iovlen = 1;
    n_out++;
}

static void flush(struct client *c) {
    int done = 0;
    while (done < n_out) {
        int r = sendmmsg(c->fd, outmsgs + done, (unsigned)(n_out - done), 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            send_fail += n_out - done; /* the slots time out and are sent again */
            break;
        }
        done += r;
    }
    sent += done;
    n_out = 0;
}

static void wake_waiting(struct client *c, int64_t now) {
    for (int s = 0; s < window_size; s++)
        if (c->slots[s].state == FREE) queue(c, s, now);
}

static void on_reply(struct client *c, const unsigned char *buf, ssize_t len, int64_t now) {
    if (len < 8) { short_replies++; return; }
    uint32_t action = get32(buf), tid = get32(buf + 4);
    int s = (int)(tid >> 20);
    if (s >= window_size || c->slots[s].tid != tid || c->slots[s].state == FREE) return; /* stale */
    struct slot *sl = &c->slots[s];
    int in_window = now >= measure_from && now < measure_until;
    if (action == 0 && sl->state == WAIT_CONNECT && len >= 16) {
        c->id = get64(buf + 8);
        c->has_id = 1;
        c->id_at = now;
        c->connecting = 0;
        connects++;
        sl->state = FREE;
        wake_waiting(c, now);
        return;
    }
    if (action == 1 && sl->state == WAIT_ANNOUNCE && len >= 20) {
        if (in_window) {
            int64_t us10 = (now - sl->sent_at) / 10000;
            hist[us10 < HIST_BUCKETS ? us10 : HIST_BUCKETS]++;
            replies++;
            peers_returned += (len - 20) / 6;
        }
    } else if (action == 3) {
        if (in_window) errors_seen++;
        if (sl->state == WAIT_CONNECT) c->connecting = 0;
        c->has_id = 0; /* connect again */
    } else {
        short_replies++;
    }
    sl->state = FREE;
    queue(c, s, now);
}

static double percentile(double q) {
    long long total = 0, seen = 0;
    for (int b = 0; b <= HIST_BUCKETS; b++) total += hist[b];
    if (total == 0) return 0;
    for (int b = 0; b <= HIST_BUCKETS; b++) {
        seen += hist[b];
        if (seen >= q * (double)total) return (b + 0.5) * 10.0;
    }
    return HIST_BUCKETS * 10.0;
}

int main(int argc, char **argv) {
    if (argc != 9 && argc != 10) {
        fprintf(stderr, "usage: udpload HOST PORT WARMUP_S MEASURE_S SOCKETS WINDOW SWARMS PEERS [churn|fixed]\n");
        return 2;
    }
    if (argc == 10 && strcmp(argv[9], "fixed") != 0 && strcmp(argv[9], "churn") != 0) {
        fprintf(stderr, "population must be churn or fixed\n");
        return 2;
    }
    fixed_swarms = argc == 10 && strcmp(argv[9], "fixed") == 0;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) { fprintf(stderr, "bad host\n"); return 2; }
    double warmup = atof(argv[3]), measure = atof(argv[4]);
    n_clients = atol(argv[5]);
    window_size = atol(argv[6]);
    swarms = atol(argv[7]);
    peers = atol(argv[8]);
    if (n_clients < 1 || window_size < 1 || window_size > MAX_WINDOW || swarms < 1 || peers < 1) {
        fprintf(stderr, "bad counts\n");
        return 2;
    }
    int ep = epoll_create1(0);
    clients = calloc((size_t)n_clients, sizeof *clients);
    for (long k = 0; k < n_clients; k++) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) < 0) { perror("socket"); return 1; }
        clients[k].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)k};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    int64_t start = now_ns();
    measure_from = start + (int64_t)(warmup * 1e9);
    measure_until = measure_from + (int64_t)(measure * 1e9);
    for (long k = 0; k < n_clients; k++) { wake_waiting(&clients[k], start); flush(&clients[k]); }

    static unsigned char inbuf[MAX_WINDOW][REPLY_MAX];
    static struct mmsghdr inmsgs[MAX_WINDOW];
    static struct iovec iniov[MAX_WINDOW];
    int64_t last_scan = start;
    struct epoll_event events[256];
    for (;;) {
        int64_t now = now_ns();
        if (now >= measure_until) break;
        int n = epoll_wait(ep, events, 256, 10);
        now = now_ns();
        for (int e = 0; e < n; e++) {
            struct client *c = &clients[events[e].data.u64];
            for (;;) {
                for (int m = 0; m < window_size; m++) {
                    iniov[m].iov_base = inbuf[m];
                    iniov[m].iov_len = REPLY_MAX;
                    memset(&inmsgs[m], 0, sizeof inmsgs[m]);
                    inmsgs[m].msg_hdr.msg_iov = &iniov[m];
                    inmsgs[m].msg_hdr.msg_iovlen = 1;
                }
                int r = recvmmsg(c->fd, inmsgs, (unsigned)window_size, MSG_DONTWAIT, NULL);
                if (r <= 0) break; /* EAGAIN; ECONNREFUSED (nothing listening) times out */
                for (int m = 0; m < r; m++) on_reply(c, inbuf[m], (ssize_t)inmsgs[m].msg_len, now);
                flush(c);
            }
        }
        if (now - last_scan > 100000000LL) { /* every 100 ms: resend what went unanswered */
            last_scan = now;
            for (long k = 0; k < n_clients; k++) {
                struct client *c = &clients[k];
                for (int s = 0; s < window_size; s++) {
                    struct slot *sl = &c->slots[s];
                    if (sl->state == FREE || now - sl->sent_at < TIMEOUT_NS) continue;
                    if (now >= measure_from) timeouts++;
                    if (sl->state == WAIT_CONNECT) c->connecting = 0;
                    sl->state = FREE;
                    queue(c, s, now);
                }
                wake_waiting(c, now);
                flush(c);
            }
        }
    }
    printf("{\"replies\": %lld, \"seconds\": %.3f, \"rate\": %.1f, \"connects\": %lld, "
           "\"errors\": %lld, \"timeouts\": %lld, \"bad_replies\": %lld, \"sent\": %lld, "
           "\"send_failures\": %lld, \"peers_per_reply\": %.2f, \"p50_us\": %.0f, \"p99_us\": %.0f}\n",
           replies, measure, replies / measure, connects, errors_seen, timeouts, short_replies, sent,
           send_fail, replies ? (double)peers_returned / (double)replies : 0.0, percentile(0.5),
           percentile(0.99));
    return 0;
}
