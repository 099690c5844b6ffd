/*
 * The load generator of `npm run bench:pki`'s online renewal runs: many
 * hosts renewing against `meshplane pki serve` over mutual TLS, each on a
 * new connection with a full handshake, as `pki renew` does.
 *
 * Why C: the clients share this machine's two cores with the server they
 * measure. The Node client it replaces spent 0.45-0.7 ms of CPU a renewal
 * (Node's TLS socket and stream objects, node:crypto's OpenSSL 3.0 overhead
 * on every proof), a third of the CPU of a run, so the bench measured the
 * load generator as much as the server; a fleet's hosts are other machines.
 * This one spends about 0.3 ms (the bench prints both sides' CPU a
 * renewal), most of it OpenSSL's handshake.
 *
 * What a connection does (all of it in the timed part): TCP connect; a TLS
 * handshake presenting the host's credential (its certificate alone, as
 * `pki renew` sends it) and verifying the server's chain against ca.pem and
 * its IP or name (no session is cached or offered, so none resumes); for `batch`, a proof signed by each credential's current
 * key over the new CSR ("meshplane renewal proof v1\0" || CSR DER, ECDSA
 * SHA-256, as src/pki/renewal-proof.ts) and one POST /renewals carrying all
 * the host's credentials; for `single`, one POST /renew with the CSR; then
 * the answer is read and checked (status 200, one certificate an item, no
 * error).
 *
 * usage: renew-client HOST PORT CA_PEM JOBS_FILE THREADS batch|single
 *   JOBS_FILE: a line an item, "<job>\t<csr path>\t<key path>\t<cert path>";
 *   the items of a job (a host) are consecutive lines with the same job
 *   field; a job connects with its first item's certificate and key.
 * Protocol with bench/pki.mjs: prints "READY" once everything is loaded;
 * then each line on stdin starts a pass over every job, which ends with
 *   DONE <renewed> <failed> <cpu seconds> <first error as a JSON string>
 * and the client exits when stdin ends.
 * Each socket has 30 s send and receive deadlines, so a stuck server ends
 * the run with failures instead of hanging it.
 */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define PROOF_CONTEXT "meshplane renewal proof v1"
#define PROOF_CONTEXT_LENGTH (sizeof(PROOF_CONTEXT)) /* with its NUL, as the TypeScript's "...v1\0" */
#define SOCKET_DEADLINE_S 30

typedef struct {
  char *csr_pem;         /* as read, for `single` */
  char *csr_json;        /* the PEM as a JSON string's content */
  char *cert_json;       /* the current certificate, likewise */
  unsigned char *signed_bytes; /* PROOF_CONTEXT || CSR DER */
  size_t signed_length;
  EVP_PKEY *key;         /* the credential's current key */
} Item;

typedef struct {
  Item *items;
  size_t count;
  X509 *cert;            /* presented in the handshake: the first item's */
  EVP_PKEY *key;
} Job;

static Job *jobs;
static size_t job_count;
static atomic_size_t next_job;
static atomic_size_t renewed, failed;
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_error[512];
static SSL_CTX *ctx;
static struct sockaddr_storage server_address;
static socklen_t server_address_length;
static const char *host_header;
static int batch_mode;

static void die(const char *what) {
  fprintf(stderr, "renew-client: %s\n", what);
  ERR_print_errors_fp(stderr);
  exit(1);
}

static void fail(const char *what) {
  atomic_fetch_add(&failed, 1);
  pthread_mutex_lock(&error_lock);
  if (first_error[0] == 0) {
    unsigned long e = ERR_peek_last_error();
    if (e != 0) snprintf(first_error, sizeof first_error, "%s: %s", what, ERR_reason_error_string(e));
    else snprintf(first_error, sizeof first_error, "%s", what);
  }
  pthread_mutex_unlock(&error_lock);
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) die(path);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  rewind(f);
  char *text = malloc((size_t)size + 1);
  if (fread(text, 1, (size_t)size, f) != (size_t)size) die(path);
  text[size] = 0;
  fclose(f);
  return text;
}

