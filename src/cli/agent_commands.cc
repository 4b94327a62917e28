// `devid agent …`: the device side (seed fig. 3 and fig. 4 steps 3-7):
// `enroll` (zero-touch: CSR in the chip, EST), `run` (mutual TLS to the hub
// through the chip, MQTT telemetry, renewal), `tls-probe` (one handshake and
// the chip's log of it).
#include <csignal>
#include <iostream>

#include "agent/enroll.h"
#include "agent/session.h"
#include "agent/tls_probe.h"
#include "cli/commands.h"
#include "core/time.h"

namespace devid::cli {

namespace {

volatile std::sig_atomic_t g_stop = 0;

struct AgentChipOpts {
  std::string image, socket, pin, pin_file, cert_dir;
  int slot = 0;
};

void AddAgentChipOptions(CLI::App* c, AgentChipOpts& o) {
  c->add_option("--image", o.image, "Chip image file (the chip runs in this process)");
  c->add_option("--socket", o.socket, "Socket of a `devid se run` daemon");
  c->add_option("--slot", o.slot, "Key slot of the device key")->check(CLI::Range(0, 15));
  c->add_option("--cert-dir", o.cert_dir,
                "Keep the certificate chain in DIR/chain.pem instead of chip file C001");
  AddPinOptions(c, o.pin, o.pin_file, "to store a certificate in the chip (or DEVID_PIN)");
}

Result<std::unique_ptr<agent::Device>> OpenDevice(const AgentChipOpts& o) {
  agent::ChipOptions chip;
  chip.image = o.image;
  chip.socket = o.socket;
  chip.slot = o.slot;
  chip.cert_dir = o.cert_dir;
  DEVID_ASSIGN_OR_RETURN(chip.pin, ResolvePin(o.pin, o.pin_file));
  return agent::Device::Open(chip);
}

}  // namespace

void AddEnrollAndRun(CLI::App* agent, GlobalOptions& g) {
  {
    struct Opts {
      AgentChipOpts chip;
      AgentCmsOpts cms;
      std::string token, subject;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = agent->add_subcommand(
        "enroll",
        "Zero-touch enrolment: a CSR signed in the chip, EST to the CMS (an enrolment token, or "
        "the factory certificate over TLS with the chip's key), the answer checked by the chip "
        "against its CA key and stored");
    AddAgentChipOptions(c, o->chip);
    AddAgentCmsOptions(c, o->cms, true);
    c->add_option("--token", o->token,
                  "Enrolment token (an API token of the enrollment role); without it the device "
                  "authenticates with the certificate it holds (EST simplereenroll)")
        ->envname("DEVID_ENROLL_TOKEN");
    c->add_option("--subject", o->subject,
                  "Subject to ask for (default: the held certificate's, else CN=<chip serial>)");
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(auto device, OpenDevice(o->chip));
        agent::EnrollOptions e;
        e.cms = {o->cms.url, o->cms.ca_file, o->cms.org, o->cms.ca};
        e.token = o->token;
        e.subject = o->subject;
        DEVID_ASSIGN_OR_RETURN(agent::EnrollResult r, agent::Enroll(*device, e));
        std::cout << "enrolled " << Printable(r.identity) << " by EST " << r.method << ": serial "
                  << r.certificate.SerialHex() << ", valid until "
                  << FormatUtc(r.certificate.not_after()) << "\n";
        return {};
      });
    });
  }
  {
    struct Opts {
      AgentChipOpts chip;
      AgentCmsOpts cms;
      std::string hub, server_name;
      double interval = 5;
      uint64_t count = 0;
      uint64_t attempts = 0;
      bool tls12 = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = agent->add_subcommand(
        "run",
        "Mutual TLS to the hub with the chip doing the crypto, JSON telemetry to "
        "devices/<id>/telemetry, renewal (EST simplereenroll) after two thirds of the validity, "
        "reconnection with back-off; stops on SIGTERM");
    AddAgentChipOptions(c, o->chip);
    AddAgentCmsOptions(c, o->cms, false);
    c->add_option("--hub", o->hub, "Hub HOST:PORT")->required();
    c->add_option("--server-name", o->server_name,
                  "Name or address the hub's certificate must carry (default: HOST)");
    c->add_option("--interval", o->interval, "Seconds between telemetry messages")
        ->check(CLI::Range(0.01, 86400.0));
    c->add_option("--count", o->count, "Stop after this many acknowledged messages (0: never)");
    c->add_option("--connect-attempts", o->attempts,
                  "Exit with an error after this many failed connections in a row (0: never)");
    c->add_flag("--tls1_2", o->tls12, "TLS 1.2 (ECDHE-ECDSA) instead of TLS 1.3");
    c->callback([o, &g] {
      Run(g, [&]() -> Status {
        DEVID_ASSIGN_OR_RETURN(auto hub, ParseHostPort(o->hub, "--hub", "HOST", false));
        DEVID_ASSIGN_OR_RETURN(auto device, OpenDevice(o->chip));
        agent::RunOptions r;
        r.hub_host = hub.first;
        r.hub_port = hub.second;
        r.server_name = o->server_name;
        r.interval = std::chrono::milliseconds(static_cast<int64_t>(o->interval * 1000));
        r.version = o->tls12 ? crypto::TlsVersion::kTls12 : crypto::TlsVersion::kTls13;
        r.count = o->count;
        r.max_failures = o->attempts;
        if (!o->cms.url.empty()) {
          if (o->cms.org.empty() || o->cms.ca.empty()) {
            return MakeError(ErrorCode::kInvalidInput,
                             "renewal through --cms needs --org and --ca");
          }
          r.cms = {o->cms.url, o->cms.ca_file, o->cms.org, o->cms.ca};
        }
        g_stop = 0;
        std::signal(SIGTERM, [](int) { g_stop = 1; });
        std::signal(SIGINT, [](int) { g_stop = 1; });
        r.stop = [] { return g_stop != 0; };
        r.log = [](const std::string& line) {
          std::cout << FormatUtc(NowUnix()) << " " << Printable(line) << std::endl;
        };
        DEVID_ASSIGN_OR_RETURN(agent::RunSummary s, agent::RunTelemetry(*device, r));
        std::cout << "stopped: " << s.published << " messages, " << s.connections
                  << " connections, " << s.renewals << " renewals" << std::endl;
        return {};
      });
    });
  }
}

