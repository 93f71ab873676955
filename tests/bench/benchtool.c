/*
 * benchtool: the small client/server programs of the CLAT benchmark
 * (tests/bench/run.sh compiles it with gcc at run time).
 *
 * Why C and not Python: round-trip times through a CLAT are tens of
 * microseconds, and a Python loop adds about as much jitter as it measures;
 * connection-rate and 10,000-flow tests also need a client that is not the
 * bottleneck itself.
 *
 *   benchtool server PORT          (in inet) on [::] (dual stack):
 *        tcp PORT    echo (ping-pong latency), one thread per connection
 *        udp PORT    echo
 *        tcp PORT+1  read 1 byte, answer 1 byte, close (connection rate)
 *        tcp PORT+2  accept and hold until the peer closes (idle flows)
 *   benchtool tcplat HOST PORT N   N one-byte TCP ping-pongs (TCP_NODELAY)
 *   benchtool udplat HOST PORT N   N one-byte UDP ping-pongs
 *        both print: n lost min p50 p90 p99 max mean (microseconds)
 *   benchtool cps HOST PORT THREADS SECONDS
 *        THREADS threads open a connection, send 1 byte, read the 1-byte
 *        answer and the server's FIN, close; as fast as possible.  The
 *        byte exchange matters: a CLAT that terminates TCP locally accepts
 *        the handshake before its upstream connection exists, so a bare
 *        connect() would only measure the local accept.
 *        prints: ok fail seconds rate
 *   benchtool hold tcp|udp HOST PORT N [BURST]
 *        opens N TCP connections (or N UDP sockets, each sending one
 *        datagram and waiting for its echo), prints "ready OK", then holds
 *        them until stdin reaches EOF, then closes them.  With BURST (TCP,
 *        to the echo port) each connection first sends BURST bytes and
 *        reads them back.
 *
 * Exit status is non-zero only when the program cannot run at all; counts
 * of failures are part of the output.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(2);
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void raise_nofile(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

/* Resolves a numeric HOST PORT (IPv4 or IPv6). */
static void addr_of(const char *host, const char *port, int socktype,
                    struct sockaddr_storage *ss, socklen_t *len, int *family) {
    struct addrinfo hints = {0}, *res;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = socktype;
    int e = getaddrinfo(host, port, &hints, &res);
    if (e) {
        fprintf(stderr, "bad address %s %s: %s\n", host, port, gai_strerror(e));
        exit(2);
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    *family = res->ai_family;
    freeaddrinfo(res);
}

static int listen_any(int type, int port) {
    int s = socket(AF_INET6, type, 0);
    if (s < 0) die("socket");
    int one = 1, zero = 0;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 a = {0};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(port);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (type == SOCK_STREAM && listen(s, 65535) < 0) die("listen");
    return s;
}

/* ---------------------------------------------------------------- server */

static void *echo_conn(void *arg) {
    int c = (int)(intptr_t)arg;
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[65536];
    for (;;) {
        ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0) break;
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = write(c, buf + off, n - off);
            if (w <= 0) goto out;
            off += w;
        }
    }
out:
    close(c);
    return NULL;
}

static void *tcp_echo_server(void *arg) {
    int l = (int)(intptr_t)arg;
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) continue;
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 256 * 1024);
        if (pthread_create(&t, &at, echo_conn, (void *)(intptr_t)c) != 0) close(c);
        pthread_attr_destroy(&at);
    }
    return NULL;
}

static void *udp_echo_server(void *arg) {
    int s = (int)(intptr_t)arg;
    char buf[65536];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n < 0) continue;
        sendto(s, buf, n, 0, (struct sockaddr *)&from, fl);
    }
    return NULL;
}

static void *cps_server(void *arg) {
    int l = (int)(intptr_t)arg;
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) continue;
        struct timeval tv = {2, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char b;
        if (read(c, &b, 1) == 1) {
            ssize_t w = write(c, &b, 1);
            (void)w;
        }
        close(c);
    }
    return NULL;
}

