/*
 * curve.c - CURVE key files and key set-up; see curve.h.
 *
 * The reader takes the subset of ZPL that zcert files use: blank lines and
 * '#' comments anywhere, names at column 0 (sections: "metadata", "curve"),
 * and "name = value" lines indented by 4 spaces per level, the value quoted
 * with '"' or '\'' or bare (up to a space or '#').  public-key and
 * secret-key count only under "curve"; everything else (metadata entries,
 * other sections) is skipped, as czmq skips what it does not know.  A key
 * must be exactly 40 Z85 characters and appear once.
 *
 * Decisions an operator sees:
 *   - A secret key file readable or writable by group or others is refused
 *     (not just warned about): such a key must be taken as known to others.
 *     The exception is a file under $CREDENTIALS_DIRECTORY: systemd grants
 *     the service's user access with an ACL, and an ACL's mask shows in the
 *     group bits of the mode.
 *   - A secret file that also states its public key must state the one
 *     derived from the secret: a mismatch is a file put together by hand.
 */
#include "config.h"
#include "curve.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "zmq_util.h"

/* libzmq 4.3 lists the option among its drafts, yet every 4.3 library
 * understands it; setting it fails (and the input refuses to start) if not. */
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

#define CURVE_FILE_MAX (64u << 10) /* a key file is a few hundred bytes */
#define CURVE_LINE_MAX 1024

__attribute__((format(printf, 3, 4))) static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const char *
errstr(int errnum)
{
    static _Thread_local char buf[128];

    return zmq_util_strerror(errnum, buf, sizeof(buf));
}

/*
 * is_credential tells whether path lies in systemd's credentials directory
 * of this service, whose files are the service's through an ACL.
 */
static bool
is_credential(const char *path)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    size_t n;

    if (!dir || dir[0] != '/') {
        return false;
    }
    n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') {
        n--;
    }
    return strncmp(path, dir, n) == 0 && path[n] == '/' && !strstr(path + n, "/../");
}

/*
 * read_file reads the whole of path (at most CURVE_FILE_MAX) into a
 * NUL-ended buffer, and its mode into *mode.
 */
static int
read_file(const char *path, char **out, mode_t *mode, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "%s: %s", path, errstr(-r));
        return r;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        snprintf(err, errlen, "%s: %s", path, errstr(-r));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        r = fail(err, errlen, "%s: not a regular file", path);
        goto done;
    }
    if (st.st_size > (off_t)CURVE_FILE_MAX) {
        r = fail(err, errlen, "%s: over %u bytes: not a key file", path, CURVE_FILE_MAX);
        goto done;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        r = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    while (n < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + n, (size_t)st.st_size - n);

        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k < 0) {
            r = -errno;
            snprintf(err, errlen, "%s: read: %s", path, errstr(-r));
            goto done;
        }
        if (k == 0) {
            break;
        }
        n += (size_t)k;
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n)) {
        r = fail(err, errlen, "%s: NUL byte: not a key file", path);
        goto done;
    }
    *out = buf;
    *mode = st.st_mode;
    buf = NULL;
    r = 0;
done:
    if (buf) {
        explicit_bzero(buf, (size_t)st.st_size + 1);
        free(buf);
    }
    close(fd);
    return r;
}

/*
 * parse_value reads the "= value" after a name at s into val (CURVE_LINE_MAX
 * bytes).  Returns NULL, or what is wrong with the line.
 */
static const char *
parse_value(const char *s, char *val)
{
    size_t n = 0;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    if (*s != '=') {
        return "expected 'name = value'";
    }
    s++;
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    if (*s == '"' || *s == '\'') {
        char q = *s++;

        while (*s && *s != q) {
            val[n++] = *s++;
        }
        if (*s != q) {
            return "unterminated quoted value";
        }
        s++;
    } else {
        while (*s && *s != ' ' && *s != '\t' && *s != '#') {
            val[n++] = *s++;
        }
    }
    val[n] = '\0';
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    if (*s && *s != '#') {
        return "text after the value";
    }
    return NULL;
}

/* The keys found while parsing, as text. */
struct zcert_text {
    char public_z85[CURVE_Z85_LEN + 1];
    char secret_z85[CURVE_Z85_LEN + 1];
    bool has_public, has_secret;
};

/* keep_key keeps val as t's public or secret key.  Returns NULL or why it is bad. */
static const char *
keep_key(struct zcert_text *t, bool is_public, const char *val)
{
    if (is_public ? t->has_public : t->has_secret) {
        return is_public ? "public-key given twice" : "secret-key given twice";
    }
    if (strlen(val) != CURVE_Z85_LEN) {
        return is_public ? "public-key is not 40 Z85 characters"
                         : "secret-key is not 40 Z85 characters";
    }
    memcpy(is_public ? t->public_z85 : t->secret_z85, val, CURVE_Z85_LEN + 1);
    *(is_public ? &t->has_public : &t->has_secret) = true;
    return NULL;
}

