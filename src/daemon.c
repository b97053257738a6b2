/*
 * daemon.c - zpiped's lifecycle on the main thread's libuv loop.
 *
 * One file over 700 lines: the start and stop steps, the drain state
 * machine and the stats it reports all work on one struct daemon and its
 * loop, which no other module sees.
 *
 * Design.  The main thread owns the loop and never blocks in it: signals
 * (TERM, INT, HUP), timers (stats, watchdog, drain deadline, drain
 * progress) and one async handle that worker threads poke with
 * uv_async_send() when they exit.  The drain is a state machine:
 *
 *   RUNNING --TERM/INT--> DRAIN_INPUT --last producer stops reading-->
 *   DRAIN_QUEUE --last consumer exits, then last producer exits--> DONE
 *   (handles closed, loop ends)
 *
 * DRAIN_INPUT: producers read their sockets until quiet, then stop reading;
 * only once every one has stopped is the queue closed, so a producer
 * blocked on a full queue always gets its push through: consumers keep
 * emptying the queue until it is closed *and* empty.  DRAIN_QUEUE: consumers
 * deliver what is left, fsync, close their sinks and exit, and are joined.
 * Meanwhile producers with ack = stored keep their sockets open to send the
 * OKs of what gets stored or spilled (with ack = queued they have exited
 * already); once the consumers are joined they are told to finish
 * (producer_pool_finish: nothing more will be stored), send what is due,
 * close their sockets and exit, and are joined last.  So a producer never
 * waits for an OK that cannot come, and the consumers never wait for a
 * producer.
 *
 * Drain deadline.  When drain_timeout passes in either drain state, the
 * consumers are told to abort (consumer_pool_abort): after their current
 * sink call they spill instead of delivering, and they keep emptying the
 * queue into their spill files until it is closed and empty.  So the state
 * machine does not change: producers (and the replay thread) blocked on a
 * full queue get room, exit and are joined, the queue is closed, consumers
 * commit their spill files (fsynced) and exit.  The spill is done on the
 * consumer threads, so the main thread never blocks on it.  A second
 * SIGTERM changes nothing (begin_drain ignores it), so it cannot skip the
 * spill.
 *
 * Replay.  A replay thread (spool.c) feeds the spill files of earlier runs
 * into the queue; READY=1 does not wait for it.  It is joined as soon as it
 * exits (so its heartbeat slot does not go stale), and in any case before the
 * queue is closed: DRAIN_INPUT waits for it as for the producers.  A drain
 * asks it to stop after the file it is on.
 *
 * The async callback reads the pools' running counts, which the workers
 * decrement before they poke it: coalesced wakeups lose nothing.
 *
 * Metrics.  With daemon.metrics_listen set, the address is bound right
 * after the control socket (a taken port fails the start before any input
 * is bound), and served from just before READY=1 until teardown, through
 * the whole drain.  Its thread calls collect() as the loop does: the
 * pointers it reads are set before it starts and freed after it stops;
 * what the loop changes meanwhile (replay, replayed) is under d->lock, and
 * the drain state is atomic.
 */
#include "config.h"
#include "daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>

#include "consumer.h"
#include "ctl.h"
#include "heartbeat.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "producer.h"
#include "queue.h"
#include "sink.h"
#include "spool.h"
#include "stats.h"
#include "util.h"
#include "zap.h"

#define DRAIN_PROGRESS_MS 1000    /* how often a drain reports progress */
#define DRAIN_EXTEND_USEC 5000000 /* EXTEND_TIMEOUT_USEC per progress tick */

enum drain_state { STATE_RUNNING, STATE_DRAIN_INPUT, STATE_DRAIN_QUEUE, STATE_DONE };

static const char *const state_names[] = {
    [STATE_RUNNING] = "running",
    [STATE_DRAIN_INPUT] = "draining inputs",
    [STATE_DRAIN_QUEUE] = "draining queue",
    [STATE_DONE] = "done",
    NULL, /* the end, for stats_context.states */
};

