#include "cloud/hub/hub.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "core/file.h"
#include "core/secret.h"
#include "core/time.h"
#include "crypto/certificate.h"
#include "crypto/crl.h"
#include "crypto/csr.h"
#include "crypto/key.h"
#include "crypto/name.h"
#include "crypto/verify.h"

namespace devid::cloud::hub {

namespace {

using json = nlohmann::json;
using cms::client::CmsClient;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kServerSubject = "CN=devid-hub";
constexpr const char* kPluginName = "libdevid-mosquitto.so";
constexpr auto kReadyTimeout = std::chrono::seconds(15);
constexpr auto kStopTimeout = std::chrono::seconds(10);
constexpr off_t kSpoolRotateBytes = 1 << 20;
constexpr size_t kSpoolReadLimit = 4 << 20;
constexpr size_t kMaxPending = 10000;
constexpr size_t kReportsPerRefresh = 200;
constexpr size_t kMaxPemFile = size_t{1} << 20;
constexpr size_t kMaxListFile = size_t{16} << 20;
constexpr size_t kLogWindow = size_t{64} << 10;

std::string OrgPath(const std::string& org) { return "/orgs/" + CmsClient::Segment(org); }

Error Errno(const std::string& what) {
  return MakeError(ErrorCode::kIo, what + ": " + std::strerror(errno));
}

Error BadAnswer(const std::string& what) {
  return MakeError(ErrorCode::kIo, "the CMS answered " + what + " in an unexpected form");
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

// --- the organization, as the CMS describes it ---------------------------------

struct CaInfo {
  std::string name;
  bool root = false;
  bool disabled = false;
  std::string serial;
  std::string subject;
  std::string certificate_pem;
};

Result<std::vector<CaInfo>> ListCas(CmsClient& cms, const std::string& org) {
  DEVID_ASSIGN_OR_RETURN(json answer, cms.Get(OrgPath(org) + "/cas"));
  std::vector<CaInfo> out;
  try {
    for (const json& one : answer.at("cas")) {
      CaInfo ca;
      ca.name = one.at("name").get<std::string>();
      ca.root = one.value("kind", std::string()) == "root";
      ca.disabled = one.value("disabled", false);
      ca.serial = one.value("serial", std::string());
      ca.subject = one.value("subject", std::string());
      ca.certificate_pem = one.value("certificate", std::string());
      out.push_back(std::move(ca));
    }
  } catch (const json::exception&) {
    return BadAnswer("the list of CAs");
  }
  return out;
}

// The CAs that issue devices' certificates: enabled, not roots; by name.
std::vector<const CaInfo*> IssuingCas(const std::vector<CaInfo>& cas) {
  std::vector<const CaInfo*> out;
  for (const CaInfo& ca : cas) {
    if (!ca.root && !ca.disabled) out.push_back(&ca);
  }
  std::sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->name < b->name; });
  return out;
}

Result<CaInfo> ChooseCa(const std::vector<CaInfo>& cas, const std::string& org,
                        const std::string& wanted) {
  if (!wanted.empty()) {
    for (const CaInfo& ca : cas) {
      if (ca.name != wanted) continue;
      if (ca.root) {
        // Devices check the hub with their issuing CA's key (seed fig. 3 step 4).
        return MakeError(
            ErrorCode::kInvalidInput,
            "CA '" + wanted + "' is a root: the hub needs the issuing CA of its devices");
      }
      if (ca.disabled) return MakeError(ErrorCode::kPolicy, "CA '" + wanted + "' is disabled");
      return ca;
    }
    return MakeError(ErrorCode::kNotFound,
                     "organization '" + org + "' has no CA named '" + wanted + "'");
  }
  std::vector<const CaInfo*> issuing = IssuingCas(cas);
  if (issuing.size() == 1) return *issuing.front();
  if (issuing.empty()) {
    return MakeError(ErrorCode::kNotFound, "organization '" + org + "' has no enabled issuing CA");
  }
  std::string names;
  for (const CaInfo* ca : issuing) names += (names.empty() ? "" : ", ") + ca->name;
  return MakeError(ErrorCode::kInvalidInput, "organization '" + org + "' has " +
                                                 std::to_string(issuing.size()) + " issuing CAs (" +
                                                 names + "): choose with --ca");
}

// The issuing CAs by name and certificate: when this changes, mosquitto's
// cafile must change, which 2.0.11 reads only at start.
std::string TrustSignature(const std::vector<CaInfo>& cas) {
  std::string s;
  for (const CaInfo* ca : IssuingCas(cas)) s += ca->name + "=" + ca->serial + ";";
  return s;
}

struct Trust {
  std::string signature;
  std::vector<std::string> issuers;  // names
  std::string ca_pem;                // their chains, each certificate once
  std::string issuers_pem;           // the issuing CAs' own certificates
};

Result<Trust> FetchTrust(CmsClient& cms, const std::string& org, const std::vector<CaInfo>& cas) {
  Trust t;
  t.signature = TrustSignature(cas);
  std::set<std::string> seen;
  for (const CaInfo* ca : IssuingCas(cas)) {
    t.issuers.push_back(ca->name);
    auto own = crypto::Certificate::Parse(AsBytes(ca->certificate_pem));
    if (!own.ok()) return own.error().Context("the certificate of CA '" + ca->name + "'");
    DEVID_ASSIGN_OR_RETURN(std::string own_pem, own->ToPem());
    t.issuers_pem += own_pem;
    DEVID_ASSIGN_OR_RETURN(std::string text, cms.CaChainPem(org, ca->name));
    auto chain = crypto::Certificate::ParsePemChain(AsBytes(text));
    if (!chain.ok()) return chain.error().Context("the chain of CA '" + ca->name + "'");
    for (const crypto::Certificate& c : *chain) {
      DEVID_ASSIGN_OR_RETURN(std::string fingerprint, c.FingerprintSha256());
      if (!seen.insert(fingerprint).second) continue;
      DEVID_ASSIGN_OR_RETURN(std::string pem, c.ToPem());
      t.ca_pem += pem;
    }
  }
  if (t.issuers.empty()) {
    return MakeError(ErrorCode::kNotFound, "organization '" + org + "' has no enabled issuing CA");
  }
  return t;
}

struct CrlSet {
  // Entries per CA. devid's CRLs are full and revocations permanent (crl.h):
  // the lists only grow, so a count that moved is a list that changed.
  std::map<std::string, size_t> revoked;
  int64_t next_update = std::numeric_limits<int64_t>::max();  // the earliest
  std::string pem;
};

Result<CrlSet> FetchCrls(CmsClient& cms, const std::string& org,
                         const std::vector<std::string>& issuers) {
  CrlSet out;
  for (const std::string& name : issuers) {
    DEVID_ASSIGN_OR_RETURN(Bytes der, cms.GetBytes("/crl/" + CmsClient::Segment(org) + "/" +
                                                   CmsClient::Segment(name) + ".crl"));
    auto crl = crypto::Crl::Parse(der);
    if (!crl.ok()) return crl.error().Context("the CRL of CA '" + name + "'");
    DEVID_ASSIGN_OR_RETURN(std::string pem, crl->ToPem());
    out.pem += pem;
    out.revoked[name] = crl->revoked_count();
    out.next_update = std::min(out.next_update, crl->next_update());
  }
  return out;
}

Result<std::set<std::string>> FetchDisabled(CmsClient& cms, const std::string& org) {
  DEVID_ASSIGN_OR_RETURN(json answer, cms.Get(OrgPath(org) + "/devices"));
  std::set<std::string> out;
  try {
    for (const json& d : answer.at("devices")) {
      std::string id = d.at("identifier").get<std::string>();
      // A name the hub could never accept needs no entry (and would be refused by the plugin).
      if (d.value("status", std::string()) == "disabled" && ValidIdentity(id)) out.insert(id);
    }
  } catch (const json::exception&) {
    return BadAnswer("the list of devices");
  }
  return out;
}

std::string Lines(const std::set<std::string>& items) {
  std::string text;
  for (const std::string& item : items) text += item + "\n";
  return text;
}

// --- files ------------------------------------------------------------------------

// Creates the folder 0700, or checks that an existing one is ours and closed to others.
Status PrepareStateDir(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) return MakeError(ErrorCode::kIo, "cannot create " + dir + ": " + ec.message());
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
    if (ec) return MakeError(ErrorCode::kIo, "cannot make " + dir + " private: " + ec.message());
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kIo, dir + " is not a directory");
  }
  if (st.st_uid != ::geteuid()) {
    return MakeError(ErrorCode::kIo, dir + " is not owned by the user running devid");
  }
  if ((st.st_mode & 077) != 0) {
    return MakeError(ErrorCode::kIo, dir + " is open to group or others; chmod 700 it first");
  }
  return {};
}