/* parse_line handles one line (no newline) of a zcert file.  Returns NULL or why it is bad. */
static const char *
parse_line(char *line, char *section, struct zcert_text *t)
{
    char name[CURVE_LINE_MAX], val[CURVE_LINE_MAX];
    size_t indent = strspn(line, " "), n = 0;
    const char *s = line + indent, *why;
    bool is_public;

    if (*s == '\0' || *s == '#') {
        return NULL;
    }
    if (*s == '\t' || indent % 4 != 0) {
        return "indentation is not a multiple of 4 spaces";
    }
    while (*s && *s != ' ' && *s != '\t' && *s != '=' && *s != '#') {
        name[n++] = *s++;
    }
    name[n] = '\0';
    if (indent == 0) {
        snprintf(section, CURVE_LINE_MAX, "%s", name);
        return NULL;
    }
    is_public = strcmp(name, "public-key") == 0;
    if (indent != 4 || strcmp(section, "curve") != 0 ||
        (!is_public && strcmp(name, "secret-key") != 0)) {
        return NULL;
    }
    why = parse_value(s, val);
    if (!why) {
        why = keep_key(t, is_public, val);
    }
    explicit_bzero(val, sizeof(val)); /* it may hold the secret key, also when bad */
    return why;
}

/* parse_zcert reads the keys out of the text of a zcert file. */
static int
parse_zcert(const char *path, char *text, struct zcert_text *t, char *err, size_t errlen)
{
    char section[CURVE_LINE_MAX] = "";
    char *line = text;
    int lineno = 0;

    memset(t, 0, sizeof(*t));
    while (*line) {
        char *end = strchr(line, '\n');
        const char *why;

        lineno++;
        if (end) {
            *end = '\0';
        }
        if (end && end > line && end[-1] == '\r') {
            end[-1] = '\0'; /* a file written on Windows */
        }
        if (strlen(line) >= CURVE_LINE_MAX) {
            return fail(err, errlen, "%s:%d: line too long", path, lineno);
        }
        why = parse_line(line, section, t);
        if (why) {
            return fail(err, errlen, "%s:%d: %s", path, lineno, why);
        }
        if (!end) {
            break;
        }
        line = end + 1;
    }
    return 0;
}

int
curve_cert_load(const char *path, bool want_secret, struct curve_cert *out, char *err,
                size_t errlen)
{
    struct zcert_text t;
    char *text = NULL;
    mode_t mode = 0;
    size_t len;
    int r;

    memset(out, 0, sizeof(*out));
    r = read_file(path, &text, &mode, err, errlen);
    if (r < 0) {
        return r;
    }
    len = strlen(text); /* parse_zcert() cuts it into lines */
    r = parse_zcert(path, text, &t, err, errlen);
    explicit_bzero(text, len);
    free(text);
    if (r < 0) {
        goto done;
    }
    if (want_secret && !t.has_secret) {
        r = fail(err, errlen, "%s: no curve secret-key (a public key file, not a secret one?)",
                 path);
        goto done;
    }
    if (want_secret && (mode & (S_IRWXG | S_IRWXO)) && !is_credential(path)) {
        r = -EPERM;
        snprintf(err, errlen,
                 "%s: secret key file has mode %04o: group or others may read it "
                 "(chmod 600 it, or pass it with LoadCredential=)",
                 path, (unsigned)(mode & 07777));
        goto done;
    }
    if (want_secret) {
        char derived[CURVE_Z85_LEN + 1];

        if (!zmq_z85_decode(out->secret_key, t.secret_z85) ||
            zmq_curve_public(derived, t.secret_z85) < 0) {
            r = fail(err, errlen, "%s: secret-key is not valid Z85", path);
            goto done;
        }
        if (t.has_public && strcmp(derived, t.public_z85) != 0) {
            r = fail(err, errlen, "%s: public-key is not the one of its secret-key", path);
            goto done;
        }
        memcpy(t.public_z85, derived, sizeof(derived));
        t.has_public = true;
        out->has_secret = true;
    }
    if (!t.has_public) {
        r = fail(err, errlen, "%s: no curve public-key: not a zcert key file", path);
        goto done;
    }
    if (!zmq_z85_decode(out->public_key, t.public_z85)) {
        r = fail(err, errlen, "%s: public-key is not valid Z85", path);
        goto done;
    }
    r = 0;
done:
    explicit_bzero(&t, sizeof(t));
    if (r < 0) {
        curve_cert_wipe(out);
    }
    return r;
}