struct daemon {
    const struct conf *cfg;
    const struct sink_ops *ops; /* the sink, chosen by output.sink */
    uv_loop_t loop;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_async_t wake; /* poked by worker threads as they exit */
    uv_timer_t stats_timer, watchdog_timer, drain_timer, progress_timer;
    void *zctx;
    struct sink_env sink_env; /* what sinks are opened with: cfg and zctx */
    ctl_t *ctl;               /* the control socket */
    int spool_fd;             /* holds the lock on spool_dir, or -1 */
    metrics_t *metrics;       /* GET /metrics, or NULL */
    /* The metrics thread calls collect() too.  It reads in, out and q, set
     * before it starts and freed after it stops; replay and replayed, which
     * the main thread changes, are read and changed under lock; state is
     * atomic. */
    pthread_mutex_t lock;
    queue_t *q;
    producer_pool_t *in;
    consumer_pool_t *out;
    spool_replay_t *replay; /* NULL once joined */
    spool_replay_t *joined; /* then here, freed after the consumers (its files' acks) */
    uint64_t replayed;      /* records the joined replay thread queued */
    _Atomic enum drain_state state;
    bool has_failed;        /* a worker stopped on its own */
    bool is_watchdog_stale; /* a stale worker was reported */
    bool is_loop_init;      /* uv_loop_init succeeded */
    uint64_t start_ms;
    uint64_t watchdog_max_age_ms;
    uint64_t drain_start_ms;
    uint64_t progress_seen; /* received + delivered + spilled at the last tick */
    bool is_aborted;        /* drain_timeout passed: consumers spill */
    zap_t *zap;             /* the CURVE allow-list's ZAP handler, or NULL */
    bool is_output_joined;  /* DRAIN_QUEUE: the consumers are joined */
};

/* What collect() reads under the queue's lock (queue_snapshot). */
struct collect_locked {
    struct daemon *d;
    struct stats *s;
    struct queue_counts qc;
};

static void
collect_locked(void *arg, const struct queue_counts *qc)
{
    struct collect_locked *c = arg;
    struct daemon *d = c->d;

    if (d->in) {
        struct producer_counters pc;

        producer_pool_counters(d->in, &pc);
        c->s->received = pc.received;
        c->s->rejected = pc.rejected;
    }
    /* d->lock under the queue's lock: nothing takes them the other way round. */
    pthread_mutex_lock(&d->lock);
    c->s->replayed = d->replayed + (d->replay ? spool_replay_count(d->replay) : 0);
    pthread_mutex_unlock(&d->lock);
    c->s->queued = qc->count;
    c->s->queued_bytes = qc->bytes;
    c->qc = *qc;
}

/*
 * A consistent snapshot: received and replayed are added under the queue's
 * lock together with the messages, and the queue counts what was pushed and
 * popped, so reading them under that lock gives received + replayed =
 * pushed = queued + popped exactly.  delivered and spilled are read before,
 * so they count only popped messages, and in_flight is what popped has
 * beyond them: a batch between pop and sink, plus the lost ones.  The
 * invariant then holds in every live snapshot, not only at exit.  If qc is
 * not NULL it receives the queue's counts (zero without a queue).
 */
static void
collect(struct daemon *d, struct stats *s, struct queue_counts *qc)
{
    struct collect_locked c = { .d = d, .s = s };

    memset(s, 0, sizeof(*s));
    if (d->out) {
        struct consumer_counters cc;

        consumer_pool_counters(d->out, &cc);
        s->delivered = cc.delivered;
        s->failed = cc.failed;
        s->retried = cc.retried;
        s->spilled = cc.spilled;
        s->in_flight = cc.in_flight;
    }
    if (d->q) {
        uint64_t since = queue_blocked_since_ms(d->q);
        uint64_t now = util_now_ms();

        queue_snapshot(d->q, collect_locked, &c);
        if (d->out && c.qc.popped >= s->delivered + s->spilled) {
            s->in_flight = c.qc.popped - s->delivered - s->spilled;
        }
        s->is_blocked = since != 0;
        s->blocked_ms = since != 0 && now > since ? now - since : 0;
    } else {
        collect_locked(&c, &(struct queue_counts){ 0 });
    }
    if (qc) {
        *qc = c.qc;
    }
    s->uptime_ms = util_now_ms() - d->start_ms;
    s->uptime_s = s->uptime_ms / 1000;
    stats_sink_errors_read(s);
    stats_curve_read(s);
}

