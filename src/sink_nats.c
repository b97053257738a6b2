/*
 * sink_nats.c - the nats sink: each message published to a NATS JetStream
 * stream (README.md, "Scaling past one machine"; zpiped.ini(5), "[nats]").
 *
 * One file over 700 lines: the mailbox, the ring of slots, the failure rule,
 * the dead-letter path and the renewal of a closed connection all keep the
 * order of the same messages in flight, which is the argument of the notes
 * below.
 *
 * A message is one NATS message on nats.subject: its payload, or for a
 * multipart message its frames in the binary record format with the header
 * Zpipe-Parts: N; and the header Nats-Msg-Id: its id ("origin-seq", msg.h),
 * by which the stream drops a copy published again within its duplicate
 * window.  It is stored, as far as this sink can know, when the stream's
 * ack (PubAck) arrives; an ack that says duplicate counts too.
 *
 * Threads.  Each instance has its own connection and JetStream context.
 * submit() publishes with js_PublishMsgAsync(), which returns at once;
 * every publish carries MaxWait = nats.ack_timeout, so each one ends in
 * exactly one call of on_ack() on a libnats thread (the reply
 * subscription's), with the ack, the server's error or a timeout.  on_ack()
 * only appends {the natsMsg, its outcome} to the mailbox (a mutex, a
 * condvar, an array as long as the window) and wakes the consumer if it
 * waits in poll() for that many.  The consumer's thread takes the whole
 * mailbox at once and applies it: the natsMsg names the slot (the ring of
 * messages in flight, in submission order) and is freed there.  So no
 * libnats thread ever touches a struct msg or calls done().
 *
 * Order.  Outcomes are reported from the oldest slot: acks behind one still
 * unknown are held.  When the oldest one failed (timeout, no stream, a
 * server error) it and everything after it is reported SINK_RETRY: the
 * consumer publishes them again after its backoff, in order, with the same
 * ids, and the stream's duplicate window absorbs those that did land.  Once
 * any message in flight failed, submit() publishes nothing new until that
 * failure is reported, so only messages already in flight behind it can
 * reach the stream before it does (nats.max_pending = 1 makes the order
 * strict).  A message still without an outcome OVERDUE_MS after its own
 * ack_timeout (libnats lost track of it: two publishes that drew the same
 * reply token) fails as timed out; its natsMsg stays libnats's, and the
 * window is one smaller from then on.  The
 * same happens when the connection is lost (its acks are lost with it),
 * noticed from natsConnection_Status() and the reconnect count.  The
 * natsMsgs of messages reported that way are taken back from libnats at
 * once (js_PublishAsyncGetPendingList: reclaim()), so the window is free
 * again without waiting for their timeouts; one whose ack was being handed
 * over just then comes back later, names no slot and is only freed.  A
 * natsMsg is freed only on this thread, after its event or once taken
 * back, so none can share an address with one in a slot.
 *
 * Window.  At most nats.max_pending messages are in flight, and at most as
 * many natsMsgs are out (published, not yet back), stale ones included:
 * that bounds the mailbox and the copies libnats holds (a natsMsg copies
 * the payload), and jsOptions.PublishAsync.MaxPending is set to the same
 * so libnats never queues more.  While not connected submit() takes
 * nothing (-ENOTCONN): publishing into libnats's reconnect buffer would
 * only pile up copies that time out.  libnats reconnects by itself, also
 * when no server was up at start, with a backoff from 100 ms to 5 s.  A
 * connection libnats closed for good (a server's error it does not know,
 * or the same authorisation error twice while reconnecting) is made anew,
 * at most once every RECONNECT_MAX_MS.
 *
 * Too large.  A message whose NATS message (its payload or binary record
 * and its headers, as libnats encodes them) is larger than the connected
 * server's max_payload would be refused each time it is published, and
 * stall everything behind it.  It is not published: it takes its slot, in
 * order, and when it is the oldest it is appended to a dead-letter file in
 * spool_dir (spool_dead_letter_add(): "deadletter-<ms>-<pid>-<n>.zpd",
 * binary record format, never replayed), which is made durable
 * (spool_dead_letter_sync()) before it counts as stored.  If that fails
 * the message stays in flight, to be written again on the next call, and
 * the call returns the error.  Each one is counted as "refused" and logged
 * at most once a second; a server whose max_payload is below
 * input.max_message_size plus the headers' room is logged when connected.
 * A message the stream refuses as larger than its own max_msg_size
 * (JetStream error 10054, known only from its ack) would be refused each
 * time too: its slot turns "too large" when that ack arrives, and it goes
 * the same way.
 *
 * Logs are rate-limited: one line when a kind of failure starts (or every
 * LOG_EVERY_MS while it lasts), one when messages are stored again.  Each
 * failed publish is counted in the sink's errors (stats.h).
 *
 * At the drain deadline abort() applies the acks already in and reports
 * the others SINK_RETRY (the consumer spills them).  close() takes back
 * what libnats still holds (js_PublishAsyncGetPendingList) and waits for
 * the on_ack() calls already under way before it frees the mailbox; if
 * some never come (within ack_timeout + CLOSE_WAIT_MS), it leaves the
 * sink's memory allocated rather than free what on_ack() may still use.
 */