/** PEM text as the content of a JSON string (only newlines need escaping in PEM). */
static char *json_content(const char *pem) {
  char *out = malloc(strlen(pem) * 2 + 1), *o = out;
  for (const char *p = pem; *p; p++) {
    if (*p == '\n') { *o++ = '\\'; *o++ = 'n'; }
    else if (*p != '\r') *o++ = *p;
  }
  *o = 0;
  return out;
}

static void load_item(Item *item, const char *csr_path, const char *key_path, const char *cert_path) {
  item->csr_pem = read_file(csr_path);
  item->csr_json = json_content(item->csr_pem);
  char *cert_pem = read_file(cert_path);
  item->cert_json = json_content(cert_pem);
  free(cert_pem);
  /* The DER exactly as in the PEM (what the server signs over too), not a re-encoding. */
  BIO *bio = BIO_new_mem_buf(item->csr_pem, -1);
  char *name = NULL, *header = NULL;
  unsigned char *der = NULL;
  long der_length = 0;
  int read = PEM_read_bio(bio, &name, &header, &der, &der_length);
  BIO_free(bio);
  if (read != 1 || strcmp(name, "CERTIFICATE REQUEST") != 0) die(csr_path);
  item->signed_length = PROOF_CONTEXT_LENGTH + (size_t)der_length;
  item->signed_bytes = malloc(item->signed_length);
  memcpy(item->signed_bytes, PROOF_CONTEXT, PROOF_CONTEXT_LENGTH);
  memcpy(item->signed_bytes + PROOF_CONTEXT_LENGTH, der, (size_t)der_length);
  OPENSSL_free(name);
  OPENSSL_free(header);
  OPENSSL_free(der);
  FILE *f = fopen(key_path, "r");
  if (f == NULL || (item->key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL) die(key_path);
  fclose(f);
}

static void load_jobs(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) die(path);
  size_t capacity = 1024;
  jobs = calloc(capacity, sizeof(Job));
  char line[4096];
  char last[256] = "";
  while (fgets(line, sizeof line, f) != NULL) {
    char *job_field = strtok(line, "\t\n"), *csr = strtok(NULL, "\t\n"), *key = strtok(NULL, "\t\n"), *cert = strtok(NULL, "\t\n");
    if (job_field == NULL || csr == NULL || key == NULL || cert == NULL) die("a jobs line is not <job> <csr> <key> <cert>");
    if (job_count == 0 || strcmp(job_field, last) != 0) {
      if (job_count == capacity) jobs = realloc(jobs, (capacity *= 2) * sizeof(Job));
      memset(&jobs[job_count++], 0, sizeof(Job));
      snprintf(last, sizeof last, "%s", job_field);
    }
    Job *job = &jobs[job_count - 1];
    job->items = realloc(job->items, (job->count + 1) * sizeof(Item));
    load_item(&job->items[job->count++], csr, key, cert);
    if (job->count == 1) {
      FILE *c = fopen(cert, "r");
      if (c == NULL || (job->cert = PEM_read_X509(c, NULL, NULL, NULL)) == NULL) die(cert);
      fclose(c);
      job->key = job->items[0].key;
    }
  }
  fclose(f);
}

/** A growing byte buffer. */
typedef struct {
  char *data;
  size_t length, capacity;
} Buffer;

static void append(Buffer *b, const void *bytes, size_t n) {
  if (b->length + n + 1 > b->capacity) {
    while (b->length + n + 1 > b->capacity) b->capacity = b->capacity ? b->capacity * 2 : 8192;
    b->data = realloc(b->data, b->capacity);
  }
  memcpy(b->data + b->length, bytes, n);
  b->length += n;
  b->data[b->length] = 0;
}

static void append_text(Buffer *b, const char *text) { append(b, text, strlen(text)); }