/* The daemon's context of a stats snapshot, for JSON and for metrics. */
static void
context(struct daemon *d, struct stats_context *ctx)
{
    *ctx = (struct stats_context){
        .state = state_names[atomic_load(&d->state)],
        .origin = msg_id_origin(),
        .states = state_names,
        .sink = conf_sink_name(d->cfg->output_sink),
        .sink_threads = d->cfg->output_threads,
        .queue_capacity = d->cfg->queue_capacity,
        .queue_max_bytes = d->cfg->queue_max_bytes,
    };
}

/* A scrape of GET /metrics (metrics_collect_fn), on the metrics thread. */
static void
metrics_collect(void *arg, struct stats *s, struct stats_context *ctx)
{
    struct daemon *d = arg;

    collect(d, s, NULL);
    context(d, ctx);
}

/* The control socket's "stats" reply (ctl_stats_fn). */
static int
ctl_stats(void *arg, char *buf, size_t len)
{
    struct daemon *d = arg;
    struct stats s;
    struct stats_context ctx;

    collect(d, &s, NULL);
    context(d, &ctx);
    return stats_format_json(&s, &ctx, buf, len);
}

static void
report_status(struct daemon *d)
{
    struct stats s;
    char buf[256];

    collect(d, &s, NULL);
    notify_status("%s", stats_format_status(&s, d->cfg->queue_capacity, buf, sizeof(buf)));
}

static void
on_close(uv_handle_t *h)
{
    (void)h;
}

static void
close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, on_close);
    }
}

static void
set_state(struct daemon *d, enum drain_state state)
{
    d->state = state;
    log_info("state: %s", state_names[state]);
}

static void
on_drain_deadline(uv_timer_t *t)
{
    struct daemon *d = t->data;
    struct stats s;

    if (d->state != STATE_DRAIN_INPUT && d->state != STATE_DRAIN_QUEUE) {
        return;
    }
    collect(d, &s, NULL);
    log_warning("drain: drain_timeout passed with %" PRIu64 " queued and %" PRIu64
                " in flight: spilling what the sink has not taken to %s",
                s.queued, s.in_flight, d->cfg->daemon_spool_dir);
    d->is_aborted = true;
    consumer_pool_abort(d->out);
}

static void
on_drain_progress(uv_timer_t *t)
{
    struct daemon *d = t->data;
    struct stats s;
    uint64_t progress;

    collect(d, &s, NULL);
    progress = s.received + s.delivered + s.spilled;
    /* Ask systemd for more time only while the drain moves. */
    if (progress != d->progress_seen) {
        notify_extend_timeout(DRAIN_EXTEND_USEC);
    }
    d->progress_seen = progress;
    report_status(d);
}

static void
begin_drain(struct daemon *d, const char *why)
{
    if (d->state != STATE_RUNNING) {
        log_info("%s: already %s", why, state_names[d->state]);
        return;
    }
    notify_stopping();
    log_info("%s: draining (inputs for up to %" PRIu64 " ms, everything within %" PRIu64 " ms)",
             why, d->cfg->daemon_drain_input, d->cfg->daemon_drain_timeout);
    set_state(d, STATE_DRAIN_INPUT);
    d->drain_start_ms = util_now_ms();
    producer_pool_stop(d->in);
    if (d->replay) {
        spool_replay_stop(d->replay);
    }
    uv_timer_start(&d->drain_timer, on_drain_deadline, d->cfg->daemon_drain_timeout, 0);
    uv_timer_start(&d->progress_timer, on_drain_progress, DRAIN_PROGRESS_MS, DRAIN_PROGRESS_MS);
    notify_extend_timeout(DRAIN_EXTEND_USEC);
}

/* The signals the loop handles; blocked from main()'s start until it does. */
static const int loop_signals[] = { SIGTERM, SIGINT, SIGHUP };

static void
loop_sigset(sigset_t *set)
{
    sigemptyset(set);
    for (size_t i = 0; i < sizeof(loop_signals) / sizeof(loop_signals[0]); i++) {
        sigaddset(set, loop_signals[i]);
    }
}