#include "config.h"
#include "sink.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "heartbeat.h"
#include "log.h"
#include "spool.h"
#include "stats.h"
#include "util.h"

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 5000
#define LOG_EVERY_MS     10000 /* a failure that lasts is logged again this often */
#define CLOSE_WAIT_MS    5000  /* past ack_timeout: longest wait for on_ack() calls */
#define OVERDUE_MS       2000  /* past ack_timeout: an outcome libnats never gives */
#define ERR_TEXT_MAX     160   /* bytes of a server's error text kept for the log */
#define PING_INTERVAL_MS 5000
#define REFUSED_LOG_MS   1000  /* messages too large are logged at most this often */

/*
 * The header block libnats sends before a message's payload, which the
 * server's max_payload counts too (libnats's natsMsgHeader_encodedLen()):
 * "NATS/1.0\r\n", then "Name: value\r\n" for each header, then "\r\n".
 */
#define HDR_LINE       "NATS/1.0\r\n"
#define HDR_MSG_ID     "Nats-Msg-Id"
#define HDR_PARTS      "Zpipe-Parts"
#define HDR_FIELD_SIZE(name, value_len) (sizeof(name) - 1 + 2 + (value_len) + 2)
/* The most it can be: the longest id and the longest number of parts. */
#define HDR_ROOM                                                               \
    (sizeof(HDR_LINE) - 1 + HDR_FIELD_SIZE(HDR_MSG_ID, MSG_ID_TEXT_MAX - 1) + \
     HDR_FIELD_SIZE(HDR_PARTS, 20) + 2)

/* An outcome, as on_ack() hands it over. */
struct nats_event {
    natsMsg *nm;    /* the natsMsg published; ours again */
    int err;        /* 0: acknowledged; else a negative errno (to_errno()) */
    jsErrCode code; /* the server's JetStream error, or 0 */
};

enum slot_state {
    SLOT_SENT,
    SLOT_ACKED,
    SLOT_FAILED,
    SLOT_TOO_LARGE, /* not published: to the dead-letter file */
    SLOT_DEAD,      /* in the dead-letter file, not yet synced */
};

/* A message in flight. */
struct nats_slot {
    struct msg *m; /* borrowed from the consumer until its outcome */
    natsMsg *nm;   /* its natsMsg while that is out, or NULL */
    uint64_t sent_ms; /* when it was published (util_now_ms()) */
    int err;       /* SLOT_FAILED: why */
    uint8_t st;    /* enum slot_state */
};

struct nats_sink {
    const struct conf *cfg;
    sink_done_fn *done;
    void *arg;
    natsConnection *nc;
    jsCtx *js;
    natsStatistics *stats;
    struct nats_slot *slots; /* ring of cap, in submission order */
    size_t cap;              /* nats.max_pending */
    size_t head, count;      /* the oldest slot; how many are in flight */
    size_t hint;             /* where the next ack is likely: count from head */
    size_t out;              /* natsMsgs published and not yet taken back */
    size_t enough;           /* events that end a poll() early */
    size_t nfailed;          /* slots in SLOT_FAILED */
    size_t nlarge;           /* slots in SLOT_TOO_LARGE or SLOT_DEAD: no event comes for them */
    int64_t max_payload;     /* the connected server's, as last seen (check_conn()) */
    uint64_t published;      /* successful js_PublishMsgAsync() calls, in all */
    uint64_t reclaimed;      /* natsMsgs taken back from libnats (reclaim()), in all */
    uint64_t reconnects;     /* the connection's reconnect count, as last seen */
    uint64_t renew_ms;       /* a closed connection is made anew from then on */
    bool is_used;            /* the JetStream context has published (reclaim()) */
    int retry_err;           /* has_retried: the err it was reported with */
    bool has_retried;        /* this call reported SINK_RETRY: take nothing more in it */
    bool is_down;            /* the connection was seen down (logged) */
    struct nats_event *applying; /* the events being applied (cap) */
    unsigned char *body;      /* a multipart message's encoding (msg_body()) */
    size_t body_cap;
    /* Logging: the failure being logged, and when. */
    int log_err;
    uint64_t log_ms;
    uint64_t failed; /* failed publishes since the last stored one */
    uint64_t refused; /* messages too large, in all */
    uint64_t refused_log_ms;
    struct spool_dead_letter dl; /* where messages too large go */
    /* The mailbox, shared with on_ack().  mu protects every field below;
     * cond is signalled when nev reaches want while is_waiting. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct nats_event *ev; /* cap entries; nev of them filled */
    size_t nev;
    size_t want;
    bool is_waiting;
    uint64_t returned; /* events ever appended */
    /* The natsMsgs of slots failed as overdue (fail_overdue()), while
     * libnats has neither handed back (on_ack()) nor given up (reclaim()):
     * each is counted once, as returned, reclaimed or lost (wait_returned()).
     * At most cap, since each is out. */
    natsMsg **lost;
    size_t nlost;
    int ev_code;       /* the last server error: its JetStream code and text */
    char ev_text[ERR_TEXT_MAX];
};

