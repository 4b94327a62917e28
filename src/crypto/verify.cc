#include "crypto/verify.h"

#include "crypto/error.h"

namespace devid::crypto {

namespace {
// Path validation needs every key decoded; certificates devid has just built
// hold only key bits (see spki.h), so those go through one DER round trip.
Result<Certificate> Decoded(const Certificate& c) {
  if (c.has_decoded_key()) return c;
  DEVID_ASSIGN_OR_RETURN(Bytes der, c.ToDer());
  return Certificate::Parse(der);
}

Result<std::vector<Certificate>> Decoded(const std::vector<Certificate>& certs) {
  std::vector<Certificate> out;
  for (const Certificate& c : certs) {
    DEVID_ASSIGN_OR_RETURN(Certificate d, Decoded(c));
    out.push_back(std::move(d));
  }
  return out;
}
}  // namespace

Status VerifyChain(const Certificate& leaf_in, const std::vector<Certificate>& intermediates_in,
                   const std::vector<Certificate>& anchors_in, const std::vector<Crl>& crls,
                   const VerifyOptions& options) {
  DEVID_ASSIGN_OR_RETURN(Certificate leaf, Decoded(leaf_in));
  DEVID_ASSIGN_OR_RETURN(std::vector<Certificate> intermediates, Decoded(intermediates_in));
  DEVID_ASSIGN_OR_RETURN(std::vector<Certificate> anchors, Decoded(anchors_in));
  UniquePtr<X509_STORE> store(X509_STORE_new());
  UniquePtr<STACK_OF(X509)> untrusted(sk_X509_new_null());
  UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx) return OpenSslError("allocating verification context");
  for (const Certificate& anchor : anchors) {
    if (X509_STORE_add_cert(store.get(), anchor.get()) != 1)
      return OpenSslError("adding trust anchor");
  }
  for (const Crl& crl : crls) {
    if (X509_STORE_add_crl(store.get(), crl.get()) != 1) return OpenSslError("adding CRL");
  }
  for (const Certificate& c : intermediates) {
    if (sk_X509_push(untrusted.get(), c.get()) == 0) return OpenSslError("adding intermediate");
    X509_up_ref(c.get());
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), untrusted.get()) != 1) {
    return OpenSslError("initialising verification");
  }
  unsigned long flags = 0;
  if (options.strict) flags |= X509_V_FLAG_X509_STRICT;
  if (options.check_crls) flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_flags(param, flags);
  if (options.at_time) X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(*options.at_time));
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    int depth = X509_STORE_CTX_get_error_depth(ctx.get());
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kVerification,
                     std::string("certificate path does not verify at depth ") +
                         std::to_string(depth) + ": " + X509_verify_cert_error_string(err));
  }
  return {};
}

}  // namespace devid::crypto
