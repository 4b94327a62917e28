// devid: the command-line program. Parses flags and calls the libraries.
#include <CLI/CLI.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  // Files devid creates (database, WAL, keys) are private unless it says otherwise.
  ::umask(077);
  CLI::App app{
      "devid: device identity from the chip to the cloud.\n"
      "Runs certificate authorities per organization and issues device certificates."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("devid ") + DEVID_VERSION);
  devid::cli::GlobalOptions global;
  app.add_option("--home", global.home, "State folder (default: $DEVID_HOME, else ./var/devid)")
      ->envname("DEVID_HOME");
  app.add_option("--db", global.db,
                 "Store URL: sqlite:PATH or postgresql://USER@HOST:PORT/DB "
                 "(default: $DEVID_DB, else sqlite:<home>/devid.db)")
      ->envname("DEVID_DB");
  app.add_option("--passphrase-file", global.passphrase_file,
                 "File whose first line is the passphrase that encrypts CA keys "
                 "(default: the DEVID_PASSPHRASE environment variable)");
  app.add_flag("--no-passphrase", global.no_passphrase,
               "Store new CA keys unencrypted and use unencrypted keys (explicit opt-out)");
  devid::cli::AddCaCommands(app, global);
  devid::cli::AddSeCommands(app, global);
  devid::cli::AddAgentCommands(app, global);
  devid::cli::AddServeCommands(app, global);
  devid::cli::AddAdminCommands(app, global);
  devid::cli::AddCmsCommands(app, global);
  devid::cli::AddHubCommands(app, global);
  devid::cli::AddFactoryCommands(app, global);
  devid::cli::AddFleetCommands(app, global);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return global.exit_code;
}
