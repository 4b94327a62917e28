#include "agent/device.h"

#include <filesystem>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "core/file.h"
#include "provider/provider.h"
#include "se/host/client.h"

namespace devid::agent {

namespace {

// Room for a renewed chain that grows a little (a longer serial, a SAN).
constexpr size_t kChainFileSize = 4096;

// Library contexts of devices that are gone, with the provider loaded: the
// next device takes one and names its own chip in it. A fresh OpenSSL 3
// context fetches every algorithm anew on first use (a TLS context alone
// costs ~3.5 ms more in a fresh one on the reference VM), which a fleet pays
// per device. The last device's TLS context goes along, to be configured
// anew by the next (crypto::MakeClientContext replaces every setting, key and
// chain); until then it holds a key whose chip connection the Device closed
// when it ended. The provider reaches chips only by the name it is given and
// the chips shared in this process.
struct PooledContext {
  crypto::UniquePtr<OSSL_LIB_CTX> context;
  std::unique_ptr<provider::LoadedProviders> providers;
  crypto::UniquePtr<SSL_CTX> tls;
};
constexpr size_t kContextPoolLimit = 64;
struct ContextPool {
  std::mutex mu;
  std::vector<PooledContext> free;
};
ContextPool& Pool() {
  static ContextPool* pool = new ContextPool;  // never destroyed: contexts outlive main
  return *pool;
}

std::optional<PooledContext> TakePooledContext() {
  ContextPool& pool = Pool();
  std::lock_guard<std::mutex> lock(pool.mu);
  if (pool.free.empty()) return std::nullopt;
  PooledContext out = std::move(pool.free.back());
  pool.free.pop_back();
  return out;
}

void PoolContext(PooledContext pooled) {
  ContextPool& pool = Pool();
  std::unique_lock<std::mutex> lock(pool.mu);
  if (pool.free.size() < kContextPoolLimit) {
    pool.free.push_back(std::move(pooled));
    return;
  }
  lock.unlock();
  pooled.tls.reset();        // its key belongs to the providers
  pooled.providers.reset();  // unloaded before their context is freed
  pooled.context.reset();
}

}  // namespace

Result<std::unique_ptr<Device>> Device::Open(
    const ChipOptions& options, const std::function<void(se::SecureElement&)>& configure) {
  if (options.image.empty() == options.socket.empty()) {
    return MakeError(ErrorCode::kInvalidInput, "give exactly one of --image FILE or --socket PATH");
  }
  DEVID_ASSIGN_OR_RETURN(se::ChipClient client,
                         se::ChipClient::Open(options.image, options.socket, configure));
  return Adopt(options, std::move(client));
}

Result<std::unique_ptr<Device>> Device::Adopt(const ChipOptions& options, se::ChipClient client) {
  std::unique_ptr<Device> d(new Device());
  d->options_ = options;
  if (options.pin) DEVID_TRY(client.Authenticate(options.pin->reveal()));
  d->chip_ = std::make_shared<provider::SharedChip>(std::move(client));
  DEVID_TRY(provider::ReadCaKey(*d->chip_));
  d->locator_ = options.image.empty() ? "socket=" + options.socket : "image=" + options.image;
  provider::ShareChip(d->locator_, d->chip_);
  if (auto reused = TakePooledContext()) {
    d->context_ = std::move(reused->context);
    d->providers_ = std::move(reused->providers);
    d->spare_tls_ = std::move(reused->tls);
    d->providers_->UseChip(d->locator_);
    return d;
  }
  DEVID_ASSIGN_OR_RETURN(d->context_, crypto::NewLibraryContext());
  DEVID_ASSIGN_OR_RETURN(
      d->providers_,
      provider::LoadInto(d->context_.get(), provider::LoadOptions{.chip_random = true,
                                                                  .chip = d->locator_,
                                                                  .key_reference_files = false}));
  return d;
}

Device::~Device() {
  crypto::UniquePtr<SSL_CTX> tls = last_tls_ ? std::move(last_tls_) : std::move(spare_tls_);
  if (context_ && providers_) {
    PoolContext({std::move(context_), std::move(providers_), std::move(tls)});
  } else {
    tls.reset();
    providers_.reset();
    context_.reset();
  }
  if (!locator_.empty()) provider::ShareChip(locator_, nullptr);
  // The pooled TLS context still holds this device's key until the next
  // device replaces it: the chip behind it is closed now, so that key can do
  // nothing more and the chip (its image, its state) is released.
  if (chip_) {
    std::lock_guard<std::mutex> lock(chip_->mu);
    chip_->client.Close();
  }
}

std::string Device::ChipSerial() {
  std::lock_guard<std::mutex> lock(chip_->mu);
  auto info = chip_->client.GetInfo();
  return info.ok() ? info->serial : "";
}

Result<std::vector<crypto::Certificate>> Device::Chain() {
  if (chain_) return *chain_;
  Result<Bytes> pem = MakeError(ErrorCode::kNotFound, "no certificate chain yet");
  if (options_.cert_dir.empty()) {
    std::lock_guard<std::mutex> lock(chip_->mu);
    pem = chip_->client.ReadFile(se::kCertificateChainFile);
    if (!pem.ok() && pem.error().code != ErrorCode::kNotFound) {
      return pem.error().Context("reading the certificate chain from chip file C001");
    }
  } else {
    std::string path = options_.cert_dir + "/chain.pem";
    if (std::filesystem::exists(path)) pem = ReadFile(path, 64 * 1024);
  }
  if (!pem.ok()) return pem.error();
  auto chain = crypto::Certificate::ParsePemChain(*pem);
  if (!chain.ok() || chain->size() < 2) {
    return MakeError(ErrorCode::kInvalidInput,
                     "the stored chain must hold the device certificate and its issuing CA's, PEM");
  }
  chain_ = *chain;
  return chain;
}

Result<std::string> Device::Identity() {
  DEVID_ASSIGN_OR_RETURN(auto chain, Chain());
  DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject, chain.front().subject());
  std::string cn;
  for (const auto& attribute : subject.attributes()) {
    if (attribute.type == "CN") cn = attribute.value;
  }
  if (cn.empty()) return MakeError(ErrorCode::kInvalidInput, "the device certificate has no CN");
  return cn;
}

