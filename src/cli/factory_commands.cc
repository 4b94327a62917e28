// `devid factory …`
#include "cli/commands.h"

namespace devid::cli {

void AddFactoryCommands(CLI::App& app, GlobalOptions& g) {
  (void)app;
  (void)g;
}

}  // namespace devid::cli
