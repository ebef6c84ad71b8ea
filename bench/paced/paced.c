/*
 * paced: a constant-rate, open-loop HTTP/1.1 load generator for the carelb bench
 * (bench/README.md, table 2). One thread, epoll, non-blocking sockets, N keep-alive
 * connections, TLS through OpenSSL for https.
 *
 * Why it exists: autocannon's overallRate sends each connection's per-second quota back to
 * back and then waits for the next second, so "10,000 req/s" reaches the proxy as bursts of
 * 25-40k req/s. It also times a request from its write, so the time a request waited for a
 * free connection is not counted ("coordinated omission"). wrk2 fixes both but is not
 * available here. paced does what wrk2 does, and no more:
 *
 *   - Request k is due at t0 + k / rate, on one schedule shared by all connections
 *     (CLOCK_MONOTONIC, nanoseconds).
 *   - A due request goes out on an idle connection. If none is idle it waits in a backlog.
 *     Requests are identical, so the backlog is only a counter (max_backlog in the output).
 *   - Latency "from due" runs from the due time to the last byte of the response. A server
 *     stall therefore shows up in every request it delayed, including the ones that could
 *     not be sent yet. This is the headline figure. Latency "from send" runs from the write
 *     and is reported beside it.
 *
 * usage: paced -R rate -c connections -d seconds [-w seconds] [-t seconds] [-H 'Name: value'] URL
 *   URL: http:// or https:// on a loopback address (127.0.0.0/8, [::1] or localhost). This is
 *   a test tool, so other hosts are refused.
 *
 * Phases: connect (until every connection is ready, at most 2 s), then t0. Warm-up is
 * [t0, t0+w). The measured window is [t0+w, t0+w+d). Then a drain: the schedule goes on, so
 * the last requests see the same load, until every request due in the window has been
 * answered or has failed, or -t seconds have passed. Then the JSON is printed and paced exits.
 *
 * Output: one JSON object on stdout. On stderr, the lines "paced: window open" and "paced:
 * window close" are written at the window's edges, so a harness can take CPU snapshots there.
 * Anything else on stderr is a message.
 *
 * Build: cc -O2 -o paced paced.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL

#define MAX_CONNECTIONS 10000
#define MAX_HEADERS 16
#define REQUEST_MAX 4096
#define BUF_SIZE 16384                       /* a response head must fit; bodies stream through */
#define LINE_MAX_BYTES 1024                  /* chunk-size and trailer lines */
#define CONNECT_WAIT_NS (2 * NS_PER_S)       /* longest wait for the connections before t0 */
#define HOUSEKEEPING_NS (10 * NS_PER_MS)     /* timeouts and reconnects are checked this often */
#define BACKOFF_MIN_NS (10 * NS_PER_MS)      /* reconnect delay after an error, doubling... */
#define BACKOFF_MAX_NS (500 * NS_PER_MS)     /* ...up to this */
#define BUCKET_NS (100 * NS_PER_MS)          /* pacing statistics: sends and responses per 100 ms */
#define MAX_EVENTS 256
#define READS_PER_EVENT 16
#define TIMER_TAG UINT64_MAX                 /* epoll data of the timerfd (fallback timer) */

/* ------------------------------------------------------------------------------------------
 * Latency histogram, HdrHistogram-style log-linear buckets over nanoseconds. Every power of
 * two is split into 128 equal buckets, so a bucket is at most 1/128 (0.78 %) of its value
 * wide. Values below 256 ns get a bucket each. Values up to 2^42 ns (73 min) fit; anything
 * larger goes into the last bucket. It has 4,608 counters and a fixed size.
 * ---------------------------------------------------------------------------------------- */
#define SUB_BITS 7
#define SUB_COUNT (1 << SUB_BITS)
#define MAX_SHIFT 34
#define HIST_BUCKETS ((MAX_SHIFT + 2) * SUB_COUNT)

typedef struct {
  uint64_t counts[HIST_BUCKETS];
  uint64_t total;
  uint64_t max;
  double sum;
} hist_t;

static int hist_index(uint64_t v) {
  if (v < SUB_COUNT) return (int)v;
  int shift = (63 - __builtin_clzll(v)) - SUB_BITS; /* v in [2^(shift+7), 2^(shift+8)) */
  if (shift > MAX_SHIFT) return HIST_BUCKETS - 1;
  return (shift + 1) * SUB_COUNT + (int)((v >> shift) - SUB_COUNT);
}

/* The highest value that falls into bucket i (HdrHistogram's "highest equivalent value"). */
static uint64_t hist_upper(int i) {
  if (i < 2 * SUB_COUNT) return (uint64_t)i;
  int shift = i / SUB_COUNT - 1;
  uint64_t sub = (uint64_t)(i % SUB_COUNT);
  return ((SUB_COUNT + sub + 1) << shift) - 1;
}

static void hist_record(hist_t *h, int64_t v) {
  uint64_t u = v > 0 ? (uint64_t)v : 0;
  h->counts[hist_index(u)]++;
  h->total++;
  h->sum += (double)u;
  if (u > h->max) h->max = u;
}

