// `devid fleet …`: `simulate` runs seed fig. 4 for many virtual devices at once.
#include <iostream>

#include "agent/fleet.h"
#include "cli/commands.h"

namespace devid::cli {

void AddFleetCommands(CLI::App& app, GlobalOptions& g) {
  CLI::App* fleet = app.add_subcommand("fleet", "Many virtual devices at once");
  fleet->require_subcommand(1);
  struct Opts {
    int devices = 0;
    AgentCmsOpts cms;
    std::string token, hub, server_name, dir;
    int concurrency = 0;
    bool latency_model = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = fleet->add_subcommand(
      "simulate",
      "N virtual devices, each with a chip of its own in this process, through the zero-touch "
      "flow concurrently: key made in the chip, the issuing CA's key written to it, EST "
      "simpleenroll with an enrolment token, mutual TLS to the hub through the chip, one "
      "telemetry message acknowledged; prints progress and a summary, exits 1 if any failed");
  c->add_option("--devices", o->devices, "How many devices")
      ->required()
      ->check(CLI::Range(1, 1000000));
  AddAgentCmsOptions(c, o->cms, true);
  c->add_option("--token", o->token, "Enrolment token (an API token of the enrollment role)")
      ->envname("DEVID_ENROLL_TOKEN")
      ->required();
  c->add_option("--hub", o->hub, "Hub HOST:PORT")->required();
  c->add_option("--server-name", o->server_name,
                "Name or address the hub's certificate must carry (default: HOST)");
  c->add_option("--concurrency", o->concurrency, "Worker threads (default: twice the cores)")
      ->check(CLI::Range(1, 4096));
  c->add_flag("--latency-model", o->latency_model,
              "Chips delay their commands as a real secure element would");
  c->add_option("--dir", o->dir,
                "Keep the chip images in DIR (default: a temporary directory, removed after)");
  c->callback([o, &g] {
    Run(g, [&]() -> Status {
      DEVID_ASSIGN_OR_RETURN(auto hub, ParseHostPort(o->hub, "--hub", "HOST", false));
      agent::FleetOptions f;
      f.devices = o->devices;
      f.cms = {o->cms.url, o->cms.ca_file, o->cms.org, o->cms.ca};
      f.token = o->token;
      f.hub_host = hub.first;
      f.hub_port = hub.second;
      f.server_name = o->server_name;
      f.concurrency = o->concurrency;
      f.latency_model = o->latency_model;
      f.dir = o->dir;
      f.progress = [](int done, int failed, int total) {
        std::cout << "progress: " << done << " done, " << failed << " failed of " << total
                  << std::endl;
      };
      DEVID_ASSIGN_OR_RETURN(agent::FleetReport report, agent::SimulateFleet(f));
      for (const std::string& line : report.SummaryLines()) std::cout << Printable(line) << "\n";
      std::cout.flush();
      if (report.failed > 0) {
        return MakeError(ErrorCode::kIo, std::to_string(report.failed) + " of " +
                                             std::to_string(report.devices) + " devices failed");
      }
      return {};
    });
  });
}

}  // namespace devid::cli