/* to_errno names a libnats outcome for the consumer's log and counters. */
static int
to_errno(natsStatus st)
{
    switch (st) {
    case NATS_OK:
        return 0;
    case NATS_TIMEOUT:
        return -ETIMEDOUT;
    case NATS_NO_RESPONDERS:
        return -ENXIO; /* nothing listens on the subject: no stream captures it */
    case NATS_NO_MEMORY:
        return -ENOMEM;
    case NATS_MAX_PAYLOAD:
        return -EMSGSIZE;
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER:
    case NATS_STALE_CONNECTION:
        return -ENOTCONN;
    default:
        return -EIO;
    }
}

/* forget_lost_locked takes nm off the lost list, if it is there.  Under mu. */
static void
forget_lost_locked(struct nats_sink *s, const natsMsg *nm)
{
    for (size_t i = 0; i < s->nlost; i++) {
        if (s->lost[i] == nm) {
            s->lost[i] = s->lost[--s->nlost];
            return;
        }
    }
}

/*
 * on_ack is libnats's callback for every async publish, on its reply
 * subscription's thread: it hands the natsMsg and its outcome over.
 */
static void
on_ack(jsCtx *js, natsMsg *nm, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    struct nats_sink *s = closure;
    int err = pa != NULL ? 0 : to_errno(pae->Err);

    (void)js;
    pthread_mutex_lock(&s->mu);
    /* Room: at most cap natsMsgs are out, and each comes back once. */
    s->ev[s->nev++] =
        (struct nats_event){ .nm = nm, .err = err, .code = pae != NULL ? pae->ErrCode : 0 };
    s->returned++;
    forget_lost_locked(s, nm);
    if (err == -EIO) {
        s->ev_code = (int)pae->ErrCode;
        snprintf(s->ev_text, sizeof(s->ev_text), "%s",
                 pae->ErrText != NULL ? pae->ErrText : natsStatus_GetText(pae->Err));
    }
    if (s->is_waiting && s->nev >= s->want) {
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->mu);
}

/*
 * on_error logs what libnats reports asynchronously (a publish the server
 * refused by permissions, say), at most every LOG_EVERY_MS, on a libnats
 * thread.
 */
static void
on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    static _Atomic uint64_t last_ms;
    uint64_t now = util_now_ms(), last = last_ms;
    const char *text = NULL;

    (void)sub;
    (void)closure;
    if (now - last < LOG_EVERY_MS || !atomic_compare_exchange_strong(&last_ms, &last, now)) {
        return;
    }
    (void)natsConnection_GetLastError(nc, &text);
    log_warning("nats: %s%s%s", natsStatus_GetText(err), text != NULL ? ": " : "",
                text != NULL ? text : "");
}

/* The first connect succeeded (libnats retries it): the consumer notices by itself. */
static void
on_connected(natsConnection *nc, void *closure)
{
    (void)nc;
    (void)closure;
}

/* The wait before the attempts-th round of reconnects: doubling, capped. */
static int64_t
reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
    int64_t ms = RECONNECT_MIN_MS;

    (void)nc;
    (void)closure;
    while (--attempts > 0 && ms < RECONNECT_MAX_MS) {
        ms *= 2;
    }
    return ms < RECONNECT_MAX_MS ? ms : RECONNECT_MAX_MS;
}

/*
 * url_for_log is url with its user and password, if any, shown as "***":
 * logs carry no secret.  buf holds the copy when one is needed.
 */
static const char *
url_for_log(const char *url, char *buf, size_t size)
{
    const char *host = strstr(url, "://");
    const char *at;

    host = host != NULL ? host + 3 : url;
    at = strrchr(host, '@');
    if (at == NULL) {
        return url;
    }
    snprintf(buf, size, "%.*s***%s", (int)(host - url), url, at);
    return buf;
}

static struct nats_slot *
slot_at(struct nats_sink *s, size_t i)
{
    return &s->slots[(s->head + i) % s->cap];
}

/*
 * note_refused counts a message refused for its size (what: it and the
 * limit, for the log) and logs it at most once every REFUSED_LOG_MS.
 */