/** The proof by the item's current key, base64, appended. */
static int append_proof(Buffer *b, const Item *item) {
  unsigned char signature[80];
  size_t signature_length = sizeof signature;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, item->key) == 1 &&
           EVP_DigestSign(md, signature, &signature_length, item->signed_bytes, item->signed_length) == 1;
  EVP_MD_CTX_free(md);
  if (!ok) return 0;
  char base64[120];
  int n = EVP_EncodeBlock((unsigned char *)base64, signature, (int)signature_length);
  append(b, base64, (size_t)n);
  return 1;
}

/** The whole request of a job: head and body. */
static int build_request(Buffer *request, const Job *job) {
  Buffer body = {0};
  if (batch_mode) {
    append_text(&body, "{\"renewals\":[");
    for (size_t i = 0; i < job->count; i++) {
      append_text(&body, i == 0 ? "{\"csr\":\"" : ",{\"csr\":\"");
      append_text(&body, job->items[i].csr_json);
      append_text(&body, "\",\"certificate\":\"");
      append_text(&body, job->items[i].cert_json);
      append_text(&body, "\",\"proof\":\"");
      if (!append_proof(&body, &job->items[i])) {
        free(body.data);
        return 0;
      }
      append_text(&body, "\"}");
    }
    append_text(&body, "]}");
  } else {
    append_text(&body, job->items[0].csr_pem);
  }
  char head[512];
  int n = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                   batch_mode ? "/renewals" : "/renew", host_header, batch_mode ? "application/json" : "application/pkcs10", body.length);
  append(request, head, (size_t)n);
  append(request, body.data, body.length);
  free(body.data);
  return 1;
}

static size_t count_of(const char *text, const char *needle) {
  size_t n = 0;
  for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle)) n++;
  return n;
}

/** Renewals in a complete answer, or 0 with the reason in `why`. */
static size_t renewed_in(const Job *job, const char *answer, const char *body, const char **why) {
  if (strncmp(answer, "HTTP/1.1 200", 12) != 0) {
    *why = "answer not 200";
    return 0;
  }
  if (!batch_mode) {
    if (strncmp(body, "-----BEGIN CERTIFICATE-----", 27) == 0) return 1;
    *why = "answer is not a certificate";
    return 0;
  }
  if (strstr(body, "\"error\"") != NULL || count_of(body, "-----BEGIN CERTIFICATE-----") != job->count) {
    *why = "batch answer lacks a certificate for an item";
    return 0;
  }
  return job->count;
}

/** Reads until the headers and Content-Length bytes of body are in; the body's offset, or 0. */
static size_t read_answer(SSL *ssl, Buffer *answer) {
  char chunk[16384];
  for (;;) {
    char *end = answer->data == NULL ? NULL : strstr(answer->data, "\r\n\r\n");
    if (end != NULL) {
      size_t head = (size_t)(end - answer->data) + 4;
      char *field = strcasestr(answer->data, "\r\ncontent-length:");
      if (field == NULL || field > end) return 0;
      size_t length = strtoul(field + 17, NULL, 10);
      if (answer->length >= head + length) return head;
    }
    int n = SSL_read(ssl, chunk, sizeof chunk);
    if (n <= 0) return 0;
    append(answer, chunk, (size_t)n);
  }
}

