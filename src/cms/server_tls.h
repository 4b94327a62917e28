// The CMS's own TLS identity (issue 5: HTTPS by default). At first start
// `devid serve` makes a system CA and, under it, a server certificate for the
// names it answers to; the CA certificate goes to <home>/tls/ca.pem for
// clients to trust (curl --cacert). Keys stay in <home>/tls (0600).
#pragma once

#include <string>
#include <vector>

#include "core/result.h"
#include "crypto/name.h"

namespace devid::cms {

struct ServerTls {
  std::string chain_pem;  // server certificate, then the system CA's
  std::string key_pem;
  std::string ca_path;  // <home>/tls/ca.pem
};

// Reuses the files of an earlier start when they are there and still valid;
// otherwise makes them. `names`: the server certificate's SANs.
Result<ServerTls> LoadOrCreateServerTls(const std::string& home,
                                        const std::vector<crypto::GeneralName>& names);

}  // namespace devid::cms
