/*
 * ref_jspub - the reference for the nats sink: a bare libnats JetStream
 * publisher with the sink's settings and nothing around it.  THREADS
 * threads (the sink's consumer threads), each with its own connection and
 * JetStream context, publish COUNT / THREADS messages of SIZE bytes to
 * SUBJECT with js_PublishMsgAsync: at most MAX_PENDING awaiting their ack
 * per thread, each with a Nats-Msg-Id header in the sink's form
 * (16 hex digits, '-', the sequence number) and a MaxWait of ACK_TIMEOUT
 * ms.  A message counts when its PubAck arrives; one that fails (timeout,
 * an error from the server) is published again once from the ack handler,
 * as the sink would, and counted as failed if that fails too.
 *
 *   ref_jspub URLS SUBJECT COUNT SIZE [THREADS [MAX_PENDING [ACK_TIMEOUT_MS]]]
 *
 * URLS: server URLs joined by commas.  Defaults: 2 threads, 4096 pending,
 * 10000 ms.  The clock runs from the first publish until every thread has
 * all its acks.  Prints one line:
 *   "msgs=N seconds=S msgs_per_s=R cpu_s=C retried=T failed=F"
 * Exit status 0 when every message was acknowledged, 1 otherwise.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "ref_clock.h"

struct pub {
    pthread_t tid;
    const char *urls;
    const char *subject;
    uint64_t origin, first, count;
    size_t size;
    int64_t max_pending, ack_timeout_ms;
    atomic_uint_fast64_t acked, retried, failed;
    int rc;
};

static void
on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    struct pub *p = closure;
    const char *again = NULL;

    if (pa != NULL) {
        atomic_fetch_add(&p->acked, 1);
    } else if (pae != NULL && natsMsgHeader_Get(msg, "Zpipe-Retry", &again) == NATS_NOT_FOUND) {
        /* Once: the header marks the second try. */
        atomic_fetch_add(&p->retried, 1);
        if (natsMsgHeader_Set(msg, "Zpipe-Retry", "1") != NATS_OK ||
            js_PublishMsgAsync(js, &msg, NULL) != NATS_OK) {
            atomic_fetch_add(&p->failed, 1);
        }
    } else {
        atomic_fetch_add(&p->failed, 1);
    }
    natsMsg_Destroy(msg);
}

static void *
publish(void *arg)
{
    struct pub *p = arg;
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsOptions jo;
    jsPubOptions po;
    const char *servers[16];
    char urls[2048], id[64], *save = NULL, *tok;
    char *body = malloc(p->size ? p->size : 1);
    uint64_t i;
    int n = 0;
    natsStatus s;

    p->rc = 1;
    if (body == NULL) {
        return NULL;
    }
    memset(body, 'x', p->size);
    snprintf(urls, sizeof(urls), "%s", p->urls);
    for (tok = strtok_r(urls, ",", &save); tok && n < 16; tok = strtok_r(NULL, ",", &save)) {
        servers[n++] = tok;
    }
    s = natsOptions_Create(&opts);
    if (s == NATS_OK) {
        s = natsOptions_SetServers(opts, servers, n);
    }
    if (s == NATS_OK) {
        s = natsConnection_Connect(&nc, opts);
    }
    if (s == NATS_OK) {
        jsOptions_Init(&jo);
        jo.PublishAsync.MaxPending = p->max_pending;
        jo.PublishAsync.AckHandler = on_ack;
        jo.PublishAsync.AckHandlerClosure = p;
        s = natsConnection_JetStream(&js, nc, &jo);
    }
    jsPubOptions_Init(&po);
    po.MaxWait = p->ack_timeout_ms;
    for (i = 0; s == NATS_OK && i < p->count; i++) {
        natsMsg *m = NULL;

        snprintf(id, sizeof(id), "%016" PRIx64 "-%" PRIu64, p->origin, p->first + i + 1);
        s = natsMsg_Create(&m, p->subject, NULL, body, (int)p->size);
        if (s == NATS_OK) {
            s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
        }
        /* A full window stalls the call for StallWait, then times out:
         * that is back-pressure, not an error. */
        while (s == NATS_OK && (s = js_PublishMsgAsync(js, &m, &po)) == NATS_TIMEOUT) {
            s = NATS_OK;
        }
        natsMsg_Destroy(m);
    }
    if (s == NATS_OK) {
        jsPubOptions_Init(&po);
        po.MaxWait = 10 * p->ack_timeout_ms;
        s = js_PublishAsyncComplete(js, &po);
    }
    if (s != NATS_OK) {
        fprintf(stderr, "ref_jspub: %s: %s\n", natsStatus_GetText(s),
                nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
    } else {
        p->rc = 0;
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(opts);
    free(body);
    return NULL;
}

int
main(int argc, char **argv)
{
    struct pub *pubs;
    uint64_t count, origin, acked = 0, retried = 0, failed = 0;
    int threads = 2, i, rc = 0;
    int64_t max_pending = 4096, ack_timeout_ms = 10000;
    double t0, t, c0, c;

    if (argc < 5 || argc > 8) {
        fprintf(stderr, "usage: ref_jspub URLS SUBJECT COUNT SIZE"
                        " [THREADS [MAX_PENDING [ACK_TIMEOUT_MS]]]\n");
        return 2;
    }
    count = strtoull(argv[3], NULL, 10);
    if (argc > 5) {
        threads = atoi(argv[5]);
    }
    if (argc > 6) {
        max_pending = atoll(argv[6]);
    }
    if (argc > 7) {
        ack_timeout_ms = atoll(argv[7]);
    }
    if (threads < 1 || max_pending < 1 || ack_timeout_ms < 1) {
        fprintf(stderr, "ref_jspub: THREADS, MAX_PENDING and ACK_TIMEOUT_MS must be > 0\n");
        return 2;
    }
    pubs = calloc((size_t)threads, sizeof(*pubs));
    if (pubs == NULL) {
        return 1;
    }
    srand((unsigned)time(NULL));
    origin = (uint64_t)rand() << 33 ^ (uint64_t)rand() << 2 ^ (uint64_t)rand();
    t0 = now_s();
    c0 = cpu_s();
    for (i = 0; i < threads; i++) {
        pubs[i].origin = origin;
        pubs[i].urls = argv[1];
        pubs[i].subject = argv[2];
        pubs[i].first = count / (uint64_t)threads * (uint64_t)i;
        pubs[i].count = count / (uint64_t)threads + (i == threads - 1 ? count % threads : 0);
        pubs[i].size = strtoull(argv[4], NULL, 10);
        pubs[i].max_pending = max_pending;
        pubs[i].ack_timeout_ms = ack_timeout_ms;
        if (pthread_create(&pubs[i].tid, NULL, publish, &pubs[i]) != 0) {
            fprintf(stderr, "ref_jspub: pthread_create failed\n");
            return 1;
        }
    }
    for (i = 0; i < threads; i++) {
        pthread_join(pubs[i].tid, NULL);
        rc |= pubs[i].rc;
        acked += atomic_load(&pubs[i].acked);
        retried += atomic_load(&pubs[i].retried);
        failed += atomic_load(&pubs[i].failed);
    }
    t = now_s() - t0;
    c = cpu_s() - c0;
    printf("msgs=%" PRIu64 " seconds=%.3f msgs_per_s=%.0f cpu_s=%.2f retried=%" PRIu64
           " failed=%" PRIu64 "\n",
           acked, t, (double)acked / (t > 0 ? t : 1e-6), c, retried, failed);
    free(pubs);
    nats_Close();
    return rc != 0 || acked != count ? 1 : 0;
}
