#include "factory/factory.h"

#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>

#include "core/file.h"
#include "crypto/name.h"
#include "crypto/pkcs7.h"
#include "crypto/verify.h"
#include "se/host/client.h"

namespace devid::factory {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
// Parsed PINs: strings and nodes zeroed when freed.
using SecretJson = nlohmann::basic_json<std::map, std::vector, WipingString, bool, std::int64_t,
                                        std::uint64_t, double, WipingAllocator>;

constexpr uint8_t kDeviceKeySlot = 0;
constexpr uint8_t kAlways = 0x00;
constexpr uint8_t kAfterPin = 0x01;
constexpr uint8_t kNever = 0xFF;
// Room in C001 for a renewed chain (the agent rewrites it, with the PIN).
constexpr size_t kChainFileSize = 4096;
// The CMS signs at most this many CSRs in one request (one transaction each).
constexpr size_t kCsrsPerRequest = 1000;
constexpr int kPinDigits = 8;

Error Stopped(const std::string& where) {
  return MakeError(ErrorCode::kIo,
                   "stopped by the fault-injection test hook " + where + " (run again to resume)");
}

std::string OrgPath(const std::string& org) {
  return "/orgs/" + cms::client::CmsClient::Segment(org);
}

// --- PEM text ----------------------------------------------------------------

struct PemBlock {
  std::string label;
  std::string_view text;  // "-----BEGIN …" to the end of "-----END …-----"
};

// The blocks of a PEM text, in order; views into `text` (no copies of key bytes).
Result<std::vector<PemBlock>> SplitPem(std::string_view text) {
  static constexpr std::string_view kBegin = "-----BEGIN ";
  static constexpr std::string_view kEnd = "-----END ";
  std::vector<PemBlock> out;
  size_t at = 0;
  while ((at = text.find(kBegin, at)) != std::string_view::npos) {
    size_t label_end = text.find("-----", at + kBegin.size());
    if (label_end == std::string_view::npos) break;
    std::string label(text.substr(at + kBegin.size(), label_end - at - kBegin.size()));
    std::string end_line = std::string(kEnd) + label + "-----";
    size_t end = text.find(end_line, label_end);
    if (end == std::string_view::npos) {
      return MakeError(ErrorCode::kInvalidInput, "a PEM block '" + label + "' has no end line");
    }
    end += end_line.size();
    out.push_back({label, text.substr(at, end - at)});
    at = end;
  }
  return out;
}

// --- names -------------------------------------------------------------------

bool UsableAsFileName(const std::string& id) {
  if (id.empty() || id.size() > 64 || !std::isalnum(static_cast<unsigned char>(id[0]))) {
    return false;
  }
  return std::all_of(id.begin(), id.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return std::isalnum(c) || c == '.' || c == '_' || c == '-';
  });
}

Result<std::string> DeviceIdFromName(const crypto::DistinguishedName& name) {
  for (const auto& a : name.attributes()) {
    if (a.type != "CN") continue;
    if (!UsableAsFileName(a.value)) {
      return MakeError(ErrorCode::kInvalidInput,
                       "the device id (CN) '" + a.value +
                           "' cannot name a chip image: letters, digits, '.', '_', '-', at most "
                           "64, starting with a letter or digit");
    }
    return a.value;
  }
  return MakeError(ErrorCode::kInvalidInput, "the subject '" + name.ToString() + "' has no CN");
}

// A public key as the chip's key files hold it (curve byte || point), hex:
// how the journal names a chip's key.
Result<std::string> KeyId(const crypto::PublicKey& key) {
  DEVID_ASSIGN_OR_RETURN(Bytes content, se::KeyFileContent(key));
  return HexEncode(content);
}
Result<std::string> ChipKeyId(se::ChipClient& chip) {
  DEVID_ASSIGN_OR_RETURN(auto key, chip.ReadPublicKey(kDeviceKeySlot));
  DEVID_ASSIGN_OR_RETURN(crypto::PublicKey pub,
                         crypto::EcPublicKeyFromPoint(key.first, key.second));
  return KeyId(pub);
}
Result<std::string> CertificateKeyId(const crypto::Certificate& cert) {
  DEVID_ASSIGN_OR_RETURN(crypto::PublicKey pub, cert.public_key());
  return KeyId(pub);
}

// --- the output folder ---------------------------------------------------------

// One chip's progress, kept in journal/<id>.json.
struct ChipRecord {
  // "submitted": its CSR went to the CMS (the chip and its key must be kept);
  // "certified": the CMS answer is here; "done": the chip is operational.
  std::string state;
  std::string chip_serial;
  std::string public_key;   // KeyId of the chip's key (on-chip mode)
  std::string certificate;  // PEM (on-chip mode, once certified)
  std::string ca_certificate;
  std::string certificate_serial;
  std::string fingerprint;
};

class Folder {
 public:
  explicit Folder(std::string dir) : dir_(std::move(dir)) {}

  std::string Path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  std::string Image(const std::string& id) const { return Path(id + ".img"); }
  std::string RecordPath(const std::string& id) const { return Path("journal/" + id + ".json"); }

