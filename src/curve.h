/*
 * curve.h - CURVE key files: czmq's zcert text format, read and written, the
 * allow-list directory, and the socket options that put a key to use.
 *
 * A zcert file is ZPL text (czmq's zconfig): '#' comment lines, then
 *
 *   metadata
 *   curve
 *       public-key = "<40 Z85 characters>"
 *       secret-key = "<40 Z85 characters>"     (the secret file only)
 *
 * czmq's zcert_save() writes NAME (public) and NAME_secret; `zpipe keygen
 * NAME` writes NAME.key and NAME.key_secret, as pyzmq's
 * zmq.auth.create_certificates() does, and either tool reads the other's.
 * Used by zpiped (inputs, the zmq sink, the ZAP handler) and by zpipe (push,
 * bench, keygen), so nothing here logs: errors come back as text.
 */
#ifndef ZPIPE_CURVE_H
#define ZPIPE_CURVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CURVE_KEY_LEN 32 /* bytes of a public or secret key */
#define CURVE_Z85_LEN 40 /* characters of one in Z85 */
#define CURVE_ERR_MAX 512 /* enough for any error text written here */

/* The ZAP domain of every CURVE input: with it set and enforced, libzmq
 * refuses a client whenever no ZAP handler answers (fail closed). */
#define CURVE_ZAP_DOMAIN "zpipe"

/* A key pair read from a zcert file; has_secret when it held one. */
struct curve_cert {
    uint8_t public_key[CURVE_KEY_LEN];
    uint8_t secret_key[CURVE_KEY_LEN];
    bool has_secret;
};

/*
 * curve_cert_load reads the zcert file at path into *out.  With
 * want_secret, the file must hold a secret key, its public key (when
 * present) must be the one derived from it, and it must not be readable by
 * group or others unless it lies under $CREDENTIALS_DIRECTORY (systemd's
 * LoadCredential=, whose access ACL shows in the group bits).  Returns 0, or
 * a negative errno with one line "PATH: why" (or "PATH:LINE: why") in err.
 * On failure *out holds nothing.  Any thread.
 */
int curve_cert_load(const char *path, bool want_secret, struct curve_cert *out, char *err,
                    size_t errlen);

/* curve_cert_wipe clears the secret of c (explicit_bzero). */
void curve_cert_wipe(struct curve_cert *c);

/*
 * curve_keygen makes a new key pair and writes it as NAME.key (public,
 * mode 0644 before umask) and NAME.key_secret (mode 0600), in the zcert
 * format.  Neither file may exist already: nothing is overwritten.  On
 * failure nothing is left behind.  Returns 0, or a negative errno with the
 * reason in err.
 */
int curve_keygen(const char *name, char *err, size_t errlen);

/* One allowed client: its public key and the file it came from. */
struct curve_allow_entry {
    uint8_t key[CURVE_KEY_LEN];
    char *name; /* the file's name in the directory, owned */
};

/* The public keys of an allow-list directory, sorted by key. */
struct curve_allow {
    struct curve_allow_entry *entries; /* n, owned */
    size_t n;
};

/*
 * curve_allow_load reads every public key file of the directory dir: each
 * regular file (symlinks followed) whose name neither starts with '.' nor
 * ends in "_secret", as czmq's zcertstore does.  Any unreadable or malformed
 * one fails the whole load, so a list is never half read.  Returns 0 and
 * *out (to be freed with curve_allow_free), or a negative errno with the
 * reason in err and *out empty.  Any thread.
 */
int curve_allow_load(const char *dir, struct curve_allow *out, char *err, size_t errlen);

/* curve_allow_find returns the file name of key in a, or NULL. */
const char *curve_allow_find(const struct curve_allow *a, const uint8_t key[CURVE_KEY_LEN]);

/* curve_allow_free frees what a holds and empties it.  Accepts an empty one. */
void curve_allow_free(struct curve_allow *a);

/*
 * curve_server_setup makes sock a CURVE server with the secret key of the
 * zcert file at secret_path (ZMQ_CURVE_SERVER), in the ZAP domain
 * CURVE_ZAP_DOMAIN, enforced (ZMQ_ZAP_ENFORCE_DOMAIN): with no ZAP handler
 * answering, libzmq refuses every client.  Call before bind.  Returns 0, or
 * a negative errno with the reason in err.  The socket's owner thread.
 */
int curve_server_setup(void *sock, const char *secret_path, char *err, size_t errlen);

/*
 * curve_client_setup makes sock a CURVE client of the server whose public
 * key is in the zcert file server_path, with the key pair of the zcert
 * secret file secret_path as its own.  Call before connect.  Returns 0, or
 * a negative errno with the reason in err.  The socket's owner thread.
 */
int curve_client_setup(void *sock, const char *server_path, const char *secret_path, char *err,
                       size_t errlen);

#endif