static void
note_refused(struct nats_sink *s, const char *what)
{
    uint64_t now = util_now_ms();

    s->refused++;
    stats_sink_error(STATS_SINK_ERROR_REFUSED);
    /* One line a second at most: a client may send nothing else. */
    if (s->refused == 1 || now - s->refused_log_ms >= REFUSED_LOG_MS) {
        log_warning("nats: %s (%" PRIu64 " so far): it goes to the dead-letter file", what,
                    s->refused);
        s->refused_log_ms = now;
    }
}

/*
 * note_failure logs a failed publish, once when a kind of failure starts
 * and again every LOG_EVERY_MS, and counts it.
 */
static void
note_failure(struct nats_sink *s, int err)
{
    const char *subj = s->cfg->nats_subject;
    uint64_t now = util_now_ms();
    char ebuf[128], ubuf[256];

    s->failed++;
    stats_sink_error(err == -ETIMEDOUT  ? STATS_SINK_ERROR_TIMEOUT
                     : err == -ENOTCONN ? STATS_SINK_ERROR_OPEN
                                        : STATS_SINK_ERROR_SEND);
    if (err == s->log_err && now - s->log_ms < LOG_EVERY_MS) {
        return;
    }
    s->log_err = err;
    s->log_ms = now;
    switch (err) {
    case -ETIMEDOUT:
        log_warning("nats: no JetStream ack on %s within %" PRIu64 " ms: publishing again "
                    "(same message ids)", subj, s->cfg->nats_ack_timeout);
        break;
    case -ENXIO:
        log_warning("nats: no JetStream stream answers on subject %s (no responders: none "
                    "captures it, or it has no leader yet): retrying", subj);
        break;
    case -ENOTCONN:
        log_warning("nats: not connected to any of nats.servers (%s%s): retrying",
                    url_for_log(s->cfg->nats_servers.items[0], ubuf, sizeof(ubuf)),
                    s->cfg->nats_servers.n > 1 ? " ..." : "");
        break;
    case -EIO: {
        char text[ERR_TEXT_MAX];
        int code;

        pthread_mutex_lock(&s->mu);
        code = s->ev_code;
        memcpy(text, s->ev_text, sizeof(text));
        pthread_mutex_unlock(&s->mu);
        log_warning("nats: publish to %s: JetStream error %d: %s: retrying", subj, code, text);
        break;
    }
    default:
        log_warning("nats: publish to %s: %s: retrying", subj,
                    util_strerror(-err, ebuf, sizeof(ebuf)));
        break;
    }
}

/*
 * reclaim takes back the natsMsgs libnats still waits on an ack for, when
 * none of them is in flight any more.  After it no reply names one of
 * them, so on_ack() is not called for them.
 */
static void
reclaim(struct nats_sink *s)
{
    natsMsgList pending = { 0 };

    /* libnats 3.4 crashes here when its context never published. */
    if (!s->is_used || js_PublishAsyncGetPendingList(&pending, s->js) != NATS_OK) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < pending.Count; i++) {
        forget_lost_locked(s, pending.Msgs[i]);
    }
    s->reclaimed += (uint64_t)pending.Count;
    pthread_mutex_unlock(&s->mu);
    s->out -= (size_t)pending.Count;
    natsMsgList_Destroy(&pending);
}

/* retry_all reports every message in flight SINK_RETRY (err: why, or 0). */
static void
retry_all(struct nats_sink *s, int err)
{
    size_t n = s->count;

    reclaim(s); /* none of what libnats holds is in flight any more */
    if (n == 0) {
        return;
    }
    s->head = (s->head + n) % s->cap;
    s->count = 0;
    s->hint = 0;
    s->nfailed = 0;
    s->nlarge = 0;
    if (!s->has_retried) {
        s->has_retried = true;
        s->retry_err = err;
    }
    s->done(s->arg, n, SINK_RETRY, err);
}

/*
 * fail_overdue fails the oldest message in flight when its outcome is
 * OVERDUE_MS late: libnats times out every publish after ack_timeout, so it
 * has lost track of this one, and its natsMsg never comes back.
 */
static void
fail_overdue(struct nats_sink *s)
{
    struct nats_slot *sl = slot_at(s, 0);

    if (sl->st != SLOT_SENT ||
        util_now_ms() - sl->sent_ms < s->cfg->nats_ack_timeout + OVERDUE_MS) {
        return;
    }
    log_warning("nats: libnats gave no outcome for a publish on %s (%" PRIu64 " ms ago): "
                "publishing it again", s->cfg->nats_subject, util_now_ms() - sl->sent_ms);
    pthread_mutex_lock(&s->mu);
    s->lost[s->nlost++] = sl->nm;
    pthread_mutex_unlock(&s->mu);
    sl->nm = NULL;
    sl->st = SLOT_FAILED;
    sl->err = -ETIMEDOUT;
    s->nfailed++;
}

/*
 * sync_dead_letters makes the messages too large among the first n in
 * flight, just added to the dead-letter file, durable there.  Returns n, or
 * on error (logged; *err is set) how many from the oldest are stored still:
 * those before the first message too large.
 */
