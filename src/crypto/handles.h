// Owning handles for every OpenSSL object: std::unique_ptr with a stateless
// deleter. No raw *_free call appears anywhere else in the project.
#pragma once

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ocsp.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

namespace devid::crypto {

namespace internal {
template <typename T>
struct DeleterImpl;

struct Deleter {
  template <typename T>
  void operator()(T* ptr) const {
    if (ptr != nullptr) DeleterImpl<T>::Free(ptr);
  }
};
}  // namespace internal

template <typename T>
using UniquePtr = std::unique_ptr<T, internal::Deleter>;

#define DEVID_MAKE_DELETER(type, free_fn)         \
  namespace internal {                            \
  template <>                                     \
  struct DeleterImpl<type> {                      \
    static void Free(type* ptr) { free_fn(ptr); } \
  };                                              \
  }

inline void FreeX509Stack(STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); }
inline void FreeCrlStack(STACK_OF(X509_CRL) * s) { sk_X509_CRL_pop_free(s, X509_CRL_free); }
inline void FreeObjectStack(STACK_OF(ASN1_OBJECT) * s) {
  sk_ASN1_OBJECT_pop_free(s, ASN1_OBJECT_free);
}
inline void FreeExtensionStack(STACK_OF(X509_EXTENSION) * s) {
  sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
}
inline void FreeSafeBagStack(STACK_OF(PKCS12_SAFEBAG) * s) {
  sk_PKCS12_SAFEBAG_pop_free(s, PKCS12_SAFEBAG_free);
}
inline void FreePkcs7Stack(STACK_OF(PKCS7) * s) { sk_PKCS7_pop_free(s, PKCS7_free); }
inline void FreeCharBuffer(char* p) { OPENSSL_free(p); }
inline void FreeByteBuffer(unsigned char* p) { OPENSSL_free(p); }

DEVID_MAKE_DELETER(ASN1_OBJECT, ASN1_OBJECT_free)
DEVID_MAKE_DELETER(ASN1_TYPE, ASN1_TYPE_free)
// ASN1_INTEGER, ASN1_OCTET_STRING, ASN1_TIME, ASN1_ENUMERATED... are all ASN1_STRING.
DEVID_MAKE_DELETER(ASN1_STRING, ASN1_STRING_free)
DEVID_MAKE_DELETER(AUTHORITY_KEYID, AUTHORITY_KEYID_free)
DEVID_MAKE_DELETER(AUTHORITY_INFO_ACCESS, AUTHORITY_INFO_ACCESS_free)
DEVID_MAKE_DELETER(BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_free)
DEVID_MAKE_DELETER(BIGNUM, BN_free)
DEVID_MAKE_DELETER(BIO, BIO_free_all)
DEVID_MAKE_DELETER(CRL_DIST_POINTS, CRL_DIST_POINTS_free)
DEVID_MAKE_DELETER(DIST_POINT, DIST_POINT_free)
DEVID_MAKE_DELETER(DIST_POINT_NAME, DIST_POINT_NAME_free)
DEVID_MAKE_DELETER(ACCESS_DESCRIPTION, ACCESS_DESCRIPTION_free)
DEVID_MAKE_DELETER(ECDSA_SIG, ECDSA_SIG_free)
DEVID_MAKE_DELETER(EC_POINT, EC_POINT_free)
DEVID_MAKE_DELETER(EVP_CIPHER_CTX, EVP_CIPHER_CTX_free)
DEVID_MAKE_DELETER(EVP_KDF, EVP_KDF_free)
DEVID_MAKE_DELETER(EVP_KDF_CTX, EVP_KDF_CTX_free)
DEVID_MAKE_DELETER(EVP_MD, EVP_MD_free)
DEVID_MAKE_DELETER(EVP_MD_CTX, EVP_MD_CTX_free)
DEVID_MAKE_DELETER(EVP_PKEY, EVP_PKEY_free)
DEVID_MAKE_DELETER(EVP_PKEY_CTX, EVP_PKEY_CTX_free)
DEVID_MAKE_DELETER(EVP_RAND, EVP_RAND_free)
DEVID_MAKE_DELETER(EVP_RAND_CTX, EVP_RAND_CTX_free)
DEVID_MAKE_DELETER(OSSL_LIB_CTX, OSSL_LIB_CTX_free)
DEVID_MAKE_DELETER(OCSP_REQUEST, OCSP_REQUEST_free)
DEVID_MAKE_DELETER(OCSP_BASICRESP, OCSP_BASICRESP_free)
DEVID_MAKE_DELETER(OCSP_RESPONSE, OCSP_RESPONSE_free)
DEVID_MAKE_DELETER(OCSP_CERTID, OCSP_CERTID_free)
DEVID_MAKE_DELETER(OSSL_STORE_CTX, OSSL_STORE_close)
DEVID_MAKE_DELETER(OSSL_STORE_INFO, OSSL_STORE_INFO_free)
DEVID_MAKE_DELETER(SSL_CTX, SSL_CTX_free)
DEVID_MAKE_DELETER(SSL, SSL_free)
DEVID_MAKE_DELETER(GENERAL_NAME, GENERAL_NAME_free)
DEVID_MAKE_DELETER(GENERAL_NAMES, GENERAL_NAMES_free)
DEVID_MAKE_DELETER(PKCS8_PRIV_KEY_INFO, PKCS8_PRIV_KEY_INFO_free)
DEVID_MAKE_DELETER(X509, X509_free)
DEVID_MAKE_DELETER(X509_ALGOR, X509_ALGOR_free)
DEVID_MAKE_DELETER(X509_ATTRIBUTE, X509_ATTRIBUTE_free)
DEVID_MAKE_DELETER(X509_PUBKEY, X509_PUBKEY_free)
DEVID_MAKE_DELETER(X509_CRL, X509_CRL_free)
DEVID_MAKE_DELETER(PKCS7, PKCS7_free)
DEVID_MAKE_DELETER(PKCS12, PKCS12_free)
DEVID_MAKE_DELETER(CMS_ContentInfo, CMS_ContentInfo_free)
DEVID_MAKE_DELETER(X509_EXTENSION, X509_EXTENSION_free)
DEVID_MAKE_DELETER(X509_NAME, X509_NAME_free)
DEVID_MAKE_DELETER(X509_REQ, X509_REQ_free)
DEVID_MAKE_DELETER(X509_REVOKED, X509_REVOKED_free)
DEVID_MAKE_DELETER(X509_SIG, X509_SIG_free)
DEVID_MAKE_DELETER(X509_STORE, X509_STORE_free)
DEVID_MAKE_DELETER(X509_STORE_CTX, X509_STORE_CTX_free)
DEVID_MAKE_DELETER(STACK_OF(X509), FreeX509Stack)
DEVID_MAKE_DELETER(STACK_OF(X509_CRL), FreeCrlStack)
DEVID_MAKE_DELETER(STACK_OF(ASN1_OBJECT), FreeObjectStack)
DEVID_MAKE_DELETER(STACK_OF(X509_EXTENSION), FreeExtensionStack)
DEVID_MAKE_DELETER(STACK_OF(PKCS12_SAFEBAG), FreeSafeBagStack)
DEVID_MAKE_DELETER(STACK_OF(PKCS7), FreePkcs7Stack)
DEVID_MAKE_DELETER(char, FreeCharBuffer)
DEVID_MAKE_DELETER(unsigned char, FreeByteBuffer)

#undef DEVID_MAKE_DELETER

}  // namespace devid::crypto