  // The folder for `order`: created when missing; an existing one must belong
  // to the same order (order.json), or be empty.
  Status Claim(const json& order) {
    std::error_code ec;
    std::string order_file = Path("order.json");
    if (fs::exists(order_file, ec)) {
      DEVID_ASSIGN_OR_RETURN(Bytes text, ReadFile(order_file, 64 * 1024));
      json saved = json::parse(AsString(text), nullptr, false);
      if (!saved.is_object() || saved.value("order", "") != order.at("order")) {
        return MakeError(ErrorCode::kAlreadyExists,
                         "the output folder " + dir_ + " belongs to another order (" +
                             (saved.is_object() ? saved.value("order", "?") : "unreadable") +
                             "): use a new folder for each order");
      }
      saved_ = saved;
      return {};
    }
    if (fs::exists(dir_, ec)) {
      if (!fs::is_directory(dir_, ec)) {
        return MakeError(ErrorCode::kInvalidInput, dir_ + " is not a folder");
      }
      if (!fs::is_empty(dir_, ec)) {
        return MakeError(
            ErrorCode::kAlreadyExists,
            "the output folder " + dir_ + " holds files of no order: give an empty or new folder");
      }
    }
    fs::create_directories(dir_, ec);
    if (ec) return MakeError(ErrorCode::kIo, "creating " + dir_ + ": " + ec.message());
    // PINs and the manufacturer key will be kept here.
    fs::permissions(dir_, fs::perms::owner_all, ec);
    fs::create_directories(Path("journal"), ec);
    if (ec) return MakeError(ErrorCode::kIo, "creating " + Path("journal") + ": " + ec.message());
    saved_ = order;
    return WriteFileAtomic(order_file, AsBytes(order.dump(2) + "\n"), 0644);
  }

  // The manufacturer key: the caller's, the one kept here, or a new one (saved 0600).
  Result<SecretBytes> ManufacturerKey(const SecretBytes& given) {
    std::string path = Path("manufacturer.key");
    SecretBytes key;
    std::error_code ec;
    if (given.size() != 0) {
      if (given.size() != 32) {
        return MakeError(ErrorCode::kInvalidInput, "the manufacturer key must be 32 bytes");
      }
      key = SecretBytes(given.view());
    } else if (fs::exists(path, ec)) {
      DEVID_ASSIGN_OR_RETURN(SecretString hex, ReadSecretLine(path, "manufacturer key"));
      auto decoded = HexDecode(hex.reveal());
      if (!decoded.ok() || decoded->size() != 32) {
        return MakeError(ErrorCode::kInvalidInput, path + " must hold 64 hex digits");
      }
      key = SecretBytes(*decoded);
      SecureZero(decoded->data(), decoded->size());
    } else {
      DEVID_ASSIGN_OR_RETURN(Bytes drawn, crypto::RandomBytes(32));
      key = SecretBytes(drawn);
      SecureZero(drawn.data(), drawn.size());
      WipingString hex;
      HexEncodeTo(key.view(), hex);
      hex.push_back('\n');
      Status written = WriteFileAtomic(path, AsBytes({hex.data(), hex.size()}), 0600);
      if (!written.ok()) return written.error();
    }
    // The chips of one folder share one manufacturer key: a resumed run must not change it.
    std::string fingerprint = HexEncode(crypto::Sha256(key.view()));
    if (saved_.contains("manufacturer_key_sha256")) {
      if (saved_.value("manufacturer_key_sha256", "") != fingerprint) {
        return MakeError(ErrorCode::kAuth,
                         "the chips of " + dir_ + " were made with another manufacturer key");
      }
      return key;
    }
    // Recorded before the first chip is made with it.
    saved_["manufacturer_key_sha256"] = fingerprint;
    Status written = WriteFileAtomic(Path("order.json"), AsBytes(saved_.dump(2) + "\n"), 0644);
    if (!written.ok()) return written.error();
    return key;
  }

  // One PIN per chip: the caller's, or drawn here and kept in pins.json (0600),
  // written before any chip is made with it.
  Result<std::map<std::string, SecretString>> Pins(const std::vector<std::string>& ids,
                                                   const std::optional<SecretString>& given) {
    std::map<std::string, SecretString> pins;
    if (given) {
      for (const auto& id : ids) pins[id] = *given;
      return pins;
    }
    std::string path = Path("pins.json");
    std::error_code ec;
    if (fs::exists(path, ec)) {
      DEVID_ASSIGN_OR_RETURN(Bytes text, ReadFile(path, 4 * 1024 * 1024));
      SecretJson saved = SecretJson::parse(AsString(text), nullptr, false);
      SecureZero(text.data(), text.size());
      if (!saved.is_object()) return MakeError(ErrorCode::kInvalidInput, path + " does not parse");
      for (const auto& [id, pin] : saved.items()) {
        if (!pin.is_string()) return MakeError(ErrorCode::kInvalidInput, path + " is malformed");
        const auto& value = pin.get_ref<const WipingString&>();
        pins[std::string(id.data(), id.size())] = SecretString({value.data(), value.size()});
      }
    }
    bool added = false;
    for (const auto& id : ids) {
      if (pins.count(id) != 0) continue;
      DEVID_ASSIGN_OR_RETURN(SecretString pin, RandomPin());
      pins[id] = std::move(pin);
      added = true;
    }
    if (added) {
      // Ids and PINs are letters, digits and '.', '_', '-': no JSON escaping needed.
      WipingString text = "{";
      for (const auto& [id, pin] : pins) {
        if (text.size() > 1) text += ",";
        text += "\n  \"";
        text.append(id.data(), id.size());
        text += "\": \"";
        text.append(pin.reveal().data(), pin.reveal().size());
        text += "\"";
      }
      text += "\n}\n";
      Status written = WriteFileAtomic(path, AsBytes({text.data(), text.size()}), 0600);
      if (!written.ok()) return written.error();
    }
    return pins;
  }

