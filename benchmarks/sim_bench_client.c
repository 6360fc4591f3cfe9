/* The cheap client of benchmarks/sim_bench.py (--c-client): the same closed loop as its Python client, in C, so that
 * the client's own cost stays far below the simulator's. Compiled by sim_bench.py with `cc -O2`.
 *
 *   sim_bench_client HOST PORT STREAMS START_AT RAMP SENDING_S WINDOW_START WINDOW_END LO HI PROMPT_WORDS SEED OUT
 *
 * One keep-alive connection per stream, one streamed chat completion at a time, max_tokens uniform in [LO, HI]. Per
 * request it keeps (x-request-id, sent, first content delta, end of body) on CLOCK_MONOTONIC (Python's
 * time.monotonic), and writes them, its loop lateness every 10 ms and its CPU time over the window as JSON to OUT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int in_body;
    size_t head_len;
    char head[8192];
    char rid[40];
    double sent, first;
    char tail[16];
    size_t tail_len;
    int open;
} Stream;

typedef struct {
    char rid[40];
    double sent, first, end;
} Record;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static char **bodies;
static size_t *body_len;
static int n_bodies;
static Record *records;
static size_t n_records, cap_records;
static double *lag_t, *lag_v;
static size_t n_lag, cap_lag;
static int errors, open_streams;
static unsigned long long rng_state;

static unsigned long long rng(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void send_request(Stream *s) {
    int k = (int)(rng() % (unsigned long long)n_bodies);
    s->in_body = 0;
    s->head_len = 0;
    s->first = 0;
    s->tail_len = 0;
    s->sent = now();
    ssize_t w = send(s->fd, bodies[k], body_len[k], 0);
    if (w != (ssize_t)body_len[k]) {
        errors++;
    }
}

static void close_stream(int ep, Stream *s) {
    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->open = 0;
    open_streams--;
}

static const char CONTENT[] = "{\"content\":\"";
static const char END[] = "\r\n0\r\n\r\n";

static void body(Stream *s, const char *data, size_t len, double t, double stop_at, int ep) {
    if (!s->first) {
        const char *at = memmem(data, len, CONTENT, sizeof CONTENT - 1);
        if (at != NULL && (size_t)(at - data) + sizeof CONTENT - 1 < len && at[sizeof CONTENT - 1] != '"') {
            s->first = t;
        }
    }
    char tail[32];
    size_t keep = len < 8 ? len : 8;
    memcpy(tail, s->tail, s->tail_len);
    memcpy(tail + s->tail_len, data + len - keep, keep);
    size_t tl = s->tail_len + keep;
    size_t el = sizeof END - 1;
    if (tl >= el && memcmp(tail + tl - el, END, el) == 0) {
        if (n_records == cap_records) {
            cap_records = cap_records ? cap_records * 2 : 65536;
            records = realloc(records, cap_records * sizeof *records);
        }
        Record *r = &records[n_records++];
        memcpy(r->rid, s->rid, sizeof r->rid);
        r->sent = s->sent;
        r->first = s->first;
        r->end = t;
        if (t < stop_at) {
            send_request(s);
        } else {
            close_stream(ep, s);
        }
        return;
    }
    size_t k = tl < 8 ? tl : 8;
    memmove(s->tail, tail + tl - k, k);
    s->tail_len = k;
}

static void readable(Stream *s, double stop_at, int ep, char *buf, size_t cap) {
    ssize_t n = recv(s->fd, buf, cap, 0);
    double t = now();
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        errors++;
        close_stream(ep, s);
        return;
    }
    if (s->in_body) {
        body(s, buf, (size_t)n, t, stop_at, ep);
        return;
    }
    size_t room = sizeof s->head - s->head_len;
    size_t take = (size_t)n < room ? (size_t)n : room;
    memcpy(s->head + s->head_len, buf, take);
    s->head_len += take;
    char *end = memmem(s->head, s->head_len, "\r\n\r\n", 4);
    if (end == NULL) return;
    if (strncmp(s->head, "HTTP/1.1 200", 12) != 0) {
        errors++;
        close_stream(ep, s);
        return;
    }
    char *id = memmem(s->head, (size_t)(end - s->head), "x-request-id: ", 14);
    s->rid[0] = 0;
    if (id != NULL) {
        id += 14;
        char *eol = memmem(id, (size_t)(end + 2 - id), "\r\n", 2);
        size_t l = eol ? (size_t)(eol - id) : 0;
        if (l >= sizeof s->rid) l = sizeof s->rid - 1;
        memcpy(s->rid, id, l);
        s->rid[l] = 0;
    }
    s->in_body = 1;
    size_t off = (size_t)(end + 4 - s->head);
    size_t rest = s->head_len - off;
    if (rest > 0) {
        body(s, s->head + off, rest, t, stop_at, ep);
    }
}

int main(int argc, char **argv) {
    if (argc != 14) {
        fprintf(stderr, "usage: see the top of sim_bench_client.c\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), streams = atoi(argv[3]);
    double start_at = atof(argv[4]), ramp = atof(argv[5]), sending = atof(argv[6]);
    double window_start = atof(argv[7]), window_end = atof(argv[8]);
    int lo = atoi(argv[9]), hi = atoi(argv[10]), words = atoi(argv[11]);
    rng_state = 0x9E3779B97F4A7C15ULL ^ (unsigned long long)(atoll(argv[12]) + 1);
    const char *out = argv[13];
    double stop_at = start_at + sending;

    char *prompt = malloc((size_t)words * 5 + 1);
    size_t prompt_len = 0;
    for (int i = 0; i < words; i++) {
        if (i) prompt[prompt_len++] = ' ';
        memcpy(prompt + prompt_len, "word", 4);
        prompt_len += 4;
    }
    prompt[prompt_len] = 0;
    n_bodies = hi - lo + 1;
    bodies = calloc((size_t)n_bodies, sizeof *bodies);
    body_len = calloc((size_t)n_bodies, sizeof *body_len);
    for (int k = 0; k < n_bodies; k++) {
        char *json = malloc(prompt_len + 256);
        int jl = sprintf(json,
                         "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"%s\"}], "
                         "\"max_tokens\": %d, \"stream\": true, \"stream_options\": {\"include_usage\": true}}",
                         prompt, lo + k);
        bodies[k] = malloc((size_t)jl + 512);
        body_len[k] = (size_t)sprintf(bodies[k],
                                      "POST /v1/chat/completions HTTP/1.1\r\nhost: %s\r\ncontent-type: "
                                      "application/json\r\ncontent-length: %d\r\n\r\n%s",
                                      host, jl, json);
        free(json);
    }

    int ep = epoll_create1(0);
    Stream *ss = calloc((size_t)streams, sizeof *ss);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    for (int i = 0; i < streams; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            perror("connect");
            return 1;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        ss[i].fd = fd;
        ss[i].open = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &ss[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    open_streams = streams;

    int next_send = 0;
    double cpu_start = 0, cpu_end = 0, cpu_start_at = 0, cpu_end_at = 0;
    int got_start = 0, got_end = 0;
    double tick = start_at, deadline = stop_at + 120;
    char *buf = malloc(262144);
    struct epoll_event events[512];
    while (open_streams > 0 && now() < deadline) {
        double t = now();
        while (next_send < streams && start_at + ramp * next_send / streams <= t) {
            send_request(&ss[next_send++]);
        }
        if (!got_start && t >= window_start) cpu_start = cpu_s(), cpu_start_at = now(), got_start = 1;
        if (!got_end && t >= window_end) cpu_end = cpu_s(), cpu_end_at = now(), got_end = 1;
        if (t >= tick) {
            if (tick > start_at) {
                if (n_lag == cap_lag) {
                    cap_lag = cap_lag ? cap_lag * 2 : 16384;
                    lag_t = realloc(lag_t, cap_lag * sizeof *lag_t);
                    lag_v = realloc(lag_v, cap_lag * sizeof *lag_v);
                }
                lag_t[n_lag] = t;
                lag_v[n_lag++] = t - tick;
            }
            tick = t + 0.01;
        }
        double nxt = tick;
        if (next_send < streams && start_at + ramp * next_send / streams < nxt) nxt = start_at + ramp * next_send / streams;
        if (!got_start && window_start < nxt) nxt = window_start;
        if (!got_end && window_end < nxt) nxt = window_end;
        struct timespec ts = {0, 0};
        double wait = nxt - now();
        if (wait > 0) ts.tv_sec = (time_t)wait, ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
        int n = epoll_pwait2(ep, events, 512, &ts, NULL);
        for (int i = 0; i < n; i++) {
            Stream *s = events[i].data.ptr;
            if (s->open) readable(s, stop_at, ep, buf, 262144);
        }
    }

    FILE *f = fopen(out, "w");
    fprintf(f, "{\"errors\": %d, \"cpu\": {\"start\": %.6f, \"end\": %.6f, \"start_at\": %.6f, \"end_at\": %.6f},"
               " \"records\": [", errors, cpu_start, cpu_end, cpu_start_at, cpu_end_at);
    for (size_t i = 0; i < n_records; i++) {
        Record *r = &records[i];
        fprintf(f, "%s[\"%s\", %.9f, %.9f, %.9f]", i ? ", " : "", r->rid, r->sent, r->first, r->end);
    }
    fprintf(f, "], \"loop_lag\": [");
    for (size_t i = 0; i < n_lag; i++) fprintf(f, "%s[%.9f, %.9f]", i ? ", " : "", lag_t[i], lag_v[i]);
    fprintf(f, "]}\n");
    fclose(f);
    return 0;
}
