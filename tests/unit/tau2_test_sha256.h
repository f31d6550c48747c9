/* tau2_test_sha256.h — τ²-bench's DB hash is sha256 of a sorted json.dumps;
 * tests recompute it with OpenSSL's digest. */
#ifndef TAU2_TEST_SHA256_H
#define TAU2_TEST_SHA256_H

#include <stdio.h>

#include <openssl/evp.h>

static inline void sha256_hex(const char *data, size_t len, char out[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < n && i < 32; i++) sprintf(out + 2 * i, "%02x", md[i]);
    out[64] = '\0';
}

#endif