/* The value at percentile p: the bucket holding the ceil(p % of total)-th smallest sample. */
static uint64_t hist_percentile(const hist_t *h, double p) {
  if (h->total == 0) return 0;
  double exact = p / 100.0 * (double)h->total;
  uint64_t target = (uint64_t)exact;
  if ((double)target < exact) target++;
  if (target < 1) target = 1;
  uint64_t seen = 0;
  for (int i = 0; i < HIST_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= target) {
      uint64_t v = hist_upper(i);
      return v < h->max ? v : h->max;
    }
  }
  return h->max;
}

/* ------------------------------------------------------------------------------------------
 * Options and global state (one thread, so plain statics).
 * ---------------------------------------------------------------------------------------- */
static double opt_rate;
static int opt_conns;
static double opt_duration_s, opt_warmup_s = 0, opt_timeout_s = 5;
static const char *opt_url;
static const char *opt_headers[MAX_HEADERS];
static int opt_header_count;

static int use_tls;
static struct sockaddr_storage addr;
static socklen_t addr_len;
static char host[256];           /* as written in the URL, without brackets */
static int host_is_name;         /* "localhost": send SNI (never for an IP literal, RFC 6066) */
static int port;
static char request[REQUEST_MAX];
static size_t request_len;
static SSL_CTX *ssl_ctx;

enum err_kind { E_CONNECT, E_TLS, E_READ, E_WRITE, E_PARSE, E_TIMEOUT, E_KINDS };
static const char *const ERR_NAMES[E_KINDS] = {"connect", "tls", "read", "write", "parse", "timeout"};

enum cstate { C_DOWN, C_CONNECTING, C_HANDSHAKE, C_IDLE, C_SENDING, C_WAITING };
enum pstate { P_HEAD, P_BODY, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_CRLF, P_TRAILER, P_UNTIL_CLOSE };

typedef struct {
  int fd; /* -1 while down */
  SSL *ssl;
  enum cstate state;
  uint32_t gen;        /* bumped at every (re)connect; stale epoll events carry the old one */
  uint32_t interest;   /* the events registered with epoll */
  int in_idle_queue;
  int tls_pending;     /* TLS holds decrypted bytes that epoll cannot see: read again soon */
  int64_t since;       /* CONNECTING/HANDSHAKE: when it started; SENDING/WAITING: send time; IDLE: when idle */
  int64_t retry_at;    /* DOWN: earliest reconnect */
  int64_t backoff;
  /* the request in flight */
  int64_t due;
  size_t written;
  /* the response being parsed */
  enum pstate ps;
  int status;
  int close_after;
  uint64_t remaining;
  size_t len; /* unparsed bytes in buf */
  char buf[BUF_SIZE];
} conn_t;

static conn_t *conns;
static int *idle_ring; /* FIFO of idle connections: requests are spread over all of them */
static int idle_head, idle_count;
static int ep = -1, timer_fd = -1;
static int any_tls_pending; /* some connection has tls_pending set */
static int use_pwait2 = 1;
static int64_t timer_armed = -1;

/* Schedule and phases. */
static int started;
static int64_t t0, t_open, t_close;
static double period_ns;
static uint64_t next_k; /* the next request to send; all k < next_k have been sent */

/* Counters. Errors, responses and non-2xx are over the whole run, warm-up included. */
static uint64_t errors[E_KINDS], reconnects, sent, responses, non2xx;
static uint64_t completed;                  /* responses whose last byte came inside the window */
static uint64_t window_sent, window_resolved; /* requests due in the window: sent; answered or failed */
static int64_t max_backlog, max_send_lag;  /* in the window: due but unsent; due to send */
/* In the window, how long each request waited while a connection was idle: paced's own
   lateness (a busy load CPU), as opposed to waiting for the server. It is part of the
   from-due latency, so it is reported to show how much of that is the generator's. */
static hist_t h_self;
static uint64_t *sent_buckets, *done_buckets;
static int64_t bucket_count;
static hist_t h_due, h_send;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static int64_t due_of(uint64_t k) { return t0 + (int64_t)((double)k * period_ns); }
static int in_window(int64_t t) { return started && t >= t_open && t < t_close; }

static void fatal(const char *msg) {
  fprintf(stderr, "paced: %s\n", msg);
  exit(1);
}

/* ------------------------------------------------------------------------------------------
 * Connections: epoll interest, the idle queue, socket and TLS I/O.
 * ---------------------------------------------------------------------------------------- */
static int conn_id(conn_t *c) { return (int)(c - conns); }

static uint64_t tag_of(conn_t *c) { return ((uint64_t)c->gen << 32) | (uint32_t)conn_id(c); }

static void set_interest(conn_t *c, uint32_t events) {
  if (c->interest == events) return;
  struct epoll_event e = {.events = events, .data.u64 = tag_of(c)};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
  c->interest = events;
}

static void idle_push(conn_t *c) {
  if (c->in_idle_queue) return; /* still queued from before a reconnect: keeps its place */
  idle_ring[(idle_head + idle_count) % opt_conns] = conn_id(c);
  idle_count++;
  c->in_idle_queue = 1;
}

/* The idle connection that has waited longest; entries of connections that went down are skipped. */
static conn_t *idle_pop(void) {
  while (idle_count > 0) { /* at most opt_conns entries */
    conn_t *c = &conns[idle_ring[idle_head]];
    idle_head = (idle_head + 1) % opt_conns;
    idle_count--;
    c->in_idle_queue = 0;
    if (c->state == C_IDLE) return c;
  }
  return NULL;
}