void
curve_cert_wipe(struct curve_cert *c)
{
    explicit_bzero(c, sizeof(*c));
}

/* write_zcert creates path (O_EXCL, mode) and writes a zcert file into it. */
static int
write_zcert(const char *path, mode_t mode, const char *public_z85, const char *secret_z85,
            char *err, size_t errlen)
{
    char stamp[32], text[1024];
    time_t now = time(NULL);
    struct tm tm;
    int fd, n, r = 0;

    strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", localtime_r(&now, &tm));
    /* The header and layout of czmq's zcert_save_public/_secret. */
    n = snprintf(text, sizeof(text),
                 "#   ****  Generated on %s by zpipe  ****\n"
                 "%s"
                 "\n"
                 "metadata\n"
                 "curve\n"
                 "    public-key = \"%s\"\n"
                 "%s%s%s",
                 stamp,
                 secret_z85 ? "#   ZeroMQ CURVE **Secret** Certificate\n"
                              "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its "
                              "permissions.\n"
                            : "#   ZeroMQ CURVE Public Certificate\n"
                              "#   Exchange securely, or use a secure mechanism to verify the "
                              "contents\n"
                              "#   of this file after exchange. Store public certificates in "
                              "your home\n"
                              "#   directory, in the .curve subdirectory.\n",
                 public_z85, secret_z85 ? "    secret-key = \"" : "",
                 secret_z85 ? secret_z85 : "", secret_z85 ? "\"\n" : "");
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "%s: %s", path, errstr(-r));
        goto done;
    }
    /* The mode the file must have, whatever the umask. */
    if ((secret_z85 && fchmod(fd, mode) < 0) || write(fd, text, (size_t)n) != n ||
        fsync(fd) < 0) {
        r = errno ? -errno : -EIO;
        snprintf(err, errlen, "%s: write: %s", path, errstr(-r));
    }
    if (close(fd) < 0 && r == 0) {
        r = -errno;
        snprintf(err, errlen, "%s: close: %s", path, errstr(-r));
    }
    if (r < 0) {
        unlink(path);
    }
done:
    explicit_bzero(text, sizeof(text));
    return r;
}

int
curve_keygen(const char *name, char *err, size_t errlen)
{
    char public_z85[CURVE_Z85_LEN + 1], secret_z85[CURVE_Z85_LEN + 1];
    char *pub_path = NULL, *sec_path = NULL;
    int r;

    if (asprintf(&pub_path, "%s.key", name) < 0) {
        pub_path = NULL;
    }
    if (asprintf(&sec_path, "%s.key_secret", name) < 0) {
        sec_path = NULL;
    }
    if (!pub_path || !sec_path) {
        r = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (zmq_curve_keypair(public_z85, secret_z85) < 0) {
        r = -errno;
        snprintf(err, errlen, "zmq_curve_keypair: %s", errstr(-r));
        goto done;
    }
    /* The secret first: a public file alone would be a key nobody holds. */
    r = write_zcert(sec_path, 0600, public_z85, secret_z85, err, errlen);
    if (r == 0) {
        r = write_zcert(pub_path, 0644, public_z85, NULL, err, errlen);
        if (r < 0) {
            unlink(sec_path);
        }
    }
done:
    explicit_bzero(secret_z85, sizeof(secret_z85));
    free(pub_path);
    free(sec_path);
    return r;
}

/* is_public_name: the file names czmq's zcertstore reads as certificates. */
static bool
is_public_name(const char *name)
{
    size_t n = strlen(name);

    return name[0] != '.' && !(n >= 7 && strcmp(name + n - 7, "_secret") == 0);
}

static int
entry_cmp(const void *a, const void *b)
{
    return memcmp(((const struct curve_allow_entry *)a)->key,
                  ((const struct curve_allow_entry *)b)->key, CURVE_KEY_LEN);
}

/* allow_add reads the key of dir/name into a.  Returns 0 (also for a skipped name) or < 0. */
static int
allow_add(struct curve_allow *a, size_t *cap, const char *dir, const char *name, char *err,
          size_t errlen)
{
    struct curve_cert cert;
    struct stat st;
    char *path;
    int r;

    if (!is_public_name(name)) {
        return 0;
    }
    if (asprintf(&path, "%s/%s", dir, name) < 0) {
        return -ENOMEM;
    }
    /* Subdirectories and the like are not key files: skip them. */
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        free(path);
        return 0;
    }
    r = curve_cert_load(path, false, &cert, err, errlen);
    free(path);
    if (r < 0) {
        return r;
    }
    if (a->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct curve_allow_entry *e = realloc(a->entries, ncap * sizeof(*e));

        if (!e) {
            return -ENOMEM;
        }
        a->entries = e;
        *cap = ncap;
    }
    a->entries[a->n].name = strdup(name);
    if (!a->entries[a->n].name) {
        return -ENOMEM;
    }
    memcpy(a->entries[a->n].key, cert.public_key, CURVE_KEY_LEN);
    a->n++;
    return 0;
}