struct FileStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};

std::optional<FileStamp> Stamp(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  return FileStamp{st.st_dev, st.st_ino, st.st_size,
                   static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

// The last lines of a text file, for error messages.
std::string Tail(const std::string& path, size_t max_bytes = 1500) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  struct stat st {};
  std::string text;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) {
    off_t from = std::max<off_t>(0, st.st_size - static_cast<off_t>(max_bytes));
    text.resize(static_cast<size_t>(st.st_size - from));
    ssize_t n = ::pread(fd, text.data(), text.size(), from);
    text.resize(n > 0 ? static_cast<size_t>(n) : 0);
    size_t nl = text.find('\n');
    if (from > 0 && nl != std::string::npos) text = text.substr(nl + 1);
  }
  ::close(fd);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

Status CheckConfigValue(const std::string& value, const std::string& what) {
  if (value.find_first_of("\r\n") != std::string::npos) {
    return MakeError(ErrorCode::kInvalidInput, what + " must not contain a line break");
  }
  return {};
}

std::string CurrentUserName() {
  std::vector<char> buffer(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwuid_r(::geteuid(), &pw, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) {
    return {};
  }
  return pw.pw_name;
}

// --- the listening port -------------------------------------------------------------

struct AddrInfoFree {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};

// Mosquitto needs a real port: one the kernel hands out now (a small race with
// other programs, acceptable for tests and development).
Result<uint16_t> FreePort(const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* raw = nullptr;
  int rc = getaddrinfo(host.c_str(), "0", &hints, &raw);
  if (rc != 0) {
    return MakeError(ErrorCode::kInvalidInput, "--listen: " + host + ": " + gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, AddrInfoFree> list(raw);
  int fd = ::socket(list->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  if (::bind(fd, list->ai_addr, list->ai_addrlen) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
    Error e = Errno("binding " + host + ":0");
    ::close(fd);
    return e;
  }
  ::close(fd);
  if (bound.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

// --- the hub's server certificate ------------------------------------------------------

struct ServerCertificate {
  std::string serial;
  int64_t not_before = 0;
  int64_t not_after = 0;
};

std::vector<crypto::GeneralName> ServerNames(const std::string& host) {
  using Kind = crypto::GeneralName::Kind;
  std::vector<crypto::GeneralName> names = {{Kind::kIp, "127.0.0.1", {}},
                                            {Kind::kDns, "localhost", {}}};
  if (host.empty() || host == "0.0.0.0" || host == "::" || host == "127.0.0.1" ||
      host == "localhost") {
    return names;
  }
  names.push_back({IsIpLiteral(host) ? Kind::kIp : Kind::kDns, host, {}});
  return names;
}

struct Paths {
  std::string dir;
  std::string Of(const std::string& name) const { return dir + "/" + name; }
};

// Whether the key and certificate in the folder can serve on: same issuing
// CA, the names wanted, more than a third of its life left, not revoked.
Result<ServerCertificate> ReusableServerCertificate(CmsClient& cms, const std::string& org,
                                                    const Paths& paths, const CaInfo& ica,
                                                    const std::vector<crypto::Certificate>& chain,
                                                    const std::vector<crypto::GeneralName>& names) {
  DEVID_ASSIGN_OR_RETURN(Bytes key_pem, ReadFile(paths.Of("server-key.pem"), kMaxPemFile));
  auto key = crypto::PrivateKey::FromPem(AsString(key_pem), nullptr);
  SecureZero(key_pem.data(), key_pem.size());
  if (!key.ok()) return key.error();
  DEVID_ASSIGN_OR_RETURN(Bytes cert_pem, ReadFile(paths.Of("server-cert.pem"), kMaxPemFile));
  DEVID_ASSIGN_OR_RETURN(std::vector<crypto::Certificate> certs,
                         crypto::Certificate::ParsePemChain(cert_pem));
  const crypto::Certificate& cert = certs.front();
  DEVID_ASSIGN_OR_RETURN(crypto::PublicKey cert_key, cert.public_key());
  DEVID_ASSIGN_OR_RETURN(Bytes cert_spki, cert_key.ToDer());
  DEVID_ASSIGN_OR_RETURN(Bytes key_spki, key->PublicKeyDer());
  if (cert_spki != key_spki)
    return MakeError(ErrorCode::kInvalidInput, "key and certificate differ");
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName issuer, cert.issuer());
  if (issuer.ToString() != ica.subject || chain.empty()) {
    return MakeError(ErrorCode::kInvalidInput, "it is not from CA '" + ica.name + "'");
  }
  std::vector<crypto::Certificate> intermediates(chain.begin(), chain.end() - 1);
  crypto::VerifyOptions verify;
  verify.strict = false;
  DEVID_TRY(crypto::VerifyChain(cert, intermediates, {chain.back()}, {}, verify));
  DEVID_ASSIGN_OR_RETURN(std::vector<crypto::GeneralName> sans, cert.SubjectAltNames());
  for (const crypto::GeneralName& n : names) {
    if (std::find(sans.begin(), sans.end(), n) == sans.end()) {
      return MakeError(ErrorCode::kInvalidInput, "it does not name " + n.ToString());
    }
  }
  int64_t life = cert.not_after() - cert.not_before();
  if (cert.not_after() - NowUnix() <= life / 3) {
    return MakeError(ErrorCode::kInvalidInput, "less than a third of its validity is left");
  }
  DEVID_ASSIGN_OR_RETURN(
      json record, cms.Get(OrgPath(org) + "/certificates/" + CmsClient::Segment(cert.SerialHex())));
  if (!record.is_object() || record.value("status", std::string()) != "valid") {
    return MakeError(ErrorCode::kPolicy, "the CMS does not list it as valid");
  }
  return ServerCertificate{cert.SerialHex(), cert.not_before(), cert.not_after()};
}

// A new key (here, 0600) and its certificate from the CMS, written with the
// issuing CA after it: devices' chips know that CA's key, generic clients may need the CA.
Result<ServerCertificate> IssueServerCertificate(CmsClient& cms, const std::string& org,
                                                 const Paths& paths, const CaInfo& ica,
                                                 const std::vector<crypto::Certificate>& chain,
                                                 const std::vector<crypto::GeneralName>& names) {
  DEVID_ASSIGN_OR_RETURN(crypto::PrivateKey key,
                         crypto::PrivateKey::Generate(crypto::KeyType::kEcP256));
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject,
                         crypto::DistinguishedName::Parse(kServerSubject));
  DEVID_ASSIGN_OR_RETURN(crypto::CertificateRequest csr,
                         crypto::MakeCertificateRequest(key, subject, names));
  DEVID_ASSIGN_OR_RETURN(std::string csr_pem, csr.ToPem());
  DEVID_ASSIGN_OR_RETURN(json answer, cms.IssueCertificate(org, ica.name, "server", csr_pem));
  if (!answer.is_object() || !answer.contains("certificate") ||
      !answer["certificate"].is_string()) {
    return BadAnswer("the hub's certificate");
  }
  auto cert = crypto::Certificate::Parse(AsBytes(answer["certificate"].get<std::string>()));
  if (!cert.ok()) return cert.error().Context("the hub's certificate from the CMS");
  DEVID_ASSIGN_OR_RETURN(std::string key_pem, key.ToPkcs8Pem(nullptr));
  Status written = WriteFileAtomic(paths.Of("server-key.pem"), AsBytes(key_pem), 0600);
  SecureZero(key_pem.data(), key_pem.size());
  if (!written.ok()) return written.error();
  DEVID_ASSIGN_OR_RETURN(std::string cert_text, cert->ToPem());
  if (!chain.empty()) {
    DEVID_ASSIGN_OR_RETURN(std::string ca_text, chain.front().ToPem());
    cert_text += ca_text;
  }
  DEVID_TRY(WriteFileAtomic(paths.Of("server-cert.pem"), AsBytes(cert_text), 0600));
  return ServerCertificate{cert->SerialHex(), cert->not_before(), cert->not_after()};
}

// --- the broker process ---------------------------------------------------------------

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped (status " + std::to_string(status) + ")";
}

class Broker {
 public:
  Broker(std::string program, const Paths& paths)
      : program_(std::move(program)),
        conf_(paths.Of("mosquitto.conf")),
        out_(paths.Of("mosquitto.out")),
        log_(paths.Of("mosquitto.log")),
        openssl_conf_(paths.Of("openssl.cnf")) {}
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;
  ~Broker() { Stop(); }

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_; }

  // Starts mosquitto and waits until its log says it is running.
  Status Start() {
    off_t log_offset = 0;
    if (auto st = Stamp(log_)) log_offset = st->size;
    int out = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) return Errno("opening " + out_);
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0) {
      ::close(out);
      return Errno("opening /dev/null");
    }
    std::string arg_c = "-c";
    std::vector<char*> argv = {program_.data(), arg_c.data(), conf_.data(), nullptr};
    // The hub's OpenSSL settings (BrokerOpenSslConf) in place of the system's.
    std::vector<std::string> env_text = {"OPENSSL_CONF=" + openssl_conf_};
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string_view(*e).substr(0, 13) != "OPENSSL_CONF=") env_text.emplace_back(*e);
    }
    std::vector<char*> envp;
    for (std::string& e : env_text) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
      // The child: only async-signal-safe calls until exec.
      ::setpgid(0, 0);  // a terminal's ^C reaches the hub, which stops the broker in order
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // and a hub killed outright takes it along
      if (::getppid() != parent) ::_exit(1);
      ::dup2(null, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE}) ::sigaction(sig, &dfl, nullptr);
      ::execve(program_.c_str(), argv.data(), envp.data());
      ::_exit(127);
    }
    Error fork_error = Errno("starting " + program_);
    ::close(out);
    ::close(null);
    if (pid < 0) return fork_error;
    pid_ = pid;
    auto deadline = Clock::now() + kReadyTimeout;
    while (Clock::now() < deadline) {
      if (auto how = Reap()) {
        std::string tail = Tail(out_);
        if (tail.empty()) tail = Tail(log_);
        return MakeError(ErrorCode::kIo,
                         program_ + " " + *how + " at start" + (tail.empty() ? "" : ":\n" + tail));
      }
      if (Running(log_offset)) return {};
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Stop();
    return MakeError(ErrorCode::kIo, program_ + " did not report running within " +
                                         std::to_string(kReadyTimeout.count()) + " s; see " + log_);
  }

  // How it ended, once it has; nullopt while it runs (or was never started).
  std::optional<std::string> Reap() {
    if (pid_ <= 0) return std::nullopt;
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR)) return std::nullopt;
    pid_ = -1;
    return r < 0 ? std::string("is gone") : DescribeExit(status);
  }

  void Hangup() const {
    if (pid_ > 0) ::kill(pid_, SIGHUP);
  }

  // SIGTERM, then SIGKILL if it lingers.
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    auto deadline = Clock::now() + kStopTimeout;
    while (Clock::now() < deadline) {
      if (Reap()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  bool Running(off_t offset) const {
    int fd = ::open(log_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    std::string text(kLogWindow, '\0');
    ssize_t n = ::pread(fd, text.data(), text.size(), offset);
    ::close(fd);
    if (n <= 0) return false;
    text.resize(static_cast<size_t>(n));
    // "mosquitto version 2.0.11 running", logged once the listeners are open.
    size_t at = text.find("mosquitto version ");
    return at != std::string::npos && text.find(" running", at) != std::string::npos;
  }

  std::string program_;
  std::string conf_;
  std::string out_;
  std::string log_;
  std::string openssl_conf_;
  pid_t pid_ = -1;
};

// --- the plugin's spool ------------------------------------------------------------------

// Reads the lines the plugin appends. A file past 1 MiB is renamed aside and
// drained on the next read, by which time a write racing the rename has landed.
class SpoolReader {
 public:
  explicit SpoolReader(std::string path) : path_(std::move(path)), old_(path_ + ".old") {}

  void ResumeLeftover() {
    draining_ = Stamp(old_).has_value();
    old_offset_ = 0;
  }

  std::vector<std::string> ReadNew() {
    std::vector<std::string> lines;
    if (draining_) {
      off_t offset = old_offset_;
      ReadLines(old_, offset, std::numeric_limits<size_t>::max(), lines);
      ::unlink(old_.c_str());
      draining_ = false;
    }
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) return lines;
    if (st.st_ino != ino_ || st.st_size < offset_) {
      ino_ = st.st_ino;
      offset_ = 0;
    }
    ReadLines(path_, offset_, kSpoolReadLimit, lines);
    if (offset_ >= kSpoolRotateBytes && ::rename(path_.c_str(), old_.c_str()) == 0) {
      draining_ = true;
      old_offset_ = offset_;
      offset_ = 0;
      ino_ = 0;
    }
    return lines;
  }

 private:
  // Complete lines from `offset` on; `offset` moves past them.
  static void ReadLines(const std::string& path, off_t& offset, size_t limit,
                        std::vector<std::string>& out) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return;
    std::string data;
    char buffer[65536];
    while (data.size() < limit) {
      ssize_t n = ::pread(fd, buffer, sizeof buffer, offset + static_cast<off_t>(data.size()));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      data.append(buffer, static_cast<size_t>(n));
    }
    ::close(fd);
    size_t end = data.rfind('\n');
    if (end == std::string::npos) return;
    offset += static_cast<off_t>(end + 1);
    size_t start = 0;
    while (start <= end) {
      size_t nl = data.find('\n', start);
      out.push_back(data.substr(start, nl - start));
      start = nl + 1;
    }
  }

  std::string path_;
  std::string old_;
  ino_t ino_ = 0;
  off_t offset_ = 0;
  bool draining_ = false;
  off_t old_offset_ = 0;
};