enum { IO_AGAIN = -1, IO_ERROR = -2 };

/* What an SSL call that did not succeed means: wait for readable or writable, EOF, or error. */
static ssize_t tls_result(conn_t *c, int ret) {
  switch (SSL_get_error(c->ssl, ret)) {
  case SSL_ERROR_WANT_READ: set_interest(c, EPOLLIN); return IO_AGAIN;
  case SSL_ERROR_WANT_WRITE: set_interest(c, EPOLLOUT); return IO_AGAIN;
  case SSL_ERROR_ZERO_RETURN: return 0;
  default: return IO_ERROR;
  }
}

/* > 0: bytes read; 0: the peer closed; IO_AGAIN: nothing yet (interest set); IO_ERROR. */
static ssize_t conn_read(conn_t *c, char *p, size_t n) {
  if (c->ssl) {
    ERR_clear_error();
    int r = SSL_read(c->ssl, p, (int)n);
    return r > 0 ? r : tls_result(c, r);
  }
  ssize_t r = recv(c->fd, p, n, 0);
  if (r >= 0) return r;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    set_interest(c, EPOLLIN);
    return IO_AGAIN;
  }
  return IO_ERROR;
}

static ssize_t conn_write(conn_t *c, const char *p, size_t n) {
  if (c->ssl) {
    ERR_clear_error();
    /* On WANT_*, OpenSSL needs the same buffer and length again: we retry from `written`,
       which stays 0 until SSL_write succeeds (no partial writes are enabled). */
    int r = SSL_write(c->ssl, p, (int)n);
    return r > 0 ? r : tls_result(c, r);
  }
  ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
  if (r >= 0) return r;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    set_interest(c, EPOLLOUT);
    return IO_AGAIN;
  }
  return IO_ERROR;
}

static void conn_open(conn_t *c, int64_t now);

static void conn_drop(conn_t *c) {
  if (c->ssl) SSL_free(c->ssl);
  if (c->fd >= 0) close(c->fd); /* also removes it from the epoll set */
  c->ssl = NULL;
  c->fd = -1;
  c->interest = 0;
  c->tls_pending = 0;
  c->len = 0;
  c->ps = P_HEAD;
}

/* An error: counted, and the request in flight (if any) is lost (resolved, with no latency). */
static void conn_fail(conn_t *c, enum err_kind kind, int64_t now) {
  errors[kind]++;
  if ((c->state == C_SENDING || c->state == C_WAITING) && in_window(c->due)) window_resolved++;
  conn_drop(c);
  /* Back off, so that a proxy that refuses connections does not make this loop spin. */
  c->backoff = c->backoff ? (c->backoff * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : c->backoff * 2) : BACKOFF_MIN_NS;
  c->retry_at = now + c->backoff;
  c->state = C_DOWN;
}

/* The server closed after a response, or said Connection: close: reconnect now, no error. */
static void conn_reopen(conn_t *c, int64_t now) {
  conn_drop(c);
  reconnects++;
  conn_open(c, now);
}

static void become_idle(conn_t *c, int64_t now) {
  c->state = C_IDLE;
  c->since = now;
  c->backoff = 0;
  /* Readable while idle = the server closed it (or sent something unasked). */
  set_interest(c, EPOLLIN);
  idle_push(c);
}

static void handshake(conn_t *c, int64_t now) {
  ERR_clear_error();
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    become_idle(c, now);
    return;
  }
  if (tls_result(c, r) != IO_AGAIN) conn_fail(c, E_TLS, now);
}

static void on_connected(conn_t *c, int64_t now) {
  if (!use_tls) {
    become_idle(c, now);
    return;
  }
  c->ssl = SSL_new(ssl_ctx);
  if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
    conn_fail(c, E_TLS, now);
    return;
  }
  if (host_is_name) SSL_set_tlsext_host_name(c->ssl, host);
  SSL_set_connect_state(c->ssl);
  c->state = C_HANDSHAKE;
  c->since = now;
  handshake(c, now);
}

static void conn_open(conn_t *c, int64_t now) {
  c->gen++;
  c->state = C_CONNECTING;
  c->since = now;
  c->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    conn_fail(c, E_CONNECT, now);
    return;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* small requests, sent at once */
  struct epoll_event e = {.events = EPOLLOUT, .data.u64 = tag_of(c)};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) != 0) {
    conn_fail(c, E_CONNECT, now);
    return;
  }
  c->interest = EPOLLOUT;
  if (connect(c->fd, (struct sockaddr *)&addr, addr_len) == 0) on_connected(c, now);
  else if (errno != EINPROGRESS) conn_fail(c, E_CONNECT, now);
}

/* ------------------------------------------------------------------------------------------
 * Response framing: status line, Content-Length, chunked (sizes, data, trailers), or
 * close-delimited. Only what is needed to know where a keep-alive response ends.
 * ---------------------------------------------------------------------------------------- */
static int has_token(const char *v, size_t vlen, const char *word) {
  size_t wlen = strlen(word);
  for (size_t i = 0; i + wlen <= vlen; i++)
    if (strncasecmp(v + i, word, wlen) == 0) return 1;
  return 0;
}

/* Parses one response head of n bytes (ending with the blank line). Returns 1 when the
   response has no body (complete), 0 when a body or the real response follows, -1 if malformed. */