  Result<std::optional<ChipRecord>> ReadRecord(const std::string& id) const {
    std::error_code ec;
    std::string path = RecordPath(id);
    if (!fs::exists(path, ec)) return std::optional<ChipRecord>();
    DEVID_ASSIGN_OR_RETURN(Bytes text, ReadFile(path, 256 * 1024));
    json j = json::parse(AsString(text), nullptr, false);
    if (!j.is_object() || !j.contains("state")) {
      return MakeError(ErrorCode::kInvalidInput, "the journal record " + path + " does not parse");
    }
    ChipRecord r;
    r.state = j.value("state", "");
    r.chip_serial = j.value("chip_serial", "");
    r.public_key = j.value("public_key", "");
    r.certificate = j.value("certificate", "");
    r.ca_certificate = j.value("ca_certificate", "");
    r.certificate_serial = j.value("certificate_serial", "");
    r.fingerprint = j.value("fingerprint_sha256", "");
    return std::optional<ChipRecord>(std::move(r));
  }

  Status WriteRecord(const std::string& id, const ChipRecord& r) const {
    json j = {{"state", r.state}, {"chip_serial", r.chip_serial}};
    if (!r.public_key.empty()) j["public_key"] = r.public_key;
    if (!r.certificate.empty()) j["certificate"] = r.certificate;
    if (!r.ca_certificate.empty()) j["ca_certificate"] = r.ca_certificate;
    if (!r.certificate_serial.empty()) j["certificate_serial"] = r.certificate_serial;
    if (!r.fingerprint.empty()) j["fingerprint_sha256"] = r.fingerprint;
    return WriteFileAtomic(RecordPath(id), AsBytes(j.dump(2) + "\n"), 0644);
  }

  // What a half-made chip left: its image, fuse file and their temporaries.
  Status RemoveChip(const std::string& id) const {
    std::string image = id + ".img";
    std::error_code ec;
    std::vector<fs::path> doomed;
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      std::string name = entry.path().filename().string();
      if (name == image || name.rfind(image + ".", 0) == 0) doomed.push_back(entry.path());
    }
    if (ec) return MakeError(ErrorCode::kIo, "listing " + dir_ + ": " + ec.message());
    for (const auto& p : doomed) {
      fs::remove(p, ec);
      if (ec) return MakeError(ErrorCode::kIo, "removing " + p.string() + ": " + ec.message());
    }
    return {};
  }

  Status WriteManifest(const json& order, const std::vector<ManifestEntry>& chips) const {
    json list = json::array();
    for (const auto& c : chips) {
      list.push_back({{"device_id", c.device_id},
                      {"chip_serial", c.chip_serial},
                      {"certificate_serial", c.certificate_serial},
                      {"fingerprint_sha256", c.fingerprint_sha256},
                      {"image", c.image}});
    }
    json manifest = {{"order", order.at("order")},
                     {"mode", order.at("mode")},
                     {"count", chips.size()},
                     {"chips", list}};
    return WriteFileAtomic(Path("manifest.json"), AsBytes(manifest.dump(2) + "\n"), 0644);
  }

  static Result<SecretString> RandomPin() {
    std::string pin;
    while (pin.size() < kPinDigits) {
      DEVID_ASSIGN_OR_RETURN(Bytes r, crypto::RandomBytes(16));
      for (uint8_t b : r) {
        // 250 = 25 * 10: values above would favour the low digits.
        if (b < 250 && pin.size() < kPinDigits) pin.push_back(static_cast<char>('0' + b % 10));
      }
      SecureZero(r.data(), r.size());
    }
    SecretString out(pin);
    SecureZero(pin.data(), pin.size());
    return out;
  }

 private:
  std::string dir_;
  json saved_;
};

Result<std::string> NewChipSerial() {
  DEVID_ASSIGN_OR_RETURN(Bytes r, crypto::RandomBytes(6));
  return "SE-" + HexEncode(r);
}

// A new chip, powered in this process (the handle keeps its image locked).
Result<se::ChipClient> CreateChip(const std::string& image, const std::string& serial,
                                  const SecretString& pin, const SecretBytes& manufacturer_key) {
  DEVID_ASSIGN_OR_RETURN(
      auto chip, se::SecureElement::Create(image, serial, pin, nullptr, manufacturer_key.view()));
  return se::ChipClient(std::make_unique<se::InProcessTransport>(std::move(chip)));
}