// "<unix time> <device>" → the device, if the line is well formed.
std::optional<std::string> SpooledDevice(std::string_view line) {
  size_t space = line.find(' ');
  if (space == 0 || space == std::string_view::npos) return std::nullopt;
  for (char c : line.substr(0, space)) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  std::string_view id = line.substr(space + 1);
  if (!ValidIdentity(id)) return std::nullopt;
  return std::string(id);
}

// --- the hub ------------------------------------------------------------------------------

// Everything fetched from the CMS that the broker's files are made of.
struct Config {
  CaInfo ica;
  std::vector<crypto::Certificate> ica_chain;  // the issuing CA first
  Trust trust;
  CrlSet crls;
  std::set<std::string> disabled;
};

class Hub {
 public:
  Hub(CmsClient& cms, HubOptions options, const LineSink& ready, const LineSink& log)
      : cms_(cms),
        options_(std::move(options)),
        paths_{options_.dir},
        ready_(ready),
        log_(log),
        broker_(options_.mosquitto_path, paths_),
        spool_(paths_.Of("spool")) {}
  ~Hub() {
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  Status Run(const sigset_t& signals) {
    DEVID_TRY(Prepare());
    DEVID_ASSIGN_OR_RETURN(std::vector<CaInfo> cas, ListCas(cms_, options_.org));
    DEVID_ASSIGN_OR_RETURN(Config config, Fetch(cas));
    DEVID_TRY(EnsureServerCertificate(config, false));
    DEVID_TRY(Apply(std::move(config)));
    DEVID_TRY(broker_.Start());
    std::string host = options_.listen_host.find(':') != std::string::npos
                           ? "[" + options_.listen_host + "]"
                           : options_.listen_host;
    ready_("hub ready on " + host + ":" + std::to_string(port_) + " (mosquitto pid " +
           std::to_string(broker_.pid()) + ")");

    auto refresh = std::chrono::milliseconds(options_.refresh_ms);
    auto next = Clock::now() + refresh;
    for (;;) {
      if (fatal_) {
        broker_.Stop();
        return *fatal_;
      }
      pid_t pid = broker_.pid();
      if (auto how = broker_.Reap()) {
        return MakeError(ErrorCode::kIo, "mosquitto (pid " + std::to_string(pid) + ") " + *how +
                                             "; its log: " + broker_.log_path());
      }
      auto wait = std::max(Clock::duration::zero(), next - Clock::now());
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
      timespec timeout{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
      int sig = ::sigtimedwait(&signals, nullptr, &timeout);
      if (sig == SIGTERM || sig == SIGINT) {
        log_(std::string("stopping on ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
        broker_.Stop();
        return {};
      }
      if (sig == SIGHUP) next = Clock::now();
      if (Clock::now() >= next) {
        Refresh();
        next = Clock::now() + refresh;
      }
    }
  }

 private:
  Status Prepare() {
    DEVID_TRY(CheckConfigValue(paths_.dir, "the state folder"));
    DEVID_TRY(CheckConfigValue(options_.plugin_path, "the plugin path"));
    DEVID_TRY(CheckConfigValue(options_.listen_host, "--listen"));
    DEVID_TRY(PrepareStateDir(paths_.dir));
    std::string lock = paths_.Of("hub.lock");
    lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lock_fd_ < 0) return Errno("opening " + lock);
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "another devid hub runs on " + paths_.dir + " (" + lock + " is locked)");
    }
    if (::access(options_.mosquitto_path.c_str(), X_OK) != 0) {
      return Errno("mosquitto at " + options_.mosquitto_path);
    }
    port_ = options_.listen_port;
    if (port_ == 0) {
      DEVID_ASSIGN_OR_RETURN(port_, FreePort(options_.listen_host));
    }
    // Registrations spooled while no hub ran are reported now, with those
    // of a rotation that a previous hub left half drained.
    spool_.ResumeLeftover();
    if (!Stamp(paths_.Of("operators"))) {
      DEVID_TRY(WriteFileAtomic(paths_.Of("operators"), AsBytes(""), 0600));
    }
    operators_ = Stamp(paths_.Of("operators"));
    return {};
  }

  // --ca, else the CA the hub already uses (this run, or the certificate its
  // folder keeps) while it stays enabled, since the organization may have
  // gained another, else the organization's only one.
  Result<CaInfo> PickCa(const std::vector<CaInfo>& cas) const {
    if (!options_.ca.empty()) return ChooseCa(cas, options_.org, options_.ca);
    std::string current = config_.ica.name;
    if (current.empty()) current = IssuerOfKeptCertificate(cas);
    if (!current.empty()) {
      auto same = ChooseCa(cas, options_.org, current);
      if (same.ok()) return same;
    }
    return ChooseCa(cas, options_.org, "");
  }

  std::string IssuerOfKeptCertificate(const std::vector<CaInfo>& cas) const {
    auto text = ReadFile(paths_.Of("server-cert.pem"), kMaxPemFile);
    if (!text.ok()) return {};
    auto certs = crypto::Certificate::ParsePemChain(*text);
    if (!certs.ok()) return {};
    auto issuer = certs->front().issuer();
    if (!issuer.ok()) return {};
    for (const CaInfo* ca : IssuingCas(cas)) {
      if (ca->subject == issuer->ToString()) return ca->name;
    }
    return {};
  }

  Result<Config> Fetch(const std::vector<CaInfo>& cas) {
    Config c;
    DEVID_ASSIGN_OR_RETURN(c.ica, PickCa(cas));
    DEVID_ASSIGN_OR_RETURN(std::string chain, cms_.CaChainPem(options_.org, c.ica.name));
    DEVID_ASSIGN_OR_RETURN(c.ica_chain, crypto::Certificate::ParsePemChain(AsBytes(chain)));
    DEVID_ASSIGN_OR_RETURN(c.trust, FetchTrust(cms_, options_.org, cas));
    DEVID_ASSIGN_OR_RETURN(c.crls, FetchCrls(cms_, options_.org, c.trust.issuers));
    DEVID_ASSIGN_OR_RETURN(c.disabled, FetchDisabled(cms_, options_.org));
    return c;
  }

  Status EnsureServerCertificate(const Config& c, bool renew) {
    std::vector<crypto::GeneralName> names = ServerNames(options_.listen_host);
    if (!renew) {
      auto reused =
          ReusableServerCertificate(cms_, options_.org, paths_, c.ica, c.ica_chain, names);
      if (reused.ok()) {
        server_ = *reused;
        return {};
      }
      if (Stamp(paths_.Of("server-cert.pem"))) {
        log_("a new server certificate: the one in " + paths_.dir +
             " cannot serve on: " + reused.error().message);
      }
    }
    auto issued = IssueServerCertificate(cms_, options_.org, paths_, c.ica, c.ica_chain, names);
    if (!issued.ok()) return issued.error().Context("getting the hub's server certificate");
    server_ = *issued;
    log_("server certificate " + server_.serial + " from CA '" + c.ica.name + "', valid until " +
         FormatUtc(server_.not_after));
    return {};
  }

  std::string MosquittoConf() const {
    std::string user = CurrentUserName();
    std::string conf =
        "# Written by devid hub at every start: changes here are lost.\n"
        "per_listener_settings false\n"
        "allow_anonymous false\n"
        "persistence false\n"
        "set_tcp_nodelay true\n"
        "connection_messages true\n"
        "log_timestamp true\n"
        "log_dest file " +
        paths_.Of("mosquitto.log") +
        "\n"
        "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n";
    // Run as root, mosquitto would switch to the "mosquitto" user, who cannot
    // read this 0700 folder: it stays who started it.
    if (!user.empty()) conf += "user " + user + "\n";
    conf += "plugin " + options_.plugin_path + "\nplugin_opt_dir " + paths_.dir + "\n";
    conf += "listener " + std::to_string(port_) + " " + options_.listen_host + "\n";
    conf += "protocol mqtt\n";
    conf += "cafile " + paths_.Of("ca.pem") + "\n";
    conf += "crlfile " + paths_.Of("crl.pem") + "\n";
    conf += "certfile " + paths_.Of("server-cert.pem") + "\n";
    conf += "keyfile " + paths_.Of("server-key.pem") + "\n";
    conf += "require_certificate true\n";
    // With it, 2.0 would skip the plugin's basic-auth check: the plugin sets
    // the user name from the certificate itself.
    conf += "use_identity_as_username false\n";
    return conf;
  }

  // Writes a file the hub owns and remembers it, to notice later edits.
  Status WriteOwned(const std::string& name, std::string content) {
    DEVID_TRY(WriteFileAtomic(paths_.Of(name), AsBytes(content), 0600));
    owned_[name] = {std::move(content), Stamp(paths_.Of(name))};
    return {};
  }

  Status Apply(Config c) {
    DEVID_TRY(WriteOwned("ca.pem", c.trust.ca_pem));
    DEVID_TRY(WriteOwned("issuers.pem", c.trust.issuers_pem));
    DEVID_TRY(WriteOwned("crl.pem", c.crls.pem));
    DEVID_TRY(WriteOwned("devices.disabled", Lines(c.disabled)));
    DEVID_TRY(WriteOwned("mosquitto.conf", MosquittoConf()));
    DEVID_TRY(WriteOwned("openssl.cnf", std::string(BrokerOpenSslConf())));
    crl_refresh_at_ = CrlRefreshTime(c.crls);
    config_ = std::move(c);
    return {};
  }

  // Mosquitto checks the CRLs in crlfile at the handshake: they are replaced
  // by fresh ones half way to their next update.
  static int64_t CrlRefreshTime(const CrlSet& crls) {
    int64_t now = NowUnix();
    if (crls.next_update == std::numeric_limits<int64_t>::max()) return now + kSecondsPerDay;
    return now + std::max<int64_t>(60, (crls.next_update - now) / 2);
  }

  void Refresh() {
    bool hangup = false;
    Status s = RefreshFromCms(hangup);
    if (!s.ok()) {
      if (s.error().message != cms_trouble_) log_("warning: " + s.error().message);
      cms_trouble_ = s.error().message;
    } else if (!cms_trouble_.empty()) {
      log_("the CMS answers again");
      cms_trouble_.clear();
    }
    if (CheckFiles()) hangup = true;
    if (hangup) broker_.Hangup();
  }

  Status RefreshFromCms(bool& hangup) {
    DEVID_ASSIGN_OR_RETURN(std::vector<CaInfo> cas, ListCas(cms_, options_.org));
    if (TrustSignature(cas) != config_.trust.signature) {
      return Restart(cas, "the organization's issuing CAs changed");
    }
    DEVID_ASSIGN_OR_RETURN(CrlSet crls, FetchCrls(cms_, options_.org, config_.trust.issuers));
    bool revocations = crls.revoked != config_.crls.revoked;
    if (revocations || NowUnix() >= crl_refresh_at_) {
      // Mosquitto 2.0.11 reads crlfile again on SIGHUP (adding to the CRLs it
      // has; OpenSSL uses the most recent), though not cafile.
      DEVID_TRY(WriteOwned("crl.pem", crls.pem));
      if (revocations) {
        size_t total = 0;
        for (const auto& [ca, n] : crls.revoked) total += n;
        log_("revocations changed: " + std::to_string(total) + " revoked certificate(s)");
      }
      crl_refresh_at_ = CrlRefreshTime(crls);
      config_.crls = std::move(crls);
      hangup = true;
    }
    DEVID_ASSIGN_OR_RETURN(std::set<std::string> disabled, FetchDisabled(cms_, options_.org));
    if (disabled != config_.disabled) {
      config_.disabled = std::move(disabled);
      DEVID_TRY(WriteOwned("devices.disabled", Lines(config_.disabled)));
      log_("disabled devices changed: " + std::to_string(config_.disabled.size()) + " disabled");
      hangup = true;
    }
    int64_t life = server_.not_after - server_.not_before;
    if (server_.not_after - NowUnix() <= life / 3) {
      DEVID_TRY(EnsureServerCertificate(config_, true));
      hangup = true;  // 2.0.11 reloads its certificate and key on SIGHUP
    }
    return ReportConnections(hangup);
  }

  // Fetches everything first: a CMS that fails half way leaves the running broker alone.
  Status Restart(const std::vector<CaInfo>& cas, const std::string& why) {
    DEVID_ASSIGN_OR_RETURN(Config config, Fetch(cas));
    DEVID_TRY(EnsureServerCertificate(config, false));
    broker_.Stop();
    Status applied = Apply(std::move(config));
    Status started = applied.ok() ? broker_.Start() : applied;
    if (!started.ok()) {
      fatal_ = started.error().Context("restarting mosquitto");
      return {};
    }
    log_("restarted mosquitto (pid " + std::to_string(broker_.pid()) + "): " + why);
    return {};
  }

  // Tells the CMS registry which devices connected (just-in-time registration).
  Status ReportConnections(bool& hangup) {
    for (const std::string& line : spool_.ReadNew()) {
      auto id = SpooledDevice(line);
      if (id && pending_.size() < kMaxPending) pending_.insert(*id);
    }
    size_t sent = 0;
    for (auto it = pending_.begin(); it != pending_.end() && sent < kReportsPerRefresh; ++sent) {
      const std::string& id = *it;
      auto answer =
          cms_.Post(OrgPath(options_.org) + "/devices/" + CmsClient::Segment(id) + "/connections",
                    json::object());
      if (!answer.ok()) {
        ErrorCode code = answer.error().code;
        if (code == ErrorCode::kIo || code == ErrorCode::kAuth) {
          // The CMS or the hub's token: the report waits for the next round.
          return answer.error().Context("reporting the connection of '" + id + "'");
        }
        log_("warning: the CMS refused the connection report of '" + id +
             "': " + answer.error().message);
        it = pending_.erase(it);
        continue;
      }
      std::string status = answer->is_object() && (*answer)["status"].is_string()
                               ? (*answer)["status"].get<std::string>()
                               : std::string();
      if (registered_.insert(id).second) {
        log_("device '" + id + "' connected" + (status.empty() ? "" : " (" + status + ")"));
      }
      if (status == "disabled" && config_.disabled.insert(id).second) {
        DEVID_TRY(WriteOwned("devices.disabled", Lines(config_.disabled)));
        hangup = true;
      }
      it = pending_.erase(it);
    }
    return {};
  }

  // Files changed behind the hub's back: its own are written again, a new
  // operators file (devid hub issue-operator) is passed on to the plugin.
  bool CheckFiles() {
    bool changed = false;
    for (auto& [name, file] : owned_) {
      if (Stamp(paths_.Of(name)) == file.second) continue;
      log_("warning: " + paths_.Of(name) + " changed outside the hub; writing it again");
      std::string content = file.first;
      if (WriteOwned(name, std::move(content)).ok()) changed = true;
    }
    auto operators = Stamp(paths_.Of("operators"));
    if (operators != operators_) {
      operators_ = operators;
      log_("operators changed");
      changed = true;
    }
    return changed;
  }

  CmsClient& cms_;
  HubOptions options_;
  Paths paths_;
  const LineSink& ready_;
  const LineSink& log_;
  Broker broker_;
  SpoolReader spool_;
  int lock_fd_ = -1;
  uint16_t port_ = 0;
  Config config_;
  ServerCertificate server_;
  int64_t crl_refresh_at_ = 0;
  std::map<std::string, std::pair<std::string, std::optional<FileStamp>>> owned_;
  std::optional<FileStamp> operators_;
  std::set<std::string> pending_;
  std::set<std::string> registered_;
  std::string cms_trouble_;
  std::optional<Error> fatal_;
};

}  // namespace

