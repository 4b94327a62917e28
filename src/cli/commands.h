#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "ca/hierarchy.h"
#include "cms/client/client.h"
#include "core/result.h"
#include "core/secret.h"
#include "store/store.h"

namespace devid::cli {

struct GlobalOptions {
  std::string home;
  std::string db;  // --db / DEVID_DB: a store URL instead of <home>/devid.db
  std::string passphrase_file;
  bool no_passphrase = false;
  int exit_code = 0;
};

// --pin-file FILE and --pin PIN on a chip command; `use` ends their help text.
void AddPinOptions(CLI::App* c, std::string& pin, std::string& pin_file, const std::string& use);
// --pin-file, then --pin, then DEVID_PIN; none: no PIN.
Result<std::optional<SecretString>> ResolvePin(const std::string& pin, const std::string& pin_file);
// A chip manufacturer key file: 64 hex digits (32 bytes) on its first line.
Result<SecretBytes> ReadManufacturerKey(const std::string& path);
// Control characters (C0, C1) shown as \\xNN: names and messages can carry bytes from CSRs.
std::string Printable(const std::string& s);
// Runs a command body: an error becomes one "devid: error: ..." line and exit code 1.
void Run(GlobalOptions& g, const std::function<Status()>& body);

// The devid home (--home, default ./var/devid) and its store: created 0700,
// refused when others could write into it.
std::string HomeDir(const GlobalOptions& g);
Result<std::unique_ptr<store::Store>> OpenHomeStore(const GlobalOptions& g);
// How CA keys are protected: --passphrase-file, DEVID_PASSPHRASE or --no-passphrase.
Result<ca::KeyProtection> ResolveProtection(const GlobalOptions& g);

// HOST:PORT (or [v6]:PORT) of `option`; errors name the option.
Result<std::pair<std::string, uint16_t>> ParseHostPort(const std::string& text,
                                                       const std::string& option,
                                                       const std::string& host_word,
                                                       bool allow_port_zero);

// Where the CMS is and who calls it: --url, --cacert, --token (DEVID_CMS_*),
// else the session `devid cms login` keeps in <home>/cms-session.json.
struct CmsOpts {
  std::string url;
  std::string cacert;
  std::string token;
};
void AddCmsConnectionOptions(CLI::App* c, CmsOpts& o);
Result<cms::client::CmsClient> ConnectCms(const GlobalOptions& g, const CmsOpts& o,
                                          bool need_token);

// Where a device gets its certificates: --cms (DEVID_CMS_URL), --cms-ca
// (DEVID_CMS_CACERT), --org, --ca; `required` makes all but --cms-ca mandatory.
struct AgentCmsOpts {
  std::string url, ca_file, org, ca;
};
void AddAgentCmsOptions(CLI::App* c, AgentCmsOpts& o, bool required);

// `devid ca …`
void AddCaCommands(CLI::App& app, GlobalOptions& global);
// `devid se …`
void AddSeCommands(CLI::App& app, GlobalOptions& global);
// `devid agent …`
void AddAgentCommands(CLI::App& app, GlobalOptions& global);
// `devid serve`
void AddServeCommands(CLI::App& app, GlobalOptions& global);
// `devid cms …`
void AddCmsCommands(CLI::App& app, GlobalOptions& global);
// `devid admin …` and `devid audit …`
void AddAdminCommands(CLI::App& app, GlobalOptions& global);
// `devid hub …`
void AddHubCommands(CLI::App& app, GlobalOptions& global);
// `devid factory …`
void AddFactoryCommands(CLI::App& app, GlobalOptions& global);
// `devid fleet …`
void AddFleetCommands(CLI::App& app, GlobalOptions& global);

}  // namespace devid::cli
