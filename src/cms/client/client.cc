#include "cms/client/client.h"

#include <curl/curl.h>

#include <mutex>
#include <utility>

#include "crypto/pkcs7.h"

namespace devid::cms::client {

namespace {

using json = nlohmann::json;

size_t Collect(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

Error FromStatus(long status, const std::string& body) {
  std::string message = "HTTP " + std::to_string(status);
  json j = json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_object()) {
    message = j["error"].value("message", message);
  }
  ErrorCode code = ErrorCode::kIo;
  if (status == 401 || status == 403) {
    code = ErrorCode::kAuth;
  } else if (status == 404) {
    code = ErrorCode::kNotFound;
  } else if (status == 409) {
    code = ErrorCode::kAlreadyExists;
  } else if (status == 422) {
    code = ErrorCode::kPolicy;
  } else if (status >= 400 && status < 500) {
    code = ErrorCode::kInvalidInput;
  }
  return MakeError(code, "the CMS answered " + std::to_string(status) + ": " + message);
}

// RFC 7030 bodies are base64 in lines.
Result<Bytes> DecodeEstBody(std::string_view body) {
  auto der = Base64DecodeLines(body);
  if (!der) return MakeError(ErrorCode::kInvalidInput, "the EST answer is not base64");
  return std::move(*der);
}

}  // namespace

std::string CmsClient::Segment(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

Result<CmsClient> CmsClient::Create(ClientOptions options) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (!options.base_url.starts_with("https://")) {
    return MakeError(ErrorCode::kInvalidInput, "the CMS URL must start with https://");
  }
  while (options.base_url.ends_with("/")) options.base_url.pop_back();
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return MakeError(ErrorCode::kInternal, "libcurl could not start");
  return CmsClient(std::move(options), curl);
}

CmsClient::CmsClient(ClientOptions options, void* curl)
    : options_(std::move(options)), curl_(curl) {}
CmsClient::CmsClient(CmsClient&& o) noexcept
    : options_(std::move(o.options_)), curl_(std::exchange(o.curl_, nullptr)) {}
CmsClient& CmsClient::operator=(CmsClient&& o) noexcept {
  if (this != &o) {
    if (curl_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(curl_));
    options_ = std::move(o.options_);
    curl_ = std::exchange(o.curl_, nullptr);
  }
  return *this;
}
CmsClient::~CmsClient() {
  if (curl_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

Result<CmsClient::Reply> CmsClient::Send(const std::string& method, const std::string& url,
                                         const std::string& type, const std::string& body) {
  CURL* curl = static_cast<CURL*>(curl_);
  curl_easy_reset(curl);
  Reply reply;
  curl_slist* headers = nullptr;
  std::string auth = "Authorization: Bearer " + options_.token;
  if (!options_.token.empty()) headers = curl_slist_append(headers, auth.c_str());
  std::string content_type = "Content-Type: " + type;
  if (!type.empty()) headers = curl_slist_append(headers, content_type.c_str());
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method != "GET" && method != "DELETE") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply.body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, options_.timeout_seconds);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    return MakeError(ErrorCode::kIo, "reaching the CMS at " + options_.base_url + ": " +
                                         (error[0] != 0 ? error : curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply.status);
  char* ct = nullptr;
  curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
  if (ct != nullptr) reply.content_type = ct;
  return reply;
}

Result<json> CmsClient::Json(const std::string& method, const std::string& path,
                             const std::optional<json>& body) {
  DEVID_ASSIGN_OR_RETURN(Reply reply,
                         Send(method, options_.base_url + "/api/v1" + path,
                              body ? "application/json" : "", body ? body->dump() : std::string()));
  if (reply.status < 200 || reply.status >= 300) return FromStatus(reply.status, reply.body);
  json j = json::parse(reply.body, nullptr, false);
  if (j.is_discarded()) {
    return MakeError(ErrorCode::kIo, "the CMS answered something that is not JSON");
  }
  return j;
}

Result<json> CmsClient::Get(const std::string& path,
                            const std::map<std::string, std::string>& query) {
  std::string full = path;
  char sep = '?';
  for (const auto& [k, v] : query) {
    full += sep + Segment(k) + "=" + Segment(v);
    sep = '&';
  }
  return Json("GET", full, std::nullopt);
}
Result<json> CmsClient::Post(const std::string& path, const json& body) {
  return Json("POST", path, body);
}
Result<json> CmsClient::Put(const std::string& path, const json& body) {
  return Json("PUT", path, body);
}
Result<json> CmsClient::Patch(const std::string& path, const json& body) {
  return Json("PATCH", path, body);
}
Result<json> CmsClient::Delete(const std::string& path) {
  return Json("DELETE", path, std::nullopt);
}

Result<std::string> CmsClient::Login(const std::string& username, const std::string& password) {
  options_.token.clear();
  DEVID_ASSIGN_OR_RETURN(json answer,
                         Post("/auth/login", {{"username", username}, {"password", password}}));
  if (!answer.contains("token") || !answer["token"].is_string()) {
    return MakeError(ErrorCode::kIo, "the CMS login answer has no token");
  }
  options_.token = answer["token"].get<std::string>();
  return options_.token;
}

Result<json> CmsClient::IssueCertificate(const std::string& org, const std::string& ca,
                                         const std::string& template_name,
                                         const std::string& csr_pem) {
  return Post("/orgs/" + Segment(org) + "/certificates",
              {{"ca", ca}, {"template", template_name}, {"csr", csr_pem}});
}

Result<json> CmsClient::RevokeCertificate(const std::string& org, const std::string& serial,
                                          const std::string& reason) {
  json body = json::object();
  if (!reason.empty()) body["reason"] = reason;
  return Post("/orgs/" + Segment(org) + "/certificates/" + Segment(serial) + "/revoke", body);
}

Result<std::string> CmsClient::CaChainPem(const std::string& org, const std::string& ca) {
  DEVID_ASSIGN_OR_RETURN(Reply reply, Send("GET",
                                           options_.base_url + "/api/v1/orgs/" + Segment(org) +
                                               "/cas/" + Segment(ca) + "/chain",
                                           "", ""));
  if (reply.status != 200) return FromStatus(reply.status, reply.body);
  return reply.body;
}

Result<std::vector<crypto::Certificate>> CmsClient::EstCaCerts(const std::string& org,
                                                               const std::string& ca) {
  DEVID_ASSIGN_OR_RETURN(Reply reply, Send("GET",
                                           options_.base_url + "/.well-known/est/" + Segment(org) +
                                               "/" + Segment(ca) + "/cacerts",
                                           "", ""));
  if (reply.status != 200) return FromStatus(reply.status, reply.body);
  DEVID_ASSIGN_OR_RETURN(Bytes der, DecodeEstBody(reply.body));
  return crypto::ParseCertsOnlyPkcs7(der);
}

Result<crypto::Certificate> CmsClient::EstSimpleEnroll(const std::string& org,
                                                       const std::string& ca, ByteView csr_der) {
  DEVID_ASSIGN_OR_RETURN(Reply reply, Send("POST",
                                           options_.base_url + "/.well-known/est/" + Segment(org) +
                                               "/" + Segment(ca) + "/simpleenroll",
                                           "application/pkcs10", Base64Encode(csr_der, 64)));
  return EstEnrollAnswer(reply.status, reply.body);
}

Result<crypto::Certificate> EstEnrollAnswer(long status, const std::string& body) {
  if (status != 200) return FromStatus(status, body);
  DEVID_ASSIGN_OR_RETURN(Bytes der, DecodeEstBody(body));
  DEVID_ASSIGN_OR_RETURN(std::vector<crypto::Certificate> certs, crypto::ParseCertsOnlyPkcs7(der));
  if (certs.size() != 1) {
    return MakeError(ErrorCode::kIo, "the EST answer holds " + std::to_string(certs.size()) +
                                         " certificates instead of one");
  }
  return std::move(certs.front());
}

// hub:
Result<Bytes> CmsClient::GetBytes(const std::string& path) {
  DEVID_ASSIGN_OR_RETURN(Reply reply, Send("GET", options_.base_url + path, "", ""));
  if (reply.status != 200) return FromStatus(reply.status, reply.body);
  return Bytes(reply.body.begin(), reply.body.end());
}

}  // namespace devid::cms::client
