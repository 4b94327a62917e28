// `devid admin bootstrap` (the first system admin) and `devid audit verify`.
#include <iostream>

#include "cli/commands.h"
#include "cms/audit.h"
#include "cms/auth.h"
#include "core/file.h"
#include "crypto/key.h"

namespace devid::cli {

void AddAdminCommands(CLI::App& app, GlobalOptions& g) {
  CLI::App* admin = app.add_subcommand("admin", "Administration of the CMS");
  admin->require_subcommand(1);
  struct BootstrapOpts {
    std::string user;
    std::string password_file;
  };
  auto b = std::make_shared<BootstrapOpts>();
  CLI::App* bootstrap = admin->add_subcommand(
      "bootstrap",
      "Create the first system admin (only while there is none) and print its "
      "credentials once");
  bootstrap->add_option("--user", b->user, "User name of the system admin")->required();
  bootstrap->add_option("--password-file", b->password_file,
                        "File whose first line is the password (at least 12 characters); "
                        "without it a random password is made and printed once");
  bootstrap->callback([b, &g] {
    Run(g, [&]() -> Status {
      DEVID_ASSIGN_OR_RETURN(std::unique_ptr<store::Store> db, OpenHomeStore(g));
      SecretString password;
      bool generated = b->password_file.empty();
      if (generated) {
        DEVID_ASSIGN_OR_RETURN(Bytes random, crypto::RandomBytes(18));
        WipingString text;
        HexEncodeTo(random, text);
        SecureZero(random.data(), random.size());
        password = SecretString(std::string_view(text.data(), text.size()));
      } else {
        DEVID_ASSIGN_OR_RETURN(password, ReadSecretLine(b->password_file, "password file"));
      }
      DEVID_ASSIGN_OR_RETURN(store::UserRecord user,
                             cms::BootstrapSystemAdmin(*db, b->user, password.reveal()));
      std::cout << "system admin: " << Printable(user.username) << "\n";
      if (generated) std::cout << "password: " << password.reveal() << "\n";
      return {};
    });
  });

  CLI::App* audit = app.add_subcommand("audit", "The audit log's hash chain");
  audit->require_subcommand(1);
  CLI::App* verify = audit->add_subcommand(
      "verify", "Check every link of the audit chain; exit 1 at the first broken one");
  verify->callback([&g] {
    Run(g, [&]() -> Status {
      DEVID_ASSIGN_OR_RETURN(std::unique_ptr<store::Store> db, OpenHomeStore(g));
      DEVID_ASSIGN_OR_RETURN(cms::AuditVerification v, cms::VerifyAuditChain(*db));
      if (!v.ok) {
        return MakeError(ErrorCode::kTamper, "the audit chain is broken at record " +
                                                 std::to_string(*v.first_broken_seq) + ": " +
                                                 v.problem);
      }
      std::cout << "audit chain intact: " << v.records << " records\n";
      return {};
    });
  });
}

}  // namespace devid::cli