int
curve_allow_load(const char *dir, struct curve_allow *out, char *err, size_t errlen)
{
    struct curve_allow a = { NULL, 0 };
    struct dirent *de;
    size_t cap = 0;
    DIR *d;
    int r = 0;

    d = opendir(dir);
    if (!d) {
        r = -errno;
        snprintf(err, errlen, "%s: %s", dir, errstr(-r));
        return r;
    }
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (!de) {
            r = errno ? -errno : 0;
            if (r < 0) {
                snprintf(err, errlen, "%s: readdir: %s", dir, errstr(-r));
            }
            break;
        }
        r = allow_add(&a, &cap, dir, de->d_name, err, errlen);
        if (r == -ENOMEM) {
            snprintf(err, errlen, "%s: out of memory", dir);
        }
        if (r < 0) {
            break;
        }
    }
    closedir(d);
    if (r < 0) {
        curve_allow_free(&a);
        return r;
    }
    if (a.n > 0) {
        qsort(a.entries, a.n, sizeof(*a.entries), entry_cmp);
    }
    *out = a;
    return 0;
}

const char *
curve_allow_find(const struct curve_allow *a, const uint8_t key[CURVE_KEY_LEN])
{
    struct curve_allow_entry probe, *e;

    if (a->n == 0) {
        return NULL;
    }
    memcpy(probe.key, key, CURVE_KEY_LEN);
    e = bsearch(&probe, a->entries, a->n, sizeof(*a->entries), entry_cmp);
    return e ? e->name : NULL;
}

void
curve_allow_free(struct curve_allow *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->entries[i].name);
    }
    free(a->entries);
    a->entries = NULL;
    a->n = 0;
}

/* One socket option to set. */
struct curve_opt {
    int option;
    const char *what;
    const void *val;
    size_t len;
};

/* set_opts sets the n options of opts, or says which one failed in err. */
static int
set_opts(void *sock, const struct curve_opt *opts, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (zmq_setsockopt(sock, opts[i].option, opts[i].val, opts[i].len) < 0) {
            int r = -zmq_errno();

            snprintf(err, errlen, "setsockopt %s: %s", opts[i].what, errstr(-r));
            return r;
        }
    }
    return 0;
}

int
curve_server_setup(void *sock, const char *secret_path, char *err, size_t errlen)
{
    struct curve_cert own;
    int one = 1, r;

    r = curve_cert_load(secret_path, true, &own, err, errlen);
    if (r < 0) {
        return r;
    }
    const struct curve_opt opts[] = {
        { ZMQ_CURVE_SERVER, "ZMQ_CURVE_SERVER", &one, sizeof(one) },
        { ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", own.secret_key, CURVE_KEY_LEN },
        { ZMQ_ZAP_DOMAIN, "ZMQ_ZAP_DOMAIN", CURVE_ZAP_DOMAIN, strlen(CURVE_ZAP_DOMAIN) },
        { ZMQ_ZAP_ENFORCE_DOMAIN, "ZMQ_ZAP_ENFORCE_DOMAIN", &one, sizeof(one) },
    };
    r = set_opts(sock, opts, sizeof(opts) / sizeof(opts[0]), err, errlen);
    curve_cert_wipe(&own);
    return r;
}

int
curve_client_setup(void *sock, const char *server_path, const char *secret_path, char *err,
                   size_t errlen)
{
    struct curve_cert server, own;
    int r;

    r = curve_cert_load(server_path, false, &server, err, errlen);
    if (r < 0) {
        return r;
    }
    r = curve_cert_load(secret_path, true, &own, err, errlen);
    if (r < 0) {
        return r;
    }
    const struct curve_opt opts[] = {
        { ZMQ_CURVE_SERVERKEY, "ZMQ_CURVE_SERVERKEY", server.public_key, CURVE_KEY_LEN },
        { ZMQ_CURVE_PUBLICKEY, "ZMQ_CURVE_PUBLICKEY", own.public_key, CURVE_KEY_LEN },
        { ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", own.secret_key, CURVE_KEY_LEN },
    };
    r = set_opts(sock, opts, sizeof(opts) / sizeof(opts[0]), err, errlen);
    curve_cert_wipe(&own);
    return r;
}