// The host software's chip files, then the lock: seed fig. 2 step 5, fig. 3 step 4.
Status FinishChip(se::ChipClient& chip, const crypto::Certificate& device,
                  const crypto::Certificate& issuing_ca) {
  DEVID_ASSIGN_OR_RETURN(std::string device_pem, device.ToPem());
  DEVID_ASSIGN_OR_RETURN(std::string ca_pem, issuing_ca.ToPem());
  std::string chain = device_pem + ca_pem;
  // Anyone may read the chain; its holder rewrites it with the PIN at renewal.
  DEVID_TRY(se::WriteChipFile(chip, se::kCertificateChainFile, AsBytes(chain),
                              std::max(kChainFileSize, chain.size()), kAlways, kAfterPin));
  DEVID_ASSIGN_OR_RETURN(crypto::PublicKey ca_key, issuing_ca.public_key());
  DEVID_ASSIGN_OR_RETURN(Bytes ca_key_file, se::KeyFileContent(ca_key));
  // The trust anchor of the device's TLS checks: never rewritten once operational.
  DEVID_TRY(se::WriteChipFile(chip, se::kCaPublicKeyFile, ca_key_file, ca_key_file.size(), kAlways,
                              kNever));
  return chip.SetLifecycle(se::Lifecycle::kOperational);
}

Result<ManifestEntry> EntryFor(const std::string& id, const std::string& chip_serial,
                               const crypto::Certificate& cert) {
  DEVID_ASSIGN_OR_RETURN(std::string fingerprint, cert.FingerprintSha256());
  return ManifestEntry{id, chip_serial, cert.SerialHex(), fingerprint, id + ".img"};
}

ManifestEntry EntryFor(const std::string& id, const ChipRecord& r) {
  return ManifestEntry{id, r.chip_serial, r.certificate_serial, r.fingerprint, id + ".img"};
}

Status CheckDoneImage(const Folder& folder, const std::string& id) {
  std::error_code ec;
  if (!fs::exists(folder.Image(id), ec)) {
    return MakeError(ErrorCode::kNotFound, "the journal says chip " + id + " is done, but " +
                                               folder.Image(id) + " is missing");
  }
  return {};
}

void Progress(const PersonalisationOptions& o, const std::string& line) {
  if (o.progress) o.progress(line);
}

// --- keys made by the CMS --------------------------------------------------------

struct BundleIdentity {
  std::string device_id;
  crypto::PrivateKey key;
  crypto::Certificate certificate;
};

// The envelope's PEM: each key (PKCS#8) before its certificate, then the chain.
Status ParseBundle(std::string_view text, std::vector<BundleIdentity>& out_identities,
                   std::vector<crypto::Certificate>& out_chain) {
  DEVID_ASSIGN_OR_RETURN(std::vector<PemBlock> blocks, SplitPem(text));
  std::optional<crypto::PrivateKey> pending;
  for (const auto& b : blocks) {
    if (b.label == "PRIVATE KEY") {
      if (pending || !out_chain.empty()) {
        return MakeError(ErrorCode::kInvalidInput,
                         "the bundle's keys and certificates are not in pairs");
      }
      auto key = crypto::PrivateKey::FromPem(b.text, nullptr);
      if (!key.ok()) return key.error().Context("a key of the bundle");
      pending.emplace(std::move(key).value());
    } else if (b.label == "CERTIFICATE") {
      auto cert = crypto::Certificate::Parse(AsBytes(b.text));
      if (!cert.ok()) return cert.error().Context("a certificate of the bundle");
      if (!pending) {
        out_chain.push_back(std::move(cert).value());
        continue;
      }
      DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject, cert->subject());
      DEVID_ASSIGN_OR_RETURN(std::string id, DeviceIdFromName(subject));
      DEVID_ASSIGN_OR_RETURN(Bytes key_spki, pending->PublicKeyDer());
      DEVID_ASSIGN_OR_RETURN(crypto::PublicKey cert_key, cert->public_key());
      DEVID_ASSIGN_OR_RETURN(Bytes cert_spki, cert_key.ToDer());
      if (key_spki != cert_spki) {
        return MakeError(ErrorCode::kVerification,
                         "the bundle's key for " + id + " is not its certificate's key");
      }
      out_identities.push_back({id, std::move(*pending), std::move(cert).value()});
      pending.reset();
    } else {
      return MakeError(ErrorCode::kInvalidInput,
                       "the bundle holds an unexpected PEM block '" + b.label + "'");
    }
  }
  if (pending)
    return MakeError(ErrorCode::kInvalidInput, "the bundle's last key has no certificate");
  if (out_identities.empty())
    return MakeError(ErrorCode::kInvalidInput, "the bundle holds no keys");
  if (out_chain.empty()) {
    return MakeError(ErrorCode::kInvalidInput, "the bundle holds no issuing CA certificate");
  }
  // Every device certificate chains to the bundle's issuing CA and root.
  std::vector<crypto::Certificate> intermediates(out_chain.begin(), out_chain.end() - 1);
  std::vector<crypto::Certificate> anchors = {out_chain.back()};
  std::set<std::string> seen;
  for (const auto& identity : out_identities) {
    if (!seen.insert(identity.device_id).second) {
      return MakeError(ErrorCode::kInvalidInput,
                       "the bundle names device " + identity.device_id + " twice");
    }
    Status verified = crypto::VerifyChain(identity.certificate, intermediates, anchors, {},
                                          crypto::VerifyOptions{});
    if (!verified.ok()) return verified.error().Context("the certificate of " + identity.device_id);
  }
  return {};
}

