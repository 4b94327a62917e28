#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace devid::cli {

struct GlobalOptions {
  std::string home;
  std::string passphrase_file;
  bool no_passphrase = false;
  int exit_code = 0;
};

// `devid ca …`
void AddCaCommands(CLI::App& app, GlobalOptions& global);
// `devid se …`
void AddSeCommands(CLI::App& app, GlobalOptions& global);

}  // namespace devid::cli
