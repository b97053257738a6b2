/*
 * sink.c - the table of sink kinds; see sink.h.
 */
#include "config.h"
#include "sink.h"

const struct sink_ops *
sink_find(const struct conf *cfg)
{
    switch (cfg->output_sink) {
    case CONF_SINK_FILE:
        return &sink_file_ops;
    case CONF_SINK_NULL:
        return &sink_null_ops;
    case CONF_SINK_ZMQ:
        return cfg->zmq_mode == CONF_ZMQMODE_DEALER ? &sink_zmq_dealer_ops : &sink_zmq_push_ops;
    case CONF_SINK_SQLITE:
#ifdef HAVE_SQLITE3
        return &sink_sqlite_ops;
#else
        return NULL;
#endif
    case CONF_SINK_POSTGRES:
#ifdef HAVE_LIBPQ
        return &sink_postgres_ops;
#else
        return NULL;
#endif
    case CONF_SINK_NATS:
#ifdef HAVE_NATS
        return &sink_nats_ops;
#else
        return NULL;
#endif
    }
    return NULL;
}
