/*
 * sink.c - the table of sink kinds; see sink.h.
 */
#include "config.h"
#include "sink.h"

const struct sink_ops *
sink_find(enum conf_sink kind)
{
    switch (kind) {
    case CONF_SINK_FILE:
        return &sink_file_ops;
    case CONF_SINK_NULL:
        return &sink_null_ops;
    case CONF_SINK_ZMQ:
        return &sink_zmq_ops;
    }
    return NULL;
}