static size_t
sync_dead_letters(struct nats_sink *s, size_t n, int *err)
{
    size_t first = n;
    int sync_err = spool_dead_letter_sync(&s->dl);

    if (sync_err == 0) {
        return n;
    }
    /* Cut off the file again: they stay in flight and are written again
     * on the next call. */
    for (size_t k = 0; k < n; k++) {
        struct nats_slot *sl = slot_at(s, k);

        if (sl->st == SLOT_DEAD) {
            sl->st = SLOT_TOO_LARGE;
            first = first < k ? first : k;
        }
    }
    *err = sync_err;
    return first;
}

/*
 * report reports the stored messages from the oldest (acknowledged, or too
 * large and in the dead-letter file), and a failure there.  Returns 0 or
 * the dead-letter file's error.
 */
static int
report(struct nats_sink *s)
{
    size_t n = 0, large = 0;
    int err = 0;

    for (; n < s->count; n++) {
        struct nats_slot *sl = slot_at(s, n);

        if (sl->st == SLOT_TOO_LARGE) {
            err = spool_dead_letter_add(&s->dl, sl->m);
            if (err < 0) {
                break;
            }
            sl->st = SLOT_DEAD;
        } else if (sl->st != SLOT_ACKED) {
            break;
        }
    }
    n = sync_dead_letters(s, n, &err);
    for (size_t k = 0; k < n; k++) {
        large += slot_at(s, k)->st == SLOT_DEAD;
    }
    if (n > 0) {
        s->head = (s->head + n) % s->cap;
        s->count -= n;
        s->nlarge -= large;
        s->hint = s->hint > n ? s->hint - n : 0;
        if (s->failed > 0) {
            log_info("nats: storing on %s again (%" PRIu64 " failed publishes since the last)",
                     s->cfg->nats_subject, s->failed);
            s->failed = 0;
            s->log_err = 0;
        }
        s->done(s->arg, n, SINK_STORED, 0);
    }
    if (s->count > 0) {
        fail_overdue(s);
    }
    if (s->count > 0 && slot_at(s, 0)->st == SLOT_FAILED) {
        retry_all(s, slot_at(s, 0)->err);
    }
    return err;
}

/* apply gives ev's outcome to its slot, if it names one, and frees its natsMsg. */
static void
apply(struct nats_sink *s, const struct nats_event *ev)
{
    size_t k;

    /* Acks come in publish order as a rule: start where the last one was. */
    for (k = 0; k < s->count; k++) {
        size_t i = (s->hint + k) % s->count;
        struct nats_slot *sl = slot_at(s, i);

        if (sl->nm == ev->nm) {
            sl->nm = NULL;
            sl->st = ev->err == 0 ? SLOT_ACKED : SLOT_FAILED;
            sl->err = ev->err;
            s->hint = i + 1;
            if (ev->code == JSStreamMessageExceedsMaximumErr) {
                char what[120];

                /* Refused again each time: to the dead-letter file. */
                sl->st = SLOT_TOO_LARGE;
                s->nlarge++;
                snprintf(what, sizeof(what),
                         "the stream refused a message of %zu bytes as larger than its "
                         "max_msg_size",
                         (size_t)sl->m->size);
                note_refused(s, what);
            } else if (ev->err != 0) {
                s->nfailed++;
                note_failure(s, ev->err);
            }
            break;
        }
    }
    natsMsg_Destroy(ev->nm);
    s->out--;
}

/*
 * take_events takes what the mailbox holds, waiting up to timeout_ms for
 * `enough` events when it is empty, applies them and reports outcomes.
 * Returns 0 or the dead-letter file's error (report()).
 */
static int
take_events(struct nats_sink *s, int timeout_ms)
{
    struct nats_event *tmp;
    size_t n, i;

    pthread_mutex_lock(&s->mu);
    /* Not more than the messages published and in flight: the stale
     * natsMsgs out may come back only after their own ack_timeout. */
    s->want = s->count - s->nlarge < s->enough ? s->count - s->nlarge : s->enough;
    if (timeout_ms > 0 && s->nev < s->want) {
        struct timespec ts;

        util_deadline_ts(CLOCK_MONOTONIC, (uint64_t)timeout_ms, &ts); /* cond's clock */

        s->is_waiting = true;
        while (s->nev < s->want) {
            if (pthread_cond_timedwait(&s->cond, &s->mu, &ts) != 0) {
                break;
            }
        }
        s->is_waiting = false;
    }
    tmp = s->ev;
    s->ev = s->applying;
    s->applying = tmp;
    n = s->nev;
    s->nev = 0;
    pthread_mutex_unlock(&s->mu);
    for (i = 0; i < n; i++) {
        apply(s, &s->applying[i]);
    }
    return report(s);
}

static void renew_conn(struct nats_sink *s);

