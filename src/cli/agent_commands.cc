// `devid agent …`: the device side. For now `tls-probe`: one mutual-TLS
// handshake with the chip doing the crypto, and the chip's log of it.
#include <iostream>

#include "agent/tls_probe.h"
#include "cli/commands.h"

namespace devid::cli {

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
