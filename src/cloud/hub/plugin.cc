// libdevid-mosquitto.so: the Mosquitto 2.0 plugin (API v5) of `devid hub`.
// It runs inside the broker, so it calls nothing that blocks (no CMS, no
// network): it reads the state folder `devid hub` keeps (plugin_opt_dir) at
// start and on every SIGHUP, and decides from that alone.
//
//   issuers.pem       the organization's issuing CAs (PEM certificates)
//   crl.pem           one CRL per issuing CA, signed by it
//   operators         "<certificate serial hex> <name>" lines
//   devices.disabled  one disabled device identifier a line
//   spool             written here: "<unix time> <device>" lines for registration
//
// A client's identity is the CN of its TLS client certificate, checked in
// MOSQ_EVT_BASIC_AUTH, which mosquitto 2.0.11 raises whether or not the client
// sent a user name, and again for every connected client after a SIGHUP. A
// client that fails a later ACL check for being revoked or disabled (its
// certificate expired, say) is disconnected on the next tick. A state file
// that cannot be read or parsed makes the plugin refuse everything until a
// reload finds it good again (fail closed).
//
// OpenSSL is used directly here, unlike the rest of devid: the module may link
// libcrypto only (it lives in the broker's process), not devid's libraries.
#include <fcntl.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "crypto/handles.h"

namespace {

using devid::crypto::UniquePtr;

constexpr size_t kMaxIdentity = 64;
constexpr size_t kMaxPemFile = size_t{64} << 20;
constexpr size_t kMaxListFile = size_t{16} << 20;
constexpr time_t kLastSeenInterval = 60;
constexpr size_t kMaxKickQueue = 1024;

// The CMS registry's identifier rule (letters, digits, '-', '_', '.', '@'; not
// only dots; at most 64): every identity the hub accepts can be registered,
// and none can carry MQTT's '/', '+' or '#' into a topic.
bool ValidIdentity(std::string_view s) {
  if (s.empty() || s.size() > kMaxIdentity) return false;
  if (s.find_first_not_of('.') == std::string_view::npos) return false;
  for (char c : s) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && c != '-' && c != '_' && c != '.' && c != '@') return false;
  }
  return true;
}

// Upper-case hex without leading zero bytes, as devid writes serials.
std::string NormalizeSerialHex(std::string_view hex) {
  std::string out;
  for (char c : hex) {
    if (c >= 'a' && c <= 'f') c = static_cast<char>(c - 'a' + 'A');
    out.push_back(c);
  }
  if (out.size() % 2 == 1) out.insert(out.begin(), '0');
  size_t zeros = 0;
  while (out.size() - zeros > 2 && out.compare(zeros, 2, "00") == 0) zeros += 2;
  return out.substr(zeros);
}

bool IsHex(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
  }
  return true;
}

std::string SerialHexOf(const ASN1_INTEGER* serial) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string hex;
  const unsigned char* data = ASN1_STRING_get0_data(serial);
  int length = ASN1_STRING_length(serial);
  for (int i = 0; i < length; ++i) {
    hex.push_back(kHex[data[i] >> 4]);
    hex.push_back(kHex[data[i] & 15]);
  }
  return NormalizeSerialHex(hex);
}

// The whole file, or nullopt when it is missing, unreadable or too large.
std::optional<std::string> ReadSmallFile(const std::string& path, size_t max_size,
                                         std::string* why) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    *why = path + ": cannot open";
    return std::nullopt;
  }
  std::string data;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<size_t>(st.st_size) > max_size) {
    ::close(fd);
    *why = path + ": not a regular file of at most " + std::to_string(max_size) + " bytes";
    return std::nullopt;
  }
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      *why = path + ": read error";
      return std::nullopt;
    }
    if (n == 0) break;
    data.append(buffer, static_cast<size_t>(n));
    if (data.size() > max_size) {
      ::close(fd);
      *why = path + ": larger than " + std::to_string(max_size) + " bytes";
      return std::nullopt;
    }
  }
  ::close(fd);
  return data;
}

size_t CountOccurrences(std::string_view text, std::string_view what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string_view::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

// Lines without their ending; empty lines and '#' comments dropped.
std::vector<std::string_view> ContentLines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    lines.push_back(line);
  }
  return lines;
}

