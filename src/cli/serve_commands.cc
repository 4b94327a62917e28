// `devid serve`: the CMS over HTTPS: the REST API, CRL and OCSP, /healthz
// and /metrics, on its own TLS identity.
#include <iostream>

#include "cli/commands.h"
#include "cms/api.h"
#include "cms/est_service.h"
#include "cms/openapi.h"
#include "cms/revocation_service.h"
#include "cms/server_tls.h"
#include "http/server.h"

namespace devid::cli {

void AddServeCommands(CLI::App& app, GlobalOptions& g) {
  struct Opts {
    std::string listen = "127.0.0.1:8443";
    std::string public_url;
    int session_minutes = 15;
    int threads = 2;
    std::string est_template = "device";
  };
  auto o = std::make_shared<Opts>();
  CLI::App* serve = app.add_subcommand(
      "serve", "The certificate management service over HTTPS: REST API (/api/v1), CRL, OCSP");
  serve->add_option("--listen", o->listen, "ADDRESS:PORT to listen on (port 0: any free one)")
      ->capture_default_str();
  serve->add_option("--public-url", o->public_url,
                    "Base URL clients reach this service at, for the CRL and OCSP URLs of CAs "
                    "created through the API (default: https://ADDRESS:PORT)");
  serve->add_option("--session-minutes", o->session_minutes, "Lifetime of login sessions")
      ->check(CLI::Range(1, 24 * 60))
      ->capture_default_str();
  serve
      ->add_option("--est-template", o->est_template,
                   "Template EST simpleenroll and serverkeygen issue under")
      ->capture_default_str();
  serve->add_option("--threads", o->threads, "Threads serving connections")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  serve->callback([o, &g] {
    Run(g, [&]() -> Status {
      DEVID_ASSIGN_OR_RETURN(auto listen, ParseHostPort(o->listen, "--listen", "ADDRESS", true));
      std::string home = HomeDir(g);
      DEVID_ASSIGN_OR_RETURN(std::unique_ptr<store::Store> db, OpenHomeStore(g));
      // CA keys are unlocked when first needed (CRL, OCSP); without a
      // passphrase source those endpoints answer 503.
      auto protection = ResolveProtection(g);
      // Templates: the organization's stored ones, then the built-ins and <home>/templates.
      ca::Hierarchy hierarchy(*db,
                              protection.ok() ? std::move(protection).value() : ca::KeyProtection{},
                              ca::ProfileCatalog(home + "/templates"));
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
      cms::Backend backend(*db, hierarchy, &metrics);
      cms::RevocationService revocation(backend);
      revocation.Register(router);
      cms::Authenticator auth(*db, std::chrono::minutes(o->session_minutes));
      cms::Api api(backend, auth, std::string(cms::OpenApiYaml()));
      api.Register(router);
      cms::EstService est(backend, api, o->est_template);
      est.Register(router);
      http::ServerOptions options;
      options.address = listen.first;
      options.port = listen.second;
      options.threads = o->threads;
      // EST re-enrolment authenticates with the client's current certificate.
      options.request_client_certificate = true;
      options.certificate_pem = tls.chain_pem;
      options.key_pem = tls.key_pem;
      options.access_log = [](const std::string& line) { std::cerr << line << std::endl; };
      DEVID_ASSIGN_OR_RETURN(auto server, http::Server::Start(options, router, &metrics));
      std::string host =
          listen.first.find(':') != std::string::npos ? "[" + listen.first + "]" : listen.first;
      api.set_public_url(o->public_url.empty()
                             ? "https://" + host + ":" + std::to_string(server->port())
                             : o->public_url);
      std::cout << "devid serve: listening on https://" << listen.first << ":" << server->port()
                << " (clients trust " << tls.ca_path << ")" << std::endl;
      server->Run(true);
      std::cout << "devid serve: stopped" << std::endl;
      return {};
    });
  });
}

}  // namespace devid::cli
