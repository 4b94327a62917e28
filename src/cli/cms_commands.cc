// `devid cms …`: the CMS API from the command line, through the C++ client
// library (src/cms/client). `devid cms login` keeps the session in
// <home>/cms-session.json (0600); --url, --cacert and --token (or
// DEVID_CMS_URL, DEVID_CMS_CACERT, DEVID_CMS_TOKEN) override it.
#include <nlohmann/json.hpp>

#include <iostream>

#include "cli/commands.h"
#include "cms/client/client.h"
#include "core/file.h"

namespace devid::cli {

namespace {

using json = nlohmann::json;

std::string SessionPath(const GlobalOptions& g) { return HomeDir(g) + "/cms-session.json"; }

void Print(const json& j) { std::cout << j.dump(2) << "\n"; }

std::string Org(const std::string& org) { return "/orgs/" + cms::client::CmsClient::Segment(org); }

// Adds a subcommand whose body gets a connected client.
CLI::App* Command(CLI::App* parent, const std::string& name, const std::string& help,
                  GlobalOptions& g, std::shared_ptr<CmsOpts> o,
                  std::function<Status(cms::client::CmsClient&)> body) {
  CLI::App* c = parent->add_subcommand(name, help);
  c->callback([&g, o, body = std::move(body)] {
    Run(g, [&]() -> Status {
      DEVID_ASSIGN_OR_RETURN(cms::client::CmsClient client, ConnectCms(g, *o, true));
      return body(client);
    });
  });
  return c;
}

}  // namespace

void AddCmsConnectionOptions(CLI::App* c, CmsOpts& o) {
  c->add_option("--url", o.url,
                "CMS base URL, https://HOST:PORT (default: the session of "
                "`devid cms login` in the home)")
      ->envname("DEVID_CMS_URL");
  c->add_option("--cacert", o.cacert, "CA certificate(s) the CMS server is trusted by")
      ->envname("DEVID_CMS_CACERT");
  c->add_option("--token", o.token, "Bearer token (session or API token)")
      ->envname("DEVID_CMS_TOKEN");
}

Result<cms::client::CmsClient> ConnectCms(const GlobalOptions& g, const CmsOpts& o,
                                          bool need_token) {
  cms::client::ClientOptions options{o.url, o.cacert, o.token};
  auto saved = ReadFile(SessionPath(g), 64 * 1024);
  if (saved.ok()) {
    json j = json::parse(AsString(*saved), nullptr, false);
    if (j.is_object()) {
      if (options.base_url.empty()) options.base_url = j.value("url", "");
      if (options.ca_file.empty()) options.ca_file = j.value("cacert", "");
      if (options.token.empty()) options.token = j.value("token", "");
    }
  }
  if (options.base_url.empty()) {
    return MakeError(ErrorCode::kInvalidInput,
                     "no CMS URL: give --url (or DEVID_CMS_URL) or run `devid cms login`");
  }
  bool has_token = !options.token.empty();
  DEVID_ASSIGN_OR_RETURN(cms::client::CmsClient client,
                         cms::client::CmsClient::Create(std::move(options)));
  if (need_token && !has_token) {
    return MakeError(ErrorCode::kAuth,
                     "not logged in: run `devid cms login` or give --token (DEVID_CMS_TOKEN)");
  }
  return client;
}

void AddCmsCommands(CLI::App& app, GlobalOptions& g) {
  auto o = std::make_shared<CmsOpts>();
  CLI::App* cms = app.add_subcommand("cms", "The CMS API (devid serve) from the command line");
  cms->require_subcommand(1);
  AddCmsConnectionOptions(cms, *o);

  // login
  auto user = std::make_shared<std::string>();
  auto password_file = std::make_shared<std::string>();
  CLI::App* login =
      cms->add_subcommand("login", "Log in; the session is kept in <home>/cms-session.json (0600)");
  login->add_option("--user", *user, "User name")->required();
  login->add_option("--password-file", *password_file,
                    "File whose first line is the password (default: DEVID_CMS_PASSWORD)");
  login->callback([&g, o, user, password_file] {
    Run(g, [&]() -> Status {
      SecretString password;
      if (!password_file->empty()) {
        DEVID_ASSIGN_OR_RETURN(password, ReadSecretLine(*password_file, "password"));
      } else if (const char* env = std::getenv("DEVID_CMS_PASSWORD"); env != nullptr) {
        password = SecretString(env);
      } else {
        return MakeError(ErrorCode::kInvalidInput,
                         "give --password-file or set DEVID_CMS_PASSWORD");
      }
      DEVID_ASSIGN_OR_RETURN(cms::client::CmsClient client, ConnectCms(g, *o, false));
      DEVID_ASSIGN_OR_RETURN(std::string token,
                             client.Login(*user, std::string(password.reveal())));
      std::string url = o->url;
      std::string cacert = o->cacert;
      if (url.empty() || cacert.empty()) {
        // Keep what the saved session had for what was not given now.
        auto saved = ReadFile(SessionPath(g), 64 * 1024);
        json j = saved.ok() ? json::parse(AsString(*saved), nullptr, false) : json();
        if (j.is_object()) {
          if (url.empty()) url = j.value("url", "");
          if (cacert.empty()) cacert = j.value("cacert", "");
        }
      }
      std::string session = json{{"url", url}, {"cacert", cacert}, {"token", token}}.dump();
      DEVID_TRY(WriteFileAtomic(SessionPath(g), AsBytes(session), 0600));
      std::cout << "logged in as " << Printable(*user) << "\n";
      return {};
    });
  });

  // org
  CLI::App* org = cms->add_subcommand("org", "Organizations");
  org->require_subcommand(1);
  auto org_name = std::make_shared<std::string>();
  Command(org, "create", "Create an organization (system admin)", g, o,
          [org_name](cms::client::CmsClient& c) -> Status {
            DEVID_ASSIGN_OR_RETURN(json out, c.Post("/orgs", {{"name", *org_name}}));
            Print(out);
            return {};
          })
      ->add_option("name", *org_name, "Organization name")
      ->required();
  Command(org, "list", "Organizations the caller may see", g, o,
          [](cms::client::CmsClient& c) -> Status {
            DEVID_ASSIGN_OR_RETURN(json out, c.Get("/orgs"));
            Print(out);
            return {};
          });

  // ca
  CLI::App* ca = cms->add_subcommand("ca", "Certificate authorities of an organization");
  ca->require_subcommand(1);
  struct CaOpts {
    std::string org, name, subject, kind;
  };
  auto ca_o = std::make_shared<CaOpts>();
  CLI::App* ca_list = Command(ca, "list", "The organization's CAs", g, o,
                              [ca_o](cms::client::CmsClient& c) -> Status {
                                DEVID_ASSIGN_OR_RETURN(json out, c.Get(Org(ca_o->org) + "/cas"));
                                for (auto& one : out["cas"]) one.erase("certificate");
                                Print(out);
                                return {};
                              });
  ca_list->add_option("--org", ca_o->org, "Organization")->required();
  CLI::App* ca_create =
      Command(ca, "create", "Create an issuing CA under the organization's root", g, o,
              [ca_o](cms::client::CmsClient& c) -> Status {
                json body = {{"name", ca_o->name}, {"subject", ca_o->subject}};
                if (!ca_o->kind.empty()) body["kind"] = ca_o->kind;
                DEVID_ASSIGN_OR_RETURN(json out, c.Post(Org(ca_o->org) + "/cas", body));
                out.erase("certificate");
                Print(out);
                return {};
              });
  ca_create->add_option("--org", ca_o->org, "Organization")->required();
  ca_create->add_option("--name", ca_o->name, "CA name")->required();
  ca_create->add_option("--subject", ca_o->subject, "Subject DN, e.g. \"CN=Acme Devices\"")
      ->required();
  ca_create->add_option("--kind", ca_o->kind, "ica (default) or root");
  CLI::App* ca_chain =
      Command(ca, "chain", "The CA's chain (PEM), up to the root", g, o,
              [ca_o](cms::client::CmsClient& c) -> Status {
                DEVID_ASSIGN_OR_RETURN(std::string pem, c.CaChainPem(ca_o->org, ca_o->name));
                std::cout << pem;
                return {};
              });
  ca_chain->add_option("--org", ca_o->org, "Organization")->required();
  ca_chain->add_option("--ca", ca_o->name, "CA name")->required();

  // template
  CLI::App* tpl = cms->add_subcommand("template", "Certificate templates of an organization");
  tpl->require_subcommand(1);
  struct TplOpts {
    std::string org, file;
  };
  auto tpl_o = std::make_shared<TplOpts>();
  Command(tpl, "list", "Built-in and stored templates", g, o,
          [tpl_o](cms::client::CmsClient& c) -> Status {
            DEVID_ASSIGN_OR_RETURN(json out, c.Get(Org(tpl_o->org) + "/templates"));
            Print(out);
            return {};
          })
      ->add_option("--org", tpl_o->org, "Organization")
      ->required();
  CLI::App* tpl_create =
      Command(tpl, "create", "Store a template (JSON file, docs/TEMPLATES.md)", g, o,
              [tpl_o](cms::client::CmsClient& c) -> Status {
                DEVID_ASSIGN_OR_RETURN(Bytes text, ReadFile(tpl_o->file, 1024 * 1024));
                json body = json::parse(AsString(text), nullptr, false);
                if (body.is_discarded()) {
                  return MakeError(ErrorCode::kInvalidInput, tpl_o->file + " is not JSON");
                }
                DEVID_ASSIGN_OR_RETURN(json out, c.Post(Org(tpl_o->org) + "/templates", body));
                Print(out);
                return {};
              });
  tpl_create->add_option("--org", tpl_o->org, "Organization")->required();
  tpl_create->add_option("--file", tpl_o->file, "Template JSON file")->required();

  // cert
  CLI::App* cert = cms->add_subcommand("cert", "Certificates of an organization");
  cert->require_subcommand(1);
  struct CertOpts {
    std::string org, ca, template_name = "device", csr, out, serial, reason, status, expires_before;
  };
  auto cert_o = std::make_shared<CertOpts>();
  CLI::App* issue =
      Command(cert, "issue", "Issue a certificate from a PKCS#10 request", g, o,
              [cert_o](cms::client::CmsClient& c) -> Status {
                DEVID_ASSIGN_OR_RETURN(Bytes csr, ReadFile(cert_o->csr, 64 * 1024));
                DEVID_ASSIGN_OR_RETURN(
                    json out, c.IssueCertificate(cert_o->org, cert_o->ca, cert_o->template_name,
                                                 std::string(AsString(csr))));
                std::string pem = out.value("certificate", "");
                if (!cert_o->out.empty()) {
                  DEVID_TRY(CheckOutputPath(cert_o->out));
                  DEVID_TRY(WriteFileAtomic(cert_o->out, AsBytes(pem)));
                  std::cout << "serial " << out.value("serial", "") << " written to " << cert_o->out
                            << "\n";
                } else {
                  std::cout << pem;
                }
                return {};
              });
  issue->add_option("--org", cert_o->org, "Organization")->required();
  issue->add_option("--ca", cert_o->ca, "Issuing CA")->required();
  issue->add_option("--template", cert_o->template_name, "Template")->capture_default_str();
  issue->add_option("--csr", cert_o->csr, "PKCS#10 request (PEM or DER)")->required();
  issue->add_option("--out", cert_o->out, "Write the certificate (PEM) here");
  CLI::App* list = Command(
      cert, "list", "Search certificates", g, o, [cert_o](cms::client::CmsClient& c) -> Status {
        std::map<std::string, std::string> query;
        if (!cert_o->status.empty()) query["status"] = cert_o->status;
        if (!cert_o->expires_before.empty()) {
          query["expires_before"] = cert_o->expires_before;
        }
        if (!cert_o->ca.empty()) query["ca"] = cert_o->ca;
        DEVID_ASSIGN_OR_RETURN(json out, c.Get(Org(cert_o->org) + "/certificates", query));
        Print(out);
        return {};
      });
  list->add_option("--org", cert_o->org, "Organization")->required();
  list->add_option("--status", cert_o->status, "valid, revoked, expired or any");
  list->add_option("--expires-before", cert_o->expires_before,
                   "Unix seconds or YYYY-MM-DDTHH:MM:SSZ");
  list->add_option("--ca", cert_o->ca, "Only this CA's");
  CLI::App* revoke = Command(
      cert, "revoke", "Revoke a certificate", g, o, [cert_o](cms::client::CmsClient& c) -> Status {
        DEVID_ASSIGN_OR_RETURN(json out,
                               c.RevokeCertificate(cert_o->org, cert_o->serial, cert_o->reason));
        Print(out);
        return {};
      });
  revoke->add_option("--org", cert_o->org, "Organization")->required();
  revoke->add_option("--serial", cert_o->serial, "Serial (hex)")->required();
  revoke->add_option("--reason", cert_o->reason, "RFC 5280 reason, e.g. keyCompromise");

  // token
  CLI::App* token = cms->add_subcommand("token", "API tokens of an organization");
  token->require_subcommand(1);
  struct TokenOpts {
    std::string org, role, name;
    int64_t id = 0;
  };
  auto tok_o = std::make_shared<TokenOpts>();
  CLI::App* tok_create = Command(
      token, "create", "Create an API token; it is shown once", g, o,
      [tok_o](cms::client::CmsClient& c) -> Status {
        DEVID_ASSIGN_OR_RETURN(json out, c.Post(Org(tok_o->org) + "/tokens",
                                                {{"role", tok_o->role}, {"name", tok_o->name}}));
        Print(out);
        return {};
      });
  tok_create->add_option("--org", tok_o->org, "Organization")->required();
  tok_create->add_option("--role", tok_o->role, "org-admin, operator, auditor or enrollment")
      ->required();
  tok_create->add_option("--name", tok_o->name, "What the token is for")->required();
  Command(token, "list", "The organization's API tokens (never their secrets)", g, o,
          [tok_o](cms::client::CmsClient& c) -> Status {
            DEVID_ASSIGN_OR_RETURN(json out, c.Get(Org(tok_o->org) + "/tokens"));
            Print(out);
            return {};
          })
      ->add_option("--org", tok_o->org, "Organization")
      ->required();
  CLI::App* tok_revoke = Command(
      token, "revoke", "Revoke an API token", g, o, [tok_o](cms::client::CmsClient& c) -> Status {
        DEVID_ASSIGN_OR_RETURN(json out,
                               c.Delete(Org(tok_o->org) + "/tokens/" + std::to_string(tok_o->id)));
        Print(out);
        return {};
      });
  tok_revoke->add_option("--org", tok_o->org, "Organization")->required();
  tok_revoke->add_option("--id", tok_o->id, "Token id")->required();
}

}  // namespace devid::cli
