// The device as the agent sees it (seed fig. 4, DESIGN §7): its chip, shared
// with the devid provider inside a library context of its own, where every
// TLS connection the agent makes (MQTT to the hub, HTTPS to the CMS for
// re-enrolment) has its key, random numbers and ECDHE in the chip.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "core/secret.h"
#include "crypto/certificate.h"
#include "crypto/csr.h"
#include "crypto/handles.h"
#include "crypto/name.h"
#include "crypto/tls.h"

namespace devid::se {
class SecureElement;
class ChipClient;
}  // namespace devid::se
namespace devid::provider {
struct SharedChip;
class LoadedProviders;
}  // namespace devid::provider

namespace devid::agent {

struct ChipOptions {
  std::string image;   // the chip in-process, or
  std::string socket;  // a `devid se run` daemon
  int slot = 0;        // the device key
  std::optional<SecretString> pin;
  // Where the certificate chain lives: empty, chip file C001; else
  // DIR/chain.pem (for chips too small to hold it).
  std::string cert_dir;
};

class Device {
 public:
  // `configure` sets up an in-process chip (latency model) before first use.
  static Result<std::unique_ptr<Device>> Open(
      const ChipOptions& options, const std::function<void(se::SecureElement&)>& configure = {});
  // A chip this process already holds open (a fleet makes it, then uses it):
  // `options.image` names it.
  static Result<std::unique_ptr<Device>> Adopt(const ChipOptions& options, se::ChipClient client);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // The device's certificate, then its issuing CA's; kNotFound when none yet.
  Result<std::vector<crypto::Certificate>> Chain();
  // The device identity: the CN of its certificate.
  Result<std::string> Identity();
  std::string ChipSerial();
  // A PKCS#10 request for the device key, signed in the chip.
  Result<crypto::CertificateRequest> MakeCsr(const crypto::DistinguishedName& subject,
                                             const std::vector<crypto::GeneralName>& sans);
  // An answer from the CMS is accepted only if the chip says its signature
  // verifies with the issuing CA key the chip keeps (file CA01; seed fig. 4
  // step 5) and it certifies the key in the device's slot.
  Status CheckIssued(const crypto::Certificate& certificate);
  // Stores `certificate` and the issuing CA certificate (which must carry the
  // key in CA01) as the chain.
  Status StoreChain(const crypto::Certificate& certificate, const crypto::Certificate& issuer);
  // A client TLS context in the device's library context: the key in the
  // chip, the client chain (if `with_client_chain`), trust in `trust`
  // (default: the issuing CA of the chain, checked against CA01), the
  // server's `server_name` (DNS name or IP address) checked. Connections made
  // with it end before the Device does.
  Result<crypto::UniquePtr<SSL_CTX>> TlsContext(const std::vector<crypto::Certificate>& trust,
                                                const std::string& server_name,
                                                bool with_client_chain, crypto::TlsVersion version);

 private:
  Device() = default;
  Result<crypto::Certificate> TrustedIssuer(const std::vector<crypto::Certificate>& chain);

  ChipOptions options_;
  std::string locator_;
  // The stored chain as last read or written: parsing a certificate decodes
  // its key (OpenSSL 3), which costs more than the handshake step it serves.
  std::optional<std::vector<crypto::Certificate>> chain_;
  std::shared_ptr<provider::SharedChip> chip_;
  crypto::UniquePtr<OSSL_LIB_CTX> context_;
  std::unique_ptr<provider::LoadedProviders> providers_;  // before context_ is freed
  // A TLS context of an earlier device of the pooled library context, for
  // this device's first TlsContext to configure anew; and the last one made,
  // pooled with the library context when the device is gone.
  crypto::UniquePtr<SSL_CTX> spare_tls_;
  crypto::UniquePtr<SSL_CTX> last_tls_;
};

}  // namespace devid::agent