Result<crypto::CertificateRequest> Device::MakeCsr(const crypto::DistinguishedName& subject,
                                                   const std::vector<crypto::GeneralName>& sans) {
  std::lock_guard<std::mutex> lock(chip_->mu);
  return se::MakeCsrInChip(chip_->client, static_cast<uint8_t>(options_.slot), subject, sans);
}

Status Device::CheckIssued(const crypto::Certificate& certificate) {
  if (!chip_->ca_key) {
    return MakeError(ErrorCode::kNotFound,
                     "the chip holds no issuing CA public key (file CA01): it was not "
                     "personalised");
  }
  DEVID_ASSIGN_OR_RETURN(auto signed_part, certificate.SignedDigestAndSignature());
  DEVID_ASSIGN_OR_RETURN(crypto::PublicKey key, certificate.public_key());
  DEVID_ASSIGN_OR_RETURN(Bytes key_file, se::KeyFileContent(key));
  std::lock_guard<std::mutex> lock(chip_->mu);
  DEVID_ASSIGN_OR_RETURN(
      bool good, chip_->client.VerifySignatureWithFileKey(se::kCaPublicKeyFile, signed_part.first,
                                                          signed_part.second));
  if (!good) {
    return MakeError(ErrorCode::kVerification,
                     "the certificate is not signed by the issuing CA whose key the chip keeps");
  }
  DEVID_ASSIGN_OR_RETURN(auto own,
                         chip_->client.ReadPublicKey(static_cast<uint8_t>(options_.slot)));
  DEVID_ASSIGN_OR_RETURN(crypto::PublicKey own_key,
                         crypto::EcPublicKeyFromPoint(own.first, own.second));
  DEVID_ASSIGN_OR_RETURN(Bytes own_file, se::KeyFileContent(own_key));
  if (own_file != key_file) {
    return MakeError(ErrorCode::kVerification, "the certificate does not certify the key in slot " +
                                                   std::to_string(options_.slot));
  }
  return {};
}

Result<crypto::Certificate> Device::TrustedIssuer(const std::vector<crypto::Certificate>& chain) {
  DEVID_ASSIGN_OR_RETURN(crypto::PublicKey ca_key, chain[1].public_key());
  auto as_file = se::KeyFileContent(ca_key);
  if (!chip_->ca_key || !as_file.ok() || *as_file != *chip_->ca_key) {
    return MakeError(ErrorCode::kVerification,
                     "the issuing CA certificate of the chain does not carry the CA key in chip "
                     "file CA01");
  }
  return chain[1];
}

Status Device::StoreChain(const crypto::Certificate& certificate,
                          const crypto::Certificate& issuer) {
  if (auto trusted = TrustedIssuer({certificate, issuer}); !trusted.ok()) return trusted.error();
  DEVID_ASSIGN_OR_RETURN(std::string pem, certificate.ToPem());
  DEVID_ASSIGN_OR_RETURN(std::string issuer_pem, issuer.ToPem());
  pem += issuer_pem;
  chain_.reset();
  if (!options_.cert_dir.empty()) {
    std::filesystem::create_directories(options_.cert_dir);
    DEVID_TRY(WriteFileAtomic(options_.cert_dir + "/chain.pem", AsBytes(pem)));
  } else {
    std::lock_guard<std::mutex> lock(chip_->mu);
    // Readable by all (the TLS stack reads it), written only after the PIN.
    Status written = se::WriteChipFile(chip_->client, se::kCertificateChainFile, AsBytes(pem),
                                       kChainFileSize, 0x00, 0x01);
    if (!written.ok()) return written.error().Context("storing the chain in chip file C001");
  }
  chain_ = std::vector<crypto::Certificate>{certificate, issuer};
  return {};
}

Result<crypto::UniquePtr<SSL_CTX>> Device::TlsContext(const std::vector<crypto::Certificate>& trust,
                                                      const std::string& server_name,
                                                      bool with_client_chain,
                                                      crypto::TlsVersion version) {
  crypto::TlsClientOptions tls;
  tls.context = context_.get();
  tls.properties = "?provider=devid";
  tls.key_uri = "devid:" + locator_ + ";slot=" + std::to_string(options_.slot);
  tls.server_name = server_name;
  tls.version = version;
  tls.trust = trust;
  if (with_client_chain || trust.empty()) {
    DEVID_ASSIGN_OR_RETURN(auto chain, Chain());
    if (trust.empty()) {
      DEVID_ASSIGN_OR_RETURN(crypto::Certificate issuer, TrustedIssuer(chain));
      tls.trust = {issuer};
    }
    if (with_client_chain) tls.chain = std::move(chain);
  }
  DEVID_ASSIGN_OR_RETURN(crypto::UniquePtr<SSL_CTX> ctx,
                         crypto::MakeClientContext(tls, std::move(spare_tls_)));
  DEVID_ASSIGN_OR_RETURN(last_tls_, crypto::ShareClientContext(ctx.get()));
  return ctx;
}

}  // namespace devid::agent