static void *hold_server(void *arg) {
    int l = (int)(intptr_t)arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    struct epoll_event evs[256];
    char buf[4096];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == l) {
                for (;;) {
                    int c = accept4(l, NULL, NULL, SOCK_NONBLOCK);
                    if (c < 0) break;
                    struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
            } else {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r == 0 || (r < 0 && errno != EAGAIN)) close(fd);
            }
        }
    }
    return NULL;
}

static int cmd_server(int port) {
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    pthread_t t;
    int echo = listen_any(SOCK_STREAM, port);
    int udp = listen_any(SOCK_DGRAM, port);
    int cps = listen_any(SOCK_STREAM, port + 1);
    int hold = listen_any(SOCK_STREAM, port + 2);
    int rb = 4 << 20;
    setsockopt(udp, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    pthread_create(&t, NULL, tcp_echo_server, (void *)(intptr_t)echo);
    pthread_create(&t, NULL, udp_echo_server, (void *)(intptr_t)udp);
    /* Two acceptors: the machine this runs on has few cores, and the
       client's threads outnumber them anyway. */
    pthread_create(&t, NULL, cps_server, (void *)(intptr_t)cps);
    pthread_create(&t, NULL, cps_server, (void *)(intptr_t)cps);
    pthread_create(&t, NULL, hold_server, (void *)(intptr_t)hold);
    fprintf(stderr, "benchtool server on [::]:%d (tcp echo, udp echo), %d (cps), %d (hold)\n",
            port, port + 1, port + 2);
    for (;;) pause();
    return 0;
}

/* --------------------------------------------------------------- latency */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(double *v, int n, int lost) {
    if (n == 0) {
        printf("n 0 lost %d\n", lost);
        return;
    }
    qsort(v, n, sizeof *v, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += v[i];
#define PCT(p) v[(int)((double)(n - 1) * (p))]
    printf("n %d lost %d min %.1f p50 %.1f p90 %.1f p99 %.1f max %.1f mean %.1f\n", n, lost,
           v[0], PCT(0.50), PCT(0.90), PCT(0.99), v[n - 1], sum / n);
}

static int cmd_lat(int tcp, const char *host, const char *port, int n) {
    struct sockaddr_storage ss;
    socklen_t sl;
    int fam;
    addr_of(host, port, tcp ? SOCK_STREAM : SOCK_DGRAM, &ss, &sl, &fam);
    int s = socket(fam, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (s < 0) die("socket");
    if (connect(s, (struct sockaddr *)&ss, sl) < 0) die("connect");
    int one = 1;
    if (tcp) setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* UDP: a reply later than 200 ms counts as lost; 20 losses in a row
       mean the path is down, so stop instead of waiting n x 200 ms. */
    struct timeval tv = {tcp ? 5 : 0, tcp ? 0 : 200000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    double *v = malloc(sizeof(double) * n);
    int got = 0, lost = 0, run = 0;
    int warm = n / 10 < 200 ? n / 10 : 200;
    char b = 'x', r;
    for (int i = 0; i < n + warm; i++) {
        double t0 = now_us();
        if (write(s, &b, 1) != 1) die("write");
        ssize_t k = read(s, &r, 1);
        double t1 = now_us();
        if (k != 1) {
            if (tcp) die("read");
            lost++;
            if (++run >= 20) break;
            continue;
        }
        run = 0;
        if (i >= warm) v[got++] = t1 - t0;
    }
    report(v, got, lost);
    return 0;
}

/* --------------------------------------------------- connections per second */

static struct sockaddr_storage g_ss;
static socklen_t g_sl;
static int g_fam;
static atomic_long g_ok, g_fail;
static volatile int g_stop;

static void *cps_worker(void *arg) {
    (void)arg;
    long ok = 0, fail = 0;
    while (!g_stop) {
        int s = socket(g_fam, SOCK_STREAM, 0);
        if (s < 0) {
            fail++;
            usleep(1000);
            continue;
        }
        struct timeval tv = {2, 0};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        int one = 1;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char b = 'c', r;
        if (connect(s, (struct sockaddr *)&g_ss, g_sl) == 0 && write(s, &b, 1) == 1 &&
            read(s, &r, 1) == 1 && read(s, &r, 1) == 0)
            ok++;
        else
            fail++;
        close(s);
    }
    atomic_fetch_add(&g_ok, ok);
    atomic_fetch_add(&g_fail, fail);
    return NULL;
}

static int cmd_cps(const char *host, const char *port, int threads, double secs) {
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    addr_of(host, port, SOCK_STREAM, &g_ss, &g_sl, &g_fam);
    pthread_t *t = calloc(threads, sizeof *t);
    double t0 = now_us();
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, cps_worker, NULL);
    usleep((useconds_t)(secs * 1e6));
    g_stop = 1;
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double el = (now_us() - t0) / 1e6;
    printf("ok %ld fail %ld seconds %.3f rate %.1f\n", (long)g_ok, (long)g_fail, el,
           (double)g_ok / el);
    return 0;
}

/* ------------------------------------------------------------ idle flows */

/* Sends `len` bytes and reads them back (the echo service): a flow that
   has carried a burst, as most real flows have before they go idle. */
static int burst(int s, size_t len) {
    static char buf[1 << 16];
    size_t off = 0;
    while (off < len) {
        size_t k = len - off < sizeof buf ? len - off : sizeof buf;
        ssize_t w = write(s, buf, k);
        if (w <= 0) return -1;
        off += w;
    }
    off = 0;
    while (off < len) {
        ssize_t r = read(s, buf, sizeof buf);
        if (r <= 0) return -1;
        off += r;
    }
    return 0;
}

static int cmd_hold(int tcp, const char *host, const char *port, int n, size_t burst_len) {
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_storage ss;
    socklen_t sl;
    int fam;
    addr_of(host, port, tcp ? SOCK_STREAM : SOCK_DGRAM, &ss, &sl, &fam);
    int *fds = calloc(n, sizeof(int));
    int ok = 0;
    for (int i = 0; i < n; i++) {
        int s = socket(fam, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
        if (s < 0) {
            perror("socket");
            break;
        }
        struct timeval tv = {3, 0};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(s, (struct sockaddr *)&ss, sl) < 0) {
            close(s);
            continue;
        }
        if (tcp && burst_len && burst(s, burst_len) < 0) {
            close(s);
            continue;
        }
        if (!tcp) {
            /* One datagram and its echo: the flow exists in both directions. */
            char b = 'u', r;
            if (write(s, &b, 1) != 1 || read(s, &r, 1) != 1) {
                close(s);
                continue;
            }
        }
        fds[ok++] = s;
    }
    /* A CLAT that terminates TCP accepts locally first and connects
       upstream just after: give the last upstream connects a moment. */
    if (tcp) usleep(200000);
    printf("ready %d\n", ok);
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {
    }
    for (int i = 0; i < ok; i++) close(fds[i]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "server")) return cmd_server(atoi(argv[2]));
    if (argc >= 5 && !strcmp(argv[1], "tcplat")) return cmd_lat(1, argv[2], argv[3], atoi(argv[4]));
    if (argc >= 5 && !strcmp(argv[1], "udplat")) return cmd_lat(0, argv[2], argv[3], atoi(argv[4]));
    if (argc >= 6 && !strcmp(argv[1], "cps"))
        return cmd_cps(argv[2], argv[3], atoi(argv[4]), atof(argv[5]));
    if (argc >= 6 && !strcmp(argv[1], "hold"))
        return cmd_hold(!strcmp(argv[2], "tcp"), argv[3], argv[4], atoi(argv[5]),
                        argc >= 7 ? (size_t)atol(argv[6]) : 0);
    fprintf(stderr,
            "usage: benchtool server PORT | tcplat|udplat HOST PORT N |\n"
            "       cps HOST PORT THREADS SECONDS | hold tcp|udp HOST PORT N [BURST]\n");
    return 2;
}
