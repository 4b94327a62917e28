// `devid ca …`: flags in, library calls, one line of error out.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>

#include "ca/hierarchy.h"
#include "cli/commands.h"
#include "core/file.h"
#include "core/time.h"
#include "store/store.h"

namespace devid::cli {

namespace {

struct Context {
  std::unique_ptr<store::Store> store;
  std::unique_ptr<ca::Hierarchy> hierarchy;
};

Result<Context> Open(const GlobalOptions& g, bool needs_keys) {
  ca::KeyProtection protection;
  if (needs_keys) {
    DEVID_ASSIGN_OR_RETURN(protection, ResolveProtection(g));
  }
  Context c;
  DEVID_ASSIGN_OR_RETURN(c.store, OpenHomeStore(g));
  c.hierarchy = std::make_unique<ca::Hierarchy>(*c.store, std::move(protection),
                                                ca::ProfileCatalog(HomeDir(g) + "/templates"));
  return c;
}

// "-" is standard output; anything else a file written atomically.
Status WriteOutput(const std::string& path, const std::string& pem, const Bytes& der,
                   const std::string& format) {
  ByteView data = format == "der" ? ByteView(der) : AsBytes(pem);
  if (path == "-") {
    std::cout.write(reinterpret_cast<const char*>(data.data()),
                    static_cast<std::streamsize>(data.size()));
    std::cout.flush();
    if (!std::cout) return MakeError(ErrorCode::kIo, "cannot write to standard output");
    return {};
  }
  return WriteFileAtomic(path, data);
}

// Messages go to stderr when stdout carries the output itself.
std::ostream& Report(const std::string& out) { return out == "-" ? std::cerr : std::cout; }

std::string StatusText(const store::CertificateRecord& r, int64_t now) {
  if (r.revocation) {
    auto reason = crypto::RevocationReasonFromCode(r.revocation->reason);
    return "revoked(" + std::string(reason.ok() ? crypto::RevocationReasonName(*reason) : "?") +
           ")";
  }
  return r.not_after < now ? "expired" : "valid";
}

}  // namespace

void AddCaCommands(CLI::App& app, GlobalOptions& g) {
  CLI::App* ca = app.add_subcommand(
      "ca", "Certificate authorities: roots, issuing CAs, issuance, revocation, CRLs");
  ca->require_subcommand(1);
  static const std::vector<std::string> kCurves = {"P-256", "P-384"};
  static const std::vector<std::string> kFormats = {"pem", "der"};

  // init-root
  {
    struct Opts {
      std::string org, subject, curve = "P-256", crl_url, ocsp_url;
      std::optional<int> days;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = ca->add_subcommand("init-root",
                                     "Create an organization (if new) and its self-signed root CA");
    c->add_option("--org", o->org, "Organization name")->required();
    c->add_option("--subject", o->subject, "Subject, e.g. \"CN=Acme Root CA,O=Acme\"")->required();
    c->add_option("--curve", o->curve, "Key curve")
        ->check(CLI::IsMember(kCurves))
        ->capture_default_str();
    c->add_option("--days", o->days, "Validity in days (default: the root template's, 7300)");
    c->add_option(
        "--crl-url", o->crl_url,
        "CRL URL this CA publishes, put in the certificates it issues ({org}, {ca} are replaced)");
    c->add_option("--ocsp-url", o->ocsp_url,
                  "OCSP responder URL put in the certificates it issues");
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(Context ctx, Open(g, true));
        DEVID_ASSIGN_OR_RETURN(crypto::KeyType type, crypto::ParseKeyType(o->curve));
        DEVID_ASSIGN_OR_RETURN(
            store::CaRecord rec,
            ctx.hierarchy->InitRoot(o->org, {o->subject, type, o->days, o->crl_url, o->ocsp_url}));
        DEVID_ASSIGN_OR_RETURN(crypto::Certificate cert,
                               crypto::Certificate::Parse(rec.certificate_der));
        std::cout << "root CA of " << o->org << " created: serial " << cert.SerialHex()
                  << ", valid until " << FormatUtc(cert.not_after()) << "\n";
        return {};
      });
    });
  }

  // init-ica
  {
    struct Opts {
      std::string org, name, subject, curve = "P-256", crl_url, ocsp_url;
      std::optional<int> days;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c =
        ca->add_subcommand("init-ica", "Create an issuing CA signed by the organization's root");
    c->add_option("--org", o->org, "Organization name")->required();
    c->add_option("--name", o->name, "Name of the new issuing CA")->required();
    c->add_option("--subject", o->subject, "Subject, e.g. \"CN=Acme Devices ICA,O=Acme\"")
        ->required();
    c->add_option("--curve", o->curve, "Key curve")
        ->check(CLI::IsMember(kCurves))
        ->capture_default_str();
    c->add_option("--days", o->days,
                  "Validity in days (default: the ica template's, 3650; never past the root's)");
    c->add_option("--crl-url", o->crl_url, "CRL URL this CA publishes ({org}, {ca} are replaced)");
    c->add_option("--ocsp-url", o->ocsp_url,
                  "OCSP responder URL put in the certificates it issues");
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(Context ctx, Open(g, true));
        DEVID_ASSIGN_OR_RETURN(crypto::KeyType type, crypto::ParseKeyType(o->curve));
        DEVID_ASSIGN_OR_RETURN(
            store::CaRecord rec,
            ctx.hierarchy->InitIssuing(o->org, o->name,
                                       {o->subject, type, o->days, o->crl_url, o->ocsp_url}));
        DEVID_ASSIGN_OR_RETURN(crypto::Certificate cert,
                               crypto::Certificate::Parse(rec.certificate_der));
        std::cout << "issuing CA " << o->name << " of " << o->org << " created: serial "
                  << cert.SerialHex() << ", valid until " << FormatUtc(cert.not_after()) << "\n";
        return {};
      });
    });
  }

  // issue
  {
    struct Opts {
      std::string org, ca_name, template_name, csr, out, format = "pem";
      std::optional<int> days;
      std::vector<std::string> sans;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = ca->add_subcommand(
        "issue", "Issue a certificate for a PKCS#10 request under a template; prints the serial");
    c->add_option("--org", o->org, "Organization name")->required();
    c->add_option("--ca", o->ca_name, "Issuing CA name")->required();
    c->add_option("--template", o->template_name,
                  "Template: device, server, or a <home>/templates/NAME.json of your own")
        ->required();
    c->add_option("--csr", o->csr, "PKCS#10 request file, PEM or DER")->required();
    c->add_option(
         "--out", o->out,
         "Where to write the certificate (- for standard output; the serial then goes to stderr)")
        ->required();
    c->add_option("--format", o->format, "Output encoding")
        ->check(CLI::IsMember(kFormats))
        ->capture_default_str();
    c->add_option("--days", o->days, "Validity in days (default: the template's)");
    c->add_option("--san", o->sans,
                  "Extra subject alternative name: dns:NAME, uri:URI, ip:ADDR, email:ADDR, "
                  "hardwareModuleName:OID:SERIALHEX (repeatable)");
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        if (o->out != "-") DEVID_TRY(CheckOutputPath(o->out));
        DEVID_ASSIGN_OR_RETURN(Bytes csr_bytes, ReadFile(o->csr, 1 << 20));
        DEVID_ASSIGN_OR_RETURN(crypto::CertificateRequest csr,
                               crypto::CertificateRequest::Parse(csr_bytes));
        ca::IssueOptions options;
        options.days = o->days;
        for (const auto& s : o->sans) {
          DEVID_ASSIGN_OR_RETURN(crypto::GeneralName gn, crypto::GeneralName::Parse(s));
          options.extra_sans.push_back(std::move(gn));
        }
        DEVID_ASSIGN_OR_RETURN(Context ctx, Open(g, true));
        DEVID_ASSIGN_OR_RETURN(ca::CertificateProfile profile,
                               ctx.hierarchy->FindProfile(o->template_name));
        DEVID_ASSIGN_OR_RETURN(ca::SigningCa signer, ctx.hierarchy->Unlock(o->org, o->ca_name));
        DEVID_ASSIGN_OR_RETURN(ca::IssuedCertificate issued, signer.Issue(profile, csr, options));
        DEVID_ASSIGN_OR_RETURN(std::string pem, issued.certificate.ToPem());
        auto written = WriteOutput(o->out, pem, issued.record.der, o->format);
        if (!written.ok()) {
          return written.error().Context("certificate " + issued.record.serial_hex +
                                         " was issued and recorded, but writing it failed");
        }
        Report(o->out) << issued.record.serial_hex << "\n";
        return {};
      });
    });
  }

  // revoke
  {
    struct Opts {
      std::string org, serial, reason;
      std::optional<std::string> ca_name;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = ca->add_subcommand("revoke", "Revoke a certificate by serial number");
    c->add_option("--org", o->org, "Organization name")->required();
    c->add_option("--serial", o->serial, "Serial number, hexadecimal")->required();
    c->add_option("--reason", o->reason,
                  "RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged, "
                  "superseded, "
                  "cessationOfOperation, privilegeWithdrawn, aACompromise")
        ->required();
    c->add_option("--ca", o->ca_name, "Issuing CA (only needed if two CAs used the same serial)");
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(crypto::RevocationReason reason,
                               crypto::ParseRevocationReason(o->reason));
        DEVID_ASSIGN_OR_RETURN(Context ctx, Open(g, false));
        DEVID_ASSIGN_OR_RETURN(store::CertificateRecord rec,
                               ctx.hierarchy->Revoke(o->org, o->serial, reason, o->ca_name));
        std::cout << "revoked " << rec.serial_hex << " (" << crypto::RevocationReasonName(reason)
                  << ")\n";
        return {};
      });
    });
  }

  // crl
  {
    struct Opts {
      std::string org, ca_name, out, format = "pem";
      int days = 7;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = ca->add_subcommand("crl", "Write a new, numbered full CRL of a CA");
    c->add_option("--org", o->org, "Organization name")->required();
    c->add_option("--ca", o->ca_name, "CA name (\"root\" for the root CA)")->required();
    c->add_option("--out", o->out, "Where to write the CRL (- for standard output)")->required();
    c->add_option("--format", o->format, "Output encoding")
        ->check(CLI::IsMember(kFormats))
        ->capture_default_str();
    c->add_option("--days", o->days, "Days until nextUpdate")->capture_default_str();
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        if (o->out != "-") DEVID_TRY(CheckOutputPath(o->out));
        DEVID_ASSIGN_OR_RETURN(Context ctx, Open(g, true));
        DEVID_ASSIGN_OR_RETURN(ca::SigningCa signer, ctx.hierarchy->Unlock(o->org, o->ca_name));
        DEVID_ASSIGN_OR_RETURN(crypto::Crl crl, signer.MakeCrl(o->days));
        DEVID_ASSIGN_OR_RETURN(std::string pem, crl.ToPem());
        DEVID_ASSIGN_OR_RETURN(Bytes der, crl.ToDer());
        DEVID_TRY(WriteOutput(o->out, pem, der, o->format));
        Report(o->out) << "CRL number " << crl.NumberHex() << " with " << crl.revoked_count()
                       << " entries written to " << o->out << "\n";
        return {};
      });
    });
  }

  // export
  {
    struct Opts {
      std::string org, ca_name, out;
      bool chain = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = ca->add_subcommand(
        "export", "Write a CA certificate (PEM), optionally with its chain to the root");
    c->add_option("--org", o->org, "Organization name")->required();
    c->add_option("--ca", o->ca_name, "CA name (\"root\" for the root CA)")->required();
    c->add_flag("--chain", o->chain, "Append the issuers up to and including the root");
    c->add_option("--out", o->out, "Where to write the PEM (- for standard output)")->required();
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        if (o->out != "-") DEVID_TRY(CheckOutputPath(o->out));
        DEVID_ASSIGN_OR_RETURN(Context ctx, Open(g, false));
        DEVID_ASSIGN_OR_RETURN(std::vector<crypto::Certificate> chain,
                               ctx.hierarchy->Chain(o->org, o->ca_name));
        std::string pem;
        for (size_t i = 0; i < (o->chain ? chain.size() : 1); ++i) {
          DEVID_ASSIGN_OR_RETURN(std::string one, chain[i].ToPem());
          pem += one;
        }
        return WriteOutput(o->out, pem, {}, "pem");
      });
    });
  }

  // list
  {
    struct Opts {
      std::string org, status = "any";
      std::optional<std::string> ca_name;
      std::optional<int> expires_within;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = ca->add_subcommand(
        "list", "List an organization's certificates: serial, CA, template, status, expiry");
    c->add_option("--org", o->org, "Organization name")->required();
    c->add_option("--ca", o->ca_name, "Only this CA's certificates");
    c->add_option("--status", o->status, "Only certificates with this status")
        ->check(CLI::IsMember({"any", "valid", "revoked", "expired"}))
        ->capture_default_str();
    c->add_option("--expires-within", o->expires_within,
                  "Only certificates expiring within N days");
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(Context ctx, Open(g, false));
        DEVID_ASSIGN_OR_RETURN(std::vector<store::CaRecord> cas, ctx.hierarchy->ListCas(o->org));
        std::map<int64_t, std::string> ca_names;
        store::CertificateFilter filter;
        for (const auto& ca : cas) {
          ca_names[ca.id] = ca.name;
          if (o->ca_name && ca.name == *o->ca_name) filter.ca_id = ca.id;
        }
        if (o->ca_name && !filter.ca_id) {
          return MakeError(
              ErrorCode::kNotFound,
              "CA '" + *o->ca_name + "' does not exist in organization '" + o->org + "'");
        }
        int64_t now = NowUnix();
        filter.now = now;
        filter.limit = 100000;
        if (o->status == "valid") filter.status = store::CertificateStatus::kValid;
        if (o->status == "revoked") filter.status = store::CertificateStatus::kRevoked;
        if (o->status == "expired") filter.status = store::CertificateStatus::kExpired;
        if (o->expires_within)
          filter.expires_before = now + int64_t{*o->expires_within} * kSecondsPerDay;
        DEVID_ASSIGN_OR_RETURN(std::vector<store::CertificateRecord> certs,
                               ctx.hierarchy->List(o->org, filter));
        std::printf("%-34s %-12s %-8s %-26s %-21s %s\n", "SERIAL", "CA", "TEMPLATE", "STATUS",
                    "NOT_AFTER", "SUBJECT");
        for (const auto& r : certs) {
          std::printf("%-34s %-12s %-8s %-26s %-21s %s\n", r.serial_hex.c_str(),
                      ca_names[r.ca_id].c_str(), r.template_name.c_str(),
                      StatusText(r, now).c_str(), FormatUtc(r.not_after).c_str(),
                      Printable(r.subject).c_str());
        }
        return {};
      });
    });
  }
}

}  // namespace devid::cli