static int parse_head(conn_t *c, const char *p, size_t n) {
  if (n < 16 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ') return -1;
  if (p[9] < '0' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9') return -1;
  int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  int keep_alive = p[7] == '1'; /* HTTP/1.1 keeps the connection by default, 1.0 does not */
  int chunked = 0;
  int64_t length = -1;
  const char *end = p + n;
  const char *line = memchr(p, '\n', n) + 1;
  while (line < end - 2) { /* the last two bytes are the blank line */
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    if (!eol) return -1;
    size_t llen = (size_t)(eol - line);
    if (llen > 0 && line[llen - 1] == '\r') llen--;
    const char *colon = memchr(line, ':', llen);
    if (colon) {
      size_t nlen = (size_t)(colon - line);
      const char *v = colon + 1;
      size_t vlen = (size_t)(line + llen - v);
      while (vlen > 0 && (*v == ' ' || *v == '\t')) v++, vlen--;
      if (nlen == 14 && strncasecmp(line, "content-length", 14) == 0) {
        length = 0;
        for (size_t i = 0; i < vlen && v[i] != ' ' && v[i] != '\t'; i++) {
          if (v[i] < '0' || v[i] > '9' || length > 1000000000000LL) return -1;
          length = length * 10 + (v[i] - '0');
        }
      } else if (nlen == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
        chunked = has_token(v, vlen, "chunked");
      } else if (nlen == 10 && strncasecmp(line, "connection", 10) == 0) {
        if (has_token(v, vlen, "close")) keep_alive = 0;
        else if (has_token(v, vlen, "keep-alive")) keep_alive = 1;
      }
    }
    line = eol + 1;
  }
  if (status == 101) return -1; /* no upgrades were asked for */
  if (status < 200) {           /* 1xx interim response: the real one follows */
    c->ps = P_HEAD;
    return 0;
  }
  c->status = status;
  c->close_after = !keep_alive;
  if (status == 204 || status == 304) return 1;
  if (chunked) {
    c->ps = P_CHUNK_SIZE;
  } else if (length >= 0) {
    if (length == 0) return 1;
    c->remaining = (uint64_t)length;
    c->ps = P_BODY;
  } else {
    c->ps = P_UNTIL_CLOSE; /* no framing: the body ends when the server closes */
    c->close_after = 1;
  }
  return 0;
}

/* Parses what is in c->buf and removes what it consumed. Returns 1 when the response is
   complete, 0 when more bytes are needed, -1 when the response is malformed. */
static int parse(conn_t *c) {
  char *b = c->buf;
  size_t len = c->len, pos = 0;
  int result = 0;
  /* Every pass consumes at least one byte or leaves the loop, so len + 1 passes suffice. */
  for (size_t pass = 0; pass <= len && result == 0; pass++) {
    size_t avail = len - pos;
    const char *eol;
    if (c->ps == P_HEAD) {
      const char *end = memmem(b + pos, avail, "\r\n\r\n", 4);
      if (!end) {
        if (len >= sizeof c->buf) result = -1; /* head larger than the buffer */
        break;
      }
      size_t head = (size_t)(end - (b + pos)) + 4;
      result = parse_head(c, b + pos, head);
      pos += head;
    } else if (c->ps == P_BODY || c->ps == P_CHUNK_DATA) {
      size_t take = avail < c->remaining ? avail : (size_t)c->remaining;
      pos += take;
      c->remaining -= take;
      if (c->remaining > 0) break;
      if (c->ps == P_BODY) result = 1;
      else c->ps = P_CHUNK_CRLF;
    } else if (c->ps == P_CHUNK_CRLF) {
      if (avail < 2) break;
      if (b[pos] != '\r' || b[pos + 1] != '\n') result = -1;
      pos += 2;
      c->ps = P_CHUNK_SIZE;
    } else if (c->ps == P_CHUNK_SIZE || c->ps == P_TRAILER) {
      eol = memmem(b + pos, avail, "\r\n", 2);
      if (!eol) {
        if (avail > LINE_MAX_BYTES) result = -1;
        break;
      }
      size_t llen = (size_t)(eol - (b + pos));
      if (c->ps == P_TRAILER) {
        if (llen == 0) result = 1; /* the blank line after the trailers */
      } else {
        uint64_t size = 0;
        size_t i = 0;
        for (; i < llen; i++) { /* hex digits, then an optional ";extension" */
          char ch = b[pos + i];
          int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
          if (d < 0) break;
          if (size > (1ULL << 40)) return -1;
          size = size * 16 + (uint64_t)d;
        }
        if (i == 0 || (i < llen && b[pos + i] != ';' && b[pos + i] != ' ')) result = -1;
        else if (size == 0) c->ps = P_TRAILER;
        else {
          c->remaining = size;
          c->ps = P_CHUNK_DATA;
        }
      }
      pos += llen + 2;
    } else { /* P_UNTIL_CLOSE */
      pos = len;
      break;
    }
  }
  if (result == 1) {
    c->ps = P_HEAD;
    /* One request is in flight at a time, so bytes after its response were never asked for. */
    if (pos != len) result = -1;
  }
  if (result >= 0) {
    memmove(b, b + pos, len - pos);
    c->len = len - pos;
    if (result == 0 && c->len >= sizeof c->buf) result = -1; /* no room left to read into */
  }
  return result;
}

/* ------------------------------------------------------------------------------------------
 * Requests: send on the schedule, complete on the response's last byte.
 * ---------------------------------------------------------------------------------------- */
static void send_more(conn_t *c, int64_t now) {
  while (c->written < request_len) { /* each pass writes bytes or leaves */
    ssize_t n = conn_write(c, request + c->written, request_len - c->written);
    if (n == IO_AGAIN) return;
    if (n <= 0) {
      conn_fail(c, E_WRITE, now);
      return;
    }
    c->written += (size_t)n;
  }
  c->state = C_WAITING;
  set_interest(c, EPOLLIN);
}

static void start_request(conn_t *c, int64_t due, int64_t now) {
  c->due = due;
  c->written = 0;
  c->state = C_SENDING;
  sent++;
  if (in_window(due)) {
    window_sent++;
    if (now - due > max_send_lag) max_send_lag = now - due;
    hist_record(&h_self, now - (c->since > due ? c->since : due)); /* c->since: idle since */
  }
  if (in_window(now)) sent_buckets[(now - t_open) / BUCKET_NS]++;
  c->since = now;
  send_more(c, now);
}

static void response_done(conn_t *c, int64_t now) {
  responses++;
  if (c->status < 200 || c->status > 299) non2xx++;
  if (in_window(c->due)) {
    hist_record(&h_due, now - c->due);
    hist_record(&h_send, now - c->since);
    window_resolved++;
  }
  if (in_window(now)) {
    completed++;
    done_buckets[(now - t_open) / BUCKET_NS]++;
  }
  if (c->close_after) conn_reopen(c, now);
  else become_idle(c, now);
}

static void read_response(conn_t *c) {
  c->tls_pending = 0;
  for (int i = 0; i < READS_PER_EVENT; i++) {
    ssize_t n = conn_read(c, c->buf + c->len, sizeof c->buf - c->len);
    if (n == IO_AGAIN) return;
    int64_t now = now_ns(); /* the response's last byte is in (if it is complete) */
    if (n == IO_ERROR) {
      conn_fail(c, E_READ, now);
      return;
    }
    if (n == 0) {
      if (c->ps == P_UNTIL_CLOSE) response_done(c, now);
      else conn_fail(c, E_READ, now); /* closed before the response was complete */
      return;
    }
    c->len += (size_t)n;
    int r = parse(c);
    if (r < 0) conn_fail(c, E_PARSE, now);
    if (r > 0) response_done(c, now);
    if (r != 0) return;
  }
  /* Out of reads for this event. Plain sockets are reported again by epoll; TLS may hold
     decrypted bytes that epoll cannot see, so the main loop comes back for them. */
  if (c->ssl && SSL_has_pending(c->ssl)) c->tls_pending = any_tls_pending = 1;
}

/* Readable while idle: EOF = the server closed an idle keep-alive connection (reconnect). */
static void read_idle(conn_t *c, int64_t now) {
  char scratch[256];
  ssize_t n = conn_read(c, scratch, sizeof scratch);
  if (n == IO_AGAIN) return;
  if (n == 0) conn_reopen(c, now);
  else conn_fail(c, n > 0 ? E_PARSE : E_READ, now);
}

static void on_event(conn_t *c, uint32_t events, int64_t now) {
  switch (c->state) {
  case C_CONNECTING: {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0 || (events & (EPOLLERR | EPOLLHUP))) conn_fail(c, E_CONNECT, now);
    else on_connected(c, now);
    break;
  }
  case C_HANDSHAKE: handshake(c, now); break;
  case C_IDLE: read_idle(c, now); break;
  case C_SENDING: send_more(c, now); break;
  case C_WAITING: read_response(c); break;
  case C_DOWN: break;
  }
}

/* Due requests go out on idle connections, oldest first; the rest wait (the backlog). */
static void dispatch(int64_t now) {
  if (!started) return;
  while (due_of(next_k) <= now) { /* bounded: every pass sends one due request, or leaves */
    conn_t *c = idle_pop();
    if (!c) break;
    start_request(c, due_of(next_k), now);
    next_k++;
  }
  if (in_window(now)) {
    int64_t due_count = (int64_t)((double)(now - t0) / period_ns) + 1;
    if (due_count - (int64_t)next_k > max_backlog) max_backlog = due_count - (int64_t)next_k;
  }
}

/* Reconnects after their backoff, and the timeouts: connect/handshake and request (from send). */
static void housekeeping(int64_t now) {
  int64_t timeout = (int64_t)(opt_timeout_s * NS_PER_S);
  for (int i = 0; i < opt_conns; i++) {
    conn_t *c = &conns[i];
    if (c->state == C_DOWN && now >= c->retry_at) conn_open(c, now);
    else if (c->state == C_CONNECTING && now - c->since > timeout) conn_fail(c, E_CONNECT, now);
    else if (c->state == C_HANDSHAKE && now - c->since > timeout) conn_fail(c, E_TLS, now);
    else if ((c->state == C_SENDING || c->state == C_WAITING) && now - c->since > timeout) conn_fail(c, E_TIMEOUT, now);
  }
}

/* Waits for events until `wake` (absolute, ns). epoll_pwait2 takes a nanosecond timeout;
   kernels before 5.11 (or a seccomp filter) lack it, and then a timerfd does the waking. */
static int wait_events(struct epoll_event *evs, int64_t wake, int64_t now) {
  int64_t d = wake > now ? wake - now : 0;
#ifdef SYS_epoll_pwait2
  if (use_pwait2) {
    struct timespec ts = {.tv_sec = d / NS_PER_S, .tv_nsec = d % NS_PER_S};
    int n = (int)syscall(SYS_epoll_pwait2, ep, evs, MAX_EVENTS, &ts, NULL, 0);
    if (n >= 0) return n;
    if (errno != ENOSYS && errno != EPERM) return 0; /* EINTR */
    use_pwait2 = 0;
  }
#endif
  if (timer_fd < 0) {
    timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = TIMER_TAG};
    if (timer_fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, timer_fd, &e) != 0) fatal("cannot create a timerfd");
  }
  if (d == 0) return epoll_wait(ep, evs, MAX_EVENTS, 0);
  if (wake != timer_armed) {
    struct itimerspec it = {.it_value = {.tv_sec = wake / NS_PER_S, .tv_nsec = wake % NS_PER_S}};
    timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &it, NULL);
    timer_armed = wake;
  }
  int n = epoll_wait(ep, evs, MAX_EVENTS, 1000);
  return n < 0 ? 0 : n;
}

