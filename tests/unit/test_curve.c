/*
 * test_curve.c - CURVE key files: czmq's zcert format read from a file
 * written by hand as czmq writes it, malformed and loose files refused,
 * zpipe keygen's files read back, the allow-list directory.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "curve.h"
#include "zap.h"

#include "tap.h"

/* The server key pair of zmq_curve(7), so the fixture is a real key pair. */
#define PUBLIC_Z85 "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
#define SECRET_Z85 "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"

/* What czmq's zcert_save_secret() writes (zconfig_save), with metadata. */
static const char czmq_secret[] =
    "#   ****  Generated on 2015-06-01 10:00:00 by CZMQ  ****\n"
    "#   ZeroMQ CURVE **Secret** Certificate\n"
    "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"
    "\n"
    "metadata\n"
    "    name = \"server\"\n"
    "    email = \"ops@example.com\"\n"
    "curve\n"
    "    public-key = \"" PUBLIC_Z85 "\"\n"
    "    secret-key = \"" SECRET_Z85 "\"\n";

/* ... and zcert_save_public(). */
static const char czmq_public[] =
    "#   ****  Generated on 2015-06-01 10:00:00 by CZMQ  ****\n"
    "#   ZeroMQ CURVE Public Certificate\n"
    "#   Exchange securely, or use a secure mechanism to verify the contents\n"
    "#   of this file after exchange. Store public certificates in your home\n"
    "#   directory, in the .curve subdirectory.\n"
    "\n"
    "metadata\n"
    "    name = \"server\"\n"
    "curve\n"
    "    public-key = \"" PUBLIC_Z85 "\"\n";

static char dir[] = "/tmp/zpipe-test-curve.XXXXXX";

/* put writes text to dir/name with mode; returns the path (static buffer). */
static const char *
put(const char *name, const char *text, mode_t mode)
{
    static char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
    f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0 || chmod(path, mode) < 0) {
        bail_out("write %s", path);
    }
    return path;
}

/* loads: text as a file loads (want_secret) and gives the fixture's keys. */
static int
loads(const char *text, bool want_secret, mode_t mode)
{
    uint8_t pub[CURVE_KEY_LEN], sec[CURVE_KEY_LEN];
    struct curve_cert c;
    char err[CURVE_ERR_MAX] = "";
    int r = curve_cert_load(put("k", text, mode), want_secret, &c, err, sizeof(err));

    if (r < 0) {
        diag("%s", err);
        return 0;
    }
    zmq_z85_decode(pub, PUBLIC_Z85);
    zmq_z85_decode(sec, SECRET_Z85);
    return memcmp(c.public_key, pub, sizeof(pub)) == 0 && c.has_secret == want_secret &&
           (!want_secret || memcmp(c.secret_key, sec, sizeof(sec)) == 0);
}

/* refused: text fails to load with an error that contains want. */
static int
refused(const char *text, bool want_secret, mode_t mode, const char *want)
{
    struct curve_cert c;
    char err[CURVE_ERR_MAX] = "";
    int r = curve_cert_load(put("k", text, mode), want_secret, &c, err, sizeof(err));

    if (r == 0 || !strstr(err, want)) {
        diag("rc %d, error '%s', expected one with '%s'", r, err, want);
        return 0;
    }
    return 1;
}

/* with_key returns the curve section of a file whose public-key line is line. */
static const char *
with_key(const char *line)
{
    static char text[512];

    snprintf(text, sizeof(text), "metadata\ncurve\n%s\n", line);
    return text;
}

static void
test_formats(void)
{
    ok(loads(czmq_secret, true, 0600), "czmq's secret zcert file is read: both keys");
    ok(loads(czmq_public, false, 0644), "czmq's public zcert file is read");
    ok(loads(czmq_secret, false, 0644), "a secret file serves as a public one");
    ok(loads("curve\n    secret-key = '" SECRET_Z85 "'   # comment\n", true, 0600),
       "single quotes, a trailing comment, and no public-key: it is derived");
    ok(loads("metadata\r\ncurve\r\n    public-key = \"" PUBLIC_Z85 "\"\r\n", false, 0644),
       "CRLF line ends");
    ok(refused(czmq_public, true, 0600, "no curve secret-key"),
       "a public file where a secret one is needed is refused");
    ok(refused(with_key("    public-key = \"" PUBLIC_Z85 "x\""), false, 0644, ":3: public-key is "
                                                                             "not 40 Z85"),
       "a key of 41 characters is refused, with its line");
    ok(refused(with_key("    public-key = \"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hI~\""), false,
               0644, "not valid Z85"),
       "a character outside Z85 is refused");
    ok(refused(with_key("\tpublic-key = \"" PUBLIC_Z85 "\""), false, 0644, "indentation"),
       "a tab for indentation is refused");
    ok(refused(with_key("    public-key = \"" PUBLIC_Z85), false, 0644, "unterminated"),
       "an unterminated quote is refused");
    ok(refused("curve\n    public-key = \"" PUBLIC_Z85 "\"\n    public-key = \"" PUBLIC_Z85
               "\"\n",
               false, 0644, "twice"),
       "a key given twice is refused");
    ok(refused("metadata\n    public-key = \"" PUBLIC_Z85 "\"\n", false, 0644, "no curve public"),
       "a key outside the curve section does not count");
    ok(refused("hello world\n", false, 0644, "no curve public"), "a file that is not a zcert");
    ok(refused("curve\n    public-key = \"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hIE\"\n"
               "    secret-key = \"" SECRET_Z85 "\"\n",
               true, 0600, "not the one of its secret-key"),
       "a secret file whose public-key does not match is refused");
}

