// `devid se …`: the software secure element from the command line. Every chip
// subcommand takes --image FILE (the chip in-process) or --socket PATH (a
// `devid se run` daemon); a PIN (--pin-file, DEVID_PIN or --pin) authenticates first.
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "core/file.h"
#include "crypto/certificate.h"
#include "crypto/csr.h"
#include "crypto/key.h"
#include "provider/provider.h"
#include "se/host/client.h"

namespace devid::cli {

namespace {

struct ChipOptions {
  std::string image;
  std::string socket;
  std::string pin;
  std::string pin_file;
  std::string log;
  bool latency = false;
};

// The chip's command log goes to a file (appended) or to stderr ("-").
std::function<void(se::SecureElement&)> ChipSetup(const std::string& log, bool latency) {
  return [log, latency](se::SecureElement& chip) {
    chip.SetLatencyModel(latency);
    if (log.empty()) return;
    auto sink = log == "-" ? std::shared_ptr<std::ostream>(&std::cerr, [](std::ostream*) {})
                           : std::make_shared<std::ofstream>(log, std::ios::app);
    chip.SetCommandLog([sink](const std::string& line) { *sink << line << std::endl; });
  };
}

void AddChipSetupOptions(CLI::App* c, std::string& log, bool& latency) {
  c->add_option("--log", log,
                "Append the chip's command log (one line a command) to FILE, or - for stderr");
  c->add_flag("--latency", latency,
              "Model a real chip's command times (sign 115 ms, verify 105 ms, ...)");
}

void AddChipOptions(CLI::App* c, ChipOptions& o) {
  c->add_option("--image", o.image, "Chip image file (the chip runs in this process)");
  c->add_option("--socket", o.socket, "Socket of a `devid se run` daemon");
  AddPinOptions(c, o.pin, o.pin_file, "presented before the command (AUTHENTICATE)");
  AddChipSetupOptions(c, o.log, o.latency);
}

Result<se::ChipClient> Connect(const ChipOptions& o) {
  if (!o.socket.empty() && (!o.log.empty() || o.latency)) {
    return MakeError(ErrorCode::kInvalidInput,
                     "--log and --latency belong to `devid se run` when using --socket");
  }
  DEVID_ASSIGN_OR_RETURN(se::ChipClient client,
                         se::ChipClient::Open(o.image, o.socket, ChipSetup(o.log, o.latency)));
  DEVID_ASSIGN_OR_RETURN(std::optional<SecretString> pin, ResolvePin(o.pin, o.pin_file));
  if (pin) DEVID_TRY(client.Authenticate(pin->reveal()));
  return client;
}

// A PEM public key or certificate as a chip key file: curve byte || point.
Result<Bytes> KeyFileFromPem(ByteView pem) {
  std::string_view text = AsString(pem);
  std::optional<crypto::PublicKey> key;
  if (text.find("BEGIN CERTIFICATE") != std::string_view::npos) {
    DEVID_ASSIGN_OR_RETURN(crypto::Certificate cert, crypto::Certificate::Parse(pem));
    DEVID_ASSIGN_OR_RETURN(crypto::PublicKey pub, cert.public_key());
    key.emplace(std::move(pub));
  } else {
    DEVID_ASSIGN_OR_RETURN(crypto::PublicKey pub, crypto::PublicKey::FromPem(text));
    key.emplace(std::move(pub));
  }
  return se::KeyFileContent(*key);
}

const char* LifecycleName(se::Lifecycle l) {
  switch (l) {
    case se::Lifecycle::kManufacturing:
      return "manufacturing";
    case se::Lifecycle::kPersonalised:
      return "personalised";
    case se::Lifecycle::kOperational:
      return "operational";
    case se::Lifecycle::kTerminated:
      return "terminated";
  }
  return "?";
}

Result<uint16_t> ParseFileId(const std::string& text) {
  DEVID_ASSIGN_OR_RETURN(Bytes b, HexDecode(text));
  if (b.size() > 2) return MakeError(ErrorCode::kInvalidInput, "file id is 16 bits (e.g. 0x1001)");
  uint16_t id = 0;
  for (uint8_t x : b) id = static_cast<uint16_t>(id << 8 | x);
  return id;
}

Result<uint8_t> ParseAccess(const std::string& text) {
  if (text == "always") return uint8_t{0x00};
  if (text == "pin") return uint8_t{0x01};
  if (text == "never") return uint8_t{0xFF};
  return MakeError(ErrorCode::kInvalidInput, "access condition must be always, pin or never");
}

const char* AccessName(uint8_t ac) { return ac == 0x00 ? "always" : ac == 0x01 ? "pin" : "never"; }

}  // namespace

void AddSeCommands(CLI::App& app, GlobalOptions& g) {
  CLI::App* se = app.add_subcommand(
      "se", "The software secure element: keys, files, TRNG, signatures in the chip");
  se->require_subcommand(1);
  static const std::vector<std::string> kCurves = {"P-256", "P-384"};

  {
    struct Opts {
      std::string image, serial, pin, pin_file, manufacturer_key_file;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = se->add_subcommand("create", "Create a new chip image (manufacturing state)");
    c->add_option("--image", o->image, "Chip image file to create (its chip key goes to FILE.fuse)")
        ->required();
    c->add_option("--serial", o->serial, "Chip serial (default: random)");
    AddPinOptions(c, o->pin, o->pin_file, "4-16 characters (or DEVID_PIN)");
    c->add_option("--manufacturer-key-file", o->manufacturer_key_file,
                  "File holding the 32-byte manufacturer key in hex: its holder may import "
                  "keys and reset the PIN (default: a key nobody knows)");
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        std::string serial = o->serial;
        if (serial.empty()) {
          DEVID_ASSIGN_OR_RETURN(Bytes r, crypto::RandomBytes(6));
          serial = "SE-" + HexEncode(r);
        }
        DEVID_ASSIGN_OR_RETURN(std::optional<SecretString> pin, ResolvePin(o->pin, o->pin_file));
        if (!pin) {
          return MakeError(ErrorCode::kInvalidInput,
                           "a new chip needs a user PIN: --pin-file FILE, DEVID_PIN or --pin");
        }
        SecretBytes manufacturer_key;
        if (!o->manufacturer_key_file.empty()) {
          DEVID_ASSIGN_OR_RETURN(manufacturer_key, ReadManufacturerKey(o->manufacturer_key_file));
        }
        DEVID_ASSIGN_OR_RETURN(auto chip, se::SecureElement::Create(o->image, serial, *pin, nullptr,
                                                                    manufacturer_key.view()));
        std::cout << "chip " << serial << " created in " << o->image << "\n";
        return {};
      });
    });
  }
  {
    auto o = std::make_shared<ChipOptions>();
    CLI::App* c = se->add_subcommand(
        "info", "Serial, firmware, lifecycle, tamper state, PIN tries, free NVM");
    AddChipOptions(c, *o);
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*o));
        DEVID_ASSIGN_OR_RETURN(se::ChipInfo info, chip.GetInfo());
        if (info.tampered) {
          std::cout << "TAMPER: the chip's memory failed its integrity check; it can only be "
                       "terminated\n";
          return {};
        }
        std::cout << "serial     " << info.serial << "\nfirmware   " << info.firmware_major << "."
                  << info.firmware_minor << "\nlifecycle  " << LifecycleName(info.lifecycle)
                  << "\npin tries  " << info.pin_tries << "\nfree nvm   " << info.free_nvm
                  << " bytes\n";
        return {};
      });
    });
  }
  {
    struct Opts : ChipOptions {
      size_t bytes = 32;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = se->add_subcommand("random", "Random bytes from the chip's TRNG, in hex");
    AddChipOptions(c, *o);
    c->add_option("--bytes", o->bytes, "How many")
        ->check(CLI::Range(1, 65536))
        ->capture_default_str();
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*o));
        DEVID_ASSIGN_OR_RETURN(Bytes r, chip.GetRandom(o->bytes));
        std::cout << HexEncode(r) << "\n";
        return {};
      });
    });
  }
  {
    struct Opts : ChipOptions {
      int slot = 0;
      std::string curve = "P-256";
      bool protect = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = se->add_subcommand("keygen", "Generate a key pair inside the chip");
    AddChipOptions(c, *o);
    c->add_option("--slot", o->slot, "Key slot 0-15 (persistent)")
        ->required()
        ->check(CLI::Range(0, 15));
    c->add_option("--curve", o->curve, "Curve")
        ->check(CLI::IsMember(kCurves))
        ->capture_default_str();
    c->add_flag("--pin-protected", o->protect, "Using the key requires the user PIN");
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*o));
        DEVID_ASSIGN_OR_RETURN(crypto::KeyType type, crypto::ParseKeyType(o->curve));
        DEVID_ASSIGN_OR_RETURN(
            Bytes point, chip.GenerateKeyPair(static_cast<uint8_t>(o->slot), type, o->protect));
        std::cout << o->curve << " key generated in slot " << o->slot << "\n";
        return {};
      });
    });
  }
  {
    struct Opts : ChipOptions {
      int slot = 0;
      std::string out;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c =
        se->add_subcommand("pubkey", "Write a slot's public key (PEM SubjectPublicKeyInfo)");
    AddChipOptions(c, *o);
    c->add_option("--slot", o->slot, "Key slot")->required();
    c->add_option("--out", o->out, "PEM file")->required();
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_TRY(CheckOutputPath(o->out));
        DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*o));
        DEVID_ASSIGN_OR_RETURN(auto key, chip.ReadPublicKey(static_cast<uint8_t>(o->slot)));
        DEVID_ASSIGN_OR_RETURN(crypto::PublicKey pub,
                               crypto::EcPublicKeyFromPoint(key.first, key.second));
        DEVID_ASSIGN_OR_RETURN(std::string pem, pub.ToPem());
        return WriteFileAtomic(o->out, AsBytes(pem));
      });
    });
  }
  {
    struct Opts : ChipOptions {
      int slot = 0;
      std::string out;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = se->add_subcommand(
        "keyref",
        "Write a key reference file (PEM) that OpenSSL with the devid provider loads as the "
        "chip key, for programs that only take key files");
    AddChipOptions(c, *o);
    c->add_option("--slot", o->slot, "Key slot")->required()->check(CLI::Range(0, 15));
    c->add_option("--out", o->out, "PEM file")->required();
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_TRY(CheckOutputPath(o->out));
        {
          // The slot must hold a key now; the reference is checked again when used.
          DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*o));
          auto key = chip.ReadPublicKey(static_cast<uint8_t>(o->slot));
          if (!key.ok()) return key.error();
        }
        std::string where = o->image.empty()
                                ? "socket=" + std::filesystem::absolute(o->socket).string()
                                : "image=" + std::filesystem::absolute(o->image).string();
        std::string uri = "devid:" + where + ";slot=" + std::to_string(o->slot);
        if (!o->pin_file.empty())
          uri += ";pin-file=" + std::filesystem::absolute(o->pin_file).string();
        DEVID_ASSIGN_OR_RETURN(std::string pem, provider::KeyReferencePem(uri));
        return WriteFileAtomic(o->out, AsBytes(pem));
      });
    });
  }
  {
    struct Opts : ChipOptions {
      int slot = 0;
      std::string subject, out;
      std::vector<std::string> sans;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c =
        se->add_subcommand("csr", "A PKCS#10 request for a slot's key, signed in the chip (PEM)");
    AddChipOptions(c, *o);
    c->add_option("--slot", o->slot, "Key slot")->required();
    c->add_option("--subject", o->subject, "Subject, e.g. \"CN=device-0001,O=Acme\"")->required();
    c->add_option("--san", o->sans, "Subject alternative name to request (dns:…, uri:…, ...)");
    c->add_option("--out", o->out, "PEM file")->required();
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_TRY(CheckOutputPath(o->out));
        DEVID_ASSIGN_OR_RETURN(crypto::DistinguishedName subject,
                               crypto::DistinguishedName::Parse(o->subject));
        std::vector<crypto::GeneralName> sans;
        for (const std::string& text : o->sans) {
          DEVID_ASSIGN_OR_RETURN(crypto::GeneralName san, crypto::GeneralName::Parse(text));
          sans.push_back(std::move(san));
        }
        DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*o));
        DEVID_ASSIGN_OR_RETURN(
            crypto::CertificateRequest csr,
            se::MakeCsrInChip(chip, static_cast<uint8_t>(o->slot), subject, sans));
        DEVID_ASSIGN_OR_RETURN(std::string pem, csr.ToPem());
        return WriteFileAtomic(o->out, AsBytes(pem));
      });
    });
  }
  {
    struct Opts : ChipOptions {
      int slot = 0;
      std::string in, out;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c =
        se->add_subcommand("sign", "ECDSA-SHA256 signature of a file, made in the chip (DER)");
    AddChipOptions(c, *o);
    c->add_option("--slot", o->slot, "Key slot")->required();
    c->add_option("--in", o->in, "File to sign")->required();
    c->add_option("--out", o->out, "DER signature file")->required();
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_TRY(CheckOutputPath(o->out));
        DEVID_ASSIGN_OR_RETURN(Bytes data, ReadFile(o->in, 1u << 30));
        DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*o));
        DEVID_ASSIGN_OR_RETURN(Bytes sig,
                               chip.Sign(static_cast<uint8_t>(o->slot), crypto::Sha256(data)));
        return WriteFileAtomic(o->out, sig);
      });
    });
  }
  {
    struct Opts : ChipOptions {
      std::string in, sig, pubkey;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = se->add_subcommand("verify", "Verify an ECDSA-SHA256 signature inside the chip");
    AddChipOptions(c, *o);
    c->add_option("--pubkey", o->pubkey, "PEM public key (P-256 or P-384)")->required();
    c->add_option("--in", o->in, "Signed file")->required();
    c->add_option("--sig", o->sig, "DER signature")->required();
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(Bytes pem, ReadFile(o->pubkey, 1 << 16));
        DEVID_ASSIGN_OR_RETURN(crypto::PublicKey pub, crypto::PublicKey::FromPem(AsString(pem)));
        DEVID_ASSIGN_OR_RETURN(auto point, pub.EcPoint());
        DEVID_ASSIGN_OR_RETURN(Bytes data, ReadFile(o->in, 1u << 30));
        DEVID_ASSIGN_OR_RETURN(Bytes sig, ReadFile(o->sig, 1024));
        DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*o));
        DEVID_ASSIGN_OR_RETURN(
            bool good, chip.VerifySignature(point.first, point.second, crypto::Sha256(data), sig));
        if (!good) return MakeError(ErrorCode::kVerification, "the signature does not verify");
        std::cout << "signature verified by the chip\n";
        return {};
      });
    });
  }
  {
    struct Opts : ChipOptions {
      int slot = 0;
      std::string peer, out;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = se->add_subcommand(
        "ecdh", "ECDH in the chip with a peer's public key; writes the shared secret");
    AddChipOptions(c, *o);
    c->add_option("--slot", o->slot, "Key slot")->required();
    c->add_option("--peer", o->peer, "Peer's PEM public key")->required();
    c->add_option("--out", o->out, "Where to write the raw shared secret")->required();
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_TRY(CheckOutputPath(o->out));
        DEVID_ASSIGN_OR_RETURN(Bytes pem, ReadFile(o->peer, 1 << 16));
        DEVID_ASSIGN_OR_RETURN(crypto::PublicKey pub, crypto::PublicKey::FromPem(AsString(pem)));
        DEVID_ASSIGN_OR_RETURN(auto point, pub.EcPoint());
        DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*o));
        DEVID_ASSIGN_OR_RETURN(Bytes secret,
                               chip.Ecdh(static_cast<uint8_t>(o->slot), point.second));
        Status written = WriteFileAtomic(o->out, secret, 0600);
        SecureZero(secret.data(), secret.size());
        return written;
      });
    });
  }
  {
    CLI::App* file =
        se->add_subcommand("file", "Chip files: certificates, the CA public key, data");
    file->require_subcommand(1);
    struct Opts : ChipOptions {
      std::string id, in, out, read_ac = "always", write_ac = "pin";
      int max = 0;
      bool public_key = false;
    };
    auto w = std::make_shared<Opts>();
    CLI::App* write =
        file->add_subcommand("write", "Write a file (created first if it does not exist)");
    AddChipOptions(write, *w);
    write->add_option("--id", w->id, "File id, hex (e.g. 1001)")->required();
    write->add_option("--in", w->in, "Content")->required();
    write->add_flag("--public-key", w->public_key,
                    "--in is a PEM public key or certificate; store its key the way "
                    "VERIFY_SIGNATURE reads a key file (curve byte, point): the issuing CA's goes "
                    "in file CA01");
    write->add_option("--max", w->max,
                      "Size to reserve when creating (default: the content's size)");
    write->add_option("--read", w->read_ac, "Who may read: always, pin, never")
        ->capture_default_str();
    write->add_option("--write", w->write_ac, "Who may write once operational: always, pin, never")
        ->capture_default_str();
    write->callback([w, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(uint16_t id, ParseFileId(w->id));
        DEVID_ASSIGN_OR_RETURN(uint8_t read_ac, ParseAccess(w->read_ac));
        DEVID_ASSIGN_OR_RETURN(uint8_t write_ac, ParseAccess(w->write_ac));
        DEVID_ASSIGN_OR_RETURN(Bytes data, ReadFile(w->in, 60000));
        if (w->public_key) {
          DEVID_ASSIGN_OR_RETURN(data, KeyFileFromPem(data));
        }
        DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*w));
        return se::WriteChipFile(chip, id, data, w->max > 0 ? static_cast<size_t>(w->max) : 0,
                                 read_ac, write_ac);
      });
    });
    auto r = std::make_shared<Opts>();
    CLI::App* read = file->add_subcommand("read", "Read a file");
    AddChipOptions(read, *r);
    read->add_option("--id", r->id, "File id, hex")->required();
    read->add_option("--out", r->out, "Where to write the content")->required();
    read->callback([r, &g] {
      Run(g, [&]() -> Status {
        DEVID_TRY(CheckOutputPath(r->out));
        DEVID_ASSIGN_OR_RETURN(uint16_t id, ParseFileId(r->id));
        DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*r));
        DEVID_ASSIGN_OR_RETURN(Bytes data, chip.ReadFile(id));
        return WriteFileAtomic(r->out, data);
      });
    });
    auto l = std::make_shared<ChipOptions>();
    CLI::App* list = file->add_subcommand("list", "List the chip's files");
    AddChipOptions(list, *l);
    list->callback([l, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*l));
        DEVID_ASSIGN_OR_RETURN(std::vector<se::ChipFileInfo> files, chip.ListFiles());
        std::printf("%-6s %6s %6s %-7s %-7s\n", "ID", "SIZE", "MAX", "READ", "WRITE");
        for (const auto& f : files) {
          std::printf("%04X   %6u %6u %-7s %-7s\n", f.id, f.size, f.max_size, AccessName(f.read_ac),
                      AccessName(f.write_ac));
        }
        return {};
      });
    });
  }
  {
    struct Opts : ChipOptions {
      std::string set;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = se->add_subcommand(
        "lifecycle", "Move the chip forward: personalised, operational, terminated");
    AddChipOptions(c, *o);
    c->add_option("--set", o->set, "Target state")
        ->required()
        ->check(CLI::IsMember({"personalised", "operational", "terminated"}));
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(se::ChipClient chip, Connect(*o));
        se::Lifecycle target = o->set == "personalised"  ? se::Lifecycle::kPersonalised
                               : o->set == "operational" ? se::Lifecycle::kOperational
                                                         : se::Lifecycle::kTerminated;
        DEVID_TRY(chip.SetLifecycle(target));
        std::cout << "lifecycle: " << o->set << "\n";
        return {};
      });
    });
  }
  {
    struct Opts {
      std::string image, socket, log;
      bool latency = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c =
        se->add_subcommand("run", "Serve a chip on a Unix socket (the device's bus) until SIGTERM");
    c->add_option("--image", o->image, "Chip image file")->required();
    c->add_option("--socket", o->socket, "Socket path to listen on")->required();
    AddChipSetupOptions(c, o->log, o->latency);
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(auto chip, se::SecureElement::Open(o->image));
        ChipSetup(o->log, o->latency)(*chip);
        std::cerr << "devid se: serving " << o->image << " on " << o->socket << "\n";
        return se::ServeChip(std::move(chip), o->socket, true);
      });
    });
  }
}

}  // namespace devid::cli