/* ------------------------------------------------------------------------------------------
 * Command line, URL (loopback only), output.
 * ---------------------------------------------------------------------------------------- */
static void usage(const char *why) {
  if (why) fprintf(stderr, "paced: %s\n", why);
  fprintf(stderr,
          "usage: paced -R rate -c connections -d seconds [-w seconds] [-t seconds] [-H 'Name: value'] URL\n"
          "  -R  requests per second over all connections, evenly spaced (open loop)\n"
          "  -c  keep-alive connections (1..%d), one request in flight on each\n"
          "  -d  measured window, seconds    -w  warm-up before it, seconds (default 0)\n"
          "  -t  request timeout from send, and longest drain after the window, seconds (default 5)\n"
          "  -H  extra request header (up to %d)\n"
          "  URL http:// or https:// on 127.0.0.0/8, [::1] or localhost\n",
          MAX_CONNECTIONS, MAX_HEADERS);
  exit(2);
}

static double number(const char *flag, const char *text, double lo, double hi) {
  char *end;
  double v = strtod(text, &end);
  if (*text == '\0' || *end != '\0' || !(v >= lo && v <= hi)) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s: \"%s\" is not a number in [%g, %g]", flag, text, lo, hi);
    usage(msg);
  }
  return v;
}

static void parse_url(const char *url) {
  const char *p;
  if (strncmp(url, "http://", 7) == 0) p = url + 7, use_tls = 0, port = 80;
  else if (strncmp(url, "https://", 8) == 0) p = url + 8, use_tls = 1, port = 443;
  else usage("the URL must start with http:// or https://");
  const char *h = p, *hend;
  if (*p == '[') {
    h = p + 1;
    hend = strchr(h, ']');
    if (!hend) usage("unterminated [ in the URL");
    p = hend + 1;
  } else {
    hend = p + strcspn(p, ":/");
    p = hend;
  }
  if ((size_t)(hend - h) >= sizeof host || hend == h) usage("bad host in the URL");
  memcpy(host, h, (size_t)(hend - h));
  host[hend - h] = '\0';
  if (*p == ':') {
    char *end;
    long v = strtol(p + 1, &end, 10);
    if (end == p + 1 || v < 1 || v > 65535 || (*end != '\0' && *end != '/')) usage("bad port in the URL");
    port = (int)v;
    p = end;
  }
  const char *path = *p ? p : "/";

  /* Loopback only, and no name lookups: this tool must never load someone else's server. */
  struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;
  memset(&addr, 0, sizeof addr);
  if (strcasecmp(host, "localhost") == 0) {
    host_is_name = 1;
    v4->sin_family = AF_INET;
    v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
  } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
  }
  int loopback = (addr.ss_family == AF_INET && (ntohl(v4->sin_addr.s_addr) >> 24) == 127) ||
                 (addr.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr));
  if (!loopback) {
    fprintf(stderr, "paced: refusing host \"%s\": paced is a test tool and only loads loopback (127.0.0.0/8, ::1, localhost)\n", host);
    exit(2);
  }
  if (addr.ss_family == AF_INET) v4->sin_port = htons((uint16_t)port), addr_len = sizeof *v4;
  else v6->sin6_port = htons((uint16_t)port), addr_len = sizeof *v6;

  int n = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\n", path,
                   addr.ss_family == AF_INET6 ? "[" : "", host, addr.ss_family == AF_INET6 ? "]" : "", port);
  for (int i = 0; i < opt_header_count && n > 0 && (size_t)n < sizeof request; i++)
    n += snprintf(request + n, sizeof request - (size_t)n, "%s\r\n", opt_headers[i]);
  if (n > 0 && (size_t)n < sizeof request) n += snprintf(request + n, sizeof request - (size_t)n, "\r\n");
  if (n <= 0 || (size_t)n >= sizeof request) usage("the request is too long");
  request_len = (size_t)n;
}

