// Certificate path validation (RFC 5280 §6) with optional CRL checking.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/result.h"
#include "crypto/certificate.h"
#include "crypto/crl.h"

namespace devid::crypto {

struct VerifyOptions {
  bool check_crls = false;  // every certificate of the path needs a CRL from its issuer
  bool strict = true;       // X509_V_FLAG_X509_STRICT
  std::optional<int64_t> at_time;
};

Status VerifyChain(const Certificate& leaf, const std::vector<Certificate>& intermediates,
                   const std::vector<Certificate>& anchors, const std::vector<Crl>& crls,
                   const VerifyOptions& options);

}  // namespace devid::crypto