/*
 * note_max_payload keeps the connected server's max_payload and, once per
 * value seen by the process, warns if input.max_message_size does not fit
 * in it with the headers: zpiped accepts messages that server refuses.
 */
static void
note_max_payload(struct nats_sink *s)
{
    static _Atomic int64_t warned;
    int64_t mp = natsConnection_GetMaxPayload(s->nc);
    uint64_t max_size = s->cfg->input_max_message_size;

    if (mp == s->max_payload) {
        return;
    }
    s->max_payload = mp;
    if (max_size + HDR_ROOM > (uint64_t)mp && atomic_exchange(&warned, mp) != mp) {
        log_warning("nats: input.max_message_size (%" PRIu64 " bytes) and %zu bytes of headers "
                    "do not fit in the server's max_payload (%" PRId64 " bytes): messages "
                    "accepted that it refuses go to a dead-letter file in %s",
                    max_size, HDR_ROOM, mp, s->cfg->daemon_spool_dir);
    }
}

/*
 * check_conn reports everything in flight SINK_RETRY when the connection it
 * went out on is gone, makes a closed one anew, and logs the connection's
 * changes.  Returns 0 when connected, else -ENOTCONN.
 */
static int
check_conn(struct nats_sink *s)
{
    uint64_t reconnects = s->reconnects;
    natsConnStatus cs = natsConnection_Status(s->nc);
    bool is_up = cs == NATS_CONN_STATUS_CONNECTED;

    if (natsConnection_GetStats(s->nc, s->stats) == NATS_OK) {
        (void)natsStatistics_GetCounts(s->stats, NULL, NULL, NULL, NULL, &reconnects);
    }
    if (reconnects != s->reconnects || !is_up) {
        /* Acks of what went out on a lost connection are lost with it. */
        if (!s->is_down) {
            log_warning("nats: connection lost%s: the %zu messages in flight are published "
                        "again", is_up ? " and made again" : "", s->count);
        }
        s->reconnects = reconnects;
        retry_all(s, -ENOTCONN);
    }
    if (!is_up) {
        s->is_down = true;
        if (cs == NATS_CONN_STATUS_CLOSED) {
            renew_conn(s);
        }
        return -ENOTCONN;
    }
    if (s->is_down) {
        char url[256] = "", ubuf[256];

        (void)natsConnection_GetConnectedUrl(s->nc, url, sizeof(url));
        log_info("nats: connected to %s", url_for_log(url, ubuf, sizeof(ubuf)));
        s->is_down = false;
        s->log_err = 0; /* a new outage is logged at once */
    }
    note_max_payload(s);
    return 0;
}

/*
 * refuse puts m, size bytes as a NATS message, in the next slot unpublished:
 * too large for the server, it goes to the dead-letter file (report()).
 */
static void
refuse(struct nats_sink *s, struct msg *m, size_t size)
{
    char what[160];

    *slot_at(s, s->count) = (struct nats_slot){ .m = m, .st = SLOT_TOO_LARGE };
    s->count++;
    s->nlarge++;
    snprintf(what, sizeof(what),
             "a message of %zu bytes with its headers is larger than the server's "
             "max_payload of %" PRId64 " bytes",
             size, s->max_payload);
    note_refused(s, what);
}

/*
 * publish publishes m and, on success, puts it in the next slot; one too
 * large for the server goes there unpublished (refuse()).  Returns 0 or a
 * negative errno (m is not in flight then).
 */
static int
publish(struct nats_sink *s, struct msg *m)
{
    char id[MSG_ID_TEXT_MAX], parts[24] = "";
    const unsigned char *data;
    jsPubOptions po;
    natsMsg *nm = NULL, *sent;
    natsStatus st;
    size_t len, size;
    int r;

    r = msg_body(m, &s->body, &s->body_cap, &data, &len);
    if (r < 0) {
        return r;
    }
    (void)msg_id_format(&m->id, id);
    if (m->nframes > 1) {
        snprintf(parts, sizeof(parts), "%u", (unsigned)m->nframes);
    }
    size = sizeof(HDR_LINE) - 1 + HDR_FIELD_SIZE(HDR_MSG_ID, strlen(id)) + 2 + len;
    size += parts[0] != '\0' ? HDR_FIELD_SIZE(HDR_PARTS, strlen(parts)) : 0;
    if (size > (uint64_t)s->max_payload) {
        refuse(s, m, size); /* the server would refuse it, every time */
        return 0;
    }
    st = natsMsg_Create(&nm, s->cfg->nats_subject, NULL, (const char *)data, (int)len);
    if (st == NATS_OK && parts[0] != '\0') {
        st = natsMsgHeader_Set(nm, HDR_PARTS, parts);
    }
    jsPubOptions_Init(&po);
    po.MsgId = id; /* the header HDR_MSG_ID */
    po.MaxWait = (int64_t)s->cfg->nats_ack_timeout;
    sent = nm;
    if (st == NATS_OK) {
        st = js_PublishMsgAsync(s->js, &nm, &po);
    }
    if (st != NATS_OK) {
        natsMsg_Destroy(nm); /* still ours: libnats keeps it only on success */
        return to_errno(st);
    }
    /* Its own time, not the submit's: a long submit (a dead-letter sync,
     * a full window of publishes) must not make it overdue early. */
    *slot_at(s, s->count) =
        (struct nats_slot){ .m = m, .nm = sent, .sent_ms = util_now_ms(), .st = SLOT_SENT };
    s->count++;
    s->out++;
    s->published++;
    s->is_used = true;
    return 0;
}

