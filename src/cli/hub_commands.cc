// `devid hub …`: the local cloud, a Mosquitto broker configured and kept
// current by devid (src/cloud/hub). The CMS is reached as `devid cms` reaches
// it: --url/--cacert/--token, else the session of `devid cms login`.
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cloud/hub/hub.h"

namespace devid::cli {

void AddHubCommands(CLI::App& app, GlobalOptions& g) {
  CLI::App* hub = app.add_subcommand("hub",
                                     "The local cloud: an MQTT broker (Mosquitto) for "
                                     "the organization's devices");
  hub->require_subcommand(1);

  // start
  struct StartOpts {
    CmsOpts cms;
    std::string org, listen = "127.0.0.1:8883", ca, dir, plugin, mosquitto = "/usr/sbin/mosquitto";
    double refresh = 2;
  };
  auto so = std::make_shared<StartOpts>();
  CLI::App* start = hub->add_subcommand(
      "start",
      "Run mosquitto for the organization's devices (TLS client certificates, identity = CN, "
      "per-device topics devices/<id>/telemetry and devices/<id>/commands/#) until SIGTERM");
  AddCmsConnectionOptions(start, so->cms);
  start->add_option("--org", so->org, "Organization")->required();
  start->add_option("--listen", so->listen, "ADDRESS:PORT to listen on (port 0: a free one)")
      ->capture_default_str();
  start->add_option("--ca", so->ca,
                    "Issuing CA of the hub's server certificate: the CA of the devices, whose key "
                    "their chips check it with (default: the organization's only issuing CA)");
  start->add_option("--dir", so->dir, "State folder (default: <home>/hub/<org>)");
  start->add_option("--plugin", so->plugin,
                    "libdevid-mosquitto.so (default: $DEVID_MOSQUITTO_PLUGIN, else beside devid)");
  start->add_option("--mosquitto", so->mosquitto, "The broker program")->capture_default_str();
  start
      ->add_option("--refresh", so->refresh,
                   "Seconds between polls of the CMS (CRLs, disabled devices)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  start->callback([&g, so] {
    Run(g, [&]() -> Status {
      DEVID_ASSIGN_OR_RETURN(auto listen, ParseHostPort(so->listen, "--listen", "ADDRESS", true));
      DEVID_ASSIGN_OR_RETURN(cms::client::CmsClient client, ConnectCms(g, so->cms, true));
      cloud::hub::HubOptions options;
      options.org = so->org;
      options.listen_host = listen.first;
      options.listen_port = listen.second;
      options.ca = so->ca;
      options.dir = so->dir.empty() ? cloud::hub::DefaultStateDir(HomeDir(g), so->org) : so->dir;
      options.plugin_path = so->plugin;
      options.mosquitto_path = so->mosquitto;
      options.refresh_ms = static_cast<int>(so->refresh * 1000);
      cloud::hub::LineSink ready = [](const std::string& line) { std::cout << line << std::endl; };
      cloud::hub::LineSink log = [](const std::string& line) {
        std::cerr << "devid hub: " << Printable(line) << std::endl;
      };
      return cloud::hub::RunHub(client, options, ready, log);
    });
  });

  // issue-operator
  struct OperatorOpts {
    CmsOpts cms;
    std::string org, name, out_dir, ca, dir;
  };
  auto oo = std::make_shared<OperatorOpts>();
  CLI::App* op = hub->add_subcommand(
      "issue-operator",
      "Key and certificate for an operator, who may read every device's topics (devices/#)");
  AddCmsConnectionOptions(op, oo->cms);
  op->add_option("--org", oo->org, "Organization")->required();
  op->add_option("--name", oo->name, "Operator name (the certificate's CN)")->required();
  op->add_option("--out-dir", oo->out_dir, "Where key.pem (0600), cert.pem and ca.pem go")
      ->required();
  op->add_option("--ca", oo->ca, "Issuing CA (default: the organization's only issuing CA)");
  op->add_option("--dir", oo->dir, "The hub's state folder (default: <home>/hub/<org>)");
  op->callback([&g, oo] {
    Run(g, [&]() -> Status {
      DEVID_ASSIGN_OR_RETURN(cms::client::CmsClient client, ConnectCms(g, oo->cms, true));
      cloud::hub::OperatorOptions options;
      options.org = oo->org;
      options.name = oo->name;
      options.out_dir = oo->out_dir;
      options.ca = oo->ca;
      options.dir = oo->dir.empty() ? cloud::hub::DefaultStateDir(HomeDir(g), oo->org) : oo->dir;
      DEVID_ASSIGN_OR_RETURN(cloud::hub::IssuedOperator issued,
                             cloud::hub::IssueOperator(client, options));
      std::cout << "operator " << Printable(oo->name) << ": serial " << issued.serial << " from CA "
                << Printable(issued.ca) << ", written to " << oo->out_dir << "\n";
      return {};
    });
  });
}

}  // namespace devid::cli
