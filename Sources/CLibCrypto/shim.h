#ifndef CLIBCRYPTO_SHIM_H
#define CLIBCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <openssl/crypto.h>

static const int CLibCrypto_EVP_MAX_MD_SIZE = EVP_MAX_MD_SIZE;

/* OPENSSL_free is a macro over CRYPTO_free with file and line. */
static inline void CLibCrypto_OPENSSL_free(void *pointer) { OPENSSL_free(pointer); }

#endif
