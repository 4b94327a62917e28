// What the `devid` subcommands share: error reporting and the PIN sources.
#include <cstdlib>
#include <iostream>

#include "cli/commands.h"
#include "core/file.h"
#include "store/store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace devid::cli {

// Subjects and error messages can carry bytes from CSRs: C0 and C1 control
// characters are shown as \\xNN, never sent to the terminal.
std::string Printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    auto next = i + 1 < s.size() ? static_cast<unsigned char>(s[i + 1]) : 0;
    bool c1 = c == 0xC2 && next >= 0x80 && next <= 0x9F;  // U+0080..U+009F in UTF-8
    if (c < 0x20 || c == 0x7F || c1) {
      char buf[16];
      if (c1) {
        std::snprintf(buf, sizeof buf, "\\x%02X\\x%02X", c, next);
        ++i;
      } else {
        std::snprintf(buf, sizeof buf, "\\x%02X", c);
      }
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

// Runs a command body; an error becomes one line on stderr and exit code 1.
void Run(GlobalOptions& g, const std::function<Status()>& body) {
  Status s = body();
  if (!s.ok()) {
    std::cerr << "devid: error: " << Printable(s.error().message) << "\n";
    g.exit_code = 1;
  }
}

void AddPinOptions(CLI::App* c, std::string& pin, std::string& pin_file, const std::string& use) {
  c->add_option("--pin-file", pin_file, "File whose first line is the user PIN, " + use);
  c->add_option("--pin", pin,
                "The user PIN on the command line (visible to other local users; prefer "
                "--pin-file or DEVID_PIN)");
}

void AddAgentCmsOptions(CLI::App* c, AgentCmsOpts& o, bool required) {
  auto* url =
      c->add_option("--cms", o.url, "CMS base URL, https://HOST:PORT")->envname("DEVID_CMS_URL");
  c->add_option("--cms-ca", o.ca_file, "CA certificate(s) the CMS server is trusted by")
      ->envname("DEVID_CMS_CACERT");
  auto* org = c->add_option("--org", o.org, "Organization");
  auto* ca = c->add_option("--ca", o.ca, "Issuing CA");
  if (required) {
    url->required();
    org->required();
    ca->required();
  }
}

// --pin-file, then --pin, then DEVID_PIN; none: no PIN.
Result<std::optional<SecretString>> ResolvePin(const std::string& pin,
                                               const std::string& pin_file) {
  if (!pin.empty() && !pin_file.empty()) {
    return MakeError(ErrorCode::kInvalidInput, "--pin and --pin-file exclude each other");
  }
  if (!pin_file.empty()) {
    DEVID_ASSIGN_OR_RETURN(SecretString read, ReadSecretLine(pin_file, "PIN"));
    return std::optional<SecretString>(std::move(read));
  }
  if (!pin.empty()) return std::optional<SecretString>(SecretString(pin));
  const char* env = std::getenv("DEVID_PIN");
  if (env != nullptr && *env != '\0') return std::optional<SecretString>(SecretString(env));
  return std::optional<SecretString>();
}

std::string HomeDir(const GlobalOptions& g) {
  return g.home.empty() ? std::string("./var/devid") : g.home;
}

// The home holds the database with the (encrypted) CA keys: devid creates it
// private (0700) and refuses one that others may write into.
Result<std::unique_ptr<store::Store>> OpenHomeStore(const GlobalOptions& g) {
  namespace fs = std::filesystem;
  const std::string home = HomeDir(g);
  std::error_code ec;
  if (!fs::exists(home, ec)) {
    fs::create_directories(home, ec);
    if (ec) return MakeError(ErrorCode::kIo, "cannot create home " + home + ": " + ec.message());
    fs::permissions(home, fs::perms::owner_all, fs::perm_options::replace, ec);
    if (ec)
      return MakeError(ErrorCode::kIo, "cannot make home " + home + " private: " + ec.message());
  }
  fs::file_status st = fs::status(home, ec);
  if (ec || st.type() != fs::file_type::directory) {
    return MakeError(ErrorCode::kIo, "home " + home + " is not a directory");
  }
  // Owned by us and closed to everyone else: then the database (and its WAL),
  // which SQLite creates with whatever mode the first writer had, and the
  // templates folder are out of others' reach whatever their own modes.
  struct stat owner {};
  if (::stat(home.c_str(), &owner) != 0 || owner.st_uid != ::geteuid()) {
    return MakeError(ErrorCode::kIo, "home " + home + " is not owned by the user running devid");
  }
  if ((st.permissions() & (fs::perms::group_all | fs::perms::others_all)) != fs::perms::none) {
    return MakeError(ErrorCode::kIo,
                     "home " + home + " is open to group or others; chmod 700 it first");
  }
  if (!g.db.empty()) return store::OpenStore(g.db);
  return store::OpenStore("sqlite:" + home + "/devid.db");
}

Result<ca::KeyProtection> ResolveProtection(const GlobalOptions& g) {
  ca::KeyProtection p;
  if (g.no_passphrase) {
    if (!g.passphrase_file.empty()) {
      return MakeError(ErrorCode::kInvalidInput,
                       "--no-passphrase and --passphrase-file exclude each other");
    }
    return p;
  }
  if (!g.passphrase_file.empty()) {
    DEVID_ASSIGN_OR_RETURN(p.passphrase, ReadSecretLine(g.passphrase_file, "passphrase"));
    return p;
  }
  const char* env = std::getenv("DEVID_PASSPHRASE");
  if (env != nullptr && *env != '\0') {
    p.passphrase = SecretString(env);
    return p;
  }
  return MakeError(ErrorCode::kAuth,
                   "CA keys need a passphrase: set DEVID_PASSPHRASE, give --passphrase-file FILE, "
                   "or choose --no-passphrase explicitly");
}

Result<std::pair<std::string, uint16_t>> ParseHostPort(const std::string& text,
                                                       const std::string& option,
                                                       const std::string& host_word,
                                                       bool allow_port_zero) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    return MakeError(ErrorCode::kInvalidInput, option + " takes " + host_word + ":PORT");
  }
  std::string host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]:8443
  }
  long port = -1;
  try {
    size_t used = 0;
    port = std::stol(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1) port = -1;
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < (allow_port_zero ? 0 : 1) || port > 65535) {
    return MakeError(ErrorCode::kInvalidInput,
                     option + ": the port must be " + (allow_port_zero ? "0" : "1") + "-65535");
  }
  return std::make_pair(host, static_cast<uint16_t>(port));
}

Result<SecretBytes> ReadManufacturerKey(const std::string& path) {
  DEVID_ASSIGN_OR_RETURN(SecretString hex, ReadSecretLine(path, "manufacturer key"));
  auto decoded = HexDecode(hex.reveal());
  if (!decoded.ok() || decoded->size() != 32) {
    return MakeError(ErrorCode::kInvalidInput,
                     "the manufacturer key file must hold 64 hex digits (32 bytes)");
  }
  SecretBytes key(*decoded);
  SecureZero(decoded->data(), decoded->size());
  return key;
}

}  // namespace devid::cli