static int
sink_nats_submit(void *state, struct msg *const *msgs, size_t n, size_t *accepted)
{
    struct nats_sink *s = state;
    size_t i = 0;
    int err, dl_err;

    s->has_retried = false;
    dl_err = take_events(s, 0);
    err = check_conn(s);
    if (err == 0 && s->has_retried) {
        /* Nothing newer goes out before the consumer offers the retried
         * ones again: that keeps the order. */
        *accepted = 0;
        return s->retry_err != 0 ? s->retry_err : -EAGAIN;
    }
    /* Nor while a failure waits for the outcomes before it (report()). */
    while (err == 0 && s->nfailed == 0 && i < n && s->count < s->cap && s->out < s->cap) {
        err = publish(s, msgs[i]);
        if (err == 0) {
            i++;
        }
    }
    if (err < 0) {
        note_failure(s, err);
    }
    *accepted = i;
    return err < 0 ? err : dl_err;
}

static int
sink_nats_poll(void *state, int timeout_ms)
{
    struct nats_sink *s = state;
    int err;

    s->has_retried = false;
    err = take_events(s, 0); /* acks already in count, whatever the connection's state now */
    if (check_conn(s) < 0 && s->out == 0) {
        return err; /* nothing can come: the consumer backs off */
    }
    if (err == 0) {
        err = take_events(s, s->count > 0 ? timeout_ms : 0);
    }
    return err;
}

static void
sink_nats_abort(void *state)
{
    struct nats_sink *s = state;

    (void)take_events(s, 0); /* stores the messages too large before the first unknown one */
    retry_all(s, 0); /* still unknown: spilled, and published again after the restart */
}

static int
sink_nats_reopen(void *state)
{
    (void)state;
    return 0; /* nothing to reopen: libnats reconnects by itself */
}

/*
 * wait_returned waits (bounded) until every natsMsg published has come back,
 * been taken back or is known lost: then no on_ack() call uses s any more,
 * and it returns true.
 */
static bool
wait_returned(struct nats_sink *s)
{
    uint64_t deadline = util_now_ms() + s->cfg->nats_ack_timeout + CLOSE_WAIT_MS;
    bool is_done;

    pthread_mutex_lock(&s->mu);
    s->want = 1;
    while (s->returned + s->reclaimed + s->nlost < s->published && util_now_ms() < deadline) {
        struct timespec ts;

        util_deadline_ts(CLOCK_MONOTONIC, 10, &ts);
        heartbeat_beat_self(); /* up to ack_timeout + CLOSE_WAIT_MS: not stuck */
        s->is_waiting = true;
        (void)pthread_cond_timedwait(&s->cond, &s->mu, &ts);
    }
    s->is_waiting = false;
    is_done = s->returned + s->reclaimed + s->nlost >= s->published;
    if (!is_done) {
        log_error("nats: %" PRIu64 " acks never came back from libnats",
                  s->published - s->returned - s->reclaimed - s->nlost);
    }
    pthread_mutex_unlock(&s->mu);
    return is_done;
}

/*
 * drop_conn ends s's connection and JetStream context: false (and nothing
 * done) while on_ack() calls may still come.
 */
static bool
drop_conn(struct nats_sink *s)
{
    if (s->js != NULL) {
        reclaim(s);
        if (!wait_returned(s)) {
            return false;
        }
        (void)take_events(s, 0); /* frees the natsMsgs that came back */
        jsCtx_Destroy(s->js);
        s->js = NULL;
    }
    natsConnection_Destroy(s->nc);
    s->nc = NULL;
    natsStatistics_Destroy(s->stats);
    s->stats = NULL;
    return true;
}

static void
sink_nats_close(void *state)
{
    struct nats_sink *s = state;

    if (s == NULL) {
        return;
    }
    if (!drop_conn(s)) {
        return; /* s stays allocated: an on_ack() may still use it */
    }
    if (s->refused > 0) {
        log_info("nats: %" PRIu64 " messages too large for the server or the stream "
                 "(dead-lettered)", s->refused);
    }
    spool_dead_letter_fini(&s->dl);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s->ev);
    free(s->applying);
    free(s->lost);
    free(s->slots);
    free(s->body);
    free(s);
}

