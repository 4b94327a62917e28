// `devid hub`: the local cloud of seed figure 4 steps 6-7. A real Eclipse
// Mosquitto broker that devid configures and supervises: TLS with client
// certificates from the organization's issuing CAs, the server certificate
// issued by the CMS, and libdevid-mosquitto.so (plugin.cc) deciding identity
// (certificate CN), per-device topics, revocation and disabled devices from
// files this daemon keeps current by polling the CMS.
//
// State folder (default <home>/hub/<org>, 0700):
//   mosquitto.conf          generated at every start
//   server-key.pem (0600)   the hub's key, generated here; server-cert.pem: its
//                           certificate (template "server", by the devices' issuing CA) and that CA
//   ca.pem                  the chains of the organization's issuing CAs (mosquitto's cafile)
//   issuers.pem             the issuing CAs themselves (the plugin's)
//   crl.pem                 their CRLs (mosquitto's crlfile, and the plugin's)
//   devices.disabled        identifiers the registry has disabled
//   operators               "<serial> <name>" of operator certificates (`issue-operator`)
//   spool                   "<unix time> <device>" lines the plugin appends on connections
//   mosquitto.log           the broker's log; mosquitto.out its stdout/stderr
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "cms/client/client.h"
#include "core/result.h"

namespace devid::cloud::hub {

struct HubOptions {
  std::string org;
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 8883;  // 0: a free port, found by binding one
  std::string ca;               // the issuing CA of the hub's certificate; empty: the only one
  std::string dir;              // state folder
  std::string plugin_path;      // libdevid-mosquitto.so (FindPlugin)
  std::string mosquitto_path = "/usr/sbin/mosquitto";
  int refresh_ms = 2000;  // how often the CMS is polled
};

// One line of output (no line ending).
using LineSink = std::function<void(const std::string& line)>;

// Prepares the state folder, starts mosquitto, calls `ready` once with
// "hub ready on HOST:PORT (mosquitto pid N)", then keeps the broker's files
// current: every refresh it reads the CAs, their CRLs and the device registry,
// rewrites what changed atomically and sends mosquitto SIGHUP (the plugin
// reloads); it reports the devices the plugin spooled to the CMS registry.
// On SIGHUP mosquitto 2.0.11 re-runs the plugin's check for every connected
// client (a revoked or disabled one is dropped) and reads its certificate,
// key and crlfile again, but not its cafile: a change of the issuing CAs
// restarts mosquitto.
//
// Takes SIGTERM, SIGINT, SIGHUP and SIGCHLD for itself (blocked in the calling
// thread, which must be the only one). SIGTERM/SIGINT: stops mosquitto and
// returns ok. SIGHUP: refreshes now. Mosquitto dying is an error.
Status RunHub(cms::client::CmsClient& cms, const HubOptions& options, const LineSink& ready,
              const LineSink& log);

struct OperatorOptions {
  std::string org;
  std::string name;     // the certificate's CN; a registry identifier
  std::string out_dir;  // key.pem (0600), cert.pem, ca.pem
  std::string ca;       // empty: the organization's only issuing CA
  std::string dir;      // the hub's state folder, whose operators file lists the certificate
};

struct IssuedOperator {
  std::string serial;
  std::string ca;
};

// A key made here and a certificate (template "device", CN=name) from the CMS
// for someone who may read every device's topics (devices/#).
Result<IssuedOperator> IssueOperator(cms::client::CmsClient& cms, const OperatorOptions& options);

// libdevid-mosquitto.so: `explicit_path`, else $DEVID_MOSQUITTO_PLUGIN, else
// beside the running executable, else in ../src/ or ../lib/ from it.
Result<std::string> FindPlugin(const std::string& explicit_path);

// <home>/hub/<org>
std::string DefaultStateDir(const std::string& home, const std::string& org);

// OpenSSL's configuration for the broker (its OPENSSL_CONF: Mosquitto has no
// option for it). No TLS 1.3 session tickets: every connection is then
// authenticated by the device's key in its chip, never by a resumption secret
// kept in the device's memory, and the broker saves the two session copies it
// would make per connection to send them (devid's agent never resumes).
std::string_view BrokerOpenSslConf();

// What the hub accepts as a device or operator name: the CMS registry's rule
// (letters, digits, '-', '_', '.', '@'; not only dots; at most 64), which
// keeps MQTT's '/', '+' and '#' out of every identity.
bool ValidIdentity(std::string_view name);

}  // namespace devid::cloud::hub