std::string_view BrokerOpenSslConf() {
  return "# Written by devid hub at every start: changes here are lost.\n"
         "openssl_conf = devid_hub\n"
         "[devid_hub]\n"
         "ssl_conf = devid_hub_ssl\n"
         "[devid_hub_ssl]\n"
         "system_default = devid_hub_tls\n"
         "[devid_hub_tls]\n"
         "NumTickets = 0\n"
         // What a system configuration would have set, which this one replaces.
         "MinProtocol = TLSv1.2\n"
         "CipherString = DEFAULT:@SECLEVEL=2\n";
}

bool ValidIdentity(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  if (name.find_first_not_of('.') == std::string_view::npos) return false;
  for (char c : name) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && c != '-' && c != '_' && c != '.' && c != '@') return false;
  }
  return true;
}

std::string DefaultStateDir(const std::string& home, const std::string& org) {
  return home + "/hub/" + org;
}

Result<std::string> FindPlugin(const std::string& explicit_path) {
  auto usable = [](const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec) && ::access(p.c_str(), R_OK) == 0;
  };
  auto absolute = [](const fs::path& p) {
    std::error_code ec;
    fs::path a = fs::weakly_canonical(fs::absolute(p, ec), ec);
    return a.string();
  };
  std::string given = explicit_path;
  if (given.empty()) {
    if (const char* env = std::getenv("DEVID_MOSQUITTO_PLUGIN"); env != nullptr) given = env;
  }
  if (!given.empty()) {
    if (!usable(given)) {
      return MakeError(ErrorCode::kNotFound, "the mosquitto plugin " + given + " is not readable");
    }
    return absolute(given);
  }
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path dir = exe.parent_path();
    for (const fs::path& candidate :
         {dir / kPluginName, dir / ".." / "src" / kPluginName, dir / ".." / "lib" / kPluginName,
          dir / ".." / "lib" / "devid" / kPluginName}) {
      if (usable(candidate)) return absolute(candidate);
    }
  }
  return MakeError(ErrorCode::kNotFound, std::string(kPluginName) + " is not beside " +
                                             exe.string() +
                                             ": give --plugin or DEVID_MOSQUITTO_PLUGIN");
}