// A memory BIO over the PEM file at `path`, read into `out_text`, which must
// outlive the BIO; null, with `why` set, when the file cannot be read.
UniquePtr<BIO> OpenPemFile(const std::string& path, std::string* out_text, std::string* why) {
  std::optional<std::string> text = ReadSmallFile(path, kMaxPemFile, why);
  if (!text) return nullptr;
  *out_text = std::move(*text);
  UniquePtr<BIO> bio(BIO_new_mem_buf(out_text->data(), static_cast<int>(out_text->size())));
  if (bio == nullptr) *why = "out of memory";
  return bio;
}

// What the state folder said at the last (re)load.
struct Policy {
  bool usable = false;
  std::string why;  // when not usable
  std::vector<UniquePtr<X509>> issuers;
  std::vector<bool> has_crl;
  std::unordered_set<std::string> revoked;                 // "<issuer index>:<serial hex>"
  std::unordered_map<std::string, std::string> operators;  // serial hex -> name
  std::unordered_set<std::string> disabled;
};

bool LoadIssuers(const std::string& dir, Policy& p) {
  std::string path = dir + "/issuers.pem";
  std::string text;
  UniquePtr<BIO> bio = OpenPemFile(path, &text, &p.why);
  if (bio == nullptr) return false;
  for (;;) {
    UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) break;
    p.issuers.push_back(std::move(cert));
  }
  ERR_clear_error();
  // Every PEM block must have parsed: a damaged one is not skipped silently.
  if (p.issuers.empty() || p.issuers.size() != CountOccurrences(text, "-----BEGIN ")) {
    p.why = path + ": not a list of PEM certificates";
    return false;
  }
  p.has_crl.assign(p.issuers.size(), false);
  return true;
}

bool LoadCrls(const std::string& dir, Policy& p) {
  std::string path = dir + "/crl.pem";
  std::string text;
  UniquePtr<BIO> bio = OpenPemFile(path, &text, &p.why);
  if (bio == nullptr) return false;
  size_t count = 0;
  for (;;) {
    UniquePtr<X509_CRL> crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
    if (crl == nullptr) break;
    ++count;
    size_t index = p.issuers.size();
    for (size_t i = 0; i < p.issuers.size(); ++i) {
      X509* ca = p.issuers[i].get();
      if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(ca)) == 0 &&
          X509_CRL_verify(crl.get(), X509_get0_pubkey(ca)) == 1) {
        index = i;
        break;
      }
    }
    if (index == p.issuers.size()) {
      ERR_clear_error();
      p.why = path + ": CRL " + std::to_string(count) + " is not signed by an issuing CA";
      return false;
    }
    p.has_crl[index] = true;
    STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
    int n = revoked == nullptr ? 0 : sk_X509_REVOKED_num(revoked);
    for (int i = 0; i < n; ++i) {
      const X509_REVOKED* entry = sk_X509_REVOKED_value(revoked, i);
      p.revoked.insert(std::to_string(index) + ":" +
                       SerialHexOf(X509_REVOKED_get0_serialNumber(entry)));
    }
  }
  ERR_clear_error();
  if (count != CountOccurrences(text, "-----BEGIN ")) {
    p.why = path + ": not a list of PEM CRLs";
    return false;
  }
  return true;
}

bool LoadOperators(const std::string& dir, Policy& p) {
  std::string path = dir + "/operators";
  auto text = ReadSmallFile(path, kMaxListFile, &p.why);
  if (!text) return false;
  for (std::string_view line : ContentLines(*text)) {
    size_t space = line.find(' ');
    std::string_view serial = line.substr(0, space);
    std::string_view name =
        space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
    if (!IsHex(serial) || serial.size() > 80 || !ValidIdentity(name)) {
      p.why = path + ": a line is not \"<serial hex> <name>\"";
      return false;
    }
    p.operators[NormalizeSerialHex(serial)] = std::string(name);
  }
  return true;
}

bool LoadDisabled(const std::string& dir, Policy& p) {
  std::string path = dir + "/devices.disabled";
  auto text = ReadSmallFile(path, kMaxListFile, &p.why);
  if (!text) return false;
  for (std::string_view line : ContentLines(*text)) {
    if (!ValidIdentity(line)) {
      p.why = path + ": a line is not a device identifier";
      return false;
    }
    p.disabled.insert(std::string(line));
  }
  return true;
}