/* connect_nats makes s's connection and JetStream context. */
static int
connect_nats(struct nats_sink *s)
{
    const struct conf *c = s->cfg;
    natsOptions *o = NULL;
    jsOptions jo;
    natsStatus st;
    char ubuf[256];

    st = natsOptions_Create(&o);
    if (st == NATS_OK) {
        st = natsOptions_SetServers(o, (const char **)c->nats_servers.items,
                                    (int)c->nats_servers.n);
    }
    if (st == NATS_OK) {
        st = natsOptions_SetName(o, "zpiped");
    }
    if (st == NATS_OK) {
        st = natsOptions_SetErrorHandler(o, on_error, NULL);
    }
    if (st == NATS_OK) {
        st = natsOptions_SetMaxReconnect(o, -1); /* forever */
    }
    if (st == NATS_OK) {
        st = natsOptions_SetCustomReconnectDelay(o, reconnect_delay, NULL);
    }
    if (st == NATS_OK) {
        /* A server gone without a word (no RST) is noticed after two
         * unanswered pings, in seconds rather than libnats's minutes. */
        st = natsOptions_SetPingInterval(o, PING_INTERVAL_MS);
    }
    if (st == NATS_OK) {
        /* A server down at start is not an error: libnats keeps trying in
         * the background (the callback makes that asynchronous). */
        st = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, NULL);
    }
    if (st == NATS_OK) {
        st = natsConnection_Connect(&s->nc, o);
        if (st == NATS_NOT_YET_CONNECTED) {
            s->is_down = true; /* "connected" is logged when it is */
            st = NATS_OK;
        }
    }
    natsOptions_Destroy(o);
    s->is_used = false;
    s->reconnects = 0;
    if (st == NATS_OK) {
        st = jsOptions_Init(&jo);
    }
    if (st == NATS_OK) {
        jo.PublishAsync.MaxPending = (int64_t)s->cap;
        jo.PublishAsync.AckHandler = on_ack;
        jo.PublishAsync.AckHandlerClosure = s;
        st = natsConnection_JetStream(&s->js, s->nc, &jo);
    }
    if (st == NATS_OK) {
        st = natsStatistics_Create(&s->stats);
    }
    if (st != NATS_OK) {
        log_error("nats: connect to %s: %s",
                  url_for_log(c->nats_servers.items[0], ubuf, sizeof(ubuf)),
                  natsStatus_GetText(st));
    }
    return to_errno(st);
}

/*
 * renew_conn makes anew a connection libnats closed for good, at most once
 * every RECONNECT_MAX_MS; nothing is in flight (check_conn() retried it).
 */
static void
renew_conn(struct nats_sink *s)
{
    const char *text = NULL;
    uint64_t now = util_now_ms();

    if (now < s->renew_ms) {
        return;
    }
    s->renew_ms = now + RECONNECT_MAX_MS;
    (void)natsConnection_GetLastError(s->nc, &text);
    log_warning("nats: the connection was closed (%s): connecting again",
                text != NULL && *text != '\0' ? text : "no reason given");
    if (drop_conn(s)) {
        (void)connect_nats(s); /* logged; tried again after RECONNECT_MAX_MS */
    }
}

static int
sink_nats_open(const struct sink_env *env, sink_done_fn *done, void *arg, void **state)
{
    struct nats_sink *s = calloc(1, sizeof(*s));
    size_t batch = (size_t)env->cfg->output_batch;
    pthread_condattr_t ca;
    int r;

    if (s == NULL) {
        return -ENOMEM;
    }
    s->cfg = env->cfg;
    s->done = done;
    s->arg = arg;
    s->cap = (size_t)env->cfg->nats_max_pending;
    s->enough = batch < s->cap / 2 ? batch : s->cap / 2 > 0 ? s->cap / 2 : 1;
    spool_dead_letter_init(&s->dl, env->cfg->daemon_spool_dir, "nats",
                           "messages too large for the server or the stream");
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    s->slots = calloc(s->cap, sizeof(*s->slots));
    s->ev = calloc(s->cap, sizeof(*s->ev));
    s->applying = calloc(s->cap, sizeof(*s->applying));
    s->lost = calloc(s->cap, sizeof(*s->lost));
    if (s->slots == NULL || s->ev == NULL || s->applying == NULL || s->lost == NULL) {
        sink_nats_close(s);
        return -ENOMEM;
    }
    r = connect_nats(s);
    if (r < 0) {
        sink_nats_close(s);
        return r;
    }
    *state = s;
    return 0;
}

const struct sink_ops sink_nats_ops = {
    .name = "nats",
    .open = sink_nats_open,
    .submit = sink_nats_submit,
    .poll = sink_nats_poll,
    .abort = sink_nats_abort,
    .reopen = sink_nats_reopen,
    .close = sink_nats_close,
};