// --- keys made on the chip --------------------------------------------------------

struct Pending {
  size_t index = 0;  // in the order
  std::string chip_serial;
  std::string key_id;
  std::string csr_pem;
};

// The certificate the CMS issued for this key, if any (a CSR sent before the
// answer reached the journal).
Result<std::optional<crypto::Certificate>> FindIssued(cms::client::CmsClient& cms,
                                                      const BatchSpec& spec, const std::string& id,
                                                      const std::string& key_id) {
  DEVID_ASSIGN_OR_RETURN(
      json found,
      cms.Get(OrgPath(spec.org) + "/certificates",
              {{"subject", "CN=" + id}, {"ca", spec.ca}, {"status", "valid"}, {"limit", "1000"}}));
  for (const auto& item : found.value("certificates", json::array())) {
    std::string serial = item.value("serial", "");
    if (serial.empty()) continue;
    DEVID_ASSIGN_OR_RETURN(json one, cms.Get(OrgPath(spec.org) + "/certificates/" +
                                                 cms::client::CmsClient::Segment(serial),
                                             {{"ca", spec.ca}}));
    DEVID_ASSIGN_OR_RETURN(crypto::Certificate cert,
                           crypto::Certificate::Parse(AsBytes(one.value("certificate", ""))));
    DEVID_ASSIGN_OR_RETURN(std::string cert_key, CertificateKeyId(cert));
    if (cert_key == key_id) return std::optional<crypto::Certificate>(std::move(cert));
  }
  return std::optional<crypto::Certificate>();
}

Result<ChipRecord> CertifiedRecord(const std::string& chip_serial, const std::string& key_id,
                                   const crypto::Certificate& cert,
                                   const crypto::Certificate& issuing_ca) {
  ChipRecord r;
  r.state = "certified";
  r.chip_serial = chip_serial;
  r.public_key = key_id;
  DEVID_ASSIGN_OR_RETURN(r.certificate, cert.ToPem());
  DEVID_ASSIGN_OR_RETURN(r.ca_certificate, issuing_ca.ToPem());
  r.certificate_serial = cert.SerialHex();
  DEVID_ASSIGN_OR_RETURN(r.fingerprint, cert.FingerprintSha256());
  return r;
}

// A new chip with a new key in slot 0 and its CSR, signed in the chip.
Result<Pending> MakeChipWithKey(const Folder& folder, const std::string& id, size_t index,
                                const BatchSpec& spec, crypto::KeyType curve,
                                const SecretString& pin, const SecretBytes& manufacturer_key) {
  DEVID_TRY(folder.RemoveChip(id));
  Pending p;
  p.index = index;
  DEVID_ASSIGN_OR_RETURN(p.chip_serial, NewChipSerial());
  DEVID_ASSIGN_OR_RETURN(se::ChipClient chip,
                         CreateChip(folder.Image(id), p.chip_serial, pin, manufacturer_key));
  // Used by the device itself, which has no one to type a PIN.
  auto point = chip.GenerateKeyPair(kDeviceKeySlot, curve, false);
  if (!point.ok()) return point.error().Context(id + ": generating the device key in the chip");
  DEVID_TRY(chip.SetLifecycle(se::Lifecycle::kPersonalised));
  DEVID_ASSIGN_OR_RETURN(p.key_id, ChipKeyId(chip));
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject,
                         crypto::DistinguishedName::Parse(ExpandSubject(
                             spec.subject_pattern, spec.start + static_cast<int64_t>(index))));
  DEVID_ASSIGN_OR_RETURN(crypto::CertificateRequest csr,
                         se::MakeCsrInChip(chip, kDeviceKeySlot, subject, {}));
  DEVID_ASSIGN_OR_RETURN(p.csr_pem, csr.ToPem());
  return p;
}

// The chip of an earlier run whose CSR went out: its key must still be the one sent.
Result<std::optional<Pending>> ReopenSubmitted(const Folder& folder, const std::string& id,
                                               size_t index, const BatchSpec& spec,
                                               const ChipRecord& r) {
  auto chip = se::ChipClient::Open(folder.Image(id), "");
  if (!chip.ok()) return std::optional<Pending>();
  auto key_id = ChipKeyId(*chip);
  if (!key_id.ok() || *key_id != r.public_key) return std::optional<Pending>();
  Pending p{index, r.chip_serial, r.public_key, {}};
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject,
                         crypto::DistinguishedName::Parse(ExpandSubject(
                             spec.subject_pattern, spec.start + static_cast<int64_t>(index))));
  DEVID_ASSIGN_OR_RETURN(crypto::CertificateRequest csr,
                         se::MakeCsrInChip(*chip, kDeviceKeySlot, subject, {}));
  DEVID_ASSIGN_OR_RETURN(p.csr_pem, csr.ToPem());
  return std::optional<Pending>(std::move(p));
}

