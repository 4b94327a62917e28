// `devid factory …`: seed figure 2, identities put into chips at a production
// site (src/factory). `order` asks the CMS for keys and certificates sealed for
// the site; `personalize` opens such a bundle into chips, or has the chips make
// their keys and the CMS sign their CSRs (--generate-on-chip).
//
// Test hook: DEVID_FACTORY_FAIL_AFTER=N stops `personalize` with an error once N
// chips are complete, leaving the next one half made; DEVID_FACTORY_FAIL_AFTER=
// cms-answer stops right after the CMS has signed the CSRs, before the answer is
// journalled. A second run resumes (interruption tests only).
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "core/file.h"
#include "crypto/certificate.h"
#include "crypto/key.h"
#include "factory/factory.h"

namespace devid::cli {

namespace {

struct SpecOpts {
  factory::BatchSpec spec;
  std::string curve = "P-256";
  int days = 0;
};

void AddSpecOptions(CLI::App* c, SpecOpts& o, bool required) {
  auto req = [required](CLI::Option* opt) { return required ? opt->required() : opt; };
  req(c->add_option("--org", o.spec.org, "Organization"));
  req(c->add_option("--ca", o.spec.ca, "Issuing CA"));
  c->add_option("--template", o.spec.template_name, "Certificate template")
      ->default_val("device")
      ->capture_default_str();
  req(c->add_option("--count", o.spec.count, "Number of identities")->check(CLI::Range(1, 100000)));
  req(c->add_option("--subject", o.spec.subject_pattern,
                    "Subject with {n} for the identity's number, e.g. \"CN=dev-{n},O=Acme\""));
  c->add_option("--start", o.spec.start, "First {n}")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  c->add_option("--days", o.days, "Validity in days (default: the template's)")
      ->check(CLI::Range(1, 36500));
}

Result<factory::BatchSpec> SpecFrom(const SpecOpts& o) {
  factory::BatchSpec spec = o.spec;
  if (o.days > 0) spec.days = o.days;
  DEVID_ASSIGN_OR_RETURN(spec.key_type, crypto::ParseKeyType(o.curve));
  return spec;
}

Result<crypto::Certificate> ReadCertificate(const std::string& path, const std::string& what) {
  DEVID_ASSIGN_OR_RETURN(Bytes pem, ReadFile(path, 64 * 1024));
  auto cert = crypto::Certificate::Parse(pem);
  if (!cert.ok()) return cert.error().Context(what + " " + path);
  return cert;
}

Result<factory::FaultInjection> FaultFromEnvironment() {
  factory::FaultInjection fault;
  const char* env = std::getenv("DEVID_FACTORY_FAIL_AFTER");
  if (env == nullptr || *env == '\0') return fault;
  std::string value(env);
  if (value == "cms-answer") {
    fault.stop_after_cms_answer = true;
    return fault;
  }
  try {
    size_t used = 0;
    int n = std::stoi(value, &used);
    if (used == value.size() && n >= 0) {
      fault.stop_after_chips = n;
      return fault;
    }
  } catch (const std::exception&) {
  }
  return MakeError(ErrorCode::kInvalidInput,
                   "DEVID_FACTORY_FAIL_AFTER must be a number of chips or 'cms-answer'");
}

}  // namespace

void AddFactoryCommands(CLI::App& app, GlobalOptions& g) {
  CLI::App* f = app.add_subcommand(
      "factory", "Figure 2: identities pre-provisioned into secure elements at production");
  f->require_subcommand(1);

  {
    struct Opts : SpecOpts {
      CmsOpts cms;
      std::string site_cert, out;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = f->add_subcommand(
        "order", "Ask the CMS for a batch of keys and certificates sealed for a production site");
    AddSpecOptions(c, *o, true);
    c->add_option("--site-cert", o->site_cert,
                  "The production site's certificate: the bundle opens only with its key")
        ->required();
    c->add_option("--out", o->out, "Bundle file to write (CMS EnvelopedData, DER)")->required();
    AddCmsConnectionOptions(c, o->cms);
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(factory::BatchSpec spec, SpecFrom(*o));
        DEVID_ASSIGN_OR_RETURN(crypto::Certificate site, ReadCertificate(o->site_cert, "site"));
        // Checked before the CMS issues anything: an order is never overwritten.
        DEVID_TRY(CheckOutputPath(o->out));
        if (std::error_code ec; std::filesystem::exists(o->out, ec)) {
          return MakeError(ErrorCode::kAlreadyExists,
                           o->out + " exists: each order goes to a new file");
        }
        DEVID_ASSIGN_OR_RETURN(cms::client::CmsClient client, ConnectCms(g, o->cms, true));
        DEVID_ASSIGN_OR_RETURN(factory::Order order, factory::OrderBundle(client, spec, site));
        DEVID_TRY(WriteFileAtomic(o->out, order.bundle, 0644));
        std::cout << "ordered " << order.serials.size() << " identities into " << o->out
                  << " (serials " << order.serials.front() << " .. " << order.serials.back()
                  << ")\n";
        return {};
      });
    });
  }
  {
    struct Opts : SpecOpts {
      CmsOpts cms;
      std::string bundle, site_key, site_cert, site_key_passphrase_file, out_dir, pin_file,
          manufacturer_key_file;
      bool on_chip = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = f->add_subcommand(
        "personalize",
        "Make chips (images in --out-dir) from a bundle, or with keys made on the chips");
    c->add_option("--out-dir", o->out_dir,
                  "Folder of the chips, their journal and manifest (a rerun resumes)")
        ->required();
    c->add_option("--bundle", o->bundle, "Bundle from `devid factory order`");
    c->add_option("--site-key", o->site_key, "The production site's private key (PEM)");
    c->add_option("--site-cert", o->site_cert,
                  "The production site's certificate (default: the one in --site-key's file)");
    c->add_option("--site-key-passphrase-file", o->site_key_passphrase_file,
                  "Passphrase of an encrypted --site-key");
    c->add_flag("--generate-on-chip", o->on_chip,
                "Keys made in the chips; their CSRs signed by the CMS as one batch");
    AddSpecOptions(c, *o, false);
    c->add_option("--curve", o->curve, "Key made on the chip")
        ->capture_default_str()
        ->check(CLI::IsMember({"P-256", "P-384"}));
    c->add_option("--pin-file", o->pin_file,
                  "The chips' user PIN (default: a random PIN per chip, in OUT-DIR/pins.json)");
    c->add_option("--manufacturer-key-file", o->manufacturer_key_file,
                  "32-byte manufacturer key in hex (default: a random one, in "
                  "OUT-DIR/manufacturer.key)");
    AddCmsConnectionOptions(c, o->cms);
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        factory::PersonalisationOptions options;
        options.out_dir = o->out_dir;
        DEVID_ASSIGN_OR_RETURN(options.fault, FaultFromEnvironment());
        if (!o->pin_file.empty()) {
          DEVID_ASSIGN_OR_RETURN(SecretString pin, ReadSecretLine(o->pin_file, "PIN"));
          options.pin = std::move(pin);
        }
        if (!o->manufacturer_key_file.empty()) {
          DEVID_ASSIGN_OR_RETURN(options.manufacturer_key,
                                 ReadManufacturerKey(o->manufacturer_key_file));
        }
        options.progress = [](const std::string& line) { std::cout << line << "\n"; };

        Result<factory::PersonalisationReport> report = MakeError(ErrorCode::kInternal, "no mode");
        if (o->on_chip) {
          if (!o->bundle.empty() || !o->site_key.empty()) {
            return MakeError(ErrorCode::kInvalidInput,
                             "--generate-on-chip takes no --bundle or --site-key");
          }
          if (o->spec.org.empty() || o->spec.ca.empty() || o->spec.count < 1 ||
              o->spec.subject_pattern.empty()) {
            return MakeError(ErrorCode::kInvalidInput,
                             "--generate-on-chip needs --org, --ca, --count and --subject");
          }
          DEVID_ASSIGN_OR_RETURN(factory::BatchSpec spec, SpecFrom(*o));
          DEVID_ASSIGN_OR_RETURN(cms::client::CmsClient client, ConnectCms(g, o->cms, true));
          report = factory::PersonalizeOnChip(client, spec, options);
        } else {
          if (o->bundle.empty() || o->site_key.empty()) {
            return MakeError(ErrorCode::kInvalidInput,
                             "give --bundle and --site-key, or --generate-on-chip");
          }
          DEVID_ASSIGN_OR_RETURN(Bytes bundle, ReadFile(o->bundle, 64 * 1024 * 1024));
          DEVID_ASSIGN_OR_RETURN(Bytes key_pem, ReadFile(o->site_key, 64 * 1024));
          std::optional<SecretString> passphrase;
          if (!o->site_key_passphrase_file.empty()) {
            DEVID_ASSIGN_OR_RETURN(
                SecretString p, ReadSecretLine(o->site_key_passphrase_file, "site key passphrase"));
            passphrase = std::move(p);
          }
          auto key =
              crypto::PrivateKey::FromPem(AsString(key_pem), passphrase ? &*passphrase : nullptr);
          SecureZero(key_pem.data(), key_pem.size());
          if (!key.ok()) return key.error().Context("site key " + o->site_key);
          std::string cert_path = o->site_cert.empty() ? o->site_key : o->site_cert;
          auto cert = ReadCertificate(cert_path, "site certificate");
          if (!cert.ok()) {
            return o->site_cert.empty()
                       ? MakeError(ErrorCode::kInvalidInput,
                                   "give --site-cert (the site key's file holds no certificate)")
                       : cert.error();
          }
          report = factory::PersonalizeFromBundle(bundle, *key, *cert, options);
        }
        if (!report.ok()) return report.error();
        std::cout << report->chips.size() << " chips in " << o->out_dir << " (" << report->made
                  << " made now, " << report->already_done << " done before); manifest "
                  << (std::filesystem::path(o->out_dir) / "manifest.json").string() << "\n";
        return {};
      });
    });
  }
}

}  // namespace devid::cli
