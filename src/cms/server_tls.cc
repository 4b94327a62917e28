#include "cms/server_tls.h"

#include <sys/stat.h>

#include <filesystem>

#include "core/file.h"
#include "core/time.h"
#include "crypto/certificate.h"
#include "crypto/key.h"

namespace devid::cms {

namespace {

constexpr int64_t kDay = 24 * 3600;

Result<crypto::Certificate> MakeCertificate(const crypto::PrivateKey& key,
                                            const crypto::DistinguishedName& subject,
                                            const crypto::Certificate* issuer,
                                            const crypto::PrivateKey& issuer_key, bool ca,
                                            const std::vector<crypto::GeneralName>& names,
                                            int64_t days) {
  crypto::CertificateBuilder b;
  DEVID_ASSIGN_OR_RETURN(Bytes serial, crypto::RandomBytes(16));
  serial[0] &= 0x7F;  // positive (RFC 5280 §4.1.2.2)
  int64_t now = NowUnix();
  DEVID_TRY(b.SetSerial(serial));
  DEVID_TRY(b.SetSubject(subject));
  if (issuer != nullptr) {
    DEVID_TRY(b.SetIssuer(*issuer));
  } else {
    DEVID_TRY(b.SetSelfIssued());
  }
  DEVID_TRY(b.SetValidity(now - 300, now + days * kDay));
  DEVID_TRY(b.SetPublicKey(key));
  DEVID_TRY(b.AddBasicConstraints(ca, ca ? std::optional<int>(0) : std::nullopt));
  if (ca) {
    DEVID_TRY(b.AddKeyUsage({crypto::KeyUsageBit::kKeyCertSign, crypto::KeyUsageBit::kCrlSign}));
  } else {
    DEVID_TRY(b.AddKeyUsage({crypto::KeyUsageBit::kDigitalSignature}));
    DEVID_TRY(b.AddExtendedKeyUsage({"serverAuth"}));
    DEVID_TRY(b.AddSubjectAltNames(names, false));
  }
  return b.Sign(issuer_key);
}

}  // namespace

Result<ServerTls> LoadOrCreateServerTls(const std::string& home,
                                        const std::vector<crypto::GeneralName>& names) {
  std::string dir = home + "/tls";
  ServerTls tls;
  tls.ca_path = dir + "/ca.pem";
  std::string chain_path = dir + "/server.pem";
  std::string key_path = dir + "/server.key";
  auto chain = ReadFile(chain_path, 64 * 1024);
  auto key = ReadFile(key_path, 64 * 1024);
  if (chain.ok() && key.ok()) {
    auto certs = crypto::Certificate::ParsePemChain(*chain);
    if (certs.ok() && !certs->empty() && (*certs)[0].not_after() > NowUnix() + kDay) {
      // The names may have changed (another --listen): then a new certificate.
      auto sans = (*certs)[0].SubjectAltNames();
      bool same = sans.ok() && sans->size() == names.size();
      for (size_t i = 0; same && i < names.size(); ++i) {
        same = (*sans)[i].ToString() == names[i].ToString();
      }
      if (same) {
        tls.chain_pem = std::string(AsString(*chain));
        tls.key_pem = std::string(AsString(*key));
        SecureZero(key->data(), key->size());
        return tls;
      }
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  ::chmod(dir.c_str(), 0700);
  // The system CA: made once; its key signs only this server's certificates.
  std::string ca_key_path = dir + "/ca.key";
  auto ca_key_pem = ReadFile(ca_key_path, 64 * 1024);
  auto ca_cert_pem = ReadFile(tls.ca_path, 64 * 1024);
  std::optional<crypto::PrivateKey> ca_key;
  std::optional<crypto::Certificate> ca_cert;
  if (ca_key_pem.ok() && ca_cert_pem.ok()) {
    auto k = crypto::PrivateKey::FromPem(AsString(*ca_key_pem), nullptr);
    auto c = crypto::Certificate::Parse(*ca_cert_pem);
    SecureZero(ca_key_pem->data(), ca_key_pem->size());
    if (k.ok() && c.ok()) {
      ca_key.emplace(std::move(k).value());
      ca_cert.emplace(std::move(c).value());
    }
  }
  if (!ca_key) {
    DEVID_ASSIGN_OR_RETURN(crypto::PrivateKey k,
                           crypto::PrivateKey::Generate(crypto::KeyType::kEcP256));
    DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName dn,
                           crypto::DistinguishedName::Parse("CN=devid system CA"));
    DEVID_ASSIGN_OR_RETURN(crypto::Certificate c,
                           MakeCertificate(k, dn, nullptr, k, true, {}, 3650));
    DEVID_ASSIGN_OR_RETURN(std::string k_pem, k.ToPkcs8Pem(nullptr));
    DEVID_TRY(WriteFileAtomic(ca_key_path, AsBytes(k_pem), 0600));
    SecureZero(k_pem.data(), k_pem.size());
    DEVID_ASSIGN_OR_RETURN(std::string c_pem, c.ToPem());
    DEVID_TRY(WriteFileAtomic(tls.ca_path, AsBytes(c_pem), 0644));
    ca_key.emplace(std::move(k));
    ca_cert.emplace(std::move(c));
  }
  DEVID_ASSIGN_OR_RETURN(crypto::PrivateKey server_key,
                         crypto::PrivateKey::Generate(crypto::KeyType::kEcP256));
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName dn,
                         crypto::DistinguishedName::Parse("CN=devid CMS"));
  DEVID_ASSIGN_OR_RETURN(crypto::Certificate cert,
                         MakeCertificate(server_key, dn, &*ca_cert, *ca_key, false, names, 397));
  DEVID_ASSIGN_OR_RETURN(std::string cert_pem, cert.ToPem());
  DEVID_ASSIGN_OR_RETURN(std::string ca_pem, ca_cert->ToPem());
  tls.chain_pem = cert_pem + ca_pem;
  DEVID_ASSIGN_OR_RETURN(tls.key_pem, server_key.ToPkcs8Pem(nullptr));
  DEVID_TRY(WriteFileAtomic(key_path, AsBytes(tls.key_pem), 0600));
  DEVID_TRY(WriteFileAtomic(chain_path, AsBytes(tls.chain_pem), 0644));
  return tls;
}

}  // namespace devid::cms
