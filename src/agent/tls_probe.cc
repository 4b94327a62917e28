#include "agent/tls_probe.h"

#include <mutex>

#include "provider/provider.h"
#include "se/host/client.h"

namespace devid::agent {

namespace {

// The chain file: the device certificate, then its issuing CA's.
Result<std::vector<crypto::Certificate>> ReadChain(provider::SharedChip& chip) {
  Result<Bytes> pem = MakeError(ErrorCode::kInternal, "");
  {
    std::lock_guard<std::mutex> lock(chip.mu);
    pem = chip.client.ReadFile(se::kCertificateChainFile);
  }
  if (!pem.ok()) {
    return MakeError(pem.error().code,
                     "reading the certificate chain from chip file C001: " + pem.error().message);
  }
  auto chain = crypto::Certificate::ParsePemChain(*pem);
  if (!chain.ok() || chain->size() < 2) {
    return MakeError(ErrorCode::kInvalidInput,
                     "chip file C001 must hold the device certificate and its issuing CA's, PEM");
  }
  return chain;
}

}  // namespace

Result<TlsProbeResult> RunTlsProbe(const TlsProbeOptions& o) {
  TlsProbeResult result;
  std::mutex log_mu;
  std::vector<std::string>* log_to = &result.setup_log;
  auto log = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(log_mu);
    log_to->push_back(line);
  };
  DEVID_ASSIGN_OR_RETURN(se::ChipClient client, se::ChipClient::OpenLogged(o.image, o.socket, log));
  if (o.pin) DEVID_TRY(client.Authenticate(o.pin->reveal()));
  auto chip = std::make_shared<provider::SharedChip>(std::move(client));
  DEVID_TRY(provider::ReadCaKey(*chip));
  if (!chip->ca_key) {
    return MakeError(ErrorCode::kNotFound,
                     "the chip holds no issuing CA public key (file CA01): write it with "
                     "`devid se file write --id CA01 --public-key ica.pem`");
  }
  // The trust anchor is the issuing CA certificate from the chip, accepted
  // only if it carries the key the chip keeps.
  DEVID_ASSIGN_OR_RETURN(std::vector<crypto::Certificate> chain, ReadChain(*chip));
  DEVID_ASSIGN_OR_RETURN(crypto::PublicKey ca_key, chain[1].public_key());
  auto as_file = se::KeyFileContent(ca_key);
  if (!as_file.ok() || *as_file != *chip->ca_key) {
    return MakeError(ErrorCode::kVerification,
                     "the issuing CA certificate in chip file C001 does not carry the CA key in "
                     "file CA01");
  }

  std::string locator = o.image.empty() ? "socket=" + o.socket : "image=" + o.image;
  provider::ShareChip(locator, chip);
  struct Unshare {
    std::string locator;
    ~Unshare() { provider::ShareChip(locator, nullptr); }
  } unshare{locator};

  DEVID_ASSIGN_OR_RETURN(crypto::UniquePtr<OSSL_LIB_CTX> ctx, crypto::NewLibraryContext());
  // Declared after the context: the providers are unloaded before it is freed.
  DEVID_ASSIGN_OR_RETURN(auto providers,
                         provider::LoadInto(ctx.get(), provider::LoadOptions{.chip_random = true}));

  crypto::TlsClientOptions tls;
  tls.context = ctx.get();
  tls.properties = "?provider=devid";
  tls.key_uri = "devid:" + locator + ";slot=" + std::to_string(o.slot);
  tls.trust = {chain[1]};
  // seed fig. 3 step 9: the client certificate is read from the chip when
  // the server asks for it.
  tls.chain_source = [&chip]() { return ReadChain(*chip); };
  tls.server_name = o.server_name.empty() ? o.host : o.server_name;
  tls.version = o.version;
  tls.on_handshake_start = [&]() {
    std::lock_guard<std::mutex> lock(log_mu);
    log_to = &result.handshake_log;
  };
  auto session = crypto::TlsHandshake(tls, o.host, o.port);
  {
    std::lock_guard<std::mutex> lock(log_mu);
    log_to = &result.setup_log;  // what the context's teardown does is not the handshake's
  }
  if (!session.ok()) return session.error();
  result.session = std::move(session).value();
  return result;
}

}  // namespace devid::agent