static void print_latency(const char *name, const hist_t *h) {
  printf("\"%s\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,\"max\":%.3f,\"mean\":%.3f}", name,
         (double)hist_percentile(h, 50) / 1e6, (double)hist_percentile(h, 90) / 1e6, (double)hist_percentile(h, 99) / 1e6,
         (double)hist_percentile(h, 99.9) / 1e6, (double)h->max / 1e6, h->total ? h->sum / (double)h->total / 1e6 : 0.0);
}

/* Max and mean per full 100 ms bucket of the window (a partial last bucket is left out). */
static void print_buckets(const char *name, const uint64_t *b) {
  int64_t full = (int64_t)(opt_duration_s * NS_PER_S) / BUCKET_NS;
  uint64_t max = 0, sum = 0;
  for (int64_t i = 0; i < full; i++) {
    sum += b[i];
    if (b[i] > max) max = b[i];
  }
  printf("\"%s_per_100ms\":{\"max\":%llu,\"mean\":%.1f}", name, (unsigned long long)max, full ? (double)sum / (double)full : 0.0);
}

/* Requests k with due_of(k) < t: the smallest such k found from the estimate, stepped exactly. */
static uint64_t due_before(int64_t t) {
  double est = (double)(t - t0) / period_ns;
  uint64_t k = est > 2 ? (uint64_t)est - 2 : 0;
  for (int i = 0; i < 8 && due_of(k) < t; i++) k++; /* the estimate is off by at most a couple */
  return k;
}