static void
test_permissions(void)
{
    char cred[300];

    ok(refused(czmq_secret, true, 0640, "mode 0640"), "a group-readable secret file is refused");
    ok(refused(czmq_secret, true, 0604, "mode 0604"), "a world-readable secret file is refused");
    ok(loads(czmq_secret, true, 0400), "mode 0400 is fine");
    snprintf(cred, sizeof(cred), "%s/", dir);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    ok(loads(czmq_secret, true, 0440), "under $CREDENTIALS_DIRECTORY the group bits are an ACL");
    setenv("CREDENTIALS_DIRECTORY", cred, 1);
    ok(loads(czmq_secret, true, 0440), "... also with a trailing slash in it");
    unsetenv("CREDENTIALS_DIRECTORY");
}

static void
test_keygen(void)
{
    char name[300], pub_path[320], sec_path[320], err[CURVE_ERR_MAX] = "";
    struct curve_cert pub, sec;
    struct stat st;

    snprintf(name, sizeof(name), "%s/gen", dir);
    snprintf(pub_path, sizeof(pub_path), "%s.key", name);
    snprintf(sec_path, sizeof(sec_path), "%s.key_secret", name);
    ok(curve_keygen(name, err, sizeof(err)) == 0, "keygen writes NAME.key and NAME.key_secret");
    ok(stat(sec_path, &st) == 0 && (st.st_mode & 0777) == 0600, "the secret file has mode 0600");
    ok(curve_cert_load(pub_path, false, &pub, err, sizeof(err)) == 0 &&
           curve_cert_load(sec_path, true, &sec, err, sizeof(err)) == 0 &&
           memcmp(pub.public_key, sec.public_key, CURVE_KEY_LEN) == 0,
       "both read back, with the same public key");
    ok(curve_keygen(name, err, sizeof(err)) == -EEXIST && strstr(err, "exists"),
       "keygen overwrites nothing: %s", err);
    ok(curve_cert_load(sec_path, true, &sec, err, sizeof(err)) == 0 &&
           memcmp(pub.public_key, sec.public_key, CURVE_KEY_LEN) == 0,
       "... the first pair is intact");
    unlink(pub_path);
    unlink(sec_path);
}

static void
test_allow(void)
{
    char sub[300], err[CURVE_ERR_MAX] = "";
    struct curve_allow a;
    uint8_t key[CURVE_KEY_LEN];

    unlink(put("k", "", 0644));
    put("server.key", czmq_public, 0644);
    put("server.key_secret", "not a key file at all", 0600);
    put(".hidden", "not a key file at all", 0644);
    snprintf(sub, sizeof(sub), "%s/subdir", dir);
    mkdir(sub, 0755);
    put("other", with_key("    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\""), 0644);
    ok(curve_allow_load(dir, &a, err, sizeof(err)) == 0 && a.n == 2,
       "the allow-list reads the 2 public files, skips _secret, dot files, directories (%s)",
       err);
    zmq_z85_decode(key, PUBLIC_Z85);
    ok(a.n == 2 && curve_allow_find(&a, key) &&
           strcmp(curve_allow_find(&a, key), "server.key") == 0,
       "a listed key is found, with its file name");
    key[0] ^= 1;
    ok(!curve_allow_find(&a, key), "another key is not");
    curve_allow_free(&a);
    put("broken", "curve\n    public-key = \"short\"\n", 0644);
    ok(curve_allow_load(dir, &a, err, sizeof(err)) < 0 && strstr(err, "broken:2:") && a.n == 0,
       "one malformed file fails the whole load: %s", err);
    ok(curve_allow_load("/nonexistent-zpipe", &a, err, sizeof(err)) == -ENOENT,
       "a missing directory: %s", err);
    rmdir(sub);
}