void AddAgentCommands(CLI::App& app, GlobalOptions& g) {
  CLI::App* agent = app.add_subcommand("agent", "The device side: TLS to the cloud with the chip");
  agent->require_subcommand(1);
  struct Opts {
    std::string image, socket, connect, server_name, pin, pin_file;
    int slot = 0;
    bool tls13 = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* probe = agent->add_subcommand(
      "tls-probe",
      "One mutual-TLS handshake as the agent makes it (chip key, chip random, chip ECDHE, server "
      "checked against the CA key in the chip); prints the session and the chip's commands");
  probe->add_option("--image", o->image, "Chip image file (the chip runs in this process)");
  probe->add_option("--socket", o->socket, "Socket of a `devid se run` daemon");
  probe->add_option("--slot", o->slot, "Key slot of the device key")->check(CLI::Range(0, 15));
  probe->add_option("--connect", o->connect, "Server HOST:PORT")->required();
  probe->add_option("--server-name", o->server_name,
                    "Name the server certificate must carry (default: HOST)");
  probe->add_flag("--tls1_3", o->tls13, "TLS 1.3 instead of TLS 1.2 (ECDHE-ECDSA-AES128-GCM)");
  AddPinOptions(probe, o->pin, o->pin_file, "for PIN-protected keys (or DEVID_PIN)");
  AddEnrollAndRun(agent, g);
  probe->callback([o, &g] {
    Run(g, [&]() -> Status {
      if (o->image.empty() == o->socket.empty()) {
        return MakeError(ErrorCode::kInvalidInput,
                         "give exactly one of --image FILE or --socket PATH");
      }
      DEVID_ASSIGN_OR_RETURN(auto target, ParseHostPort(o->connect, "--connect", "HOST", false));
      agent::TlsProbeOptions p;
      p.image = o->image;
      p.socket = o->socket;
      p.slot = o->slot;
      DEVID_ASSIGN_OR_RETURN(p.pin, ResolvePin(o->pin, o->pin_file));
      p.host = target.first;
      p.port = target.second;
      p.server_name = o->server_name;
      p.version = o->tls13 ? crypto::TlsVersion::kTls13 : crypto::TlsVersion::kTls12;
      DEVID_ASSIGN_OR_RETURN(agent::TlsProbeResult r, agent::RunTlsProbe(p));
      std::cout << "version  " << r.session.version << "\ncipher   " << r.session.cipher
                << "\ngroup    " << r.session.group << "\npeer     "
                << Printable(r.session.peer_subject) << "\nchip commands during the handshake:\n";
      for (const std::string& line : r.handshake_log) std::cout << "  " << line << "\n";
      return {};
    });
  });
}

}  // namespace devid::cli