/*
 * Ignores the loop's signals once its handles are closed: libuv then gives
 * them their default action back, a kill, and the rest of the stop (the
 * zmq context waits for its sockets' linger, up to 10 s for the push sink)
 * must not be cut short by a second SIGINT, or by a SIGHUP from logrotate.
 */
static void
ignore_loop_signals(void)
{
    struct sigaction sa = { .sa_handler = SIG_IGN };

    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(loop_signals) / sizeof(loop_signals[0]); i++) {
        (void)sigaction(loop_signals[i], &sa, NULL);
    }
}

/* Moves the drain on as far as the workers have got. */
static void
advance(struct daemon *d)
{
    if (d->state == STATE_RUNNING && (producer_pool_reading(d->in) < d->cfg->input_threads ||
                                      consumer_pool_running(d->out) < d->cfg->output_threads)) {
        log_error("a worker thread stopped on its own: draining");
        d->has_failed = true;
        begin_drain(d, "worker failure");
    }
    /* An exited worker's watchdog slot must not go stale while the drain
     * goes on without it. */
    producer_pool_reap(d->in);
    consumer_pool_reap(d->out);
    if (d->replay && !spool_replay_is_running(d->replay)) {
        spool_replay_t *replay = d->replay;

        spool_replay_join(replay);
        pthread_mutex_lock(&d->lock);
        d->replayed += spool_replay_count(replay);
        d->replay = NULL;
        pthread_mutex_unlock(&d->lock);
        d->joined = replay;
    }
    if (d->state == STATE_DRAIN_INPUT && producer_pool_reading(d->in) == 0 && !d->replay) {
        size_t queued;
        uint64_t bytes;

        queue_close(d->q);
        queue_depth(d->q, &queued, &bytes);
        log_info("drain: inputs closed, %zu messages queued", queued);
        set_state(d, STATE_DRAIN_QUEUE);
    }
    if (d->state == STATE_DRAIN_QUEUE && !d->is_output_joined &&
        consumer_pool_running(d->out) == 0) {
        consumer_pool_join(d->out);
        d->is_output_joined = true;
        producer_pool_finish(d->in);
    }
    if (d->is_output_joined && d->state == STATE_DRAIN_QUEUE &&
        producer_pool_running(d->in) == 0) {
        producer_pool_join(d->in);
        log_info("drain: %s in %" PRIu64 " ms",
                 d->is_aborted ? "ended by drain_timeout" : "complete",
                 util_now_ms() - d->drain_start_ms);
        set_state(d, STATE_DONE);
        ctl_close(d->ctl);
        d->ctl = NULL;
        uv_walk(&d->loop, close_walk, NULL);
        ignore_loop_signals();
    }
}

static void
on_wake(uv_async_t *h)
{
    advance(h->data);
}