static void print_json(void) {
  uint64_t window_due = due_before(t_close) - due_before(t_open);
  uint64_t unfinished = window_due > window_resolved ? window_due - window_resolved : 0;
  uint64_t errors_total = unfinished;
  for (int i = 0; i < E_KINDS; i++) errors_total += errors[i];
  printf("{\"tool\":\"paced\",\"url\":\"%s\",\"connections\":%d,\"offered_rps\":%.3f,\"warmup_s\":%.3f,\"duration_s\":%.3f,",
         opt_url, opt_conns, opt_rate, opt_warmup_s, opt_duration_s);
  printf("\"achieved_rps\":%.3f,\"completed\":%llu,\"window_due\":%llu,\"latency_samples\":%llu,", (double)completed / opt_duration_s,
         (unsigned long long)completed, (unsigned long long)window_due, (unsigned long long)h_due.total);
  printf("\"sent\":%llu,\"responses\":%llu,\"non2xx\":%llu,\"errors\":{", (unsigned long long)sent, (unsigned long long)responses,
         (unsigned long long)non2xx);
  for (int i = 0; i < E_KINDS; i++) printf("\"%s\":%llu,", ERR_NAMES[i], (unsigned long long)errors[i]);
  printf("\"unfinished\":%llu},\"errors_total\":%llu,\"reconnects\":%llu,", (unsigned long long)unfinished,
         (unsigned long long)errors_total, (unsigned long long)reconnects);
  printf("\"max_backlog\":%lld,\"max_send_lag_ms\":%.3f,\"timer\":\"%s\",\"pacing\":{", (long long)max_backlog,
         (double)max_send_lag / 1e6, use_pwait2 ? "epoll_pwait2" : "timerfd");
  print_buckets("sent", sent_buckets);
  printf(",");
  print_buckets("done", done_buckets);
  printf("},\"latency_ms\":{");
  print_latency("from_due", &h_due);
  printf(",");
  print_latency("from_send", &h_send);
  printf("},\"generator\":{");
  print_latency("lag_ms", &h_self);
  /* The from-due histogram itself, sparse, as [upper bound in µs, count]: lets a harness merge
     rounds and draw percentile curves. Neighbouring buckets that round to the same µs merge. */
  printf("},\"histogram_from_due_us\":[");
  uint64_t last_us = 0, acc = 0;
  int first = 1;
  for (int i = 0; i <= HIST_BUCKETS; i++) {
    uint64_t us = i < HIST_BUCKETS ? (hist_upper(i) + 999) / 1000 : UINT64_MAX;
    if (us < 1) us = 1;
    if (us != last_us && acc > 0) {
      printf("%s[%llu,%llu]", first ? "" : ",", (unsigned long long)last_us, (unsigned long long)acc);
      first = 0;
      acc = 0;
    }
    if (i < HIST_BUCKETS) acc += h_due.counts[i];
    last_us = us;
  }
  printf("]}\n");
  fflush(stdout);
}

