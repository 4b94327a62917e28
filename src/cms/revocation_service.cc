#include "cms/revocation_service.h"

#include "core/bytes.h"
#include "core/time.h"
#include "crypto/ocsp.h"

namespace devid::cms {

namespace {

bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
          c == '@'))
      return false;
  }
  return true;
}

http::Response Binary(std::string content_type, Bytes body) {
  return http::Response{200, std::move(content_type), std::string(body.begin(), body.end()), {}};
}

}  // namespace

ca::SigningCa* RevocationService::Ca(const std::string& org, const std::string& name,
                                     http::Response* error) {
  if (!ValidName(org) || !ValidName(name)) {
    *error = http::JsonError(404, "not_found", "no such organization or CA");
    return nullptr;
  }
  auto ca = backend_.Ca(org, name, false);
  if (!ca.ok()) {
    *error = ca.error().code == ErrorCode::kNotFound
                 ? http::JsonError(404, "not_found", "no such organization or CA")
                 : http::JsonError(503, "ca_unavailable",
                                   "the CA cannot sign now (is its passphrase given?)");
    return nullptr;
  }
  return *ca;
}

http::Response RevocationService::Ocsp(const std::string& org, const std::string& ca_name,
                                       ByteView request) {
  auto parsed = crypto::OcspRequest::Parse(request);
  // RFC 6960 §4.4.1: a request with a nonce is signed afresh; only one without
  // (RFC 5019) may be served from the cache, so the others skip it entirely.
  bool cacheable = parsed.ok() && !parsed->HasNonce();
  std::string key;
  auto now = std::chrono::steady_clock::now();
  uint64_t generation = backend_.revocation_generation();
  if (cacheable) {
    key = org + "/" + ca_name;
    key.push_back('\0');
    key.append(AsString(request));
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = ocsp_cache_.find(key);
    if (it != ocsp_cache_.end()) {
      if (it->second.expires > now && it->second.generation == generation) {
        if (backend_.metrics() != nullptr) {
          backend_.metrics()->Increment("devid_ocsp_responses_total", "cached=\"true\"");
        }
        return Binary("application/ocsp-response", it->second.response);
      }
      ocsp_cache_.erase(it);
    }
  }
  std::shared_ptr<ca::SigningCa> ca;
  {
    auto lock = backend_.Lock();
    http::Response error;
    if (Ca(org, ca_name, &error) == nullptr) return error;
    auto shared = backend_.SharedCa(org, ca_name);
    if (!shared.ok()) return http::JsonError(500, "internal", "the OCSP response failed");
    ca = std::move(*shared);
  }
  if (backend_.metrics() != nullptr) {
    backend_.metrics()->Increment("devid_ocsp_responses_total", "cached=\"false\"");
  }
  if (!parsed.ok()) {
    return Binary("application/ocsp-response",
                  crypto::OcspErrorResponse(crypto::OcspError::kMalformedRequest));
  }
  // Only the store lookup holds the lock: parsing, building and signing run
  // concurrently on the server's threads.
  Result<Bytes> response =
      ca->RespondOcsp(*parsed, std::nullopt, [this](const std::function<void()>& find) {
        auto lock = backend_.Lock();
        find();
      });
  // A store that cannot answer must not be taken for "unknown" (nor cached).
  if (!response.ok()) {
    return Binary("application/ocsp-response",
                  crypto::OcspErrorResponse(crypto::OcspError::kInternalError));
  }
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (ocsp_cache_.size() >= kOcspCacheEntries) ocsp_cache_.clear();
    ocsp_cache_[std::move(key)] = CachedAnswer{*response, now + kOcspCacheTime, generation};
  }
  return Binary("application/ocsp-response", std::move(response).value());
}

void RevocationService::Register(http::Router& router) {
  router.Add("GET", "/crl/{org}/{file}", [this](const http::Request& r) {
    const std::string& file = r.params.at("file");
    if (file.size() <= 4 || file.substr(file.size() - 4) != ".crl") {
      return http::JsonError(404, "not_found", "CRLs are at /crl/{org}/{ca}.crl");
    }
    auto lock = backend_.Lock();
    http::Response error;
    ca::SigningCa* ca = Ca(r.params.at("org"), file.substr(0, file.size() - 4), &error);
    if (ca == nullptr) return error;
    auto count = ca->RevocationCount();
    if (!count.ok()) return http::JsonError(500, "internal", "the CRL could not be made");
    std::string key = r.params.at("org") + "/" + file;
    int64_t now = NowUnix();
    auto cached = crl_cache_.find(key);
    if (cached != crl_cache_.end() && cached->second.revocations == *count &&
        now < cached->second.refresh_after) {
      return Binary("application/pkix-crl", cached->second.der);
    }
    auto crl = ca->MakeCrl(7, now);
    auto der = crl.ok() ? crl->ToDer() : Result<Bytes>(crl.error());
    if (!der.ok()) return http::JsonError(500, "internal", "the CRL could not be made");
    if (crl_cache_.size() > 10000) crl_cache_.clear();
    crl_cache_[key] = CachedCrl{*der, *count, now + (crl->next_update() - now) / 2};
    return Binary("application/pkix-crl", std::move(der).value());
  });
  router.Add("POST", "/ocsp/{org}/{ca}", [this](const http::Request& r) {
    if (!http::HasMediaType(r, "application/ocsp-request")) {
      return http::JsonError(415, "unsupported_media_type",
                             "an OCSP request is sent as application/ocsp-request");
    }
    return Ocsp(r.params.at("org"), r.params.at("ca"), AsBytes(r.body));
  });
  router.Add("GET", "/ocsp/{org}/{ca}/{request}", [this](const http::Request& r) {
    auto text = http::PercentDecode(r.params.at("request"), false);
    auto der = text ? Base64Decode(*text) : std::nullopt;
    if (!der) {
      return Binary("application/ocsp-response",
                    crypto::OcspErrorResponse(crypto::OcspError::kMalformedRequest));
    }
    return Ocsp(r.params.at("org"), r.params.at("ca"), *der);
  });
}

}  // namespace devid::cms