static void
on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;

    if (signum == SIGHUP) {
        log_info("SIGHUP: reopening the sink");
        consumer_pool_reopen(d->out);
        zap_reload(d->zap);
        return;
    }
    begin_drain(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void
on_stats(uv_timer_t *t)
{
    struct daemon *d = t->data;
    struct stats s;
    char buf[256];

    collect(d, &s, NULL);
    log_info("stats: %s", stats_format_accounting(&s, buf, sizeof(buf)));
    notify_status("%s", stats_format_status(&s, d->cfg->queue_capacity, buf, sizeof(buf)));
}

static void
on_watchdog(uv_timer_t *t)
{
    struct daemon *d = t->data;
    const char *stale = NULL;

    if (heartbeat_all_fresh(d->watchdog_max_age_ms, &stale)) {
        notify_watchdog();
        if (d->is_watchdog_stale) {
            log_info("watchdog: every worker checks in again");
        }
        d->is_watchdog_stale = false;
    } else if (!d->is_watchdog_stale) {
        log_error("watchdog: %s has not checked in for %" PRIu64 " ms: not pinging systemd", stale,
                  d->watchdog_max_age_ms);
        d->is_watchdog_stale = true;
    }
}

static void
wake_main(void *arg)
{
    uv_async_send(arg);
}

void
daemon_signals_block(void)
{
    sigset_t set;

    loop_sigset(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static int
init_loop(struct daemon *d)
{
    uv_handle_t *handles[] = {
        (uv_handle_t *)&d->sig_term,    (uv_handle_t *)&d->sig_int,
        (uv_handle_t *)&d->sig_hup,     (uv_handle_t *)&d->wake,
        (uv_handle_t *)&d->stats_timer, (uv_handle_t *)&d->watchdog_timer,
        (uv_handle_t *)&d->drain_timer, (uv_handle_t *)&d->progress_timer,
    };
    int err;

    err = uv_loop_init(&d->loop);
    if (err < 0) {
        return err;
    }
    d->is_loop_init = true;
    if ((err = uv_async_init(&d->loop, &d->wake, on_wake)) < 0 ||
        (err = uv_signal_init(&d->loop, &d->sig_term)) < 0 ||
        (err = uv_signal_init(&d->loop, &d->sig_int)) < 0 ||
        (err = uv_signal_init(&d->loop, &d->sig_hup)) < 0 ||
        (err = uv_timer_init(&d->loop, &d->stats_timer)) < 0 ||
        (err = uv_timer_init(&d->loop, &d->watchdog_timer)) < 0 ||
        (err = uv_timer_init(&d->loop, &d->drain_timer)) < 0 ||
        (err = uv_timer_init(&d->loop, &d->progress_timer)) < 0) {
        return err;
    }
    for (size_t i = 0; i < sizeof(handles) / sizeof(handles[0]); i++) {
        handles[i]->data = d;
    }
    /* Signals are caught before any thread exists, so a SIGTERM during
     * start-up is a drain, not a kill.  main() blocked them until now: one
     * sent since is delivered as they are unblocked, to libuv's handler,
     * which queues it for the loop (on_signal runs once uv_run does). */
    if ((err = uv_signal_start(&d->sig_term, on_signal, SIGTERM)) < 0 ||
        (err = uv_signal_start(&d->sig_int, on_signal, SIGINT)) < 0 ||
        (err = uv_signal_start(&d->sig_hup, on_signal, SIGHUP)) < 0) {
        return err;
    }
    {
        sigset_t set;

        loop_sigset(&set);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    }
    return 0;
}

static void
start_timers(struct daemon *d)
{
    uint64_t wd_usec = notify_watchdog_usec();

    if (d->cfg->daemon_stats_interval > 0) {
        uv_timer_start(&d->stats_timer, on_stats, d->cfg->daemon_stats_interval,
                       d->cfg->daemon_stats_interval);
    }
    if (wd_usec > 0) {
        uint64_t period_ms = wd_usec / 4000;

        /* Ping at a quarter of the interval, and only while every
         * worker checked in within half of it. */
        d->watchdog_max_age_ms = wd_usec / 2000;
        uv_timer_start(&d->watchdog_timer, on_watchdog, 0, period_ms ? period_ms : 1);
        log_info("watchdog: pinging every %" PRIu64 " ms", period_ms);
    }
}

static enum daemon_exit
account(struct daemon *d)
{
    struct stats s;
    struct queue_counts qc;
    char buf[256];
    uint64_t in, out;

    collect(d, &s, &qc);
    in = s.received + s.replayed;
    out = s.delivered + s.spilled + s.queued + s.in_flight;
    log_info("accounting: %s", stats_format_accounting(&s, buf, sizeof(buf)));
    if (in != qc.pushed || in != out) {
        log_error("accounting: received + replayed = %" PRIu64 " and the queue took %" PRIu64
                  " but delivered + spilled + queued + in_flight = %" PRIu64,
                  in, qc.pushed, out);
        return DAEMON_EXIT_LOST;
    }
    if (s.queued + s.in_flight > 0) {
        log_error("accounting: %" PRIu64 " messages lost", s.queued + s.in_flight);
        return DAEMON_EXIT_LOST;
    }
    if (d->out) {
        /* in_flight above is derived from what was popped; the consumers
         * also count theirs (the batch in hand, the lost ones).  With the
         * consumers joined both must be 0: a message counted delivered or
         * spilled twice would show here, not hide a loss. */
        struct consumer_counters cc;

        consumer_pool_counters(d->out, &cc);
        if (cc.in_flight > 0) {
            log_error("accounting: the consumers count %" PRIu64 " messages lost", cc.in_flight);
            return DAEMON_EXIT_LOST;
        }
    }
    return d->has_failed ? DAEMON_EXIT_FAILURE : DAEMON_EXIT_OK;
}

/*
 * Start and stop.  Each start_* step is one part of the daemon, started
 * after what it depends on; it logs why it failed and returns a negative
 * errno.  stop() undoes them in reverse order, each only if it was started.
 */

static int
start_loop(struct daemon *d)
{
    int err = init_loop(d);

    if (err < 0) {
        log_error("event loop: %s", uv_strerror(err));
    }
    return err;
}

/* First, before any thread or socket, a running zpiped is found by its
 * spool_dir lock or its control socket, before we could touch its socket
 * file or take its endpoints.  The lock: a drain must always have
 * somewhere to spill, and no other daemon may replay (or spill into) the
 * same files; it is held until the very end, after the last spill file is
 * committed. */
static int
start_spool_lock(struct daemon *d)
{
    const char *dir = d->cfg->daemon_spool_dir;
    char ebuf[128];
    int err = spool_dir_lock(dir, &d->spool_fd);

    if (err == SPOOL_LOCKED) {
        log_error("spool_dir %s: locked by another zpiped (each daemon needs its own spool_dir)",
                  dir);
        return -EBUSY;
    }
    if (err < 0) {
        log_error("spool_dir %s: %s", dir, util_strerror(-err, ebuf, sizeof(ebuf)));
    }
    return err;
}

static int
start_ctl(struct daemon *d)
{
    return ctl_open(&d->ctl, &d->loop, d->cfg->daemon_control_socket, ctl_stats, d);
}

/* Bound now, so a taken port stops the start before any input is bound;
 * served from just before READY=1 until the very end (through the drain,
 * so operators can watch it): see start_metrics(). */
static int
start_metrics_listen(struct daemon *d)
{
    if (d->cfg->daemon_metrics_listen[0] == '\0') {
        return 0;
    }
    return metrics_open(&d->metrics, d->cfg->daemon_metrics_listen);
}

static int
start_zmq(struct daemon *d)
{
    char ebuf[128];

    d->zctx = zmq_ctx_new();
    if (!d->zctx) {
        int err = errno;

        log_error("zmq_ctx_new: %s", util_strerror(err, ebuf, sizeof(ebuf)));
        return -err;
    }
    d->sink_env = (struct sink_env){ .cfg = d->cfg, .zctx = d->zctx };
    return 0;
}

/* Before any input is bound, so a CURVE input never runs without it. */
static int
start_zap(struct daemon *d)
{
    if (d->cfg->input_curve_secret_key[0] == '\0') {
        return 0;
    }
    return zap_start(&d->zap, d->zctx, d->cfg->input_curve_allow);
}

static int
start_queue(struct daemon *d)
{
    char ebuf[128];
    int err = queue_create(&d->q, d->cfg->queue_capacity, d->cfg->queue_max_bytes);

    if (err < 0) {
        log_error("queue: %s", util_strerror(-err, ebuf, sizeof(ebuf)));
    }
    return err;
}

/* Consumers before producers: whatever a producer accepts has somewhere to go. */
static int
start_consumers(struct daemon *d)
{
    char ebuf[128];
    int err = consumer_pool_create(&d->out, &d->sink_env, d->q, d->ops, wake_main, &d->wake);

    if (err == 0) {
        err = consumer_pool_start(d->out);
    }
    if (err < 0) {
        log_error("sink %s: could not start: %s", d->ops->name,
                  util_strerror(-err, ebuf, sizeof(ebuf)));
    }
    return err;
}

static int
start_producers(struct daemon *d)
{
    int err = producer_pool_create(&d->in, d->cfg, d->zctx, d->q, wake_main, &d->wake);

    if (err == 0) {
        err = producer_pool_start(d->in);
    }
    if (err < 0) {
        char ebuf[128];

        log_error("input: could not start: %s", util_strerror(-err, ebuf, sizeof(ebuf)));
    }
    return err;
}

/* Once the pools exist: from now on collect() runs on its thread too. */
static int
start_metrics(struct daemon *d)
{
    return d->metrics ? metrics_start(d->metrics, metrics_collect, d) : 0;
}

/* After the consumers (the queue drains) and not waited for by READY=1. */
static int
start_replay(struct daemon *d)
{
    spool_replay_t *replay = NULL;
    char ebuf[128];
    int err = spool_replay_start(&replay, d->cfg, d->q, wake_main, &d->wake);

    pthread_mutex_lock(&d->lock);
    d->replay = replay;
    pthread_mutex_unlock(&d->lock);
    if (err < 0) {
        log_error("spool: start the replay thread: %s", util_strerror(-err, ebuf, sizeof(ebuf)));
    }
    return err;
}

/* Starts every part in dependency order; stops at the first that fails. */
static int
start(struct daemon *d)
{
    int err;

    if ((err = start_loop(d)) < 0 || (err = start_spool_lock(d)) < 0 ||
        (err = start_ctl(d)) < 0 || (err = start_metrics_listen(d)) < 0 ||
        (err = start_zmq(d)) < 0 || (err = start_zap(d)) < 0 || (err = start_queue(d)) < 0 ||
        (err = start_consumers(d)) < 0 || (err = start_producers(d)) < 0 ||
        (err = start_metrics(d)) < 0 || (err = start_replay(d)) < 0) {
        return err;
    }
    return 0;
}

/* Runs the loop from READY=1 until the drain is done. */
static void
run(struct daemon *d)
{
    const struct conf *cfg = d->cfg;

    start_timers(d);
    notify_ready();
    log_info("ready: %zu input endpoint(s) on %" PRIu64 " thread(s), sink %s on %" PRIu64
             " thread(s), queue %" PRIu64 " messages / %" PRIu64 " bytes",
             cfg->input_endpoints.n, cfg->input_threads, d->ops->name, cfg->output_threads,
             cfg->queue_capacity, cfg->queue_max_bytes);
    report_status(d);
    uv_run(&d->loop, UV_RUN_DEFAULT);
}

/*
 * After a failed start, the workers that did start are stopped and joined
 * (a drain joins them after a run): producers first, told that no OK is
 * waited for, then the consumers once the queue is closed.
 */
static void
stop_workers(struct daemon *d)
{
    if (d->in) {
        producer_pool_stop(d->in);
        producer_pool_finish(d->in);
        producer_pool_join(d->in);
    }
    if (d->q) {
        queue_close(d->q);
    }
    if (d->out) {
        consumer_pool_join(d->out);
    }
    if (d->in || d->out) {
        (void)account(d);
    }
}

static void
stop_loop(struct daemon *d)
{
    if (!d->is_loop_init) {
        return;
    }
    uv_walk(&d->loop, close_walk, NULL);
    ignore_loop_signals();
    uv_run(&d->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&d->loop) != 0) {
        log_error("event loop: handles still open at exit");
    }
}

/* Stops what start() started, in reverse order; the workers are joined. */
static void
stop(struct daemon *d)
{
    /* Before the pools it reads go. */
    metrics_close(d->metrics);
    producer_pool_destroy(d->in);
    consumer_pool_destroy(d->out);
    queue_destroy(d->q);
    spool_replay_destroy(d->joined);
    /* After every input socket is closed; zmq_ctx_term waits for its socket. */
    zap_stop(d->zap);
    if (d->zctx) {
        zmq_ctx_term(d->zctx);
    }
    ctl_close(d->ctl);
    if (d->spool_fd >= 0) {
        close(d->spool_fd);
    }
    stop_loop(d);
}

enum daemon_exit
daemon_run(const struct conf *cfg)
{
    struct daemon d = { .cfg = cfg,
                        .ops = sink_find(cfg),
                        .start_ms = util_now_ms(),
                        .lock = PTHREAD_MUTEX_INITIALIZER,
                        .spool_fd = -1 };
    enum daemon_exit status = DAEMON_EXIT_FAILURE;

    if (!d.ops) {
        log_error("sink %s: not available in this build", conf_sink_name(cfg->output_sink));
        return DAEMON_EXIT_FAILURE;
    }
    if (start(&d) == 0) {
        run(&d);
        status = account(&d);
    } else {
        stop_workers(&d);
    }
    stop(&d);
    return status;
}