Status CheckSpec(const BatchSpec& spec) {
  if (spec.count < 1) return MakeError(ErrorCode::kInvalidInput, "the count must be at least 1");
  if (spec.count > 1 && spec.subject_pattern.find("{n}") == std::string::npos) {
    return MakeError(ErrorCode::kInvalidInput,
                     "the subject must contain {n} so that each identity differs");
  }
  if (spec.start < 0) return MakeError(ErrorCode::kInvalidInput, "the start must be 0 or more");
  return {};
}

}  // namespace

std::string ExpandSubject(const std::string& pattern, int64_t n) {
  std::string out = pattern;
  std::string number = std::to_string(n);
  for (size_t at = 0; (at = out.find("{n}", at)) != std::string::npos; at += number.size()) {
    out.replace(at, 3, number);
  }
  return out;
}

Result<std::string> DeviceIdOf(const std::string& subject_text) {
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName name,
                         crypto::DistinguishedName::Parse(subject_text));
  return DeviceIdFromName(name);
}

Result<Order> OrderBundle(cms::client::CmsClient& cms, const BatchSpec& spec,
                          const crypto::Certificate& site_certificate) {
  DEVID_TRY(CheckSpec(spec));
  DEVID_ASSIGN_OR_RETURN(std::string recipient, site_certificate.ToPem());
  json body = {{"ca", spec.ca},
               {"template", spec.template_name},
               {"subject", spec.subject_pattern},
               {"count", spec.count},
               {"start", spec.start},
               {"format", "cms"},
               {"recipient", recipient}};
  if (spec.days) body["days"] = *spec.days;
  DEVID_ASSIGN_OR_RETURN(json answer, cms.Post(OrgPath(spec.org) + "/batches", body));
  auto bundle = Base64Decode(answer.value("bundle", ""));
  if (!bundle || bundle->empty() || answer.value("format", "") != "cms") {
    return MakeError(ErrorCode::kInvalidInput, "the CMS answered without a CMS bundle");
  }
  Order order;
  order.bundle = std::move(*bundle);
  for (const auto& s : answer.value("serials", json::array())) {
    if (s.is_string()) order.serials.push_back(s.get<std::string>());
  }
  if (order.serials.size() != static_cast<size_t>(spec.count)) {
    return MakeError(ErrorCode::kInvalidInput, "the CMS answered " +
                                                   std::to_string(order.serials.size()) +
                                                   " serials for " + std::to_string(spec.count));
  }
  return order;
}

Result<PersonalisationReport> PersonalizeFromBundle(ByteView bundle,
                                                    const crypto::PrivateKey& site_key,
                                                    const crypto::Certificate& site_certificate,
                                                    const PersonalisationOptions& options) {
  // Everything is checked before the first file is written.
  auto opened = crypto::OpenEnvelope(bundle, site_key, site_certificate);
  if (!opened.ok()) {
    return opened.error().Context(
        "opening the bundle (a bundle of another site, another site key, or a damaged file)");
  }
  std::vector<BundleIdentity> identities;
  std::vector<crypto::Certificate> chain;
  Status parsed = ParseBundle({opened->data(), opened->size()}, identities, chain);
  if (!parsed.ok()) return parsed.error().Context("reading the bundle");
  const crypto::Certificate& issuing_ca = chain.front();

  json order = {{"format", 1},
                {"mode", "bundle"},
                {"order", HexEncode(crypto::Sha256(bundle))},
                {"count", identities.size()}};
  Folder folder(options.out_dir);
  DEVID_TRY(folder.Claim(order));
  DEVID_ASSIGN_OR_RETURN(SecretBytes manufacturer_key,
                         folder.ManufacturerKey(options.manufacturer_key));
  std::vector<std::string> ids;
  for (const auto& identity : identities) ids.push_back(identity.device_id);
  DEVID_ASSIGN_OR_RETURN(auto pins, folder.Pins(ids, options.pin));

  PersonalisationReport report;
  for (const auto& identity : identities) {
    const std::string& id = identity.device_id;
    DEVID_ASSIGN_OR_RETURN(std::optional<ChipRecord> record, folder.ReadRecord(id));
    if (record && record->state == "done") {
      DEVID_TRY(CheckDoneImage(folder, id));
      report.chips.push_back(EntryFor(id, *record));
      ++report.already_done;
      continue;
    }
    // Not done: whatever an interrupted run left of this chip is discarded and
    // the chip made again from the bundle's key.
    DEVID_TRY(folder.RemoveChip(id));
    DEVID_ASSIGN_OR_RETURN(std::string serial, NewChipSerial());
    Status made = [&]() -> Status {
      DEVID_ASSIGN_OR_RETURN(se::ChipClient chip,
                             CreateChip(folder.Image(id), serial, pins.at(id), manufacturer_key));
      // IMPORT_KEY takes the manufacturer key (the personaliser's right).
      DEVID_TRY(chip.AuthenticateManufacturer(manufacturer_key.view()));
      // Wrapped to the chip's transport key. Usable without the PIN: a device
      // has no one to type it; the PIN guards changes to the chip.
      DEVID_TRY(chip.ImportKey(kDeviceKeySlot, identity.key, false));
      DEVID_TRY(chip.SetLifecycle(se::Lifecycle::kPersonalised));
      if (options.fault.stop_after_chips && report.made >= *options.fault.stop_after_chips) {
        return Stopped("after " + std::to_string(report.made) + " chips, " + id + " half made");
      }
      return FinishChip(chip, identity.certificate, issuing_ca);
    }();
    if (!made.ok()) return made.error().Context(id);
    DEVID_ASSIGN_OR_RETURN(ManifestEntry entry, EntryFor(id, serial, identity.certificate));
    ChipRecord done{"done", serial, {}, {}, {}, entry.certificate_serial, entry.fingerprint_sha256};
    DEVID_TRY(folder.WriteRecord(id, done));
    Progress(options, id + ": chip " + serial + ", certificate " + entry.certificate_serial);
    report.chips.push_back(std::move(entry));
    ++report.made;
  }
  DEVID_TRY(folder.WriteManifest(order, report.chips));
  return report;
}

