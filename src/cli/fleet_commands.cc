// `devid fleet …`
#include "cli/commands.h"

namespace devid::cli {

void AddFleetCommands(CLI::App& app, GlobalOptions& g) {
  (void)app;
  (void)g;
}

}  // namespace devid::cli
