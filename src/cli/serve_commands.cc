// `devid serve`: the CMS over HTTPS. This first part serves /healthz and
// /metrics on its own TLS identity; the API (issue 5) is added on this server.
#include <iostream>

#include "cli/commands.h"
#include "cms/revocation_service.h"
#include "cms/server_tls.h"
#include "http/server.h"

namespace devid::cli {

void AddServeCommands(CLI::App& app, GlobalOptions& g) {
  struct Opts {
    std::string listen = "127.0.0.1:8443";
  };
  auto o = std::make_shared<Opts>();
  CLI::App* serve = app.add_subcommand(
      "serve",
      "The certificate management service over HTTPS (health, metrics, CRL and OCSP for now)");
  serve->add_option("--listen", o->listen, "ADDRESS:PORT to listen on (port 0: any free one)")
      ->capture_default_str();
  serve->callback([o, &g] {
    Run(g, [&]() -> Status {
      DEVID_ASSIGN_OR_RETURN(auto listen, ParseHostPort(o->listen, "--listen", "ADDRESS", true));
      std::string home = HomeDir(g);
      DEVID_ASSIGN_OR_RETURN(std::unique_ptr<store::Store> db, OpenHomeStore(g));
      // CA keys are unlocked when first needed (CRL, OCSP); without a
      // passphrase source those endpoints answer 503.
      auto protection = ResolveProtection(g);
      ca::Hierarchy hierarchy(
          *db, protection.ok() ? std::move(protection).value() : ca::KeyProtection{});
      std::vector<crypto::GeneralName> names;
      for (const std::string& n :
           {std::string("dns:localhost"), std::string("ip:127.0.0.1"), std::string("ip:::1")}) {
        DEVID_ASSIGN_OR_RETURN(crypto::GeneralName name, crypto::GeneralName::Parse(n));
        names.push_back(std::move(name));
      }
      if (listen.first != "127.0.0.1" && listen.first != "::1" && listen.first != "0.0.0.0" &&
          listen.first != "::") {
        auto extra = crypto::GeneralName::Parse(
            (listen.first.find_first_not_of("0123456789.:") == std::string::npos ? "ip:" : "dns:") +
            listen.first);
        if (extra.ok()) names.push_back(std::move(extra).value());
      }
      DEVID_ASSIGN_OR_RETURN(cms::ServerTls tls, cms::LoadOrCreateServerTls(home, names));
      http::Metrics metrics;
      http::Router router;
      router.Add("GET", "/healthz", [](const http::Request&) {
        return http::Response{200, "application/json", R"({"status":"ok"})", {}};
      });
      router.Add("GET", "/metrics", [&metrics](const http::Request&) {
        return http::Response{200, "text/plain; version=0.0.4", metrics.Render(), {}};
      });
      cms::RevocationService revocation(hierarchy, &metrics);
      revocation.Register(router);
      http::ServerOptions options;
      options.address = listen.first;
      options.port = listen.second;
      options.certificate_pem = tls.chain_pem;
      options.key_pem = tls.key_pem;
      options.access_log = [](const std::string& line) { std::cerr << line << std::endl; };
      DEVID_ASSIGN_OR_RETURN(auto server, http::Server::Start(options, router, &metrics));
      std::cout << "devid serve: listening on https://" << listen.first << ":" << server->port()
                << " (clients trust " << tls.ca_path << ")" << std::endl;
      server->Run(true);
      std::cout << "devid serve: stopped" << std::endl;
      return {};
    });
  });
}

}  // namespace devid::cli