/* recv_until reads sock for up to ms until a message equal to want came. */
static int
recv_until(void *sock, const char *want, int ms)
{
    char buf[64];

    for (int waited = 0; waited < ms; waited += 100) {
        zmq_pollitem_t it = { .socket = sock, .events = ZMQ_POLLIN };

        if (zmq_poll(&it, 1, 100) == 1) {
            int n = zmq_recv(sock, buf, sizeof(buf) - 1, 0);

            if (n >= 0 && (buf[n] = '\0', strcmp(buf, want) == 0)) {
                return 1;
            }
        }
    }
    return 0;
}

static char fc[64]; /* the keys of test_fail_closed: dir/fc */

/* fc_path writes fc/name into buf (FC_PATH_MAX bytes). */
#define FC_PATH_MAX 128
static const char *
fc_path(char *buf, const char *name)
{
    snprintf(buf, FC_PATH_MAX, "%s/%s", fc, name);
    return buf;
}

/* client sends text from a new CURVE client socket of key pair name. */
static void *
client(void *ctx, const char *ep, const char *name, const char *text)
{
    char server[FC_PATH_MAX], secret[FC_PATH_MAX], file[64], err[CURVE_ERR_MAX] = "";
    void *c = zmq_socket(ctx, ZMQ_PUSH);
    int zero = 0;

    snprintf(file, sizeof(file), "%s.key_secret", name);
    if (!c || zmq_setsockopt(c, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
        curve_client_setup(c, fc_path(server, "server.key"), fc_path(secret, file), err,
                           sizeof(err)) < 0 ||
        zmq_connect(c, ep) < 0 || zmq_send(c, text, strlen(text), ZMQ_DONTWAIT) < 0) {
        bail_out("client %s: %s", name, err);
    }
    return c;
}

/*
 * Fail closed: a CURVE input with no ZAP handler bound lets nobody in (the
 * enforced domain), and zap.c's handler lets in exactly the listed keys.
 */
static void
test_fail_closed(void)
{
    static const char *const names[] = { "server", "alice", "mallory" };
    char p[FC_PATH_MAX], q[FC_PATH_MAX], ep[128], err[CURVE_ERR_MAX] = "";
    size_t eplen = sizeof(ep);
    void *ctx = zmq_ctx_new(), *server, *c1, *c2, *c3;
    zap_t *zap = NULL;

    snprintf(fc, sizeof(fc), "%s/fc", dir);
    if (mkdir(fc, 0755) < 0 || mkdir(fc_path(p, "allow"), 0755) < 0) {
        bail_out("mkdir %s", p);
    }
    for (size_t i = 0; i < 3; i++) {
        if (curve_keygen(fc_path(p, names[i]), err, sizeof(err)) < 0) {
            bail_out("keygen: %s", err);
        }
    }
    if (link(fc_path(p, "alice.key"), fc_path(q, "allow/alice.key")) < 0) {
        bail_out("link %s", q);
    }
    server = zmq_socket(ctx, ZMQ_PULL);
    if (!server || curve_server_setup(server, fc_path(p, "server.key_secret"), err,
                                      sizeof(err)) < 0 ||
        zmq_bind(server, "tcp://127.0.0.1:*") < 0 ||
        zmq_getsockopt(server, ZMQ_LAST_ENDPOINT, ep, &eplen) < 0) {
        bail_out("server: %s", err);
    }
    c1 = client(ctx, ep, "alice", "before");
    ok(!recv_until(server, "before", 1500),
       "no ZAP handler: even a CURVE client with a good key gets nothing in");
    ok(zap_start(&zap, ctx, fc_path(p, "allow")) == 0, "the ZAP handler starts");
    c3 = client(ctx, ep, "alice", "alice");
    ok(recv_until(server, "alice", 20000), "with the handler, the allowed key gets in");
    c2 = client(ctx, ep, "mallory", "mallory");
    ok(!recv_until(server, "mallory", 1500), "... and another key does not");
    zmq_close(c1);
    zmq_close(c2);
    zmq_close(c3);
    zmq_close(server);
    zap_stop(zap);
    zmq_ctx_term(ctx);
}

int
main(void)
{
    char cmd[400];

    plan(33);
    if (!mkdtemp(dir)) {
        bail_out("mkdtemp");
    }
    test_formats();
    test_permissions();
    test_keygen();
    test_allow();
    test_fail_closed();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        diag("could not remove %s", dir);
    }
    return done_testing();
}