std::unique_ptr<Policy> LoadPolicy(const std::string& dir) {
  auto p = std::make_unique<Policy>();
  if (LoadIssuers(dir, *p) && LoadCrls(dir, *p) && LoadOperators(dir, *p) &&
      LoadDisabled(dir, *p)) {
    p->usable = true;
    p->why.clear();
  } else {
    // Nothing of a half-read state is used.
    std::string why = std::move(p->why);
    p = std::make_unique<Policy>();
    p->why = std::move(why);
  }
  return p;
}

struct Identity {
  std::string name;
  bool is_operator = false;
};

enum class Refusal { kNone, kNoIdentity, kRevoked, kDisabled, kUnusable };

struct PluginState {
  mosquitto_plugin_id_t* id = nullptr;
  std::string dir;
  std::unique_ptr<Policy> policy;
  std::unordered_map<std::string, time_t> spooled;  // device -> last spool line
  std::vector<std::string> to_kick;                 // client ids, kicked on the next tick
};

// The single CN of the certificate, as UTF-8; nullopt when there is not exactly one.
std::optional<std::string> CommonName(X509* cert) {
  X509_NAME* subject = X509_get_subject_name(cert);
  int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (at < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, at) >= 0) return std::nullopt;
  X509_NAME_ENTRY* entry = X509_NAME_get_entry(subject, at);
  unsigned char* raw = nullptr;
  int length = ASN1_STRING_to_UTF8(&raw, X509_NAME_ENTRY_get_data(entry));
  if (length < 0) {
    ERR_clear_error();
    return std::nullopt;
  }
  UniquePtr<unsigned char> utf8(raw);
  return std::string(reinterpret_cast<const char*>(utf8.get()), static_cast<size_t>(length));
}

// Who the client is by its certificate, under the current policy. The TLS
// handshake has verified the certificate's signature and validity against
// mosquitto's cafile; here its issuer must still be one of the issuing CAs
// (by name and key identifier), and it must be neither revoked nor disabled.
Refusal Identify(const PluginState& s, struct mosquitto* client, Identity* out, std::string* why) {
  const Policy& p = *s.policy;
  if (!p.usable) {
    *why = "the hub state is unusable (" + p.why + ")";
    return Refusal::kUnusable;
  }
  UniquePtr<X509> cert(static_cast<X509*>(mosquitto_client_certificate(client)));
  if (cert == nullptr) {
    *why = "no client certificate";
    return Refusal::kNoIdentity;
  }
  std::optional<std::string> cn = CommonName(cert.get());
  if (!cn || !ValidIdentity(*cn)) {
    *why = "the certificate's CN is missing, repeated or not a valid identifier";
    return Refusal::kNoIdentity;
  }
  size_t index = p.issuers.size();
  for (size_t i = 0; i < p.issuers.size(); ++i) {
    if (X509_check_issued(p.issuers[i].get(), cert.get()) == X509_V_OK) {
      index = i;
      break;
    }
  }
  if (index == p.issuers.size()) {
    ERR_clear_error();
    *why = "'" + *cn + "' is not certified by an issuing CA of the organization";
    return Refusal::kNoIdentity;
  }
  if (!p.has_crl[index]) {
    *why = "no CRL for the issuer of '" + *cn + "'";
    return Refusal::kUnusable;
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0) {
    *why = "the certificate of '" + *cn + "' has expired";
    return Refusal::kRevoked;
  }
  std::string serial = SerialHexOf(X509_get0_serialNumber(cert.get()));
  if (p.revoked.count(std::to_string(index) + ":" + serial) != 0) {
    *why = "the certificate of '" + *cn + "' (serial " + serial + ") is revoked";
    return Refusal::kRevoked;
  }
  if (p.disabled.count(*cn) != 0) {
    *why = "'" + *cn + "' is disabled";
    return Refusal::kDisabled;
  }
  auto op = p.operators.find(serial);
  out->is_operator = op != p.operators.end() && op->second == *cn;
  // An operator's name belongs to the operator: a device certificate with
  // that CN could otherwise take over the operator's client id.
  if (!out->is_operator) {
    for (const auto& [op_serial, op_name] : p.operators) {
      if (op_name == *cn) {
        *why = "'" + *cn + "' is an operator's name, and this is not the operator's certificate";
        return Refusal::kRevoked;
      }
    }
  }
  out->name = std::move(*cn);
  return Refusal::kNone;
}