int main(int argc, char **argv) {
  int opt;
  while ((opt = getopt(argc, argv, "R:c:d:w:t:H:h")) != -1) {
    switch (opt) {
    case 'R': opt_rate = number("-R", optarg, 0.001, 10e6); break;
    case 'c':
      opt_conns = (int)number("-c", optarg, 1, MAX_CONNECTIONS);
      if (opt_conns != number("-c", optarg, 1, MAX_CONNECTIONS)) usage("-c takes a whole number");
      break;
    case 'd': opt_duration_s = number("-d", optarg, 0.1, 3600); break;
    case 'w': opt_warmup_s = number("-w", optarg, 0, 3600); break;
    case 't': opt_timeout_s = number("-t", optarg, 0.01, 600); break;
    case 'H':
      if (opt_header_count >= MAX_HEADERS || !strchr(optarg, ':') || strpbrk(optarg, "\r\n")) usage("-H takes 'Name: value' (up to 16)");
      opt_headers[opt_header_count++] = optarg;
      break;
    default: usage(NULL);
    }
  }
  if (optind != argc - 1) usage("exactly one URL is needed");
  if (opt_rate <= 0 || opt_conns <= 0 || opt_duration_s <= 0) usage("-R, -c and -d are required");
  opt_url = argv[optind];
  /* The URL goes into the JSON and the request line as is: no quotes, backslashes, controls. */
  for (const char *u = opt_url; *u; u++)
    if (*u == '"' || *u == '\\' || (unsigned char)*u <= ' ' || u - opt_url > 2000) usage("bad characters in the URL, or too long");
  parse_url(opt_url);

  signal(SIGPIPE, SIG_IGN);
  /* Timer slack (50 µs by default) would make every wake-up up to 50 µs late, and the
     due-time latency would include it: ask for 1 ns. */
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

  if (use_tls) {
    ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!ssl_ctx) fatal("cannot create the TLS context");
    SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
    /* The bench's certificates are throw-away and loopback-only; what is measured is the
       server's work, as with wrk and autocannon, which do not verify either. */
    SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    SSL_CTX_set_options(ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF); /* a FIN without close_notify is a close, not an error */
#endif
  }

  period_ns = 1e9 / opt_rate;
  bucket_count = (int64_t)(opt_duration_s * NS_PER_S) / BUCKET_NS + 1;
  conns = calloc((size_t)opt_conns, sizeof *conns);
  idle_ring = calloc((size_t)opt_conns, sizeof *idle_ring);
  sent_buckets = calloc((size_t)bucket_count, sizeof *sent_buckets);
  done_buckets = calloc((size_t)bucket_count, sizeof *done_buckets);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (!conns || !idle_ring || !sent_buckets || !done_buckets || ep < 0) fatal("out of memory or file descriptors");

  int64_t start = now_ns();
  int64_t warm = (int64_t)(opt_warmup_s * NS_PER_S), dur = (int64_t)(opt_duration_s * NS_PER_S);
  int64_t timeout = (int64_t)(opt_timeout_s * NS_PER_S);
  /* The outer bound of the whole run: connect + warm-up + window + drain, and a second. */
  int64_t hard_stop = start + CONNECT_WAIT_NS + warm + dur + timeout + NS_PER_S;
  for (int i = 0; i < opt_conns; i++) {
    conns[i].fd = -1;
    conn_open(&conns[i], start);
  }
  int opened = 0, closed = 0;
  int64_t next_house = start + HOUSEKEEPING_NS;
  struct epoll_event evs[MAX_EVENTS];

  for (;;) { /* bounded by hard_stop */
    int64_t now = now_ns();
    if (now >= hard_stop) break;
    if (!started) {
      int ready = 0;
      for (int i = 0; i < opt_conns; i++) ready += conns[i].state >= C_IDLE;
      if (ready == opt_conns || now - start >= CONNECT_WAIT_NS) {
        started = 1;
        t0 = now;
        t_open = t0 + warm;
        t_close = t_open + dur;
      }
    }
    if (started) {
      if (!opened && now >= t_open) {
        opened = 1;
        fputs("paced: window open\n", stderr);
      }
      if (opened && !closed && now >= t_close) {
        closed = 1;
        fputs("paced: window close\n", stderr);
      }
      /* Drained: every request due in the window was sent, and answered or failed. */
      if (closed && ((due_of(next_k) >= t_close && window_resolved >= window_sent) || now >= t_close + timeout)) break;
    }
    if (now >= next_house) {
      housekeeping(now);
      next_house = now + HOUSEKEEPING_NS;
    }
    dispatch(now);

    /* Sleep until the next due request (if a connection is free to take it), the next
       window edge, or housekeeping. Responses wake us through epoll. */
    int64_t wake = next_house;
    if (started && idle_count > 0 && due_of(next_k) < wake) wake = due_of(next_k);
    if (started && !opened && t_open < wake) wake = t_open;
    if (started && opened && !closed && t_close < wake) wake = t_close;
    if (any_tls_pending) wake = now;
    int n = wait_events(evs, wake, now_ns());
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == TIMER_TAG) {
        uint64_t ticks;
        if (read(timer_fd, &ticks, sizeof ticks) < 0) { /* nothing to do: it was just a wake-up */ }
        continue;
      }
      conn_t *c = &conns[(uint32_t)evs[i].data.u64];
      if ((uint32_t)(evs[i].data.u64 >> 32) != c->gen) continue; /* for a socket closed earlier in this batch */
      int64_t t = now_ns();
      on_event(c, evs[i].events, t);
      dispatch(t); /* a connection may have just become idle, and a request be waiting for it */
    }
    if (any_tls_pending) {
      any_tls_pending = 0;
      for (int i = 0; i < opt_conns; i++)
        if (conns[i].tls_pending && conns[i].state == C_WAITING) read_response(&conns[i]);
    }
  }

  if (!closed) fputs("paced: window close\n", stderr); /* only if the outer bound cut the run short */
  print_json();
  for (int i = 0; i < opt_conns; i++) conn_drop(&conns[i]);
  if (ssl_ctx) SSL_CTX_free(ssl_ctx);
  if (timer_fd >= 0) close(timer_fd);
  close(ep);
  free(conns);
  free(idle_ring);
  free(sent_buckets);
  free(done_buckets);
  return 0;
}