Result<PersonalisationReport> PersonalizeOnChip(cms::client::CmsClient& cms, const BatchSpec& spec,
                                                const PersonalisationOptions& options) {
  DEVID_TRY(CheckSpec(spec));
  std::vector<std::string> ids;
  std::set<std::string> seen;
  for (int i = 0; i < spec.count; ++i) {
    std::string subject = ExpandSubject(spec.subject_pattern, spec.start + static_cast<int64_t>(i));
    auto id = DeviceIdOf(subject);
    if (!id.ok()) return id.error().Context("subject '" + subject + "'");
    if (!seen.insert(*id).second) {
      return MakeError(ErrorCode::kInvalidInput, "two chips would be named " + *id);
    }
    ids.push_back(*id);
  }
  json order_spec = {{"org", spec.org},
                     {"ca", spec.ca},
                     {"template", spec.template_name},
                     {"subject", spec.subject_pattern},
                     {"start", spec.start},
                     {"count", spec.count},
                     {"curve", crypto::KeyTypeName(spec.key_type)},
                     {"days", spec.days ? json(*spec.days) : json(nullptr)}};
  json order = {{"format", 1},
                {"mode", "on-chip"},
                {"order", HexEncode(crypto::Sha256(AsBytes(order_spec.dump())))},
                {"count", spec.count},
                {"spec", order_spec}};
  Folder folder(options.out_dir);
  DEVID_TRY(folder.Claim(order));
  DEVID_ASSIGN_OR_RETURN(SecretBytes manufacturer_key,
                         folder.ManufacturerKey(options.manufacturer_key));
  DEVID_ASSIGN_OR_RETURN(auto pins, folder.Pins(ids, options.pin));

  // 1. Every chip not yet sent to the CMS gets a key and a CSR; chips whose
  // CSR went out before are looked up in the CMS first.
  std::vector<std::optional<ChipRecord>> records(ids.size());
  std::vector<Pending> pending;
  std::optional<crypto::Certificate> chain_ca;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string& id = ids[i];
    DEVID_ASSIGN_OR_RETURN(records[i], folder.ReadRecord(id));
    std::optional<ChipRecord>& r = records[i];
    if (r && (r->state == "done" || r->state == "certified")) continue;
    if (r && r->state == "submitted") {
      DEVID_ASSIGN_OR_RETURN(std::optional<crypto::Certificate> issued,
                             FindIssued(cms, spec, id, r->public_key));
      DEVID_ASSIGN_OR_RETURN(std::optional<Pending> again,
                             ReopenSubmitted(folder, id, i, spec, *r));
      if (issued) {
        if (!again) {
          return MakeError(ErrorCode::kNotFound,
                           id + ": the CMS issued certificate " + issued->SerialHex() +
                               " for a chip whose image is lost or changed: revoke it and "
                               "remove " +
                               folder.RecordPath(id) + " to make the chip again");
        }
        if (!chain_ca) {
          DEVID_ASSIGN_OR_RETURN(std::string chain_pem, cms.CaChainPem(spec.org, spec.ca));
          DEVID_ASSIGN_OR_RETURN(auto chain,
                                 crypto::Certificate::ParsePemChain(AsBytes(chain_pem)));
          chain_ca = chain.front();
        }
        DEVID_ASSIGN_OR_RETURN(ChipRecord certified,
                               CertifiedRecord(r->chip_serial, r->public_key, *issued, *chain_ca));
        DEVID_TRY(folder.WriteRecord(id, certified));
        Progress(options, id + ": certificate " + certified.certificate_serial +
                              " found in the CMS (issued before the interruption)");
        r = std::move(certified);
        continue;
      }
      if (again) {
        pending.push_back(std::move(*again));
        continue;
      }
      // Sent but never certified, and the chip is gone: a new chip, a new key.
    }
    DEVID_ASSIGN_OR_RETURN(Pending p, MakeChipWithKey(folder, id, i, spec, spec.key_type,
                                                      pins.at(id), manufacturer_key));
    pending.push_back(std::move(p));
  }

  // 2. The CSRs to the CMS, each recorded as sent first; the answer recorded
  // before any chip is touched.
  for (size_t from = 0; from < pending.size(); from += kCsrsPerRequest) {
    size_t to = std::min(pending.size(), from + kCsrsPerRequest);
    json csrs = json::array();
    for (size_t k = from; k < to; ++k) {
      const Pending& p = pending[k];
      ChipRecord submitted;
      submitted.state = "submitted";
      submitted.chip_serial = p.chip_serial;
      submitted.public_key = p.key_id;
      DEVID_TRY(folder.WriteRecord(ids[p.index], submitted));
      csrs.push_back(p.csr_pem);
    }
    json body = {{"ca", spec.ca}, {"template", spec.template_name}, {"csrs", csrs}};
    if (spec.days) body["days"] = *spec.days;
    DEVID_ASSIGN_OR_RETURN(json answer, cms.Post(OrgPath(spec.org) + "/batches/csrs", body));
    if (options.fault.stop_after_cms_answer) return Stopped("cms-answer");
    const json& certs = answer.value("certificates", json::array());
    if (!certs.is_array() || certs.size() != to - from) {
      return MakeError(ErrorCode::kInvalidInput,
                       "the CMS answered " + std::to_string(certs.size()) + " certificates for " +
                           std::to_string(to - from) + " requests");
    }
    DEVID_ASSIGN_OR_RETURN(auto chain,
                           crypto::Certificate::ParsePemChain(AsBytes(answer.value("chain", ""))));
    for (size_t k = from; k < to; ++k) {
      const Pending& p = pending[k];
      const std::string& id = ids[p.index];
      auto cert = crypto::Certificate::Parse(AsBytes(certs[k - from].value("certificate", "")));
      if (!cert.ok()) return cert.error().Context("the CMS's certificate for " + id);
      DEVID_ASSIGN_OR_RETURN(std::string cert_key, CertificateKeyId(*cert));
      if (cert_key != p.key_id) {
        return MakeError(ErrorCode::kVerification,
                         "the CMS's certificate for " + id + " does not carry the chip's key");
      }
      DEVID_ASSIGN_OR_RETURN(ChipRecord certified,
                             CertifiedRecord(p.chip_serial, p.key_id, *cert, chain.front()));
      DEVID_TRY(folder.WriteRecord(id, certified));
      records[p.index] = std::move(certified);
    }
  }

  // 3. Certificates into the chips, which are then locked.
  PersonalisationReport report;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string& id = ids[i];
    ChipRecord& r = *records[i];
    if (r.state == "done") {
      DEVID_TRY(CheckDoneImage(folder, id));
      report.chips.push_back(EntryFor(id, r));
      ++report.already_done;
      continue;
    }
    Status made = [&]() -> Status {
      DEVID_ASSIGN_OR_RETURN(crypto::Certificate cert,
                             crypto::Certificate::Parse(AsBytes(r.certificate)));
      DEVID_ASSIGN_OR_RETURN(crypto::Certificate ca,
                             crypto::Certificate::Parse(AsBytes(r.ca_certificate)));
      auto opened = se::ChipClient::Open(folder.Image(id), "");
      if (!opened.ok()) {
        return opened.error().Context("certificate " + r.certificate_serial +
                                      " was issued for this chip, whose image cannot be opened");
      }
      se::ChipClient& chip = *opened;
      DEVID_ASSIGN_OR_RETURN(std::string key_id, ChipKeyId(chip));
      if (key_id != r.public_key) {
        return MakeError(ErrorCode::kVerification, "the chip's key is not the one certificate " +
                                                       r.certificate_serial + " was issued for");
      }
      DEVID_ASSIGN_OR_RETURN(se::ChipInfo info, chip.GetInfo());
      if (info.lifecycle == se::Lifecycle::kOperational) {
        // Locked by an earlier run that stopped before its journal record.
        DEVID_ASSIGN_OR_RETURN(Bytes c001, chip.ReadFile(se::kCertificateChainFile));
        DEVID_ASSIGN_OR_RETURN(std::string cert_pem, cert.ToPem());
        DEVID_ASSIGN_OR_RETURN(std::string ca_pem, ca.ToPem());
        if (AsString(c001) != cert_pem + ca_pem) {
          return MakeError(ErrorCode::kVerification,
                           "the chip is operational with another certificate chain");
        }
        return {};
      }
      if (options.fault.stop_after_chips && report.made >= *options.fault.stop_after_chips) {
        DEVID_ASSIGN_OR_RETURN(std::string cert_pem, cert.ToPem());
        DEVID_TRY(se::WriteChipFile(chip, se::kCertificateChainFile, AsBytes(cert_pem),
                                    kChainFileSize, kAlways, kAfterPin));
        return Stopped("after " + std::to_string(report.made) + " chips, " + id + " half made");
      }
      return FinishChip(chip, cert, ca);
    }();
    if (!made.ok()) return made.error().Context(id);
    r.state = "done";
    DEVID_TRY(folder.WriteRecord(id, r));
    Progress(options, id + ": chip " + r.chip_serial + ", certificate " + r.certificate_serial);
    report.chips.push_back(EntryFor(id, r));
    ++report.made;
  }
  DEVID_TRY(folder.WriteManifest(order, report.chips));
  return report;
}

}  // namespace devid::factory