// Topic levels; "a//b" has an empty middle level.
std::vector<std::string_view> Levels(std::string_view topic) {
  std::vector<std::string_view> levels;
  size_t start = 0;
  for (;;) {
    size_t slash = topic.find('/', start);
    levels.push_back(topic.substr(start, slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return levels;
}

// A device <id> writes devices/<id>/telemetry and reads devices/<id>/commands/#;
// an operator reads devices/# and writes devices/<id>/commands/.... A subscription filter is
// allowed when every topic it can match is allowed: its fixed leading levels decide, and they must
// be literal (a '+' or '#' there is not the device's own name).
bool Allowed(const Identity& who, int access, std::string_view topic) {
  std::vector<std::string_view> levels = Levels(topic);
  bool devices_root = levels.size() >= 2 && levels[0] == "devices";
  bool own = levels.size() >= 3 && levels[0] == "devices" && levels[1] == who.name;
  switch (access) {
    case MOSQ_ACL_UNSUBSCRIBE:
      return true;
    case MOSQ_ACL_WRITE:
      // Operators send commands to one device at a time (a published topic
      // never holds wildcards: the broker refuses those before asking).
      if (who.is_operator) {
        return levels.size() >= 3 && levels[0] == "devices" && !levels[1].empty() &&
               levels[2] == "commands";
      }
      return own && levels.size() == 3 && levels[2] == "telemetry";
    case MOSQ_ACL_READ:
    case MOSQ_ACL_SUBSCRIBE:
      if (who.is_operator) return devices_root;
      return own && levels[2] == "commands";
    default:
      return false;
  }
}

void Spool(PluginState& s, const std::string& device) {
  time_t now = std::time(nullptr);
  auto seen = s.spooled.find(device);
  if (seen != s.spooled.end() && now - seen->second < kLastSeenInterval) return;
  std::string line = std::to_string(static_cast<long long>(now)) + " " + device + "\n";
  std::string path = s.dir + "/spool";
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    mosquitto_log_printf(MOSQ_LOG_WARNING, "devid: cannot open %s for registration", path.c_str());
    return;
  }
  // One write with O_APPEND: the hub never sees half a line from two writers.
  ssize_t n = ::write(fd, line.data(), line.size());
  ::close(fd);
  if (n == static_cast<ssize_t>(line.size())) s.spooled[device] = now;
}

void QueueKick(PluginState& s, struct mosquitto* client) {
  const char* id = mosquitto_client_id(client);
  if (id == nullptr || s.to_kick.size() >= kMaxKickQueue) return;
  s.to_kick.emplace_back(id);
}

int OnBasicAuth(int, void* event_data, void* userdata) {
  auto& s = *static_cast<PluginState*>(userdata);
  auto* ev = static_cast<mosquitto_evt_basic_auth*>(event_data);
  try {
    Identity who;
    std::string why;
    if (Identify(s, ev->client, &who, &why) != Refusal::kNone) {
      mosquitto_log_printf(MOSQ_LOG_NOTICE, "devid: refused a client from %s: %s",
                           mosquitto_client_address(ev->client), why.c_str());
      return MOSQ_ERR_AUTH;
    }
    if (ev->username != nullptr && ev->username[0] != '\0' && who.name != ev->username) {
      mosquitto_log_printf(MOSQ_LOG_NOTICE,
                           "devid: refused '%s': the MQTT user name differs from the certificate",
                           who.name.c_str());
      return MOSQ_ERR_AUTH;
    }
    // The client id names the session: one device must not take over another's.
    const char* client_id = mosquitto_client_id(ev->client);
    std::string_view id = client_id == nullptr ? std::string_view() : std::string_view(client_id);
    if (id != who.name &&
        !(id.size() > who.name.size() && id.starts_with(who.name) && id[who.name.size()] == '/')) {
      mosquitto_log_printf(MOSQ_LOG_NOTICE,
                           "devid: refused '%s': the client id must be '%s' or start with '%s/'",
                           who.name.c_str(), who.name.c_str(), who.name.c_str());
      return MOSQ_ERR_AUTH;
    }
    if (mosquitto_set_username(ev->client, who.name.c_str()) != MOSQ_ERR_SUCCESS) {
      return MOSQ_ERR_AUTH;
    }
    if (!who.is_operator) Spool(s, who.name);
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "devid: accepted %s '%s'",
                         who.is_operator ? "operator" : "device", who.name.c_str());
    return MOSQ_ERR_SUCCESS;
  } catch (...) {
    return MOSQ_ERR_AUTH;
  }
}

int OnAclCheck(int, void* event_data, void* userdata) {
  auto& s = *static_cast<PluginState*>(userdata);
  auto* ev = static_cast<mosquitto_evt_acl_check*>(event_data);
  try {
    if (ev->topic == nullptr) return MOSQ_ERR_ACL_DENIED;
    Identity who;
    std::string why;
    Refusal refusal = Identify(s, ev->client, &who, &why);
    if (refusal != Refusal::kNone) {
      // Revoked or disabled since it connected: it goes, but not from inside
      // this check (the broker may be walking its subscription tree).
      if (refusal == Refusal::kRevoked || refusal == Refusal::kDisabled) QueueKick(s, ev->client);
      return MOSQ_ERR_ACL_DENIED;
    }
    return Allowed(who, ev->access, ev->topic) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
  } catch (...) {
    return MOSQ_ERR_ACL_DENIED;
  }
}

int OnTick(int, void*, void* userdata) {
  auto& s = *static_cast<PluginState*>(userdata);
  std::vector<std::string> kick = std::move(s.to_kick);
  s.to_kick.clear();
  for (const std::string& id : kick) {
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "devid: disconnecting client '%s'", id.c_str());
    mosquitto_kick_client_by_clientid(id.c_str(), false);
  }
  return MOSQ_ERR_SUCCESS;
}

