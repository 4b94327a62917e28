// `devid hub …`
#include "cli/commands.h"

namespace devid::cli {

void AddHubCommands(CLI::App& app, GlobalOptions& g) {
  (void)app;
  (void)g;
}

}  // namespace devid::cli
