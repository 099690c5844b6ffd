/*
 * meshplane's optional native fast path for one operation: verifying an
 * ECDSA P-256 / SHA-256 signature against a public key given as its raw
 * uncompressed point (65 bytes, 0x04 || X || Y).
 *
 * Why it exists: through node:crypto each such check on a key not seen
 * before costs 130-190 us on the machines we measured, of which the curve
 * arithmetic is about 55 us; the rest is OpenSSL 3.0 building a key object
 * (a fresh P-256 group and Montgomery constants, a point-times-order check)
 * and fetching algorithms from its provider for every call. The online CA
 * checks three such signatures per renewal (src/pki/p256.ts,
 * BENCHMARKS.md "pki"). Here the group is built once and the check goes
 * straight to ECDSA_do_verify on the OpenSSL that Node itself bundles and
 * exports (the headers come with Node's own, as for any addon).
 *
 * verify(point, message, derSignature) -> boolean. Malformed input (a point
 * not on the curve, a signature that is not DER) is simply "false"; wrong
 * argument types throw a TypeError.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <pthread.h>
#include <node_api.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/obj_mac.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

/* Built once per process and only read afterwards (ECDSA_do_verify on a key holding a copy);
 * pki sign loads this addon in several worker threads at once, hence pthread_once. */
static EC_GROUP *p256;
static pthread_once_t p256_once = PTHREAD_ONCE_INIT;

static void make_p256(void) { p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1); }

static int buffer_arg(napi_env env, napi_value value, const unsigned char **data, size_t *length) {
  bool is_typed = false;
  napi_is_typedarray(env, value, &is_typed);
  if (!is_typed) return 0;
  napi_typedarray_type type;
  size_t count;
  void *base;
  napi_value arraybuffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, &count, &base, &arraybuffer, &offset) != napi_ok || type != napi_uint8_array) return 0;
  *data = base;
  *length = count;
  return 1;
}

static napi_value verify(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  const unsigned char *point, *message, *signature;
  size_t point_length, message_length, signature_length;
  if (argc != 3 || !buffer_arg(env, argv[0], &point, &point_length) || !buffer_arg(env, argv[1], &message, &message_length) ||
      !buffer_arg(env, argv[2], &signature, &signature_length)) {
    napi_throw_type_error(env, NULL, "verify(point, message, signature): three Uint8Arrays");
    return NULL;
  }
  int valid = 0;
  if (point_length == 65 && point[0] == 4 && signature_length <= 80) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(message, message_length, digest);
    EC_KEY *key = EC_KEY_new();
    EC_POINT *q = EC_POINT_new(p256);
    const unsigned char *cursor = signature;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &cursor, (long)signature_length);
    /* As OpenSSL's own ECDSA verify: the signature must be exactly the DER of (r, s), re-encoded. */
    unsigned char *canonical = NULL;
    int canonical_length = sig == NULL ? -1 : i2d_ECDSA_SIG(sig, &canonical);
    int strict = canonical_length == (int)signature_length && CRYPTO_memcmp(canonical, signature, signature_length) == 0;
    OPENSSL_free(canonical);
    if (key != NULL && q != NULL && sig != NULL && strict && cursor == signature + signature_length && EC_KEY_set_group(key, p256) == 1 &&
        EC_POINT_oct2point(p256, q, point, point_length, NULL) == 1 && EC_KEY_set_public_key(key, q) == 1) {
      valid = ECDSA_do_verify(digest, SHA256_DIGEST_LENGTH, sig, key) == 1;
    }
    ECDSA_SIG_free(sig);
    EC_POINT_free(q);
    EC_KEY_free(key);
  }
  napi_value result;
  napi_get_boolean(env, valid, &result);
  return result;
}

NAPI_MODULE_INIT() {
  pthread_once(&p256_once, make_p256);
  if (p256 == NULL) {
    napi_throw_error(env, NULL, "OpenSSL has no P-256 group");
    return NULL;
  }
  napi_value fn;
  napi_create_function(env, "verify", NAPI_AUTO_LENGTH, verify, NULL, &fn);
  napi_set_named_property(env, exports, "verify", fn);
  return exports;
}