void Reload(PluginState& s) {
  try {
    s.policy = LoadPolicy(s.dir);
  } catch (...) {
    s.policy = std::make_unique<Policy>();
    s.policy->why = "out of memory";
  }
  if (s.policy->usable) {
    mosquitto_log_printf(MOSQ_LOG_NOTICE,
                         "devid: state loaded: %zu issuing CA(s), %zu revoked, %zu operator(s), "
                         "%zu disabled device(s)",
                         s.policy->issuers.size(), s.policy->revoked.size(),
                         s.policy->operators.size(), s.policy->disabled.size());
  } else {
    mosquitto_log_printf(MOSQ_LOG_ERR, "devid: refusing every client: %s", s.policy->why.c_str());
  }
}

int OnReload(int, void*, void* userdata) {
  Reload(*static_cast<PluginState*>(userdata));
  return MOSQ_ERR_SUCCESS;
}

struct Registration {
  int event;
  MOSQ_FUNC_generic_callback callback;
};
constexpr Registration kCallbacks[] = {
    {MOSQ_EVT_BASIC_AUTH, OnBasicAuth},
    {MOSQ_EVT_ACL_CHECK, OnAclCheck},
    {MOSQ_EVT_RELOAD, OnReload},
    {MOSQ_EVT_TICK, OnTick},
};

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int mosquitto_plugin_version(int supported_version_count,
                                                                    const int* supported_versions) {
  for (int i = 0; i < supported_version_count; ++i) {
    if (supported_versions[i] == 5) return 5;
  }
  return -1;
}

__attribute__((visibility("default"))) int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier,
                                                                 void** userdata,
                                                                 struct mosquitto_opt* options,
                                                                 int option_count) {
  PluginState* s = nullptr;
  try {
    s = new PluginState();
    s->id = identifier;
    for (int i = 0; i < option_count; ++i) {
      if (options[i].key != nullptr && options[i].value != nullptr &&
          std::string_view(options[i].key) == "dir") {
        s->dir = options[i].value;
      }
    }
  } catch (...) {
    delete s;
    return MOSQ_ERR_NOMEM;
  }
  if (s->dir.empty()) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "devid: plugin_opt_dir is not set");
    delete s;
    return MOSQ_ERR_INVAL;
  }
  Reload(*s);
  for (const Registration& r : kCallbacks) {
    if (mosquitto_callback_register(identifier, r.event, r.callback, nullptr, s) !=
        MOSQ_ERR_SUCCESS) {
      for (const Registration& u : kCallbacks) {
        mosquitto_callback_unregister(identifier, u.event, u.callback, nullptr);
      }
      delete s;
      return MOSQ_ERR_UNKNOWN;
    }
  }
  *userdata = s;
  return MOSQ_ERR_SUCCESS;
}

__attribute__((visibility("default"))) int mosquitto_plugin_cleanup(void* userdata,
                                                                    struct mosquitto_opt*, int) {
  auto* s = static_cast<PluginState*>(userdata);
  if (s != nullptr) {
    for (const Registration& r : kCallbacks) {
      mosquitto_callback_unregister(s->id, r.event, r.callback, nullptr);
    }
    delete s;
  }
  return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