Status RunHub(CmsClient& cms, const HubOptions& options_in, const LineSink& ready,
              const LineSink& log) {
  HubOptions options = options_in;
  if (!ValidIdentity(options.org)) {
    return MakeError(ErrorCode::kInvalidInput, "'" + options.org + "' is not an organization name");
  }
  if (options.refresh_ms < 100) {
    return MakeError(ErrorCode::kInvalidInput, "the refresh interval must be at least 0.1 s");
  }
  std::error_code ec;
  options.dir = fs::absolute(options.dir, ec).lexically_normal().string();
  if (ec) return MakeError(ErrorCode::kIo, "the state folder: " + ec.message());
  while (options.dir.size() > 1 && options.dir.back() == '/') options.dir.pop_back();
  DEVID_ASSIGN_OR_RETURN(options.plugin_path, FindPlugin(options.plugin_path));

  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&signals, sig);
  sigset_t previous;
  pthread_sigmask(SIG_BLOCK, &signals, &previous);
  Status result;
  {
    Hub hub(cms, std::move(options), ready, log);
    result = hub.Run(signals);
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return result;
}

Result<IssuedOperator> IssueOperator(CmsClient& cms, const OperatorOptions& options) {
  if (!ValidIdentity(options.org)) {
    return MakeError(ErrorCode::kInvalidInput, "'" + options.org + "' is not an organization name");
  }
  if (!ValidIdentity(options.name)) {
    return MakeError(ErrorCode::kInvalidInput,
                     "operator name '" + options.name +
                         "': use letters, digits, '-', '_', '.', '@' (at most 64)");
  }
  std::string key_path = options.out_dir + "/key.pem";
  std::string cert_path = options.out_dir + "/cert.pem";
  std::string ca_path = options.out_dir + "/ca.pem";
  std::error_code ec;
  if (!fs::exists(options.out_dir, ec)) {
    fs::create_directories(options.out_dir, ec);
    if (ec)
      return MakeError(ErrorCode::kIo, "cannot create " + options.out_dir + ": " + ec.message());
  }
  for (const std::string& path : {key_path, cert_path, ca_path}) DEVID_TRY(CheckOutputPath(path));
  DEVID_TRY(PrepareStateDir(options.dir));

  // Operators and devices share the broker's identities: a name a device
  // already has cannot become an operator's.
  auto device = cms.Get("/orgs/" + CmsClient::Segment(options.org) + "/devices/" +
                        CmsClient::Segment(options.name));
  if (device.ok()) {
    return MakeError(ErrorCode::kAlreadyExists,
                     "'" + options.name + "' is a device in the registry: pick another name");
  }
  if (device.error().code != ErrorCode::kNotFound) return device.error();
  DEVID_ASSIGN_OR_RETURN(std::vector<CaInfo> cas, ListCas(cms, options.org));
  DEVID_ASSIGN_OR_RETURN(CaInfo ica, ChooseCa(cas, options.org, options.ca));
  DEVID_ASSIGN_OR_RETURN(crypto::PrivateKey key,
                         crypto::PrivateKey::Generate(crypto::KeyType::kEcP256));
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject,
                         crypto::DistinguishedName::Parse("CN=" + options.name));
  DEVID_ASSIGN_OR_RETURN(crypto::CertificateRequest csr,
                         crypto::MakeCertificateRequest(key, subject, {}));
  DEVID_ASSIGN_OR_RETURN(std::string csr_pem, csr.ToPem());
  DEVID_ASSIGN_OR_RETURN(json answer,
                         cms.IssueCertificate(options.org, ica.name, "device", csr_pem));
  if (!answer.is_object() || !answer["certificate"].is_string() || !answer["serial"].is_string()) {
    return BadAnswer("the operator's certificate");
  }
  std::string serial = answer["serial"].get<std::string>();
  DEVID_ASSIGN_OR_RETURN(std::string chain, cms.CaChainPem(options.org, ica.name));

  DEVID_ASSIGN_OR_RETURN(std::string key_pem, key.ToPkcs8Pem(nullptr));
  Status written = WriteFileAtomic(key_path, AsBytes(key_pem), 0600);
  SecureZero(key_pem.data(), key_pem.size());
  if (!written.ok()) return written.error();
  DEVID_TRY(WriteFileAtomic(cert_path, AsBytes(answer["certificate"].get<std::string>())));
  DEVID_TRY(WriteFileAtomic(ca_path, AsBytes(chain)));

  // The plugin reads this list at start and on SIGHUP; a running hub notices the change.
  std::string operators_path = options.dir + "/operators";
  std::string operators;
  if (auto existing = ReadFile(operators_path, kMaxListFile); existing.ok()) {
    operators = std::string(AsString(*existing));
    if (!operators.empty() && operators.back() != '\n') operators += "\n";
  }
  operators += serial + " " + options.name + "\n";
  DEVID_TRY(WriteFileAtomic(operators_path, AsBytes(operators), 0600));
  return IssuedOperator{serial, ica.name};
}

}  // namespace devid::cloud::hub
