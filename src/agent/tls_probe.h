// `devid agent tls-probe`: one mutual-TLS handshake the way the agent makes
// its connections (seed fig. 3, DESIGN §5), reporting what the chip did.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"
#include "core/secret.h"
#include "crypto/tls.h"

namespace devid::agent {

struct TlsProbeOptions {
  std::string image;   // the chip in-process, or
  std::string socket;  // a `devid se run` daemon
  int slot = 0;        // the device key
  std::optional<SecretString> pin;
  std::string host;
  uint16_t port = 0;
  std::string server_name;  // default: host
  crypto::TlsVersion version = crypto::TlsVersion::kTls12;
};

struct TlsProbeResult {
  crypto::TlsSessionInfo session;
  std::vector<std::string> setup_log;      // chip commands before the handshake
  std::vector<std::string> handshake_log;  // chip commands during it
};

// Builds the agent's TLS context: a library context with the devid provider
// preferred ("?provider=devid") and the chip as its random generator; the
// client certificate chain read from the chip's chain file when the server
// asks for it; the server's chain verified against the issuing CA whose
// public key the chip keeps (its certificate, from the chain file, must carry
// that very key). Then one handshake.
Result<TlsProbeResult> RunTlsProbe(const TlsProbeOptions& options);

}  // namespace devid::agent