static void run_job(const Job *job) {
  int fd = socket(server_address.ss_family, SOCK_STREAM, 0);
  struct timeval deadline = {SOCKET_DEADLINE_S, 0};
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &deadline, sizeof deadline);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &deadline, sizeof deadline);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SSL *ssl = NULL;
  Buffer request = {0}, answer = {0};
  if (connect(fd, (struct sockaddr *)&server_address, server_address_length) != 0) {
    fail(strerror(errno));
    goto done;
  }
  ssl = SSL_new(ctx);
  if (ssl == NULL || SSL_use_certificate(ssl, job->cert) != 1 || SSL_use_PrivateKey(ssl, job->key) != 1 || SSL_set_fd(ssl, fd) != 1) {
    fail("TLS set-up");
    goto done;
  }
  if (SSL_connect(ssl) != 1) {
    fail(SSL_get_verify_result(ssl) != X509_V_OK ? X509_verify_cert_error_string(SSL_get_verify_result(ssl)) : "TLS handshake");
    goto done;
  }
  if (!build_request(&request, job)) {
    fail("signing a proof");
    goto done;
  }
  if (SSL_write(ssl, request.data, (int)request.length) != (int)request.length) {
    fail("writing the request");
    goto done;
  }
  size_t body = read_answer(ssl, &answer);
  if (body == 0) {
    fail("connection closed before a whole answer");
    goto done;
  }
  const char *why = NULL;
  size_t n = renewed_in(job, answer.data, answer.data + body, &why);
  if (n == 0) fail(why);
  else atomic_fetch_add(&renewed, n);
  SSL_shutdown(ssl);
done:
  SSL_free(ssl);
  close(fd);
  free(request.data);
  free(answer.data);
  ERR_clear_error();
}

static void *lane(void *unused) {
  (void)unused;
  for (;;) {
    size_t i = atomic_fetch_add(&next_job, 1);
    if (i >= job_count) return NULL;
    run_job(&jobs[i]);
  }
}

static double cpu_seconds(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return (double)usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + (double)usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 7 || (strcmp(argv[6], "batch") != 0 && strcmp(argv[6], "single") != 0)) {
    fprintf(stderr, "usage: renew-client HOST PORT CA_PEM JOBS_FILE THREADS batch|single\n");
    return 2;
  }
  const char *host = argv[1], *port = argv[2];
  int threads = atoi(argv[5]);
  batch_mode = strcmp(argv[6], "batch") == 0;
  static char host_port[300];
  snprintf(host_port, sizeof host_port, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
  host_header = host_port;

  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *found;
  if (getaddrinfo(host, port, &hints, &found) != 0) die("cannot resolve the server's address");
  memcpy(&server_address, found->ai_addr, found->ai_addrlen);
  server_address_length = found->ai_addrlen;
  freeaddrinfo(found);

  ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 || SSL_CTX_load_verify_locations(ctx, argv[3], NULL) != 1) die("TLS context / CA");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  /* The host's own certificate only, as pki renew sends (src/pki/serving-check.ts): OpenSSL would
   * otherwise append the CA from the trust store, which the server then parses on every connection. */
  SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
  X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
  unsigned char ip[16];
  int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
  if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host) : X509_VERIFY_PARAM_set1_host(param, host, 0)) != 1) die("server name check");

  load_jobs(argv[4]);
  if (job_count == 0) die("no jobs");
  printf("READY\n");
  fflush(stdout);
  /* A pass over every job on each line read, until stdin ends. */
  char go[64];
  pthread_t *lanes = calloc((size_t)threads, sizeof(pthread_t));
  while (fgets(go, sizeof go, stdin) != NULL) {
    atomic_store(&next_job, 0);
    atomic_store(&renewed, 0);
    atomic_store(&failed, 0);
    first_error[0] = 0;
    double cpu_start = cpu_seconds();
    for (int i = 0; i < threads; i++)
      if (pthread_create(&lanes[i], NULL, lane, NULL) != 0) die("pthread_create");
    for (int i = 0; i < threads; i++) pthread_join(lanes[i], NULL);
    double cpu = cpu_seconds() - cpu_start;
    printf("DONE %zu %zu %.3f \"", atomic_load(&renewed), atomic_load(&failed), cpu);
    for (const char *p = first_error; *p; p++) {
      if (*p == '"' || *p == '\\') printf("\\%c", *p);
      else if ((unsigned char)*p >= 0x20) putchar(*p);
    }
    printf("\"\n");
    fflush(stdout);
  }
  return 0;
}
